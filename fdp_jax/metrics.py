"""LOSO evaluation metrics for micro-expression recognition.

The standard (MEGC / STSTNet / HTNet) protocol pools the test predictions of *all* LOSO folds
and computes each metric once on the pooled vectors:

* UF1  = macro F1 over classes (sklearn ``f1_score(average='macro', labels=range(C))``);
* UAR  = macro recall (balanced accuracy over the pooled predictions);
* accuracy and weighted F1 (what the official FDP code prints per fold);
* the pooled confusion matrix;
* the dynamic-image (DI) reconstruction error (MSE / MAE on [0, 1] images).

Per-fold numbers are reported beside them (``per_fold_rows``) but never averaged into the headline
figures: a fold (one subject) usually lacks some classes, so fold-averaged macro F1 differs from
(and is usually lower than) the pooled UF1. ``fold_mean_macro_f1`` computes that average only to
show the difference.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn import metrics as skm


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
        if fold.get("selected_step") is not None:
            row["selected_step"] = int(fold["selected_step"])
        rows.append(row)
    return rows


def fold_mean_macro_f1(rows: Sequence[Mapping]) -> float:
    """Mean of the per-fold macro F1 (for contrast only; the reported UF1 is the pooled one)."""
    values = [r["macro_f1"] for r in rows if "macro_f1" in r]
    return float(np.mean(values)) if values else float("nan")


def pooled_results(folds: Sequence[Mapping], num_classes: int) -> dict:
    """Pools every fold's test predictions and returns the headline metrics plus the per-fold table.

    Output keys: everything of ``classification_metrics`` on the pooled vectors, the DI errors on the
    pooled DI arrays (when present), ``per_fold`` (rows) and ``fold_mean_macro_f1``.
    """
    if not folds:
        raise ValueError("No finished folds to pool.")
    labels = np.concatenate([np.asarray(f["labels"], np.int64) for f in folds])
    predictions = np.concatenate([np.asarray(f["predictions"], np.int64) for f in folds])
    result = classification_metrics(labels, predictions, num_classes)
    with_di = [f for f in folds if f.get("di_pred") is not None and len(f["di_pred"])]
    if with_di:
        result.update(dynamic_image_error(np.concatenate([f["di_pred"] for f in with_di]),
                                          np.concatenate([f["di_target"] for f in with_di])))
    rows = per_fold_rows(folds, num_classes)
    result["per_fold"] = rows
    result["fold_mean_macro_f1"] = fold_mean_macro_f1(rows)
    return result


SELECTION_METRICS = ("uf1", "accuracy", "uar", "weighted_f1")


def selection_score(labels: np.ndarray, predictions: np.ndarray, num_classes: int, metric: str) -> float:
    """The score that picks a fold's step (higher is better): ``metric`` of ``labels`` vs ``predictions`` (N,),
    one of ``SELECTION_METRICS`` ('uf1', or 'accuracy' as in the official code); NaN when N = 0."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection_metric={metric!r}: expected one of {SELECTION_METRICS}.")
    if not len(labels):
        return float("nan")
    return float(classification_metrics(labels, predictions, num_classes)[metric])
