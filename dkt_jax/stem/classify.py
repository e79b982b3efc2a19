"""The sklearn stage: every (feature set, model) cell under nested CV, the prior baseline, the submission."""
from __future__ import annotations

import os
import warnings
from typing import Any

import joblib
import ml_collections
import numpy as np
import pandas as pd
from absl import logging
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from dkt_jax.stem import classifiers, evaluate, features, report

BASELINE = ("baseline", "prior")


def _cells(cfg: ml_collections.ConfigDict, table: features.StudentTable, states: dict[str, pd.DataFrame],
           memory: Any) -> dict[tuple[str, str], tuple[Pipeline, dict, np.ndarray]]:
    scorer = evaluate.make_stem_scorer()
    cells = {}
    for fs in cfg.feature_sets:
        X, _ = features.feature_matrix(fs, table, states)
        for model in cfg.models:
            pipe = classifiers.make_pipeline(model, scorer=scorer, seed=cfg.seed, rfecv=cfg.rfecv,
                                             rfecv_step=cfg.rfecv_step, rfecv_folds=cfg.rfecv_folds,
                                             rfecv_estimator=cfg.rfecv_estimator, memory=memory)
            cells[(fs, model)] = (pipe, classifiers.pipeline_grid(model, cfg.grid), X)
    cells[BASELINE] = (Pipeline([("model", evaluate.prior_baseline())]), None, table.sp)
    return cells


def run_classification(cfg: ml_collections.ConfigDict, labelled: features.StudentTable,
                       submission: features.StudentTable, states: dict[str, pd.DataFrame],
                       out_dir: str) -> dict[str, Any]:
    """Nested CV of every cell on the labelled students, results table/plots, and the submission file.

    Returns {'frame': results DataFrame, 'oof': {(fs, model): (N,) proba}, 'best': (fs, model), ...}.
    """
    os.makedirs(out_dir, exist_ok=True)
    y = labelled.labels
    counts = np.bincount(y, minlength=2)
    if counts.min() < cfg.outer_folds:
        raise ValueError(f"only {counts.tolist()} labelled students per class: too few for "
                         f"{cfg.outer_folds} outer folds.")
    memory = joblib.Memory(os.path.join(out_dir, "cache"), verbose=0) if cfg.cache else None
    cells = _cells(cfg, labelled, states, memory)
    folds: dict[tuple[str, str], list[evaluate.FoldResult]] = {}
    for name, result in evaluate.nested_cv_tasks(
            {k: v for k, v in cells.items()}, y, outer_folds=cfg.outer_folds, inner_folds=cfg.inner_folds,
            seed=cfg.seed, n_jobs=cfg.n_jobs, desc="nested CV (cell x outer fold)"):
        folds.setdefault(name, []).append(result)
    rows, oof = [], {}
    for (fs, model), fold_results in folds.items():
        fold_results.sort(key=lambda r: r.fold)
        summary = evaluate.summarize(fold_results)
        params = [r.best_params for r in fold_results]
        rows.append({"feature_set": fs, "model": model, **summary,
                     "best_params_per_fold": "; ".join(str(p) for p in params),
                     "warnings": int(sum(r.num_warnings for r in fold_results)),
                     "failed_folds": int(sum(r.error is not None for r in fold_results)),
                     "errors": "; ".join(sorted({r.error for r in fold_results if r.error}))})
        for r in fold_results:
            if r.error:
                logging.warning("%s / %s outer fold %d failed: %s", fs, model, r.fold, r.error)
        oof[(fs, model)] = evaluate.out_of_fold_proba(fold_results, len(y))
    order = {fs: i for i, fs in enumerate(list(cfg.feature_sets) + ["baseline"])}
    frame = report.results_frame(rows)
    frame = frame.sort_values(["feature_set", "model"], key=lambda s: s.map(order) if s.name == "feature_set"
                              else s.map({m: i for i, m in enumerate(list(cfg.models) + ["prior"])}))
    frame = frame.reset_index(drop=True)
    paths = report.write_results(frame, out_dir)
    paths["roc"] = report.plot_roc(y, {k: v for k, v in oof.items() if k != BASELINE}, list(cfg.feature_sets),
                                   os.path.join(out_dir, "roc_curves.png"))
    paths["bars"] = report.plot_feature_set_bars(frame[frame["feature_set"] != "baseline"],
                                                 os.path.join(out_dir, "auc_by_feature_set.png"))
    cells_only = frame[frame["feature_set"] != "baseline"]
    best = cells_only.dropna(subset=["score_mean"]).sort_values("score_mean", ascending=False).iloc[0]
    best_key = (str(best["feature_set"]), str(best["model"]))
    paths.update(_submission(cells[best_key], labelled, submission, states, best_key, cfg, out_dir))
    np.savez_compressed(os.path.join(out_dir, "oof_proba.npz"), student_ids=labelled.student_ids, labels=y,
                        **{f"{fs}|{m}": p for (fs, m), p in oof.items()})
    return {"frame": frame, "oof": oof, "best": best_key, "paths": paths}


def _submission(cell: tuple[Pipeline, dict, np.ndarray], labelled: features.StudentTable,
                submission: features.StudentTable, states: dict[str, pd.DataFrame], key: tuple[str, str],
                cfg: ml_collections.ConfigDict, out_dir: str) -> dict[str, str]:
    """Selects the best cell's hyper-parameters on all labelled students (inner CV) and predicts the
    submission rows in validation_test_label.csv order."""
    pipe, grid, X = cell
    X_sub, _ = features.feature_matrix(key[0], submission, states)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(clone(pipe), grid, scoring=evaluate.make_stem_scorer(),
                              cv=evaluate.inner_cv(cfg.inner_folds, cfg.seed), n_jobs=cfg.n_jobs, refit=True)
        search.fit(X, labelled.labels)
        proba = search.predict_proba(X_sub)[:, 1]
    logging.info("submission model %s, params %s", key, search.best_params_)
    paths = report.write_submission(submission.student_ids, proba, out_dir)
    with open(os.path.join(out_dir, "submission_model.txt"), "w", encoding="utf-8") as f:
        f.write(f"feature set: {key[0]}\nmodel: {key[1]}\nbest params: {search.best_params_}\n"
                f"inner-CV score: {search.best_score_:.4f}\n")
    return {f"submission_{k}": v for k, v in paths.items()}
