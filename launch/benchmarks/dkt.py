r"""DKT+ train-step throughput (forward + loss + backward + Adam), JAX vs pyKT on the same shapes.

    python -m launch.benchmark --model=dkt [--dkt_shapes=64x200x100,32x500x102] [--dkt_repeats=7]
        [--dkt_impls=hoisted,flax] [--dkt_peer=auto|off] [--dkt_out=bench/dkt.json]

Shapes are ``batch x steps x skills`` (hidden 200, every row full length). When torch and pykt-toolkit
are importable (the ``torch`` extra), pyKT's ``DKTPlus`` + ``model_forward``/``cal_loss`` + Adam are timed in
the same process, alternating one JAX step and one pyKT step per repeat so both see the same machine load,
and the throughput ratio is printed. MFU = XLA-counted FLOPs per step / step time / matmul peak measured
in the same run (``common.matmul_peak_flops``); the FLOPs are the model's useful matmul FLOPs
(:func:`model_flops`, the same for every implementation), because XLA's cost analysis counts a scan body once.
"""
from __future__ import annotations

import functools
import statistics
import time

import jax
import numpy as np
from absl import flags, logging

import dkt_jax
from dkt_jax import train_steps
from launch.runtime import mesh as mesh_lib
from launch.benchmarks import common
from launch.configs import dkt_base

_SHAPES = flags.DEFINE_string("dkt_shapes", "64x200x100,32x500x102", "Comma list of BxTxM.")
_HIDDEN = flags.DEFINE_integer("dkt_hidden", 200, "LSTM width.")
_REPEATS = flags.DEFINE_integer("dkt_repeats", 7, "Timed steps per implementation and shape.")
_WARMUP = flags.DEFINE_integer("dkt_warmup", 2, "Untimed steps (compilation) first.")
_IMPLS = flags.DEFINE_string("dkt_impls", "fused,hoisted,flax", "JAX LSTM implementations to time.")
_PEER = flags.DEFINE_enum("dkt_peer", "auto", ["auto", "off"], "Time pyKT when importable.")
_LAMBDAS = flags.DEFINE_string("dkt_lambdas", "0.1,0.003,3.0", "DKT+ lambda_r,lambda_w1,lambda_w2.")
_UNROLL = flags.DEFINE_integer("dkt_unroll", 2, "Scan unroll of the JAX LSTM.")
_OUT = flags.DEFINE_string("dkt_out", None, "Optional JSON output path.")
_TORCH_THREADS = flags.DEFINE_integer("dkt_torch_threads", 0, "torch.set_num_threads (0 = torch default). "
                                      "For a single-thread comparison also run JAX with XLA_FLAGS="
                                      "--xla_cpu_multi_thread_eigen=false.")


def _batch(b: int, t: int, m: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"skills": rng.integers(0, m, (b, t)).astype(np.int32),
            "correct": rng.integers(0, 2, (b, t)).astype(np.int32),
            "lengths": np.full((b,), t, np.int32)}


def model_flops(b: int, t: int, m: int, h: int) -> float:
    """Useful FLOPs of one train step: 3 x forward matmuls (recurrent B.T.H.4H, readout B.T.H.M).

    XLA's cost analysis counts a scan body once, not once per step, so it is not used for MFU.
    """
    return 3.0 * 2.0 * b * t * (h * 4 * h + h * m)


def jax_step_fn(b: int, t: int, m: int, impl: str, lambdas: dict) -> tuple:
    """Returns (one_step() -> blocks, flops_per_step)."""
    cfg = dkt_base.get_config()
    cfg.model.num_skills, cfg.model.hidden_size, cfg.model.lstm_impl = m, _HIDDEN.value, impl
    cfg.model.dropout_rate, cfg.model.unroll = 0.1, _UNROLL.value
    model = dkt_jax.model_from_config(cfg.model)
    mesh = mesh_lib.make_data_mesh(1)
    state = mesh_lib.replicate(train_steps.create_train_state(jax.random.key(0), cfg.model, cfg), mesh)
    batch = mesh_lib.shard_batch(_batch(b, t, m), mesh)
    key = jax.random.key(1)
    jitted = jax.jit(functools.partial(train_steps.train_step, model=model, lambdas=lambdas), donate_argnums=0)
    flops = model_flops(b, t, m, _HIDDEN.value)
    holder = {"state": state}

    def one_step():
        holder["state"], out = jitted(holder["state"], batch, key)
        jax.block_until_ready(out["loss"])
    return one_step, flops


