"""STEM sklearn stage: the competition scorer vs a hand computation, and no label leakage in nested CV."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from dkt_jax.stem import classifiers, evaluate


class FixedProba(ClassifierMixin, BaseEstimator):
    """Returns P(1) = X[:, 0]; ``predict`` gives hard labels (a scorer using it would differ)."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = np.asarray(X)[:, 0]
        return np.stack([1 - p, p], axis=1)

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 0.5).astype(int)


def _hand_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_scorer_matches_hand_computation():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.35])
    hand = _hand_auc(y, p) + 1 - np.sqrt(np.mean((p - y) ** 2))
    scorer = evaluate.make_stem_scorer()
    got = scorer(FixedProba().fit(p[:, None], y), p[:, None], y)
    assert got == pytest.approx(hand, abs=1e-12)
    assert evaluate.stem_score(y, p) == pytest.approx(hand, abs=1e-12)
    # On hard labels (what the authors' older notebook did) the value would differ.
    hard = (p > 0.5).astype(float)
    assert abs(got - (_hand_auc(y, hard) + 1 - np.sqrt(np.mean((hard - y) ** 2)))) > 0.05
    m = evaluate.proba_metrics(y, p)
    assert m["score"] == pytest.approx(hand) and m["auc"] == pytest.approx(_hand_auc(y, p))


def test_prior_baseline_gives_documented_numbers():
    y = np.array([1] * 117 + [0] * 350)
    p = np.full(len(y), y.mean())
    m = evaluate.proba_metrics(y, p)
    assert m["auc"] == 0.5
    assert m["rmse"] == pytest.approx(np.sqrt(0.2505 * 0.7495), abs=1e-3)
    assert m["score"] == pytest.approx(1.067, abs=1e-3)


class SpyClassifier(ClassifierMixin, BaseEstimator):
    """Logs the row ids (X[:, 0]) of every fit / predict_proba call to ``log_path`` (one JSON per line)."""

    def __init__(self, log_path: str = "", shift: float = 0.0):
        self.log_path = log_path
        self.shift = shift

    def _log(self, kind, X):
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps([kind, sorted(int(i) for i in np.asarray(X)[:, 0])]) + "\n")

    def fit(self, X, y):
        self._log("fit", X)
        self.classes_ = np.array([0, 1])
        self.w_ = np.asarray(X)[:, 1].std() + self.shift
        return self

    def predict_proba(self, X):
        self._log("proba", X)
        p = 1 / (1 + np.exp(-np.asarray(X)[:, 1] * self.w_))
        return np.stack([1 - p, p], axis=1)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(int)
    X = np.stack([np.arange(n, dtype=float), y + rng.normal(size=n)], axis=1)
    return X, y


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _leaked_calls(log, test_ids, final_predict: bool):
    """Calls other than the final test-fold prediction that touched the outer test fold."""
    calls = log[:-1] if final_predict else log
    return [c for c in calls if set(c[1]) & set(test_ids)]


def test_outer_test_fold_never_seen_by_selection(tmp_path):
    X, y = _data()
    log_path = str(tmp_path / "spy.jsonl")
    pipe = Pipeline([("model", SpyClassifier(log_path))])
    (train, test), = evaluate.outer_splits(y, 5, seed=0)[:1]
    result = evaluate.fit_outer_fold(pipe, {"model__shift": [0.0, 1.0]}, X, y, train, test,
                                     inner_cv=StratifiedKFold(3, shuffle=True, random_state=0),
                                     scorer=evaluate.make_stem_scorer())
    log = _read(log_path)
    assert len(log) == 2 * 3 * 2 + 1 + 1       # (fit + score) x 3 folds x 2 points, refit, final predict
    assert _leaked_calls(log, test, final_predict=True) == []
    assert log[-1] == ["proba", sorted(int(i) for i in test)]
    assert sorted(result.test_index.tolist()) == sorted(test.tolist())

    # Negative control: selecting on all rows (the authors' protocol) is caught by the same check.
    open(log_path, "w").close()
    GridSearchCV(Pipeline([("model", SpyClassifier(log_path))]), {"model__shift": [0.0, 1.0]},
                 scoring=evaluate.make_stem_scorer(), cv=StratifiedKFold(3)).fit(X, y)
    assert _leaked_calls(_read(log_path), test, final_predict=False)


