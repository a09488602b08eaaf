#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the CUDA-only tests (marked `gpu`), and the gpu
# benchmark suite. Prints the test summary and one JSON object; nothing here needs the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
make build
set +u  # colcon's setup.bash reads unset variables
source scripts/env.sh
set -u
status=0  # the benchmark runs even when a test fails: its figures help to find why
(cd sam2_ros && python -m pytest test/test_gpu.py -q -p no:cacheprovider -m gpu) || status=$?
sam2_bench --suite gpu --gpu-frames "${GPU_FRAMES:-24}" --json gpu_bench.json || status=$?
exit $status
