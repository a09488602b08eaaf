#!/usr/bin/env bash
# Run the vision_msgs tests against the real vision_msgs, built from its source here.
#
# vision_msgs cannot be installed from PyPI, so `make test` skips the tests of the message
# builders and of the node's vision_msgs topics. Where a checkout of ros-perception/vision_msgs
# (branch ros2) is at hand, this builds it beside the project and runs those tests with nothing
# skipped:   bash scripts/vision_msgs_check.sh ~/src/vision_msgs
# Run `make build` first.
set -euo pipefail
source_dir=$(cd "${1:?usage: vision_msgs_check.sh PATH_TO_vision_msgs_CHECKOUT}" && pwd)
package=$source_dir
[ -f "$package/package.xml" ] || package=$source_dir/vision_msgs
[ -f "$package/msg/Detection2DArray.msg" ] || { echo "no vision_msgs package in $source_dir" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
workspace=$root/build/vision_msgs_ws
mkdir -p "$workspace/src"
ln -sfn "$package" "$workspace/src/vision_msgs"

source "$root/.venv/bin/activate"
bash "$root/scripts/fix_ros_wheel_paths.sh" "$root/.venv/bin/python"
(cd "$workspace" && CMAKE_PREFIX_PATH=$VIRTUAL_ENV AMENT_PREFIX_PATH=$VIRTUAL_ENV \
  colcon build --cmake-args -DBUILD_TESTING=OFF --event-handlers console_cohesion- summary+)
set +u  # colcon's setup scripts read unset variables
source "$root/install/setup.bash"
source "$workspace/install/setup.bash"
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
cd "$root/sam2_ros"
# every test that needs vision_msgs must run: a skip here is a failure
report=$workspace/pytest.txt
python -m pytest -q -p no:cacheprovider -rs test/test_vision.py test/test_node_guarantees.py -k "vision or detect or real" \
  | tee "$report"
if grep -q "skipped" "$report"; then echo "vision_msgs tests were skipped" >&2; exit 1; fi
echo "vision_msgs tests passed against $package"
