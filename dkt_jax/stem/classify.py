"""The sklearn stage: every (feature set, model) cell under repeated nested CV (the same outer splits for
all), the prior baseline, the per-split inner-CV model choice per feature set, the paired comparisons
against SP (``compare``), and the submission (never from an oracle feature set)."""
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

from dkt_jax.stem import classifiers, compare, evaluate, features, report
from dkt_jax.stem.errors import ClassificationError

BASELINE = ("baseline", "prior")


def feature_set_names(cfg: ml_collections.ConfigDict, oracle: dict | None) -> list[str]:
    """The configured feature sets, plus the oracle ones when ground truth is available."""
    extra = [fs for fs in cfg.get("oracle_feature_sets", ()) if oracle] if oracle else []
    return list(cfg.feature_sets) + extra


def _cells(cfg: ml_collections.ConfigDict, table: features.StudentTable, states: dict[str, pd.DataFrame],
           memory: Any, oracle: dict | None = None) -> dict[tuple[str, str], tuple[Pipeline, dict, np.ndarray]]:
    scorer = evaluate.make_stem_scorer()
    cells = {}
    for fs in feature_set_names(cfg, oracle):
        X, _ = features.feature_matrix(fs, table, states, oracle if features.is_oracle(fs) else None)
        for model in cfg.models:
            pipe = classifiers.make_pipeline(model, scorer=scorer, seed=cfg.seed, rfecv=cfg.rfecv,
                                             rfecv_step=cfg.rfecv_step, rfecv_folds=cfg.rfecv_folds,
                                             rfecv_estimator=cfg.rfecv_estimator, memory=memory)
            cells[(fs, model)] = (pipe, classifiers.pipeline_grid(model, cfg.grid), X)
    cells[BASELINE] = (Pipeline([("model", evaluate.prior_baseline())]), None, table.sp)
    return cells


