r"""DKT / DKT+ on a real dataset, ours (JAX, packed rows) vs pyKT (torch), epoch for epoch in one process.

    python -m launch.benchmark --model=dkt_data --dataset=kt_csv/assist2009 --manual_dir=DIR \
        [--epochs=5] [--models=dkt,dktplus] [--json=OUT] [--threads=N]

Both sides get the same students (the shipped train split minus a seeded validation split of 10% of the
training students; the shipped test split), the same pyKT chunks (200 steps, remainders < 3 dropped), hidden
size 200, Adam with per-tensor clipping at 5 and the learning rate, batch size, dropout and lambdas of
``launch/configs/dkt_paper.py``. pyKT trains on one chunk per row (its format: pad to 200, masks); ours on
the same chunks packed several per row (``config.packing``). Epochs alternate (ours, then pyKT) so both see
the same machine load. Both models are scored by OUR metric code (``dkt_jax.metrics``) on full-length
validation/test students, so the AUCs compare; the test split is scored with the best-validation epoch.

``epoch_s`` is the median training time of the epochs after the first (compilation / warm-up), without
evaluation; ``time_to_best_val_s`` sums training time up to the best validation epoch. MFU uses the model's
useful FLOPs (``launch.benchmarks.dkt.model_flops``) and the matmul peak measured in the same run, once
over the rows computed (padded work) and once over real interactions only.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import jax
import numpy as np
from absl import flags

from datasets import prepare
from dkt_jax import input_pipeline as ip
from dkt_jax import metrics, train_steps
from launch import train_dkt
from launch.benchmarks import common
from launch.benchmarks.dkt import model_flops
from launch.configs import dkt_paper
from launch.runtime import mesh as mesh_lib

_DATASET = flags.DEFINE_string("dataset", "kt_csv/assist2009", "A kt_csv dataset, e.g. kt_csv/assist2015.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The DKT+ repository clone or its data/ folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.path.join(tempfile.gettempdir(), "kt_tfds"), "TFDS data_dir.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs per model and side.")
_MODELS = flags.DEFINE_string("models", "dkt,dktplus", "Comma list of dkt, dktplus.")
_JSON = flags.DEFINE_string("json", None, "Optional JSON output path.")
_THREADS = flags.DEFINE_integer("threads", 0, "torch threads (0 = os.cpu_count(), what XLA's CPU pool uses).")
_PACKING = flags.DEFINE_enum("packing", "auto", ["auto", "on", "off"], "Our config.packing.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the validation split, shuffling and init.")
_HIDDEN = flags.DEFINE_integer("hidden_size", None, "Override the hidden size (smoke tests; the paper: 200).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Override the batch size (smoke tests; the paper: 32).")


# ----------------------------------------------------------------------------------------- pyKT side
def pykt_batch(skills: np.ndarray, correct: np.ndarray, torch: Any) -> dict:
    """pyKT's ``KTDataset`` item + collate for padded chunks (its KTDataset builds CUDA tensors)."""
    c = torch.tensor(skills, dtype=torch.long)
    r = torch.tensor(np.where(skills >= 0, correct, -1), dtype=torch.long)
    mask = (c[:, :-1] != -1) & (c[:, 1:] != -1)
    m = mask.long()
    empty = torch.zeros(0)
    return {"qseqs": c[:, :-1] * m, "cseqs": c[:, :-1] * m, "rseqs": r[:, :-1] * m, "tseqs": empty,
            "shft_qseqs": c[:, 1:] * m, "shft_cseqs": c[:, 1:] * m, "shft_rseqs": r[:, 1:] * m,
            "shft_tseqs": empty, "masks": mask, "smasks": c[:, 1:] != -1}


