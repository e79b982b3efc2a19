"""LOSO evaluation metrics for micro-expression recognition.

The standard (MEGC / STSTNet / HTNet) protocol pools the test predictions of *all* LOSO folds
and computes each metric once on the pooled vectors:

* UF1  = macro F1 over classes (sklearn ``f1_score(average='macro', labels=range(C))``);
* UAR  = macro recall (balanced accuracy over the pooled predictions);
* accuracy and weighted F1 (what the official FDP code prints per fold);
* the pooled confusion matrix;
* the dynamic-image (DI) reconstruction error (MSE / MAE on [0, 1] images), next to the error of the
  "predict the training mean" baseline (``mean_di_baseline``: each fold's pixelwise mean DI target over its
  training clips, scored on its test clips);
* a percentile-bootstrap 95% interval of the pooled UF1 and UAR over the test clips (``bootstrap_ci``).

Several training seeds (``config.seeds``) are summarised by ``seed_summary`` (mean and sample std, ddof=1).

Per-fold numbers are reported beside them (``per_fold_rows``) but never averaged into the headline
figures: a fold (one subject) usually lacks some classes, so fold-averaged macro F1 differs from
(and is usually lower than) the pooled UF1. ``fold_mean_macro_f1`` computes that average only to
show the difference.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _as_int_vector(name: str, values: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of class ids, got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}.")
    return array.astype(np.int64)


def classification_metrics(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray,
                           num_classes: int) -> dict:
    """Pooled metrics of integer ``labels`` (N,) vs ``predictions`` (N,) over ``num_classes`` classes.

    Returns ``uf1``, ``uar``, ``accuracy``, ``weighted_f1`` (floats), ``confusion_matrix``
    ((C, C) nested list, rows = true class), ``per_class_f1`` / ``per_class_recall`` (C floats),
    ``support`` (C ints) and ``num_samples``. Classes absent from both vectors count as F1 = 0
    (explicit ``labels=``, ``zero_division=0``), so the score always averages over all C classes.
    """
    from sklearn import metrics as skm  # lazy: ~1 s of every launcher's start-up
    y_true = _as_int_vector("labels", labels)
    y_pred = _as_int_vector("predictions", predictions)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape} differ in length.")
    if y_true.size == 0:
        raise ValueError("No predictions to score (0 samples).")
    for name, vec in (("labels", y_true), ("predictions", y_pred)):
        bad = vec[(vec < 0) | (vec >= num_classes)]
        if bad.size:
            raise ValueError(f"{name} contain class ids {sorted(set(bad.tolist()))} outside 0..{num_classes - 1}.")
    class_ids = list(range(num_classes))
    per_class_f1 = skm.f1_score(y_true, y_pred, labels=class_ids, average=None, zero_division=0)
    per_class_recall = skm.recall_score(y_true, y_pred, labels=class_ids, average=None, zero_division=0)
    support = np.bincount(y_true, minlength=num_classes)
    present = support > 0
    return {
        "uf1": float(np.mean(per_class_f1)),
        # UAR averages recall over the classes that have test samples (recall of an absent class is undefined).
        "uar": float(np.mean(per_class_recall[present])),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "weighted_f1": float(skm.f1_score(y_true, y_pred, labels=class_ids, average="weighted", zero_division=0)),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=class_ids).tolist(),
        "per_class_f1": [float(v) for v in per_class_f1],
        "per_class_recall": [float(v) for v in per_class_recall],
        "support": [int(v) for v in support],
        "num_samples": int(y_true.size),
    }


def dynamic_image_error(predicted: np.ndarray, target: np.ndarray) -> dict:
    """Reconstruction error of predicted vs target dynamic images, both (N, 64, 64) in [0, 1].

    Returns ``di_mse`` (the training loss term before the λ weight), ``di_mae`` and ``di_psnr`` (dB,
    from the pooled MSE with peak 1).
    """
    predicted = np.asarray(predicted, np.float64)
    target = np.asarray(target, np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"DI prediction {predicted.shape} and target {target.shape} differ in shape.")
    if predicted.size == 0:
        return {"di_mse": float("nan"), "di_mae": float("nan"), "di_psnr": float("nan")}
    mse = float(np.mean((predicted - target) ** 2))
    return {
        "di_mse": mse,
        "di_mae": float(np.mean(np.abs(predicted - target))),
        "di_psnr": float(10.0 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
    }


def per_fold_rows(folds: Sequence[Mapping], num_classes: int) -> list[dict]:
    """One row per fold: subject, n, accuracy, macro F1 (classes present in the fold), weighted F1, DI MSE.

    ``folds`` items hold ``subject``, ``labels``, ``predictions`` and optionally ``di_pred``,
    ``di_target`` and ``selected_step``.
    """
    from sklearn import metrics as skm  # lazy: ~1 s of every launcher's start-up
    rows = []
    for fold in folds:
        y_true = _as_int_vector("labels", fold["labels"])
        y_pred = _as_int_vector("predictions", fold["predictions"])
        row = {"subject": str(fold["subject"]), "n": int(y_true.size)}
        if y_true.size:
            present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
            row.update(
                accuracy=float(skm.accuracy_score(y_true, y_pred)),
                macro_f1=float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
                weighted_f1=float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
            )
        if fold.get("di_pred") is not None and len(fold["di_pred"]):
            row["di_mse"] = dynamic_image_error(fold["di_pred"], fold["di_target"])["di_mse"]
        if fold.get("di_baseline_sse") is not None and int(fold["di_baseline_count"]):
            row["di_baseline_mse"] = float(fold["di_baseline_sse"]) / int(fold["di_baseline_count"])
        if fold.get("selected_step") is not None:
            row["selected_step"] = int(fold["selected_step"])
        rows.append(row)
    return rows


def fold_mean_macro_f1(rows: Sequence[Mapping]) -> float:
    """Mean of the per-fold macro F1 (for contrast only; the reported UF1 is the pooled one)."""
    values = [r["macro_f1"] for r in rows if "macro_f1" in r]
    return float(np.mean(values)) if values else float("nan")


def pooled_results(folds: Sequence[Mapping], num_classes: int, *, bootstrap_resamples: int | None = None) -> dict:
    """Pools every fold's test predictions and returns the headline metrics plus the per-fold table.

    Output keys: everything of ``classification_metrics`` on the pooled vectors, ``bootstrap_ci95`` (see
    ``bootstrap_ci``; ``bootstrap_resamples`` None = ``BOOTSTRAP_RESAMPLES``, 0 = none), the DI errors on the
    pooled DI arrays and the mean-DI baseline beside them (when present, see ``pooled_di_baseline``),
    ``per_fold`` (rows) and ``fold_mean_macro_f1``.
    """
    if not folds:
        raise ValueError("No finished folds to pool.")
    labels = np.concatenate([np.asarray(f["labels"], np.int64) for f in folds])
    predictions = np.concatenate([np.asarray(f["predictions"], np.int64) for f in folds])
    result = classification_metrics(labels, predictions, num_classes)
    resamples = BOOTSTRAP_RESAMPLES if bootstrap_resamples is None else int(bootstrap_resamples)
    if resamples > 0:
        result["bootstrap_ci95"] = bootstrap_ci(labels, predictions, num_classes, resamples=resamples)
    with_di = [f for f in folds if f.get("di_pred") is not None and len(f["di_pred"])]
    if with_di:
        result.update(dynamic_image_error(np.concatenate([f["di_pred"] for f in with_di]),
                                          np.concatenate([f["di_target"] for f in with_di])))
        result.update(pooled_di_baseline(with_di))
        if result["di_baseline_psnr"] is not None:
            result["di_psnr_gain_db"] = float(result["di_psnr"] - result["di_baseline_psnr"])
    rows = per_fold_rows(folds, num_classes)
    result["per_fold"] = rows
    result["fold_mean_macro_f1"] = fold_mean_macro_f1(rows)
    return result


# ------------------------------------------------------------------------------------------ bootstrap
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_indices(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement by ``np.random.default_rng(seed)`` (deterministic)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def uf1_uar_of_confusions(confusions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UF1 and UAR of (R, C, C) confusion matrices (rows = true class), as ``classification_metrics`` defines
    them: UF1 averages F1 over all C classes (0 for a class with no true and no predicted sample), UAR averages
    recall over the classes with samples."""
    cm = np.asarray(confusions, np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    denominator = support + predicted  # 2 TP + FP + FN
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    return f1.mean(axis=1), recall.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def bootstrap_ci(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray, num_classes: int, *,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> dict:
    """Percentile-bootstrap interval of the pooled UF1 and UAR over the N test clips.

    Draws ``resamples`` sets of N clips with replacement (``bootstrap_indices``: a fixed numpy Generator seed,
    so the interval is deterministic), scores each like ``classification_metrics`` and returns
    ``{'uf1': [lo, hi], 'uar': [lo, hi], 'resamples', 'seed', 'level', 'method'}`` with lo / hi the
    (1 - level) / 2 and (1 + level) / 2 percentiles. It covers the clip-sampling noise of the test set only,
    not the training-seed noise (several ``config.seeds`` measure that).
    """
    y_true = _as_int_vector("labels", labels)
    y_pred = _as_int_vector("predictions", predictions)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"bootstrap_ci needs equally long, non-empty vectors; got {y_true.shape}, {y_pred.shape}.")
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes:
        raise ValueError(f"class ids outside 0..{num_classes - 1}.")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}.")
    c2 = num_classes * num_classes
    codes = (y_true * num_classes + y_pred)[bootstrap_indices(y_true.size, resamples, seed)]
    codes += (np.arange(resamples, dtype=np.int64) * c2)[:, None]  # one confusion matrix per resample
    confusions = np.bincount(codes.ravel(), minlength=resamples * c2).reshape(resamples, num_classes, num_classes)
    uf1, uar = uf1_uar_of_confusions(confusions)
    q = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    return {"uf1": [float(v) for v in np.percentile(uf1, q)], "uar": [float(v) for v in np.percentile(uar, q)],
            "resamples": int(resamples), "seed": int(seed), "level": float(level), "method": "percentile"}


