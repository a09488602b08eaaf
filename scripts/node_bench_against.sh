#!/usr/bin/env bash
# Node overhead, result age and the stream suite of this tree against another commit, side by side
# in one run:
#   bash scripts/node_bench_against.sh REF [ROUNDS] [OUT.json] [STREAM_SECONDS]
# (after `make build`). The trees alternate, REF first, so both meet the same machine state;
# REF's Python package is imported from a temporary worktree, with this build's interfaces
# (REF must have the same messages; the stream suite's node process inherits the same path).
# Each run is `--suite node` then `--suite stream` (STREAM_SECONDS a run, default 10; 0 skips it).
# Prints one JSON object: each run's figures and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: node_bench_against.sh REF [ROUNDS] [OUT.json]}
rounds=${2:-2}
out=${3:-node_bench_against.json}
stream_seconds=${4:-10}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
set +u  # colcon's setup.bash reads unset variables
source scripts/env.sh
set -u
base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$base" "$ref" >/dev/null
suite() {  # suite FILE PYTHONPATH_FIRST ARGS...
  local file=$1 first=$2
  shift 2
  PYTHONPATH="$first${PYTHONPATH:+:$PYTHONPATH}" python -c \
    "import sys; from sam2_ros.tools.bench import main; sys.exit(main())" \
    --image-size 256 --json "$file" "$@" >/dev/null 2>&1
}
bench() {  # bench FILE PYTHONPATH_FIRST: the node suite, then the stream suite, merged into FILE
  suite "$1" "$2" --suite node --node-frames 12 || return 1
  if [ "$stream_seconds" != 0 ]; then
    suite "$1.stream" "$2" --suite stream --stream-seconds "$stream_seconds" || return 1
    python3 -c "import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); a.update(b); \
json.dump(a, open(sys.argv[1], 'w'))" "$1" "$1.stream"
  fi
}
runs=()
for round in $(seq "$rounds"); do
  bench "$base/ref$round.json" "$base/sam2_ros" && runs+=("$ref=$base/ref$round.json")
  bench "$base/this$round.json" "$PWD/sam2_ros" && runs+=("this=$base/this$round.json")
done
python3 - "${runs[@]}" <<'PY' | tee "$out"
import json, statistics, sys
runs = [{"tree": arg.split("=", 1)[0], "figures": json.load(open(arg.split("=", 1)[1]))} for arg in sys.argv[1:]]
first = ("node_overhead_ms_p50", "node_overhead_ms_p50_8obj", "node_overhead_ms_p50_3d", "stream_result_age_ms_p50",
         "stream_model_period_ms", "model_ms_p50", "node_3d_fraction", "node_3d_fraction_lag600")
numeric = set.intersection(*({k for k, v in r["figures"].items() if isinstance(v, (int, float))
                              and not isinstance(v, bool)} for r in runs))
keys = [k for k in first if k in numeric] + sorted(k for k in numeric if k.startswith("stream_") and k not in first)
medians = {tree: {k: statistics.median(r["figures"][k] for r in runs if r["tree"] == tree) for k in keys}
           for tree in dict.fromkeys(r["tree"] for r in runs)}
print(json.dumps({"runs": runs, "medians": medians}, indent=2))
PY
