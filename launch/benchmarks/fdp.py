r"""FDP train-step benchmark (fwd + bwd + optimiser), ours vs. the official PyTorch step.

    python -m launch.benchmark --model=fdp [--reference_repo=PATH] [--fdp_batch_sizes=36,2]
        [--fdp_modes=paper,reference_compat] [--fdp_size=full] [--fdp_repeats=3] [--fdp_out=fdp_bench.json]
        [--fdp_host_malloc=keep,default]

Every measurement runs in its own subprocess so each reports its own peak RSS. Ours: a jitted
``fdp_jax.train_steps.train_step`` (Adam + coupled L2, donated state) on random clips (B, 8, 64, 64, 1);
FLOPs from XLA's cost analysis of the compiled step, MFU against a matmul peak measured in this run.
On CPU the compiled step runs some convolutions as Winograd matmuls (fewer FLOPs, ``fdp_jax.conv``), so
``mfu`` is the executed-FLOP rate and ``mfu_direct`` counts the FLOPs of the same step with direct
convolutions (XLA's cost analysis of the step lowered with Winograd off), the usual "model FLOPs" MFU.
With ``--reference_repo`` (a clone of github.com/CYF-cuber/FDP) and torch importable, the official
``fdp.py`` is imported from there (with a stand-in for timm's DropPath/trunc_normal_/register_model if
timm is absent) and its step (Adam(lr 1e-4, wd 1e-3), 100 * MSE + NLL(log_softmax)) is timed at the
same shapes. No official code is part of this project. ``--fdp_host_malloc`` applies the same host allocator
setting (see :mod:`launch.runtime.host_memory`) to both implementations; ratios compare rows with the same setting.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import types

from absl import flags, logging

from launch.benchmarks import common

flags.DEFINE_string("reference_repo", None, "Path to a clone of the official FDP repository (optional).")
flags.DEFINE_list("fdp_batch_sizes", ["36", "2"], "Batch sizes to time.")
flags.DEFINE_list("fdp_modes", ["paper", "reference_compat"], "Model modes to time.")
flags.DEFINE_string("fdp_size", "full", "Model size preset (full, small, tiny).")
flags.DEFINE_integer("fdp_repeats", 3, "Timed steps per measurement (after one warm-up step).")
flags.DEFINE_string("fdp_dtype", "float32", "Compute dtype of our model (float32 or bfloat16).")
flags.DEFINE_bool("fdp_remat", False, "Rematerialise encoder blocks in our model.")
flags.DEFINE_bool("fdp_per_frame", False, "Run our encoder once per frame (official BN behaviour).")
flags.DEFINE_string("fdp_xla_flags", "", "Extra XLA_FLAGS for our measurement subprocesses.")
flags.DEFINE_list("fdp_host_malloc", ["keep"],
                  "Host allocator settings to time, applied to ours AND the official step alike: 'keep' "
                  "(launch.runtime.host_memory.keep_freed_host_memory: glibc reuses freed memory, no per-step page "
                  "faults) and/or 'default' (glibc as is).")
flags.DEFINE_string("fdp_out", None, "Write the results as JSON here.")
flags.DEFINE_string("fdp_child", None, "Internal: run one measurement ('ours:MODE:B:MALLOC' or 'torch:B:MALLOC').")
FLAGS = flags.FLAGS


def _host_malloc(setting: str) -> str:
    if setting not in ("keep", "default"):
        raise ValueError(f"--fdp_host_malloc: unknown setting {setting!r}; expected 'keep' or 'default'.")
    if setting == "keep":
        from launch.runtime.host_memory import keep_freed_host_memory, release_after_compiles
        if not keep_freed_host_memory():
            return "default (keep unavailable)"
        release_after_compiles()  # ours: compile garbage returned to the OS before the first step
    return setting


def _ours(mode: str, batch_size: int, host_malloc: str) -> dict:
    host_malloc = _host_malloc(host_malloc)
    import jax
    import numpy as np

    from fdp_jax import train_steps as ts
    from fdp_jax.configs import get_model_config, with_platform

    cfg = get_model_config(FLAGS.fdp_size, mode, dtype=FLAGS.fdp_dtype, remat=FLAGS.fdp_remat,
                           per_frame_encoder=FLAGS.fdp_per_frame)
    cfg = with_platform(cfg, jax.devices()[0])  # the CPU kernels on a CPU, the portable path elsewhere
    state = ts.create_train_state(jax.random.PRNGKey(0), cfg)
    rng = np.random.default_rng(0)
    s = cfg.image_size
    batch = {"frames": rng.standard_normal((batch_size, cfg.num_frames, s, s, 1)).astype(np.float32),
             "di_target": rng.uniform(size=(batch_size, s, s)).astype(np.float32),
             "label": rng.integers(0, cfg.num_classes, batch_size).astype(np.int32)}
    batch = jax.device_put(batch)
    step = ts.make_train_step(donate=True)
    key = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    flops = float(analysis.get("flops", 0.0)) if analysis else None
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch, key)
        return metrics

    timing = common.time_calls(run, warmup=1, repeats=FLAGS.fdp_repeats)
    n_params = sum(int(x.size) for x in jax.tree.leaves(holder[0].params))
    peak_rss_mb = common.peak_rss_mb()  # before tracing the direct-convolution variant below
    from fdp_jax import conv as conv_lib
    winograd_min_channels = conv_lib.WINOGRAD_MIN_CHANNELS
    conv_lib.WINOGRAD_MIN_CHANNELS = 1 << 62  # this child process only: trace the direct-convolution step
    try:
        direct = ts.make_train_step(donate=False).lower(holder[0], batch, key).cost_analysis()
    finally:
        conv_lib.WINOGRAD_MIN_CHANNELS = winograd_min_channels
    direct = direct[0] if isinstance(direct, (list, tuple)) else direct
    return {"impl": "ours", "mode": mode, "batch": batch_size, **timing, "compile_s": compile_s,
            "flops": flops, "direct_conv_flops": float(direct.get("flops", 0.0)) if direct else None,
            "params": n_params, "peak_rss_mb": peak_rss_mb,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "host_malloc": host_malloc}


def _timm_stand_in() -> None:
    """Minimal timm-0.4.9 semantics for DropPath / trunc_normal_ / register_model (only if timm is absent)."""
    import torch
    from torch import nn

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob or 0.0

        def forward(self, x):
            if self.drop_prob == 0.0 or not self.training:
                return x
            keep = 1 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x.div(keep) * mask

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.trunc_normal_ = DropPath, trunc_normal_
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def _torch(batch_size: int, host_malloc: str) -> dict:
    host_malloc = _host_malloc(host_malloc)
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    try:
        import timm.models.layers  # noqa: F401
    except Exception:
        _timm_stand_in()
    try:
        import cgi  # noqa: F401  (fdp.py imports cgi.print_arguments; cgi is gone in Python >= 3.13)
    except ImportError:
        sys.modules["cgi"] = types.SimpleNamespace(print_arguments=None)
    path = os.path.join(FLAGS.reference_repo, "fdp.py")
    spec = importlib.util.spec_from_file_location("official_fdp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.FDP()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    video = torch.from_numpy(rng.standard_normal((batch_size, 1, 8, 1, 64, 64)).astype(np.float32))
    target = torch.from_numpy(rng.uniform(size=(batch_size, 64, 64)).astype(np.float32))
    label = torch.from_numpy(rng.integers(0, 5, batch_size).astype(np.int64))
    if host_malloc == "keep":  # same point as ours (after setup, before the first step)
        from launch.runtime.host_memory import release_free_host_memory
        release_free_host_memory()

    def run():
        opt.zero_grad()
        logits, di = model(video)
        loss = 100.0 * F.mse_loss(di, target) + F.nll_loss(F.log_softmax(logits, 1), label)
        loss.backward()
        opt.step()
        return None

    timing = common.time_calls(run, warmup=1, repeats=FLAGS.fdp_repeats)
    return {"impl": "official_torch", "mode": "official", "batch": batch_size, **timing,
            "params": sum(p.numel() for p in model.parameters()), "peak_rss_mb": common.peak_rss_mb(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "host_malloc": host_malloc}


def _spawn(child: str) -> dict:
    args = [sys.executable, "-m", "launch.benchmark", "--model=fdp", f"--fdp_child={child}",
            f"--fdp_size={FLAGS.fdp_size}", f"--fdp_repeats={FLAGS.fdp_repeats}", f"--fdp_dtype={FLAGS.fdp_dtype}",
            f"--fdp_remat={FLAGS.fdp_remat}", f"--fdp_per_frame={FLAGS.fdp_per_frame}"]
    if FLAGS.reference_repo:
        args.append(f"--reference_repo={FLAGS.reference_repo}")
    env = dict(os.environ)
    if FLAGS.fdp_xla_flags and child.startswith("ours"):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FLAGS.fdp_xla_flags).strip()
    logging.info("running %s", child)
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"child": child, "error": proc.stderr[-2000:]}
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv) -> None:
    del argv
    if FLAGS.fdp_child:
        kind, *rest = FLAGS.fdp_child.split(":")
        result = _ours(rest[0], int(rest[1]), rest[2]) if kind == "ours" else _torch(int(rest[0]), rest[1])
        print(json.dumps(result, default=str))
        return
    import jax

    peak = common.matmul_peak_flops()
    rows = []
    batches = [int(b) for b in FLAGS.fdp_batch_sizes]
    for b in batches:
        for malloc in FLAGS.fdp_host_malloc:
            for mode in FLAGS.fdp_modes:
                rows.append(_spawn(f"ours:{mode}:{b}:{malloc}"))
                print(json.dumps(rows[-1], default=str), flush=True)
            if FLAGS.reference_repo:
                rows.append(_spawn(f"torch:{b}:{malloc}"))
                print(json.dumps(rows[-1], default=str), flush=True)
    for r in rows:
        if r.get("impl") == "ours":
            r["mfu"] = common.mfu(r.get("flops"), r["median_s"], peak["peak_flops_per_s"])
            r["mfu_direct"] = common.mfu(r.get("direct_conv_flops"), r["median_s"], peak["peak_flops_per_s"])
            r["tflops_per_s"] = (r["flops"] / r["median_s"] / 1e12) if r.get("flops") else None
            ref = next((x for x in rows if x.get("impl") == "official_torch" and x["batch"] == r["batch"]
                        and x.get("host_malloc") == r.get("host_malloc")), None)
            if ref:
                r["time_vs_official"] = r["median_s"] / ref["median_s"]
                r["rss_vs_official"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
    columns = ["impl", "mode", "batch", "host_malloc", "median_s", "min_s", "compile_s", "peak_rss_mb", "tflops_per_s",
               "mfu", "mfu_direct", "time_vs_official", "rss_vs_official"]
    print(f"\nFDP train step ({FLAGS.fdp_size}, {FLAGS.fdp_dtype}) on {jax.default_backend()}; matmul peak "
          f"{peak['peak_flops_per_s'] / 1e9:.1f} GFLOP/s")
    print(common.format_table([r for r in rows if "error" not in r], columns))
    for r in rows:
        if "error" in r:
            print(f"FAILED {r['child']}:\n{r['error']}")
    common.write_json(FLAGS.fdp_out, {"machine": common.machine_info(), "matmul_peak": peak, "rows": rows,
                                      "flags": {"size": FLAGS.fdp_size, "dtype": FLAGS.fdp_dtype,
                                                "remat": FLAGS.fdp_remat, "per_frame": FLAGS.fdp_per_frame,
                                                "xla_flags": FLAGS.fdp_xla_flags,
                                                "host_malloc": FLAGS.fdp_host_malloc}})