# ------------------------------------------------------------------------------------------ DI baseline
def mean_di_baseline(train_targets: np.ndarray, test_targets: np.ndarray) -> dict:
    """The "predict the training mean" DI baseline of one fold: the pixelwise mean of the fold's training DI
    targets (N_train, H, W) predicted for each of its test clips (N_test, H, W), both in [0, 1].

    Returns ``di_baseline_sse`` (sum of squared errors, float64) and ``di_baseline_count`` (pixels scored), so
    folds pool exactly as the decoder's ``di_mse`` does (the sum over folds over the count over folds).
    """
    train = np.asarray(train_targets)
    test = np.asarray(test_targets, np.float64)
    if train.ndim != 3 or not len(train) or test.shape[1:] != train.shape[1:]:
        raise ValueError(f"DI baseline: training targets {train.shape} and test targets {test.shape} must be "
                         "(N, H, W) with the same H, W and N_train > 0.")
    mean = train.mean(axis=0, dtype=np.float64)
    return {"di_baseline_sse": np.float64(np.sum((test - mean) ** 2)), "di_baseline_count": np.int64(test.size)}


def pooled_di_baseline(folds: Sequence[Mapping]) -> dict:
    """The mean-DI baseline pooled over ``folds`` (each with ``di_baseline_sse`` / ``di_baseline_count``):
    ``di_baseline_mse`` and ``di_baseline_psnr`` (dB, peak 1). Folds without them (a predictions.npz written
    before the baseline existed) make both None and are listed in ``di_baseline_missing``."""
    missing = [str(f.get("subject", "?")) for f in folds if f.get("di_baseline_sse") is None]
    count = sum(int(f["di_baseline_count"]) for f in folds if f.get("di_baseline_sse") is not None)
    if missing or not count:
        return {"di_baseline_mse": None, "di_baseline_psnr": None, "di_baseline_missing": missing}
    mse = sum(float(f["di_baseline_sse"]) for f in folds) / count
    return {"di_baseline_mse": mse,
            "di_baseline_psnr": float(10.0 * np.log10(1.0 / mse)) if mse > 0 else float("inf")}