def test_nested_cv_tasks_partition_and_isolation(tmp_path):
    X, y = _data(n=50, seed=1)
    log_path = str(tmp_path / "spy.jsonl")
    cells = {"spy": (Pipeline([("model", SpyClassifier(log_path))]), {"model__shift": [0.0, 0.5]}, X)}
    results = [r for _, r in evaluate.nested_cv_tasks(cells, y, outer_folds=5, inner_folds=2, seed=3, n_jobs=1)]
    folds = evaluate.outer_splits(y, 5, seed=3)
    tests = sorted(np.concatenate([r.test_index for r in results]).tolist())
    assert tests == list(range(len(y)))                         # every student scored exactly once
    log = _read(log_path)
    # n_jobs=1 runs the folds in order: each segment ends with the prediction on that fold's test set.
    per_task = len(log) // len(folds)
    for k, (_, test) in enumerate(folds):
        segment = log[k * per_task:(k + 1) * per_task]
        assert segment[-1] == ["proba", sorted(int(i) for i in test)]
        assert _leaked_calls(segment, test, final_predict=True) == []
    summary = evaluate.summarize(results)
    oof = evaluate.out_of_fold_proba(results, len(y))
    assert not np.isnan(oof).any()
    assert summary["auc_mean"] == pytest.approx(np.mean([r.metrics["auc"] for r in results]))


def test_pipelines_fit_with_tiny_grids():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = (X[:, 0] + 0.5 * rng.normal(size=80) > 0.6).astype(int)
    scorer = evaluate.make_stem_scorer()
    cells = {m: (classifiers.make_pipeline(m, scorer=scorer, seed=0, rfecv_step=1, rfecv_folds=3),
                 classifiers.pipeline_grid(m, "tiny"), X) for m in classifiers.MODEL_NAMES}
    got = {}
    for name, r in evaluate.nested_cv_tasks(cells, y, outer_folds=3, inner_folds=3, seed=0, n_jobs=1):
        got.setdefault(name, []).append(r)
    assert set(got) == set(classifiers.MODEL_NAMES)
    for name, folds in got.items():
        s = evaluate.summarize(folds)
        assert 1 <= s["num_features_median"] <= 6
        assert s["auc_mean"] > 0.7, (name, s)   # X[:, 0] carries the label
    with pytest.raises(ValueError, match="grid preset"):
        classifiers.param_grid("lr", "huge")
    assert len(classifiers.param_grid("mlp", "paper")["hidden_layer_sizes"]) == 4 + 16 + 64


class AlwaysFails(ClassifierMixin, BaseEstimator):
    def __init__(self, strength: float = 1.0):
        self.strength = strength

    def fit(self, X, y):
        raise RuntimeError("cannot fit this")


def test_failing_cell_is_reported_not_fatal():
    X, y = _data(n=40)
    cells = {"bad": (Pipeline([("model", AlwaysFails())]), None, X)}
    results = [r for _, r in evaluate.nested_cv_tasks(cells, y, outer_folds=2, inner_folds=2, seed=0)]
    assert len(results) == 2 and all("cannot fit this" in r.error for r in results)
    assert np.isnan(evaluate.summarize(results)["auc_mean"])


def test_failed_grid_search_names_the_cause_and_is_not_stored(tmp_path):
    # GridSearchCV reports "All the N fits failed ..." and names the cause only in its last line.
    X, y = _data(n=40)
    cells = {"bad": (Pipeline([("model", AlwaysFails())]), {"model__strength": [0.5, 1.0]}, X)}
    results = [r for _, r in evaluate.nested_cv_tasks(cells, y, outer_folds=2, inner_folds=2, seed=0,
                                                      results_dir=str(tmp_path))]
    assert all(r.error.startswith("ValueError: All the 4 fits failed.") for r in results), results[0].error
    assert all(r.error.endswith("RuntimeError: cannot fit this") for r in results), results[0].error
    assert os.listdir(tmp_path) == []          # failures are refitted on a re-run, never read back


def test_nested_cv_tasks_resume_from_stored_results(tmp_path, monkeypatch):
    X, y = _data(n=40, seed=2)
    scorer = evaluate.make_stem_scorer()
    cells = {("SP", "lr"): (classifiers.make_pipeline("lr", scorer=scorer, seed=0),
                            classifiers.pipeline_grid("lr", "tiny"), X)}
    store = str(tmp_path / "cv_tasks")

    def run(cells_):
        out = evaluate.nested_cv_tasks(cells_, y, outer_folds=2, inner_folds=2, seed=0, n_jobs=1,
                                       outer_repeats=2, results_dir=store)
        return sorted(((name, r.fold, r.proba.tolist()) for name, r in out), key=lambda t: t[1])

    first = run(cells)
    assert len(first) == 4 and len(os.listdir(store)) == 4
    fitted = []
    real_fit = evaluate.fit_outer_fold
    monkeypatch.setattr(evaluate, "fit_outer_fold", lambda *a, **k: fitted.append(1) or real_fit(*a, **k))
    assert run(cells) == first and fitted == []           # everything read back, nothing refitted
    os.remove(os.path.join(store, sorted(os.listdir(store))[0]))
    assert run(cells) == first and len(fitted) == 1       # an interrupted run refits only what is missing
    changed = {("SP", "lr"): (cells[("SP", "lr")][0], cells[("SP", "lr")][1], X + 1.0)}
    run(changed)
    assert len(fitted) == 5 and len(os.listdir(store)) == 8   # other inputs: a different fingerprint, refit
