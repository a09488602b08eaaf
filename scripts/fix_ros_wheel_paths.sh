#!/usr/bin/env bash
# The ROS 2 PyPI wheels export CMake targets that name include folders of the machine that
# built them (/opt/python/cp311-cp311/...). colcon cannot build interfaces until those
# paths exist, so point them at this venv's Python and numpy headers. Idempotent; writes
# under /opt, so it needs root (as on CI) or sudo.
set -euo pipefail
venv_python=${1:?usage: fix_ros_wheel_paths.sh VENV_PYTHON}

read -r py_include np_include pyver < <("$venv_python" -c "
import sys, sysconfig, numpy
print(sysconfig.get_paths()['include'], numpy.get_include(), f'{sys.version_info[0]}.{sys.version_info[1]}')")
root=/opt/python/cp${pyver/./}-cp${pyver/./}
as_root=""
[ "$(id -u)" = 0 ] || as_root="sudo"

link() {  # link TARGET NAME: make NAME point at TARGET unless it already does
  [ "$(readlink "$2" 2>/dev/null)" = "$1" ] && return 0
  $as_root mkdir -p "$(dirname "$2")"
  $as_root ln -sfn "$1" "$2"
}
link "$py_include" "$root/include/python$pyver"
link "$np_include" "$root/lib/python$pyver/site-packages/numpy/_core/include"
