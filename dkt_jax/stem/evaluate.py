"""The competition scorer and nested cross-validation for the STEM classifiers.

Score = AUC + (1 - RMSE) of ``predict_proba[:, 1]`` against isSTEM (dkt_spec.md §5.5). Model selection
(RFECV + GridSearchCV, inner ``StratifiedKFold``) runs on the outer training fold only; the outer test fold
is touched once, by the refitted best pipeline's ``predict_proba``. The outer splits are
``RepeatedStratifiedKFold(outer_folds, outer_repeats, seed)``: split ``k`` is fold ``k % outer_folds`` of
repeat ``k // outer_folds``, and every cell (feature set, model) is evaluated on the same list of splits.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Iterator

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import average_precision_score, make_scorer, mean_squared_error, roc_auc_score
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold


def rmse(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Root mean squared error of probabilities ``proba`` (N,) against 0/1 labels ``y_true`` (N,)."""
    return float(np.sqrt(mean_squared_error(y_true, proba)))


def stem_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The ASSISTments 2017 competition metric AUC + (1 - RMSE); ``proba`` (N,) is P(isSTEM=1)."""
    return float(roc_auc_score(y_true, proba)) + 1.0 - rmse(y_true, proba)


def make_stem_scorer() -> Any:
    """An sklearn scorer computing ``stem_score`` on ``predict_proba`` (positive-class column)."""
    return make_scorer(stem_score, response_method="predict_proba")


def proba_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """AUC, RMSE, score = AUC + (1 - RMSE) and AP of probabilities ``proba`` (N,) for labels (N,)."""
    auc = float(roc_auc_score(y_true, proba))
    err = rmse(y_true, proba)
    return {"auc": auc, "rmse": err, "score": auc + 1.0 - err,
            "ap": float(average_precision_score(y_true, proba))}


def outer_splits(y: np.ndarray, num_folds: int, seed: int | None, repeats: int = 1
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer evaluation splits, a function of (labels, folds, repeats, seed) only, so every feature set
    and model gets the same list: ``RepeatedStratifiedKFold(num_folds, repeats, seed)`` (R*K splits;
    ``seed=None``: one unshuffled ``StratifiedKFold``)."""
    if seed is None:
        if repeats != 1:
            raise ValueError("repeated outer CV needs a seed")
        cv = StratifiedKFold(num_folds)
    else:
        cv = RepeatedStratifiedKFold(n_splits=num_folds, n_repeats=repeats, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y)]


@dataclasses.dataclass
class FoldResult:
    """One outer fold: test indices, test probabilities, metrics and what selection chose."""
    fold: int
    test_index: np.ndarray
    proba: np.ndarray
    metrics: dict[str, float]
    best_params: dict[str, Any]
    num_features: int | None
    inner_best_score: float | None
    num_warnings: int = 0
    error: str | None = None


def _selected_features(estimator: Any) -> int | None:
    steps = getattr(estimator, "named_steps", {})
    select = steps.get("select") if steps else None
    return int(select.n_features_) if select is not None and hasattr(select, "n_features_") else None


def fit_outer_fold(pipeline: Any, grid: dict[str, list[Any]] | None, X: np.ndarray, y: np.ndarray,
                   train_index: np.ndarray, test_index: np.ndarray, *, inner_cv: Any, scorer: Any,
                   fold: int = 0) -> FoldResult:
    """Selects on ``X[train_index]`` only (GridSearchCV with ``inner_cv``), then scores ``X[test_index]``.

    X: (N, F) features, y: (N,) 0/1 labels. ``grid=None`` fits ``pipeline`` as is (no search).
    """
    X_train, y_train = X[train_index], y[train_index]
    if grid:
        # A grid point that fails to fit scores nan (sklearn's FitFailedWarning, counted) and is not chosen.
        search = GridSearchCV(clone(pipeline), grid, scoring=scorer, cv=inner_cv, refit=True, n_jobs=1,
                              error_score=np.nan)
        search.fit(X_train, y_train)
        best, best_params, inner = search.best_estimator_, search.best_params_, float(search.best_score_)
    else:
        best, best_params, inner = clone(pipeline).fit(X_train, y_train), {}, None
    proba = best.predict_proba(X[test_index])[:, 1]
    return FoldResult(fold=fold, test_index=np.asarray(test_index), proba=proba,
                      metrics=proba_metrics(y[test_index], proba), best_params=best_params,
                      num_features=_selected_features(best), inner_best_score=inner)


def inner_cv(num_folds: int, seed: int) -> StratifiedKFold:
    """The inner (selection) folds."""
    return StratifiedKFold(num_folds, shuffle=True, random_state=seed)


