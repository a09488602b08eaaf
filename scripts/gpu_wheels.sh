#!/usr/bin/env bash
# Run here, where PyPI answers: collect in .whl/ the wheels a lent GPU machine lacks, for its
# Python, so that scripts/gpu_check.sh can build and test there with no package index.
# Such a machine holds its own CUDA PyTorch (and numpy, OpenCV, scikit-image, pytest, ...) but not
# ROS 2, colcon or sam2; gpu_check.sh makes a venv over its PyTorch from these wheels
# (scripts/venv_from_wheels.sh). Carry .whl with the repository: at most 64 MiB travel a call.
#   bash scripts/gpu_wheels.sh [PYTHON_VERSION]   (default 3.12, the lent machines' Python)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
tag=cp${version/./}
out=.whl
[ -x .venv/bin/python ] || make setup  # sam2's wheel is built against the torch of this venv
rm -rf "$out" && mkdir -p "$out"

# Source-only distributions, pure Python: built into wheels here (sam2 without its CUDA extension).
.venv/bin/python -m pip wheel -q --no-deps -w "$out" empy==4.2.1 antlr4-python3-runtime==4.9.3 \
  iopath==0.1.10
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$out" -r requirements/sam2.txt

# Everything else as published binaries for that Python, with what they need; the wheels built
# above stand in for the source-only ones. numpy is left out: every PyTorch machine has its own.
platforms=()
for p in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 \
         manylinux_2_34 manylinux_2_35 manylinux_2_39; do
  platforms+=(--platform "${p}_x86_64")
done
.venv/bin/python -m pip download -q --only-binary=:all: --python-version "$version" --implementation cp \
  --abi "$tag" --abi abi3 --abi none "${platforms[@]}" --platform any --find-links "$out" -d "$out" \
  -r requirements/ros.txt -r requirements/lark.txt hydra-core==1.3.8 'rosbags>=0.10' 'psutil>=5.9'
# timm without what it needs (PyTorch and the hub client are the machine's): EdgeTAM's encoder names
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$out" timm==1.0.15
rm -f "$out"/numpy-*.whl

travels=$(( ( $(git ls-files -z | xargs -0 du -b -c | tail -1 | cut -f1) + $(du -b -c "$out"/*.whl | tail -1 | cut -f1) ) / 1048576 ))
echo "gpu_wheels: the repository and $out make ${travels} MiB of the 64 MiB a device call carries"
[ "$travels" -lt 64 ] || { echo "gpu_wheels: too much to carry" >&2; exit 1; }
