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
source "$root/scripts/build_beside.sh"
build_beside "$workspace" "$package"
set +u  # colcon's setup scripts read unset variables
source "$root/install/setup.bash"
source "$workspace/install/setup.bash"
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# every test that needs vision_msgs must run
run_unskipped "$workspace/pytest.txt" vision_msgs test/test_vision.py test/test_node_guarantees.py \
  -k "vision or detect or real"
echo "vision_msgs tests passed against $package"