def run_classification(cfg: ml_collections.ConfigDict, labelled: features.StudentTable,
                       submission: features.StudentTable, states: dict[str, pd.DataFrame],
                       out_dir: str, oracle: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Repeated nested CV of every cell on the labelled students, results table/plots, paired comparisons
    and the submission file. ``oracle``: ground-truth blocks for the oracle feature sets (or None).

    Returns {'frame': per-(fs, model) DataFrame, 'selected': per-fs DataFrame, 'comparison': {key: test},
    'oof': {(fs, model): (N,) proba of repeat 0}, 'best': (fs, model), 'folds': {(fs, model): FoldResults},
    'paths': ...}.
    """
    os.makedirs(out_dir, exist_ok=True)
    y = labelled.labels
    counts = np.bincount(y, minlength=2)
    if counts.min() < cfg.outer_folds:
        raise ValueError(f"only {counts.tolist()} labelled students per class: too few for "
                         f"{cfg.outer_folds} outer folds.")
    memory = joblib.Memory(os.path.join(out_dir, "cache"), verbose=0) if cfg.cache else None
    cells = _cells(cfg, labelled, states, memory, oracle)
    sets = feature_set_names(cfg, oracle)
    repeats = int(cfg.get("outer_repeats", 1))
    folds: dict[tuple[str, str], list[evaluate.FoldResult]] = {}
    for name, result in evaluate.nested_cv_tasks(
            {k: v for k, v in cells.items()}, y, outer_folds=cfg.outer_folds, inner_folds=cfg.inner_folds,
            seed=cfg.seed, n_jobs=cfg.n_jobs, outer_repeats=repeats, desc="nested CV (cell x outer split)",
            results_dir=os.path.join(out_dir, "cv_tasks") if cfg.get("resume", True) else None):
        folds.setdefault(name, []).append(result)
    rows, oof = [], {}
    for (fs, model), fold_results in folds.items():
        fold_results.sort(key=lambda r: r.fold)
        summary = evaluate.summarize(fold_results)
        params = [r.best_params for r in fold_results]
        rows.append({"feature_set": fs, "model": model, "oracle": features.is_oracle(fs), **summary,
                     "best_params_per_fold": "; ".join(str(p) for p in params),
                     "warnings": int(sum(r.num_warnings for r in fold_results)),
                     "failed_folds": int(sum(r.error is not None for r in fold_results)),
                     "errors": "; ".join(sorted({r.error for r in fold_results if r.error}))})
        for r in fold_results:
            if r.error:
                logging.warning("%s / %s outer fold %d failed: %s", fs, model, r.fold, r.error)
        oof[(fs, model)] = evaluate.out_of_fold_proba(fold_results, len(y), cfg.outer_folds)
    order = {fs: i for i, fs in enumerate(sets + ["baseline"])}
    frame = report.results_frame(rows)
    frame = frame.sort_values(["feature_set", "model"], key=lambda s: s.map(order) if s.name == "feature_set"
                              else s.map({m: i for i, m in enumerate(list(cfg.models) + ["prior"])}))
    frame = frame.reset_index(drop=True)
    paths = report.write_results(frame, out_dir)
    paths["roc"] = report.plot_roc(y, {k: v for k, v in oof.items() if k != BASELINE}, sets,
                                   os.path.join(out_dir, "roc_curves.png"))
    paths["bars"] = report.plot_feature_set_bars(frame[frame["feature_set"] != "baseline"],
                                                 os.path.join(out_dir, "auc_by_feature_set.png"))
    selected, comparison, diffs = compare_feature_sets(folds, sets, list(cfg.models), len(y))
    selected.to_csv(os.path.join(out_dir, "selected_by_inner_cv.csv"), index=False, float_format="%.5f")
    if diffs:
        paths["paired"] = compare.plot_paired_differences(diffs, comparison,
                                                          os.path.join(out_dir, "paired_differences.png"),
                                                          cfg.outer_folds)
    cells_only = frame[(frame["feature_set"] != "baseline") & ~frame["oracle"].astype(bool)]
    scored = cells_only.dropna(subset=["score_mean"])
    if scored.empty:
        errors = sorted({r.error for key, rs in folds.items() if key != BASELINE for r in rs if r.error})
        raise ClassificationError(f"every (feature set, model) cell failed on at least one outer split "
                                  f"(see {out_dir}/results.csv); first error: "
                                  f"{errors[0] if errors else 'none recorded'}")
    best = scored.sort_values("score_mean", ascending=False).iloc[0]
    best_key = (str(best["feature_set"]), str(best["model"]))
    paths.update(_submission(cells[best_key], labelled, submission, states, best_key, cfg, out_dir))
    np.savez_compressed(os.path.join(out_dir, "oof_proba.npz"), student_ids=labelled.student_ids, labels=y,
                        **{f"{fs}|{m}": p for (fs, m), p in oof.items()})
    return {"frame": frame, "selected": selected, "comparison": comparison, "oof": oof, "best": best_key,
            "paths": paths, "outer_repeats": repeats, "folds": folds}


def compare_feature_sets(folds: dict[tuple[str, str], list[evaluate.FoldResult]], sets: list[str],
                         models: list[str], num_samples: int, reference: str = "SP"
                         ) -> tuple[pd.DataFrame, dict[str, dict], dict[str, np.ndarray]]:
    """Per feature set, the model chosen per outer split by inner-CV score, and the paired tests of every
    feature set against ``reference`` on the same splits.

    folds: (fs, model) -> FoldResults sorted by split index (all cells on the same splits).
    Returns (one row per feature set: mean ± 2 std of the selected AUC, the models chosen and how often;
    {'A − SP': corrected_resampled_ttest}, {'A − SP': (J,) paired AUC differences}).
    """
    auc, chosen, rows = {}, {}, []
    for fs in sets:
        per_model = {m: folds[(fs, m)] for m in models if (fs, m) in folds}
        if not per_model:
            continue
        splits = [r.fold for r in next(iter(per_model.values()))]
        for m, results in per_model.items():
            if [r.fold for r in results] != splits:
                raise ValueError(f"{fs}/{m} was not evaluated on the same outer splits as the other models.")
        auc[fs], chosen[fs] = compare.select_per_split(
            {m: [r.metrics["auc"] for r in rs] for m, rs in per_model.items()},
            {m: [r.inner_best_score for r in rs] for m, rs in per_model.items()}, models)
        counts = pd.Series(chosen[fs]).value_counts()
        rows.append({"feature_set": fs, "oracle": features.is_oracle(fs), "auc_mean": float(np.nanmean(auc[fs])),
                     "auc_2std": float(2 * np.nanstd(auc[fs])), "num_splits": len(splits),
                     "models_chosen": ", ".join(f"{m} {n}" for m, n in counts.items())})
    comparison, diffs = {}, {}
    if reference in auc:
        some = next(iter(folds.values()))
        ratio = float(np.mean([len(r.test_index) / (num_samples - len(r.test_index)) for r in some]))
        for fs in sets:
            if fs == reference or fs not in auc:
                continue
            key = compare.comparison_key(fs, reference)
            diffs[key] = auc[fs] - auc[reference]
            comparison[key] = {**compare.corrected_resampled_ttest(diffs[key], n_train=1.0, n_test=ratio),
                               "oracle": features.is_oracle(fs)}
    return pd.DataFrame(rows), comparison, diffs


def _submission(cell: tuple[Pipeline, dict, np.ndarray], labelled: features.StudentTable,
                submission: features.StudentTable, states: dict[str, pd.DataFrame], key: tuple[str, str],
                cfg: ml_collections.ConfigDict, out_dir: str) -> dict[str, str]:
    """Selects the best cell's hyper-parameters on all labelled students (inner CV) and predicts the
    submission rows in validation_test_label.csv order."""
    pipe, grid, X = cell
    if features.is_oracle(key[0]):
        raise ValueError(f"the submission never uses an oracle feature set ({key[0]}).")
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
