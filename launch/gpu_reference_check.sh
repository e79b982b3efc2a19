#!/usr/bin/env bash
# FDP official protocol (launch/configs/fdp_reference.py) at full size on a CASME II-sized synthetic release:
# measures train steps/s on this machine's accelerator and extrapolates the whole 25-fold x 501-step LOSO.
#
#   bash launch/gpu_reference_check.sh [OUT_DIR]          # default OUT_DIR=workdirs/gpu_reference_check
#   FULL_LOSO=1 bash launch/gpu_reference_check.sh        # also run the whole LOSO and time it
#   FDP_REFERENCE_REPO=/path/to/clone/of/CYF-cuber/FDP bash launch/gpu_reference_check.sh
#       # + time the official PyTorch step at the same shapes (python -m launch.benchmark --model=fdp) and
#       #   report the steps/s ratio (needs torch; nothing of the official code is part of this project)
#
# Writes OUT_DIR/gpu_reference_check.json and prints it. Status: written for a GPU session; NOT YET RUN.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-workdirs/gpu_reference_check}
STEPS=${STEPS:-501}
mkdir -p "$OUT"

# 1. CASME II-sized synthetic release (26 subjects, the 20190701 class table: 5-class = 249 clips).
if [ ! -f "$OUT/manual/casme2/CASME2-coding-20190701.xlsx" ]; then
  "$PY" -m datasets.synthetic_me --dataset=casme2 --out_dir="$OUT/manual/casme2" --profile=official_counts
fi

# 2. One fold of the official protocol at full size: compile + STEPS steps, timed from metrics.jsonl.
"$PY" -m launch.fdp --config=launch/configs/fdp_reference.py --workdir="$OUT/one_fold" \
  --config.data.manual_dir="$OUT/manual/casme2" --config.data.data_dir="$OUT/tfds" \
  --config.data.subjects="('sub01',)" --config.num_steps="$STEPS" --config.log_every=10 \
  --config.checkpoint_every=100000

if [ "${FULL_LOSO:-0}" = "1" ]; then
  start=$(date +%s)
  "$PY" -m launch.fdp --config=launch/configs/fdp_reference.py --workdir="$OUT/full_loso" \
    --config.data.manual_dir="$OUT/manual/casme2" --config.data.data_dir="$OUT/tfds" \
    --config.checkpoint_every=100000
  echo $(( $(date +%s) - start )) > "$OUT/full_loso_seconds.txt"
fi

if [ -n "${FDP_REFERENCE_REPO:-}" ]; then
  "$PY" -m launch.benchmark --model=fdp --reference_repo="$FDP_REFERENCE_REPO" > "$OUT/official_benchmark.txt" 2>&1 || \
    echo "official benchmark failed, see $OUT/official_benchmark.txt"
fi

"$PY" - "$OUT" <<'PYEOF'
import json, os, sys
import jax
from launch.runtime.metric_writers import read_jsonl
out = sys.argv[1]
rows = [r for r in read_jsonl(os.path.join(out, "one_fold", "metrics.jsonl")) if r.get("prefix", "").endswith("/train")]
res = json.load(open(os.path.join(out, "one_fold", "results.json")))
# Steady-state rate: between the first logged step (after compilation) and the last one.
(s0, t0), (s1, t1) = (rows[0]["step"], rows[0]["time"]), (rows[-1]["step"], rows[-1]["time"])
steps_per_s = (s1 - s0) / (t1 - t0)
fold_wall = res["wall_time_s"]
payload = {"device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
           "batch_size": res["config"]["batch_size"], "steps_per_fold": res["config"]["num_steps"],
           "train_steps_per_s": steps_per_s, "one_fold_wall_s_incl_build_and_compile": fold_wall,
           "extrapolated_loso_25x501_train_s": 25 * 501 / steps_per_s,
           "extrapolated_loso_25x501_wall_s": fold_wall + 24 * 501 / steps_per_s}
full = os.path.join(out, "full_loso_seconds.txt")
if os.path.exists(full):
    payload["full_loso_wall_s"] = float(open(full).read())
    payload["full_loso_uf1"] = json.load(open(os.path.join(out, "full_loso", "results.json")))["pooled"]["uf1"]
bench = os.path.join(out, "official_benchmark.txt")
if os.path.exists(bench):
    payload["official_benchmark_output_tail"] = open(bench).read()[-2000:]
json.dump(payload, open(os.path.join(out, "gpu_reference_check.json"), "w"), indent=1)
print(json.dumps(payload, indent=1))
PYEOF