# ------------------------------------------------------------------------------------------ seeds
SEED_METRICS = ("uf1", "uar", "accuracy", "weighted_f1", "di_mse", "di_psnr", "di_baseline_mse", "di_baseline_psnr",
                "di_psnr_gain_db")


def seed_row(seed: int, pooled: Mapping) -> dict:
    """One seed's pooled headline numbers (``SEED_METRICS`` present in ``pooled``, its bootstrap interval and
    its number of test clips)."""
    row = {"seed": int(seed), "num_samples": int(pooled["num_samples"])}
    row.update({k: pooled[k] for k in SEED_METRICS if k in pooled})
    if "bootstrap_ci95" in pooled:
        row["bootstrap_ci95"] = pooled["bootstrap_ci95"]
    return row


def seed_summary(rows: Sequence[Mapping], keys: Sequence[str] = SEED_METRICS) -> dict:
    """Mean and sample standard deviation (``np.std(ddof=1)``; None for one seed) over seeds of each metric of
    ``keys`` that every row has (not None): ``{key: {'mean', 'std'}, 'num_seeds', 'std_ddof': 1}``."""
    out: dict = {"num_seeds": len(rows), "std_ddof": 1}
    for key in keys:
        values = [row.get(key) for row in rows]
        if not rows or any(v is None for v in values):
            continue
        array = np.asarray(values, np.float64)
        out[key] = {"mean": float(np.mean(array)), "std": float(np.std(array, ddof=1)) if len(array) > 1 else None}
    return out


SELECTION_METRICS = ("uf1", "accuracy", "uar", "weighted_f1")


def selection_score(labels: np.ndarray, predictions: np.ndarray, num_classes: int, metric: str) -> float:
    """The score that picks a fold's step (higher is better): ``metric`` of ``labels`` vs ``predictions`` (N,),
    one of ``SELECTION_METRICS`` ('uf1', or 'accuracy' as in the official code); NaN when N = 0."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection_metric={metric!r}: expected one of {SELECTION_METRICS}.")
    if not len(labels):
        return float("nan")
    return float(classification_metrics(labels, predictions, num_classes)[metric])
