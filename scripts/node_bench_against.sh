#!/usr/bin/env bash
# Node overhead and result age of this tree against another commit, side by side in one run:
#   bash scripts/node_bench_against.sh REF [ROUNDS] [OUT.json]
# (after `make build`). The suites alternate, REF first, so both meet the same machine state;
# REF's Python package is imported from a temporary worktree, with this build's interfaces
# (REF must have the same messages). Prints one JSON object: each run's figures and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: node_bench_against.sh REF [ROUNDS] [OUT.json]}
rounds=${2:-2}
out=${3:-node_bench_against.json}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
set +u  # colcon's setup.bash reads unset variables
source scripts/env.sh
set -u
base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$base" "$ref" >/dev/null
bench() {  # bench FILE PYTHONPATH_FIRST
  PYTHONPATH="$2${PYTHONPATH:+:$PYTHONPATH}" python -c \
    "import sys; from sam2_ros.tools.bench import main; sys.exit(main())" \
    --suite node --image-size 256 --node-frames 12 --json "$1" >/dev/null 2>&1
}
runs=()
for round in $(seq "$rounds"); do
  bench "$base/ref$round.json" "$base/sam2_ros" && runs+=("$ref=$base/ref$round.json")
  bench "$base/this$round.json" "$PWD/sam2_ros" && runs+=("this=$base/this$round.json")
done
python3 - "${runs[@]}" <<'PY' | tee "$out"
import json, statistics, sys
runs = [{"tree": arg.split("=", 1)[0], "figures": json.load(open(arg.split("=", 1)[1]))} for arg in sys.argv[1:]]
keys = ("node_overhead_ms_p50", "node_overhead_ms_p50_8obj", "node_overhead_ms_p50_3d", "stream_result_age_ms_p50",
        "stream_model_period_ms", "model_ms_p50")
medians = {tree: {k: statistics.median(r["figures"][k] for r in runs if r["tree"] == tree) for k in keys}
           for tree in dict.fromkeys(r["tree"] for r in runs)}
print(json.dumps({"runs": runs, "medians": medians}, indent=2))
PY