def pykt_step_fn(b: int, t: int, m: int, lambdas: dict):
    """pyKT DKT+ train step on CPU (batch dict built by hand: pyKT's KTDataset needs CUDA)."""
    import torch
    from pykt.models.dkt_plus import DKTPlus
    from pykt.models.train_model import model_forward

    torch.manual_seed(0)
    model = DKTPlus(m, _HIDDEN.value, lambdas["r"], lambdas["w1"], lambdas["w2"], dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    raw = _batch(b, t + 1, m)
    c, r = torch.tensor(raw["skills"], dtype=torch.long), torch.tensor(raw["correct"], dtype=torch.long)
    mask = torch.ones((b, t), dtype=torch.bool)
    data = {"qseqs": c[:, :-1], "cseqs": c[:, :-1], "rseqs": r[:, :-1], "tseqs": torch.zeros(0),
            "shft_qseqs": c[:, 1:], "shft_cseqs": c[:, 1:], "shft_rseqs": r[:, 1:], "shft_tseqs": torch.zeros(0),
            "masks": mask, "smasks": mask}
    model.train()

    def one_step():
        opt.zero_grad()
        loss = model_forward(model, data)
        loss.backward()
        opt.step()
    return one_step, torch


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    del argv
    lr, lw1, lw2 = (float(x) for x in _LAMBDAS.value.split(","))
    lambdas = {"r": lr, "w1": lw1, "w2": lw2}
    peak = common.matmul_peak_flops()
    peer_ok = False
    if _PEER.value == "auto":
        try:
            import pykt.models.dkt_plus  # noqa: F401
            import torch
            if _TORCH_THREADS.value > 0:
                torch.set_num_threads(_TORCH_THREADS.value)
            peer_ok = True
            peer_info = f"torch {torch.__version__} ({torch.get_num_threads()} threads), pykt-toolkit"
        except Exception as e:  # the torch extra is optional
            logging.info("pyKT not importable (%s): timing JAX only.", e)
            peer_info = f"not timed ({type(e).__name__})"
    else:
        peer_info = "off"
    rows = []
    for shape in _SHAPES.value.split(","):
        b, t, m = (int(x) for x in shape.lower().split("x"))
        impls = [x for x in _IMPLS.value.split(",") if x]
        fns = {impl: jax_step_fn(b, t, m, impl, lambdas) for impl in impls}
        if peer_ok:
            fns["pykt"] = (pykt_step_fn(b, t, m, lambdas)[0], model_flops(b, t, m, _HIDDEN.value))
        for fn, _ in fns.values():
            for _ in range(_WARMUP.value):
                fn()
        times = {k: [] for k in fns}
        for _ in range(_REPEATS.value):  # interleaved: every implementation sees the same load
            for k, (fn, _) in fns.items():
                times[k].append(_timed(fn))
        base = statistics.median(times["pykt"]) if "pykt" in times else None
        for k, ts in times.items():
            med = statistics.median(ts)
            flops = fns[k][1]
            rows.append({"impl": "pyKT DKT+ (torch)" if k == "pykt" else f"JAX {k}", "shape": f"{b}x{t}x{m}",
                         "step_ms": 1e3 * med, "min_ms": 1e3 * min(ts), "seq_per_s": b / med,
                         "interactions_per_s": b * t / med,
                         "model_gflop_per_step": flops / 1e9 if flops else None,
                         "mfu": common.mfu(flops, med, peak["peak_flops_per_s"]),
                         "speedup_vs_pykt": (base / med) if base else None})
    cols = ["impl", "shape", "step_ms", "min_ms", "seq_per_s", "interactions_per_s", "model_gflop_per_step", "mfu",
            "speedup_vs_pykt"]
    print(f"machine: {common.machine_info()}")
    print(f"matmul peak: {peak['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['dtype']}, n={peak['n']}); "
          f"peer: {peer_info}; repeats {_REPEATS.value} (median), lambdas {lambdas}")
    print(common.format_table(rows, cols))
    common.write_json(_OUT.value, {"rows": rows, "peak": peak, "machine": common.machine_info(),
                                   "peer": peer_info, "peak_rss_mb": common.peak_rss_mb()})
