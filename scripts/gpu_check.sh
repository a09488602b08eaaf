#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the CUDA-only tests (marked `gpu`), and the gpu
# benchmark suite. Prints the test summary and one JSON object; nothing here needs the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
make build
source scripts/env.sh
(cd sam2_ros && python -m pytest test/test_gpu.py -q -p no:cacheprovider -m gpu)
sam2_bench --suite gpu --gpu-frames "${GPU_FRAMES:-24}" --json gpu_bench.json