class PyKTSide:
    """pyKT's DKT / DKTPlus with its ``model_forward``/``cal_loss``; Adam + per-tensor clipping."""

    def __init__(self, kind: str, num_skills: int, config: Any, seed: int):
        import torch
        from pykt.models.dkt import DKT
        from pykt.models.dkt_plus import DKTPlus
        from pykt.models.train_model import model_forward
        self.torch, self.forward = torch, model_forward
        torch.manual_seed(seed)
        h, p = config.model.hidden_size, config.model.dropout_rate
        lam = train_steps.lambdas_from(config)
        self.model = (DKT(num_skills, h, dropout=p) if kind == "dkt"
                      else DKTPlus(num_skills, h, lam["r"], lam["w1"], lam["w2"], dropout=p))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.clip = config.clip_norm

    def train_epoch(self, chunks: ip.ChunkTable, batch_size: int, rng: np.random.Generator) -> float:
        order = rng.permutation(len(chunks))
        self.model.train()
        for s in range(len(chunks) // batch_size):
            idx = order[s * batch_size:(s + 1) * batch_size]
            data = pykt_batch(chunks.skills[idx], chunks.correct[idx], self.torch)
            self.opt.zero_grad()
            loss = self.forward(self.model, data)
            loss.backward()
            for p in self.model.parameters():  # per-tensor clipping, as ours and the TF reference
                self.torch.nn.utils.clip_grad_norm_([p], self.clip)
            self.opt.step()
        return float(loss.detach())

    def evaluate(self, seqs: ip.Sequences, num_skills: int) -> dict[str, float]:
        """Full-length predictions, scored by dkt_jax.metrics."""
        acc = metrics.MetricAccumulator(num_skills)
        self.model.eval()
        with self.torch.no_grad():
            for batch in ip.eval_batches(seqs, 64, 200):
                q = self.torch.tensor(np.maximum(batch["skills"], 0), dtype=self.torch.long)
                r = self.torch.tensor(batch["correct"], dtype=self.torch.long)
                probs = self.model(q, r).numpy()
                acc.add(metrics.batch_statistics(probs, batch["skills"], batch["correct"], batch["lengths"]))
        return acc.result()


# ----------------------------------------------------------------------------------------- our side
class OurSide:
    """Our jitted train step over grain batches of (packed) rows."""

    def __init__(self, config: Any, rows: Any, num_skills: int):
        import dkt_jax
        self.config, self.num_skills = config, num_skills
        self.mesh = mesh_lib.make_data_mesh(1)
        model = dkt_jax.model_from_config(config.model)
        rng_init, self.rng = jax.random.split(jax.random.key(config.seed))
        self.state = mesh_lib.replicate(train_steps.create_train_state(rng_init, config.model, config), self.mesh)
        lam = tuple(sorted(train_steps.lambdas_from(config).items()))
        self.step = train_steps.make_train_step(model, lam, self.mesh)
        ds, self.steps_per_epoch = ip.train_dataset(rows, config.batch_size, config.seed)
        self.it = iter(ds)

    def train_epoch(self) -> float:
        out = None
        for _ in range(self.steps_per_epoch):
            self.state, out = self.step(self.state, mesh_lib.shard_batch(next(self.it), self.mesh), self.rng)
        return float(jax.block_until_ready(out["loss"]))

    def evaluate(self, params: Any, seqs: ip.Sequences) -> dict[str, float]:
        return train_steps.evaluate(params, seqs, self.num_skills, batch_size=self.config.eval_batch_size,
                                    chunk_len=self.config.eval_chunk_len, show_progress=False)


def _summary(epochs: list[dict], test: dict, flops_row_step: float, rows_per_epoch: int, row_len: int,
             fill: float, peak: float) -> dict:
    """Epoch time, test AUC, time to the best validation epoch and MFU (padded work / real interactions)."""
    times = [e["epoch_s"] for e in epochs]
    steady = statistics.median(times[1:] if len(times) > 1 else times)
    best = max(range(len(epochs)), key=lambda i: epochs[i]["val_auc_n"])
    work = flops_row_step * rows_per_epoch * row_len / steady  # FLOP/s over every row step computed
    return {"epoch_s": steady, "first_epoch_s": times[0], "test_auc_n": test["auc_n"], "test": test,
            "best_epoch": best + 1, "time_to_best_val_s": float(sum(times[:best + 1])),
            "best_val_auc_n": epochs[best]["val_auc_n"], "epochs": epochs, "rows_per_epoch": rows_per_epoch,
            "interactions_per_s": fill * rows_per_epoch * row_len / steady,
            "mfu_padded": work / peak, "mfu_real": work / peak * fill}


def run_one(kind: str, data: ip.Splits, threads: int, peak: float) -> dict:
    """Trains one model kind ('dkt' | 'dktplus') on both sides, alternating epochs."""
    config = dkt_paper.get_config(f"{_DATASET.value.split('/')[-1]},{kind}")
    config.packing, config.seed = _PACKING.value, _SEED.value
    if _HIDDEN.value:
        config.model.hidden_size = _HIDDEN.value
    if _BATCH.value:
        config.batch_size = _BATCH.value
    config.model.num_skills = data.num_skills
    train, val = ip.split_train_validation(data.train, config.val_fraction, config.seed)
    chunks = ip.make_chunks(train, config.max_len, config.min_len)
    rows = train_dkt.training_rows(chunks, config)
    ours, peer = OurSide(config, rows, data.num_skills), PyKTSide(kind, data.num_skills, config, config.seed)
    rng = np.random.default_rng(config.seed)
    logs: dict[str, list] = {"ours": [], "pykt": []}
    best: dict[str, Any] = {"ours": (-1.0, None), "pykt": (-1.0, None)}
    for epoch in range(_EPOCHS.value):
        t0 = time.perf_counter()
        loss = ours.train_epoch()
        t_ours = time.perf_counter() - t0
        params = ours.state.params
        v = ours.evaluate(params, val)
        logs["ours"].append({"epoch_s": t_ours, "train_loss": loss, "val_auc_n": v["auc_n"], "load": os.getloadavg()})
        if v["auc_n"] > best["ours"][0]:
            best["ours"] = (v["auc_n"], jax.tree.map(np.asarray, jax.device_get(params)))
        t0 = time.perf_counter()
        loss = peer.train_epoch(chunks, config.batch_size, rng)
        t_peer = time.perf_counter() - t0
        v = peer.evaluate(val, data.num_skills)
        logs["pykt"].append({"epoch_s": t_peer, "train_loss": loss, "val_auc_n": v["auc_n"], "load": os.getloadavg()})
        if v["auc_n"] > best["pykt"][0]:
            best["pykt"] = (v["auc_n"], {k: t.clone() for k, t in peer.model.state_dict().items()})
        print(f"[{kind}] epoch {epoch + 1}: ours {t_ours:.1f}s val AUC(N) {logs['ours'][-1]['val_auc_n']:.4f} | "
              f"pyKT {t_peer:.1f}s val AUC(N) {v['auc_n']:.4f} | load {os.getloadavg()[0]:.2f}", flush=True)
    test_ours = ours.evaluate(best["ours"][1], data.test)
    peer.model.load_state_dict(best["pykt"][1])
    test_peer = peer.evaluate(data.test, data.num_skills)
    h, m, t = config.model.hidden_size, data.num_skills, chunks.skills.shape[1]
    flops_row_step = model_flops(1, 1, m, h)
    o = _summary(logs["ours"], test_ours, flops_row_step, ours.steps_per_epoch * config.batch_size, t,
                 ip.fill_ratio(rows), peak)
    p = _summary(logs["pykt"], test_peer, flops_row_step, (len(chunks) // config.batch_size) * config.batch_size,
                 t, ip.fill_ratio(chunks), peak)
    o.update(packed=isinstance(rows, ip.PackedTable), fill_ratio=ip.fill_ratio(rows))
    p.update(packed=False, fill_ratio=ip.fill_ratio(chunks))
    return {"ours": o, "pykt": p, "speedup_epoch": p["epoch_s"] / o["epoch_s"],
            "speedup_time_to_best_val": p["time_to_best_val_s"] / max(o["time_to_best_val_s"], 1e-9),
            "test_auc_n_diff": o["test_auc_n"] - p["test_auc_n"], "threads": threads,
            "config": {"hidden": h, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                       "dropout": config.model.dropout_rate, "lambdas": train_steps.lambdas_from(config),
                       "max_len": config.max_len, "clip": "per_tensor 5.0", "epochs": _EPOCHS.value,
                       "train_students": len(train), "val_students": len(val), "test_students": len(data.test),
                       "chunks": len(chunks), "rows": len(rows)}}


def main(argv: list[str]) -> None:
    del argv
    import torch
    threads = _THREADS.value or os.cpu_count() or 1
    torch.set_num_threads(threads)
    builder = prepare.prepare_dataset(_DATASET.value, manual_dir=_MANUAL_DIR.value, data_dir=_DATA_DIR.value)
    data = ip.read_splits(builder)
    peak = common.matmul_peak_flops()["peak_flops_per_s"]
    out = {"dataset": _DATASET.value, "threads": threads, "machine": common.machine_info(),
           "torch": torch.__version__, "matmul_peak_gflops": peak / 1e9, "load_start": os.getloadavg()}
    for kind in [k for k in _MODELS.value.split(",") if k]:
        out[kind] = run_one(kind, data, threads, peak)
        r = out[kind]
        print(f"[{kind}] ours: epoch {r['ours']['epoch_s']:.2f}s test AUC(N) {r['ours']['test_auc_n']:.4f} "
              f"MFU real/padded {r['ours']['mfu_real']:.3f}/{r['ours']['mfu_padded']:.3f} | pyKT: epoch "
              f"{r['pykt']['epoch_s']:.2f}s test AUC(N) {r['pykt']['test_auc_n']:.4f} MFU real/padded "
              f"{r['pykt']['mfu_real']:.3f}/{r['pykt']['mfu_padded']:.3f} | speedup {r['speedup_epoch']:.2f}x "
              f"({threads} threads)", flush=True)
    first = out[[k for k in _MODELS.value.split(",") if k][0]]
    out.update(ours=first["ours"], pykt=first["pykt"], speedup_epoch=first["speedup_epoch"],
               load_end=os.getloadavg())
    common.write_json(_JSON.value, out)