def nested_cv_tasks(cells: dict[str, tuple[Any, dict | None, np.ndarray]], y: np.ndarray, *, outer_folds: int,
                    inner_folds: int, seed: int, n_jobs: int = 1, outer_repeats: int = 1,
                    desc: str = "nested CV", results_dir: str | None = None) -> Iterator[tuple[str, FoldResult]]:
    """Runs every (cell, outer split) task in parallel and yields ``(cell_name, FoldResult)`` as they finish.

    cells: name -> (pipeline, grid or None, X (N, F)); all share the labels y (N,) and the same outer splits
    (``outer_splits(y, outer_folds, seed, outer_repeats)``); ``FoldResult.fold`` is the split index.
    The inner folds of split k are seeded with ``seed + 1 + k`` (the same for every cell).

    ``results_dir``: each finished task is stored there under a fingerprint of everything it depends on
    (cell name, pipeline parameters, grid, X, y, split, inner folds, seed); a re-run yields stored tasks
    without refitting them, so an interrupted run resumes, and any change of input refits.
    """
    from absl import logging
    from tqdm.auto import tqdm

    splits = outer_splits(y, outer_folds, seed, outer_repeats)
    scorer = make_stem_scorer()
    tasks = [(name, k, pipe, grid, X, tr, te) for name, (pipe, grid, X) in cells.items()
             for k, (tr, te) in enumerate(splits)]
    stored: dict[int, tuple[str, FoldResult]] = {}
    paths: dict[int, str] = {}
    if results_dir is not None:
        os.makedirs(results_dir, exist_ok=True)
        for i, (name, k, pipe, grid, X, tr, te) in enumerate(tasks):
            paths[i] = os.path.join(results_dir, task_fingerprint(name, k, pipe, grid, X, y, tr, te, inner_folds,
                                                                  seed) + ".pkl")
            if os.path.exists(paths[i]):
                stored[i] = joblib.load(paths[i])
        if stored:
            logging.info("%s: %d of %d (cell, split) tasks read back from %s; %d to fit.", desc, len(stored),
                         len(tasks), results_dir, len(tasks) - len(stored))
    run = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    jobs = (joblib.delayed(_task)(name, pipe, grid, X, y, tr, te, inner_folds, seed, scorer, k, i)
            for i, (name, k, pipe, grid, X, tr, te) in enumerate(tasks) if i not in stored)
    with tqdm(total=len(tasks), initial=len(stored), desc=desc, unit="fold", mininterval=1.0) as bar:
        for name, result in stored.values():
            yield name, result
        for i, name, result in run(jobs):
            if results_dir is not None and result.error is None:  # a failed task is refitted on a re-run
                tmp = paths[i] + ".tmp"
                joblib.dump((name, result), tmp)
                os.replace(tmp, paths[i])  # atomic: a killed run never leaves half a result
            bar.update(1)
            yield name, result


def task_fingerprint(name: Any, k: int, pipe: Any, grid: dict | None, X: np.ndarray, y: np.ndarray,
                     train: np.ndarray, test: np.ndarray, inner_folds: int, seed: int) -> str:
    """A hex digest of everything one nested-CV task's result depends on (used as its file name)."""
    params = sorted((key, repr(value)) for key, value in pipe.get_params(deep=True).items()
                    if key != "memory" and not key.endswith("__memory"))
    return joblib.hash((repr(name), int(k), params, repr(grid), np.asarray(X), np.asarray(y), np.asarray(train),
                        np.asarray(test), int(inner_folds), int(seed)))


def _task(name, pipe, grid, X, y, tr, te, inner_folds, seed, scorer, k, index):
    # sklearn warnings (collinearity in QDA/LDA, MLP convergence...) are counted, not printed per fit.
    # A fold whose every grid point fails is reported (error, nan metrics), not fatal to the whole run.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fit_outer_fold(pipe, grid, X, y, tr, te, inner_cv=inner_cv(inner_folds, seed + 1 + k),
                                    scorer=scorer, fold=k)
        except Exception as e:  # noqa: BLE001 - reported per cell in results.csv / report.md
            nan = float("nan")
            result = FoldResult(fold=k, test_index=np.asarray(te), proba=np.full(len(te), nan),
                                metrics={m: nan for m in ("auc", "rmse", "score", "ap")}, best_params={},
                                num_features=None, inner_best_score=None,
                                error=error_summary(e))
    result.num_warnings = len(caught)
    return index, name, result


def error_summary(error: BaseException, limit: int = 400) -> str:
    """``'Type: first line ... last line'`` of an exception, at most ~``limit`` characters.

    GridSearchCV's "All the N fits failed" names the cause only in its last line (the grid points' own
    error), so the summary keeps both ends of the message.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    if len(text) > limit:
        text = text[:limit // 2] + " ... " + text[-limit // 2:]
    return f"{type(error).__name__}: {text}"


def prior_baseline() -> DummyClassifier:
    """The constant-prior classifier (predicts the training prevalence for everyone)."""
    return DummyClassifier(strategy="prior")


def summarize(folds: list[FoldResult]) -> dict[str, float]:
    """mean and 2*std (population std, as numpy) of each metric over the outer folds."""
    out: dict[str, float] = {}
    for key in ("auc", "rmse", "score", "ap"):
        values = np.array([f.metrics[key] for f in folds])
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_2std"] = float(2 * values.std())
    features = [f.num_features for f in folds if f.num_features is not None]
    out["num_features_median"] = float(np.median(features)) if features else float("nan")
    return out


def out_of_fold_proba(folds: list[FoldResult], num_samples: int, outer_folds: int | None = None) -> np.ndarray:
    """Pools the outer test-fold probabilities of the first repeat (splits ``0..outer_folds-1``; all splits
    when ``outer_folds`` is None) into one (N,) vector."""
    proba = np.full(num_samples, np.nan)
    for f in folds:
        if outer_folds is None or f.fold < outer_folds:
            proba[f.test_index] = f.proba
    return proba
