#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the CUDA-only tests (marked `gpu`), and the gpu
# benchmark suite. Prints the test summary and one JSON object; nothing here needs the internet.
# Without a GPU it is a dry run: the CUDA tests and timings are skipped, each saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "gpu_check: no NVIDIA GPU here: a dry run (the CUDA tests and timings are skipped)"
fi
# a machine with no package index gets its venv from carried wheels (scripts/gpu_wheels.sh, README)
if [ -d .whl ] && [ ! -f .venv/.installed ]; then bash scripts/venv_from_wheels.sh .whl; fi
[ "${GPU_CHECK_BUILT:-0}" = 1 ] || make build  # the tests set it: they run inside a build
set +u  # colcon's setup.bash reads unset variables
source scripts/env.sh
set -u
python -c "import torch; print(f'PyTorch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}')"
status=0  # the benchmark runs even when a test fails: its figures help to find why
# GPU_TESTS=0 or GPU_BENCH=0 leaves one out: on a machine lent for minutes, one call each
if [ "${GPU_TESTS:-1}" = 1 ]; then
  (cd sam2_ros && python -m pytest test/test_gpu.py -q -rs -p no:cacheprovider -m gpu) || status=$?
fi
# GPU_MODELS=tiny: only what the goals compare (a lent machine's minutes); the JSON holds each
# figure as soon as it is measured, so a run stopped at a time limit keeps what it had, and
# GPU_RESUME=1 takes it up there (the steps its JSON lacks)
if [ "${GPU_BENCH:-1}" = 1 ]; then
  resume=()
  [ "${GPU_RESUME:-0}" = 1 ] && resume=(--resume)
  sam2_bench --suite gpu --gpu-frames "${GPU_FRAMES:-24}" ${GPU_MODELS:+--gpu-models "$GPU_MODELS"} \
    --json "${GPU_JSON:-gpu_bench.json}" "${resume[@]}" || status=$?
fi
exit $status
