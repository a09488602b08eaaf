# Source this in a new shell of this repository after `make build` (or `make test`): the venv,
# the colcon workspace, localhost-only DDS, and the sam2_ros tools (sam2_bench, sam2_replay, ...)
# on PATH, as `ros2 run sam2_ros <tool>` finds them on a robot.
_sam2_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "$_sam2_root/install/setup.bash" ]; then
  echo "scripts/env.sh: run 'make build' first (no $_sam2_root/install/setup.bash)" >&2
  return 1 2>/dev/null || exit 1
fi
source "$_sam2_root/.venv/bin/activate"
source "$_sam2_root/install/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PATH="$_sam2_root/install/sam2_ros/lib/sam2_ros:$PATH"
unset _sam2_root
