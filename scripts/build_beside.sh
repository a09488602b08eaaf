# Sourced by the *_check.sh scripts: ROS packages that no package index offers, built from their
# checkouts in a colcon workspace beside the project, and tests that must not skip.

# build_beside WORKSPACE PACKAGE_DIR...: link each package into WORKSPACE/src and build them
# against the project's venv (its ROS wheels), tests off.
build_beside() {
  local workspace=$1 package
  shift
  mkdir -p "$workspace/src"
  for package in "$@"; do ln -sfn "$package" "$workspace/src/$(basename "$package")"; done
  source "$root/.venv/bin/activate"
  bash "$root/scripts/fix_ros_wheel_paths.sh" "$root/.venv/bin/python"
  (cd "$workspace" && CMAKE_PREFIX_PATH=$VIRTUAL_ENV AMENT_PREFIX_PATH=$VIRTUAL_ENV \
    colcon build --base-paths src --cmake-args -DBUILD_TESTING=OFF --event-handlers console_cohesion- summary+)
}

# run_unskipped REPORT WHAT PYTEST_ARGS...: run pytest in sam2_ros/; a skipped test fails the check.
run_unskipped() {
  local report=$1 what=$2
  shift 2
  (cd "$root/sam2_ros" && python -m pytest -q -p no:cacheprovider -rs "$@") | tee "$report"
  if grep -q "skipped" "$report"; then echo "$what tests were skipped" >&2; return 1; fi
}
