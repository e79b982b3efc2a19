"""Signal diagnostics of a finished ``launch.stem`` workdir on a synthetic release (ground truth needed):
how well each per-skill estimate tracks the generator's true final mastery, and how much isSTEM signal
SP + that estimate carries under a quick fixed logistic regression (the "LR proxy" of docs/stem.md).

    python -m dkt_jax.stem.diagnose WORKDIR [dkt,dkt_plus]

Estimates: per-skill correct rate and practice count (no model), BKT (release ``Ln``; EM-fitted on
kt_train), and for each KT model in ``WORKDIR/kt/<name>`` the final state (the paper's feature), the same
final state from the last 200 steps only (LSTM state reset, as in training chunks), the time-mean and the
last-practice summary. Prints one line per estimate.
"""
from __future__ import annotations

import json
import os
import sys

import flax
import jax
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import dkt_jax
from dkt_jax.stem import analyses, bkt, export, features


def lr_proxy(x: np.ndarray, y: np.ndarray, c: float = 0.01, seed: int = 0) -> float:
    """Mean AUC of StandardScaler + LogisticRegression(C=c) over RepeatedStratifiedKFold(5, 3, seed); x (N, F)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, solver="liblinear"))
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=3, random_state=seed)
    return float(cross_val_score(model, x, y, cv=cv, scoring="roc_auc").mean())


def load_kt_params(kt_dir: str):
    """The best params of a dkt_jax training workdir (``config.json`` + ``best_params.msgpack``)."""
    with open(os.path.join(kt_dir, "config.json"), encoding="utf-8") as f:
        model_config = json.load(f)["config"]["model"]
    template = dkt_jax.init(jax.random.key(0), model_config)
    with open(os.path.join(kt_dir, "best_params.msgpack"), "rb") as f:
        return flax.serialization.from_bytes(template, f.read())


def main(workdir: str, names: list[str]) -> None:
    data_dir = os.path.join(workdir, "tfds")
    table, meta = features.load_split("assistments2017", "labeled", data_dir)
    lab = features.labelled_subset(table)
    vocab = [str(s) for s in meta["skill_vocab"]]
    m, y = len(vocab), lab.labels
    truth = analyses.load_ground_truth(os.path.join(workdir, "ground_truth"), lab.student_ids, vocab)
    true = np.nan_to_num(truth["final_mastery"])
    stem = np.flatnonzero(truth["is_stem_skill"])
    r_true = analyses.pearson_per_column(true, y)

    def line(name: str, x: np.ndarray) -> None:
        r = analyses.pearson_per_column(x, y)
        ok = np.isfinite(r) & np.isfinite(r_true)
        print(f"{name:44s} tracks {analyses.tracking_correlation(x, true):.3f} / "
              f"{analyses.tracking_correlation(x, true, stem):.3f}  profile {np.corrcoef(r[ok], r_true[ok])[0, 1]:+.3f}"
              f"  LR proxy SP+x {lr_proxy(np.hstack([lab.sp, x]), y):.3f}", flush=True)

    print(f"SP {lr_proxy(lab.sp, y):.3f}, SP + true final mastery {lr_proxy(np.hstack([lab.sp, true]), y):.3f}, "
          f"SP + true STEM-skill mastery {lr_proxy(np.hstack([lab.sp, true[:, stem]]), y):.3f}")
    right, count = np.zeros((len(lab), m)), np.zeros((len(lab), m))
    for i, (s, c) in enumerate(zip(lab.skills, lab.correct)):
        np.add.at(right[i], s, c)
        np.add.at(count[i], s, 1)
    prior = right.sum(0) / np.maximum(count.sum(0), 1)
    line("per-skill correct rate (Laplace 2)", (right + 2 * prior) / (count + 2))
    line("log practice count", np.log1p(count))
    train, _ = features.load_split("assistments2017", "kt_train", data_dir)
    params, _ = bkt.fit_bkt(train.skills, train.correct, m)
    line("BKT fitted by EM on kt_train", bkt.bkt_final_mastery(params, lab.skills, lab.correct))
    line("BKT release Ln (last per skill)", analyses.bkt_final_mastery(lab.skills, lab.ln, m))
    for name in names:
        kt = load_kt_params(os.path.join(workdir, "kt", name))
        ex = export.export_knowledge_states(kt, lab.sequences(), student_ids=lab.student_ids, skill_vocab=vocab,
                                            desc=f"export {name}")
        tail = [(s[-200:], c[-200:]) for s, c in lab.sequences()]
        ex200 = export.export_knowledge_states(kt, tail, student_ids=lab.student_ids, skill_vocab=vocab,
                                               desc=f"export {name} (last 200)")
        line(f"{name} final state (paper)", ex.final_states)
        line(f"{name} final state, last 200 steps only", ex200.final_states)
        line(f"{name} time-mean", ex.mean_states)
        line(f"{name} last practice", ex.last_practice_states)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else ["dkt", "dkt_plus"])
