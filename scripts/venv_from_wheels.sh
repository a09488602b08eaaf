#!/usr/bin/env bash
# On a machine with no package index but its own PyTorch (a lent GPU machine): make the project's
# .venv over that PyTorch from carried wheels (scripts/gpu_wheels.sh made them), so that
# `make build` and everything after it run as they do where `make setup` can reach PyPI.
#   bash scripts/venv_from_wheels.sh [WHEELS]   (default .whl; python3 is the one with torch)
# PYTHON names another interpreter, VENV another venv folder (the tests' own).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${1:-.whl}
python=${PYTHON:-python3}
venv=${VENV:-.venv}
"$python" -c "import torch" 2>/dev/null || { echo "venv_from_wheels: $python has no torch" >&2; exit 1; }
rm -rf "$venv"
"$python" -m venv --without-pip "$venv"  # ensurepip may be missing there; its pip installs
# That python may itself be a venv, whose packages another venv would not see: point at them.
own_site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$python" -c "import site; print('\n'.join(f'import site; site.addsitedir({p!r})' for p in site.getsitepackages()))" \
  >"$own_site/_machine_packages.pth"  # addsitedir: the .pth files there count too
# A carried wheel is installed unless the machine has that very version (pins of this project win).
mapfile -t missing < <("$venv/bin/python" scripts/carried_wheels.py "$wheels")
pip=("$python" -m pip --python "$venv/bin/python" install -q --no-index --no-deps --no-compile)
[ ${#missing[@]} -eq 0 ] || "${pip[@]}" "${missing[@]}"
# ros-rosidl-parser's lark-parser 0.12 has a `lark` module that lark 1.x must replace (as make setup does)
lark=("$wheels"/lark-1.*.whl)
[ ! -f "${lark[0]}" ] || "${pip[@]}" --force-reinstall "${lark[@]}"
touch "$venv/.installed"  # make setup's mark: make build goes straight to colcon
echo "venv_from_wheels: $venv over $("$python" -c 'import sys; print(sys.executable)') with ${#missing[@]} carried wheels"
