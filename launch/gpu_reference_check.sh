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
  # Our step in the dtype the launchers use on accelerators (bfloat16) and in float32, the official step in
  # float32 (its own precision), same shapes, batch 36.
  for dtype in bfloat16 float32; do
    "$PY" -m launch.benchmark --model=fdp --reference_repo="$FDP_REFERENCE_REPO" --fdp_batch_sizes=36 \
      --fdp_dtype=$dtype --fdp_out="$OUT/official_benchmark_$dtype.json" > "$OUT/official_benchmark_$dtype.txt" 2>&1 || \
      echo "official benchmark ($dtype) failed, see $OUT/official_benchmark_$dtype.txt"
  done
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
# The >= 3x target: official step time / ours, same batch, per mode and dtype (launch/benchmarks/fdp.py rows).
speedups = []
for dtype in ("bfloat16", "float32"):
    path = os.path.join(out, f"official_benchmark_{dtype}.json")
    if not os.path.exists(path):
        continue
    rows = json.load(open(path))["rows"]
    for r in rows:
        ref = next((x for x in rows if x.get("impl") == "official_torch" and x.get("batch") == r.get("batch")), None)
        if r.get("impl") == "ours" and ref and r.get("median_s"):
            speedups.append({"mode": r["mode"], "dtype": dtype, "batch": r["batch"], "ours_s": r["median_s"],
                             "official_s": ref["median_s"], "speedup": ref["median_s"] / r["median_s"],
                             "meets_3x": ref["median_s"] / r["median_s"] >= 3.0, "mfu": r.get("mfu")})
if speedups:
    payload["speedup_vs_official"] = speedups
json.dump(payload, open(os.path.join(out, "gpu_reference_check.json"), "w"), indent=1)
print(json.dumps(payload, indent=1))
for r in speedups:
    print(f"FDP train step {r['mode']} {r['dtype']} batch {r['batch']}: ours {r['ours_s'] * 1e3:.1f} ms, official "
          f"{r['official_s'] * 1e3:.1f} ms -> {r['speedup']:.2f}x ({'meets' if r['meets_3x'] else 'MISSES'} the 3x target)")
PYEOF
