"""Pooled LOSO metrics on hand-made predictions (fdp_jax.metrics)."""
from __future__ import annotations

import numpy as np
import pytest

from fdp_jax import metrics


def test_classification_metrics_by_hand():
    # 3 classes, 6 samples. Class 0: TP=2, FN=0, FP=1 -> F1 = 4/5; recall 1.
    # Class 1: TP=1, FN=1, FP=0 -> F1 = 2/3; recall 1/2. Class 2: TP=1, FN=1, FP=1 -> F1 = 1/2; recall 1/2.
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 0, 1, 2, 2, 0]
    m = metrics.classification_metrics(labels, preds, num_classes=3)
    assert m["uf1"] == pytest.approx((4 / 5 + 2 / 3 + 1 / 2) / 3)
    assert m["uar"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["weighted_f1"] == pytest.approx((2 * 4 / 5 + 2 * 2 / 3 + 2 * 1 / 2) / 6)
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert m["support"] == [2, 2, 2]


def test_absent_class_counts_as_zero_f1_in_uf1():
    # 4 classes configured, class 3 never appears: UF1 averages over 4 classes (explicit labels).
    m = metrics.classification_metrics([0, 1, 2], [0, 1, 2], num_classes=4)
    assert m["uf1"] == pytest.approx(3 / 4)
    assert m["uar"] == pytest.approx(1.0)  # recall of a class without samples is undefined -> skipped
    assert m["accuracy"] == 1.0


def test_pooled_differs_from_fold_average_and_pooled_is_reported():
    # Fold A (subject "01") only has class 0 and 1; fold B (subject "02") only class 2.
    fold_a = {"subject": "01", "labels": np.array([0, 0, 1, 1]), "predictions": np.array([0, 1, 1, 1])}
    fold_b = {"subject": "02", "labels": np.array([2, 2]), "predictions": np.array([2, 0])}
    result = metrics.pooled_results([fold_a, fold_b], num_classes=3)
    pooled = metrics.classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], 3)
    assert result["uf1"] == pytest.approx(pooled["uf1"])
    # Per fold, macro F1 over the classes present in that fold.
    rows = {r["subject"]: r for r in result["per_fold"]}
    f1_a = (2 / 3 + 0.8) / 2  # class 0: TP1 FP0 FN1 -> 2/3 ; class 1: TP2 FP1 FN0 -> 4/5
    f1_b = (2 / 3 + 0.0) / 2  # class 2: TP1 FN1 -> 2/3 ; class 0 predicted but absent -> 0
    assert rows["01"]["macro_f1"] == pytest.approx(f1_a)
    assert rows["02"]["macro_f1"] == pytest.approx(f1_b)
    assert result["fold_mean_macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert abs(result["fold_mean_macro_f1"] - result["uf1"]) > 0.05
    assert rows["01"]["n"] == 4 and rows["02"]["n"] == 2


def test_dynamic_image_error():
    target = np.zeros((2, 4, 4))
    pred = np.full((2, 4, 4), 0.1)
    e = metrics.dynamic_image_error(pred, target)
    assert e["di_mse"] == pytest.approx(0.01)
    assert e["di_mae"] == pytest.approx(0.1)
    assert e["di_psnr"] == pytest.approx(20.0)
    folds = [{"subject": "a", "labels": [0], "predictions": [0], "di_pred": pred, "di_target": target}]
    assert metrics.pooled_results(folds, 2)["di_mse"] == pytest.approx(0.01)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="outside 0..2"):
        metrics.classification_metrics([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.classification_metrics([0, 1], [0], num_classes=3)
    with pytest.raises(ValueError, match="integer"):
        metrics.classification_metrics(np.array([0.5]), np.array([0]), num_classes=3)
    with pytest.raises(ValueError, match="No finished folds"):
        metrics.pooled_results([], 3)
