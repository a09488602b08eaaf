#!/usr/bin/env bash
# Run the launch file as `ros2 launch` does, with the real launch, launch_ros and ros2launch.
#
# They cannot be installed from any package index this repository's CI reaches, so `make test`
# skips test/test_launch_file.py. Where checkouts of ros2/launch, ros2/launch_ros and
# ros2/rcl_interfaces are at hand (one distribution's branches: humble, jazzy, rolling), this
# builds composition_interfaces beside the project, puts the three Python packages on the path
# and runs those tests with nothing skipped:
#   bash scripts/launch_check.sh ~/src/launch ~/src/launch_ros ~/src/rcl_interfaces
# Run `make build` first.
set -euo pipefail
usage="usage: launch_check.sh LAUNCH_CHECKOUT LAUNCH_ROS_CHECKOUT RCL_INTERFACES_CHECKOUT"
launch_dir=$(cd "${1:?$usage}" && pwd)
launch_ros_dir=$(cd "${2:?$usage}" && pwd)
interfaces_dir=$(cd "${3:?$usage}" && pwd)
[ -f "$launch_dir/launch/launch/__init__.py" ] || { echo "no launch package in $launch_dir" >&2; exit 2; }
for package in launch_ros ros2launch; do
  [ -f "$launch_ros_dir/$package/$package/__init__.py" ] || { echo "no $package in $launch_ros_dir" >&2; exit 2; }
done
[ -f "$interfaces_dir/composition_interfaces/package.xml" ] || {
  echo "no composition_interfaces in $interfaces_dir" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
workspace=$root/build/launch_ws
source "$root/scripts/build_beside.sh"
build_beside "$workspace" "$interfaces_dir/composition_interfaces"
# launch's one dependency the ROS wheels lack, kept beside the workspace, out of the venv
PYTHONPATH=$workspace/site python -c "import osrf_pycommon" 2>/dev/null \
  || python -m pip install -q --target "$workspace/site" osrf-pycommon
set +u  # colcon's setup scripts read unset variables
source "$root/install/setup.bash"
source "$workspace/install/setup.bash"
set -u
export PYTHONPATH=$launch_dir/launch:$launch_ros_dir/launch_ros:$launch_ros_dir/ros2launch:$workspace/site:$PYTHONPATH
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# every test of the launch file must run
run_unskipped "$workspace/pytest.txt" "launch file" test/test_launch_file.py
version() { sed -n 's:.*<version>\(.*\)</version>.*:\1:p' "$1/package.xml"; }
echo "launch file tests passed with launch $(version "$launch_dir/launch"), launch_ros $(version "$launch_ros_dir/launch_ros")"
