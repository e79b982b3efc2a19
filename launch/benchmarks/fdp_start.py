r"""FDP start-up and accelerator-lowering benchmark.

    python -m launch.benchmark --model=fdp_start [--fdp_start_out=docs/bench/fdp_start.json]
        [--fdp_start_sizes=tiny,full] [--fdp_start_compile_step] [--fdp_start_export]

Measures, in this process (so "cold" = the first call in a fresh process):

* ``fdp_jax.init`` wall time per size (cold: trace + compile + run; warm: the cached program) and
  ``dkt_jax.init`` (cold, warm);
* the first and second call of ``jax.jit(fdp_jax.apply)`` (batch 2, eval mode);
* with ``--fdp_start_compile_step``: compile time of the full-size batch-36 train step (platform 'cpu'),
  cold and then warm from JAX's persistent compilation cache (a fresh temporary cache directory);
* with ``--fdp_start_export``: ``jax.export`` of the full-size batch-36 train step (platform 'generic') for
  ``cuda`` from this host: export time, the module's size, XLA's FLOP estimate of the lowering (where the
  lowering offers a cost analysis) and the parameter / optimiser / batch bytes from the shapes, so the README
  can say what an H100/H200 run needs.

Load average is recorded with every run (the numbers are wall times on a shared machine).
"""
from __future__ import annotations

import os
import tempfile
import time

from absl import flags

_OUT = flags.DEFINE_string("fdp_start_out", "docs/bench/fdp_start.json", "JSON result path ('' = none).")
_SIZES = flags.DEFINE_list("fdp_start_sizes", ["tiny", "full"], "FDP sizes whose init is timed.")
_MODE = flags.DEFINE_enum("fdp_start_mode", "paper", ["paper", "reference_compat"], "FDP mode.")
_COMPILE = flags.DEFINE_boolean("fdp_start_compile_step", False,
                                "Also time the full-size batch-36 train step compile, cold vs warm cache.")
_EXPORT = flags.DEFINE_boolean("fdp_start_export", True, "Also export the full-size train step for cuda.")
_BATCH = flags.DEFINE_integer("fdp_start_batch", 36, "Batch of the compiled / exported train step.")


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    import jax
    jax.block_until_ready(out)
    return out, {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3)}


def _abstract_step_args(size: str, mode: str, platform: str, batch: int):
    import jax
    import jax.numpy as jnp

    from fdp_jax import train_steps as ts
    from fdp_jax.configs import get_model_config

    cfg = get_model_config(size, mode, platform=platform)
    state = jax.eval_shape(lambda: ts.create_train_state(jax.random.PRNGKey(0), cfg))
    s = cfg.image_size
    batch_sds = {"frames": jax.ShapeDtypeStruct((batch, cfg.num_frames, s, s, 1), jnp.float32),
                 "di_target": jax.ShapeDtypeStruct((batch, s, s), jnp.float32),
                 "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
                 "mask": jax.ShapeDtypeStruct((batch,), jnp.float32)}
    return state, batch_sds, jax.ShapeDtypeStruct((2,), jnp.uint32)


def _bytes(tree) -> int:
    import jax
    import numpy as np
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _export_cuda(mode: str, batch: int) -> dict:
    import jax

    from fdp_jax import train_steps as ts

    state, batch_sds, rng = _abstract_step_args("full", mode, "generic", batch)
    step = ts.make_train_step(donate=False, platform="generic")
    exported, timing = _timed(lambda: jax.export.export(step, platforms=("cuda",))(state, batch_sds, rng))
    text = exported.mlir_module()
    flops = None
    try:  # cost analysis of the lowering (HLO-level estimate, no backend needed)
        lowered = step.trace(state, batch_sds, rng).lower(lowering_platforms=("cuda",))
        analysis = lowered.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        flops = float(analysis["flops"]) if analysis and analysis.get("flops") else None
    except Exception as e:  # noqa: BLE001
        flops = f"unavailable: {type(e).__name__}: {e}"[:200]
    return {"platforms": list(exported.platforms), "export": timing, "module_chars": len(text),
            "flops_per_step": flops, "param_bytes": _bytes(state.params),
            "batch_stats_bytes": _bytes(state.batch_stats), "opt_state_bytes": _bytes(state.opt_state),
            "batch_bytes": _bytes(batch_sds), "batch": batch, "mode": mode}


def _compile_step(mode: str, batch: int) -> dict:
    import jax

    from fdp_jax import train_steps as ts

    state, batch_sds, rng = _abstract_step_args("full", mode, "cpu", batch)
    out = {}
    cache_dir = tempfile.mkdtemp(prefix="fdp_jax_cache_")
    from launch.runtime.compile_cache import enable_compilation_cache

    enable_compilation_cache(cache_dir, min_compile_secs=0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    for name in ("cold", "warm_cache"):
        step = ts.make_train_step(donate=False, platform="cpu")  # a fresh jit: no in-memory cache
        lowered, t_lower = _timed(lambda: step.trace(state, batch_sds, rng).lower())
        compiled, t_compile = _timed(lambda: lowered.compile())
        out[name] = {"trace_lower": t_lower, "compile": t_compile}
        if name == "cold":
            mem = compiled.memory_analysis()
            out["temp_bytes"] = getattr(mem, "temp_size_in_bytes", None)
        jax.clear_caches()
    out["cache_dir"] = cache_dir
    return out


def main(argv):
    del argv
    import jax

    import dkt_jax
    import fdp_jax
    from launch.benchmarks import common

    result = {"machine": common.machine_info(), "load_average_start": os.getloadavg(), "mode": _MODE.value}
    key = jax.random.PRNGKey(0)
    for size in _SIZES.value:
        cfg = fdp_jax.get_model_config(size, _MODE.value)
        variables, cold = _timed(lambda: fdp_jax.init(key, cfg))
        _, warm = _timed(lambda: fdp_jax.init(jax.random.PRNGKey(1), cfg))
        result[f"fdp_init_{size}"] = {"cold": cold, "warm": warm}
        print(f"fdp_jax.init {size}: cold {cold}, warm {warm}", flush=True)
        if size == _SIZES.value[0]:
            clips = jax.random.normal(key, (2, cfg.num_frames, cfg.image_size, cfg.image_size, 1))
            apply = jax.jit(fdp_jax.apply)
            _, first = _timed(lambda: apply(variables, clips))
            _, second = _timed(lambda: apply(variables, clips))
            result[f"jit_apply_{size}_batch2"] = {"first": first, "second": second}
            print(f"jax.jit(fdp_jax.apply) {size}: first {first}, second {second}", flush=True)
    dkt_cfg = {"num_skills": 102, "hidden_size": 200}
    _, cold = _timed(lambda: dkt_jax.init(key, dkt_cfg))
    _, warm = _timed(lambda: dkt_jax.init(jax.random.PRNGKey(1), dkt_cfg))
    result["dkt_init"] = {"cold": cold, "warm": warm, "config": dkt_cfg}
    print(f"dkt_jax.init: cold {cold}, warm {warm}", flush=True)
    if _EXPORT.value:
        result["export_cuda_full"] = _export_cuda(_MODE.value, _BATCH.value)
        print("export for cuda:", result["export_cuda_full"], flush=True)
    if _COMPILE.value:
        result["compile_full_train_step_cpu"] = _compile_step(_MODE.value, _BATCH.value)
        print("full-size train step compile:", result["compile_full_train_step_cpu"], flush=True)
    result["load_average_end"] = os.getloadavg()
    common.write_json(_OUT.value, result)
