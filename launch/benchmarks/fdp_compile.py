r"""What the FDP train step's compile time is made of: trace + lower vs XLA compile, cold vs warm persistent cache,
and with the CPU-only code paths switched off one at a time. Each variant runs in a fresh process.

    python -m launch.benchmark --model=fdp_compile [--fdp_compile_size=full] [--fdp_compile_batch=36]
        [--fdp_compile_mode=paper] [--fdp_compile_out=docs/bench/fdp_compile.json]

Variants: 'cpu' (the XLA:CPU paths the launchers pick on a CPU mesh: Winograd / matmul convolutions, CPU block
remat), 'cpu_no_winograd' (the same without the Winograd convolutions), 'generic' (the portable path that
GPU/TPU lowerings take), and 'cpu' again with the persistent compilation cache filled by the first run (warm).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

_SIZE = flags.DEFINE_string("fdp_compile_size", "full", "Model size preset (full, small, tiny).")
_BATCH = flags.DEFINE_integer("fdp_compile_batch", 36, "Batch size of the train step.")
_MODE = flags.DEFINE_string("fdp_compile_mode", "paper", "Model mode (paper, reference_compat).")
_OUT = flags.DEFINE_string("fdp_compile_out", None, "JSON result path.")
_CHILD = flags.DEFINE_string("fdp_compile_child", None, "Internal: run one variant in this process.")
VARIANTS = ("cpu", "cpu_no_winograd", "generic")


def _child(variant: str) -> dict:
    import jax
    import numpy as np

    from fdp_jax import train_steps as ts
    from fdp_jax.configs import get_model_config, with_platform

    from launch.runtime.compile_cache import enable_compilation_cache

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        enable_compilation_cache(os.environ["JAX_COMPILATION_CACHE_DIR"], min_compile_secs=0.0)
    cfg = get_model_config(_SIZE.value, _MODE.value, winograd=variant != "cpu_no_winograd")
    cfg = with_platform(cfg, "generic" if variant == "generic" else "cpu")
    state = jax.eval_shape(lambda: ts.create_train_state(jax.random.PRNGKey(0), cfg))
    s, b = cfg.image_size, _BATCH.value
    batch = {"frames": jax.ShapeDtypeStruct((b, cfg.num_frames, s, s, 1), np.float32),
             "di_target": jax.ShapeDtypeStruct((b, s, s), np.float32),
             "label": jax.ShapeDtypeStruct((b,), np.int32)}
    step = ts.make_train_step(donate=True)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch, jax.ShapeDtypeStruct((2,), np.uint32))
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {"variant": variant, "trace_lower_s": t1 - t0, "compile_s": t2 - t1,
            "stablehlo_chars": len(lowered.as_text())}


def _spawn(variant: str, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    args = [sys.executable, "-m", "launch.benchmark", "--model=fdp_compile", f"--fdp_compile_child={variant}",
            f"--fdp_compile_size={_SIZE.value}", f"--fdp_compile_batch={_BATCH.value}",
            f"--fdp_compile_mode={_MODE.value}"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr[-2000:]}
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv):
    del argv
    if _CHILD.value:
        print(json.dumps(_child(_CHILD.value)))
        return
    from launch.benchmarks import common

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for variant, cache_dir, label in (("cpu", cache, "cpu (cold cache)"), ("cpu", cache, "cpu (warm cache)"),
                                          ("cpu_no_winograd", None, "cpu_no_winograd"),
                                          ("generic", None, "generic")):
            row = {**_spawn(variant, cache_dir), "run": label}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nFDP train step ({_SIZE.value}, {_MODE.value}, batch {_BATCH.value}): compile time by variant")
    print(common.format_table([r for r in rows if "error" not in r],
                              ["run", "trace_lower_s", "compile_s", "stablehlo_chars"]))
    common.write_json(_OUT.value, {"rows": rows, "size": _SIZE.value, "mode": _MODE.value, "batch": _BATCH.value,
                                   "load_average_1_5_15": list(os.getloadavg()), "machine": common.machine_info()})
