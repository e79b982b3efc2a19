"""The STEM loop of ``launch.stem``: data -> DKT / DKT+ -> knowledge-state export -> sklearn -> analyses -> report.

    results = train_and_evaluate(config, workdir)

Workdir layout (``<workdir>/``):
    raw/, ground_truth/      generated synthetic release and its planted truth (``config.generate``)
    tfds/                    the built ``assistments2017`` dataset (unless ``config.data_dir``)
    kt/<name>/               dkt_jax workdir per KT model (reused when ``best_params.msgpack`` exists)
    knowledge_states/        knowledge_states_<name>.{csv,npz}, skill_vocab.json, bkt_params.json,
                             knowledge_states_bkt.csv
    classify/                results.{md,csv}, selected_by_inner_cv.csv, paired_differences.png,
                             roc_curves.png, auc_by_feature_set.png, submission.{txt,csv}
    analyses/                nlg_<name>.png, skill_correlation_heatmap.png, analyses.json
    report.md, results.json, timings in results.json

Multi-process runs (``jax.distributed``: ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, SLURM, ...; see ``launch.runtime.mesh.maybe_initialize_distributed``, called here before
anything touches a JAX backend): process 0 alone generates and builds the data (the others wait, then read
that build); every process trains the KT models together, as ``launch.dkt`` does; then process 0 alone
does everything else: the knowledge-state export, BKT, the sklearn stage, the analyses and every file of
the workdir (``kt/<name>/`` is written by ``launch.train_dkt``, also on process 0 only). The other
processes wait for it and return the same results dict as ``results.json`` holds it (sent through the
``jax.distributed`` key-value store, so plain JSON types). These waits use that key-value store, not device
collectives, so they may last as long as the sklearn stage does; an error on process 0 is raised on the
others as well, so none of them waits forever.
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import pandas as pd

from datasets import prepare
from dkt_jax.stem import analyses, bkt, classifiers, classify, export, features, report
from launch import train_dkt
from launch.runtime import mesh as mesh_lib
from launch.runtime.cli import ConfigError
from launch.runtime.progress import summary
from launch.runtime.workdir import Workdir, write_config

def prepare_data(config: ml_collections.ConfigDict, wd: Workdir) -> tuple[str, str | None]:
    """Generates the synthetic release when asked (and absent), builds the dataset. Returns
    (data_dir, ground_truth_dir or None)."""
    manual_dir = config.manual_dir or wd.path("raw")
    data_dir = config.data_dir or wd.path("tfds")
    ground_truth_dir = config.get("ground_truth_dir") or None
    generate = None
    if config.generate:
        from datasets.synthetic_assistments2017 import generate as generate_release

        ground_truth_dir = ground_truth_dir or wd.path("ground_truth")
        generate = functools.partial(generate_release, ground_truth_dir=ground_truth_dir,
                                     **config.synthetic.to_dict())
    prepare.prepare_dataset(config.dataset, manual_dir=manual_dir, data_dir=data_dir, generate=generate)
    return data_dir, ground_truth_dir


def kt_config(config: ml_collections.ConfigDict, name: str, data_dir: str) -> ml_collections.ConfigDict:
    """The dkt_jax config of KT model ``name``: ``config.dkt`` with that model's lambdas and our data."""
    cfg = ml_collections.ConfigDict(config.dkt.to_dict())
    cfg.dataset, cfg.data_dir = config.dataset, data_dir
    cfg.train_split, cfg.test_split = config.kt_train_split, config.kt_test_split
    for key, value in config.kt_models[name].to_dict().items():
        cfg.loss[key] = float(value)
    return cfg


def train_or_reuse(config: ml_collections.ConfigDict, name: str, data_dir: str, wd: Workdir,
                   load: bool = True) -> tuple[Any, dict]:
    """Trained params of KT model ``name``: loads ``kt/<name>/best_params.msgpack`` if present, else trains
    (``train_and_evaluate`` itself resumes from checkpoints of an interrupted run). With several processes
    every one calls this (process 0 decides whether to reuse); ``load=False`` returns None for the params."""
    kt_dir = wd.path("kt", name)
    params_file = os.path.join(kt_dir, train_dkt.PARAMS_FILE)
    if mesh_lib.on_process_0(f"reuse/{name}", lambda: "1" if os.path.exists(params_file) else "") == "1":
        summary(f"Reusing trained {name} from {kt_dir}")
        results_path = os.path.join(kt_dir, "results.json")
        results = json.load(open(results_path, encoding="utf-8")) if os.path.exists(results_path) else {}
    else:
        summary(f"Training {name} (lambdas {config.kt_models[name].to_dict()}) into {kt_dir}")
        results = train_dkt.train_and_evaluate(kt_config(config, name, data_dir), kt_dir)
    params = train_dkt.load_params(kt_dir)[0] if load else None
    return params, {k: results.get(k) for k in ("test", "best_epoch", "epochs_run", "train_time_s_this_run")}


def _union(a: features.StudentTable, b: features.StudentTable) -> tuple[np.ndarray, list]:
    ids, seqs, seen = [], [], set()
    for table in (a, b):
        for sid, seq in zip(table.student_ids, table.sequences()):
            if int(sid) not in seen:
                seen.add(int(sid))
                ids.append(int(sid))
                seqs.append(seq)
    return np.asarray(ids, np.int64), seqs


def _subset(ex: export.Export, ids: np.ndarray) -> export.Export:
    index = {int(s): i for i, s in enumerate(ex.student_ids)}
    rows = [index[int(s)] for s in ids]
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return export.Export(student_ids=np.asarray(ids), final_states=ex.final_states[rows],
                         trajectories=[ex.trajectories[i] for i in rows], skill_vocab=ex.skill_vocab,
                         last_practice_states=pick(ex.last_practice_states), mean_states=pick(ex.mean_states))


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the STEM fields and each KT model's launch.dkt config up front (``ConfigError`` names the field)."""
    if not config.kt_models:
        raise ConfigError("config.kt_models is empty: name at least one KT model with its lambdas.")
    for name in config.kt_models:
        try:
            train_dkt.validate_config(kt_config(config, name, data_dir=""))
        except ConfigError as e:
            raise ConfigError(f"{e} (in config.dkt, model {name!r})") from None
    for field in ("outer_folds", "inner_folds", "rfecv_folds"):
        if not isinstance(config.sklearn.get(field), int) or config.sklearn.get(field) < 2:
            raise ConfigError(f"config.sklearn.{field} must be an int >= 2, got {config.sklearn.get(field)!r}.")
    if "BKT&SP" in config.sklearn.feature_sets and not config.bkt.enabled:
        raise ConfigError("config.sklearn.feature_sets has 'BKT&SP' but config.bkt.enabled is False.")
    known = set(features.FEATURE_SETS) | set(features.ORACLE_FEATURE_SETS)
    for fs in (*config.sklearn.feature_sets, *config.sklearn.oracle_feature_sets):
        if fs not in known:
            raise ConfigError(f"config.sklearn: unknown feature set {fs!r}; known: {', '.join(sorted(known))}.")
    if not isinstance(config.sklearn.get("outer_repeats"), int) or config.sklearn.outer_repeats < 1:
        raise ConfigError("config.sklearn.outer_repeats must be an int >= 1, got "
                          f"{config.sklearn.get('outer_repeats')!r}.")
    if config.sklearn.rfecv:
        try:
            classifiers.rfecv_step_value(config.sklearn.rfecv_step)
        except ValueError as e:
            raise ConfigError(f"config.{e}") from None
    for model in config.sklearn.models:
        if model not in classifiers.MODEL_NAMES:
            raise ConfigError(f"config.sklearn.models: unknown model {model!r}; known: "
                              f"{', '.join(classifiers.MODEL_NAMES)}.")
    if config.sklearn.grid not in classifiers.GRID_PRESETS:
        raise ConfigError(f"config.sklearn.grid must be one of {', '.join(classifiers.GRID_PRESETS)}, got "
                          f"{config.sklearn.grid!r}.")
    if config.export.get("state_feature") not in ("final", "last_practice", "mean"):
        raise ConfigError("config.export.state_feature must be 'final' (the paper), 'last_practice' or 'mean', "
                          f"got {config.export.get('state_feature')!r}.")
    for field in ("chunk_len", "batch_size"):
        if not isinstance(config.export.get(field), int) or config.export.get(field) <= 0:
            raise ConfigError(f"config.export.{field} must be a positive int, got {config.export.get(field)!r}.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the whole STEM pipeline into ``workdir``; returns the results dict (also results.json).

    With several processes (module docstring): all of them train the KT models; process 0 alone builds
    the data first and does everything after the training; the others return its results dict as
    results.json holds it."""
    validate_config(config)
    mesh_lib.maybe_initialize_distributed()  # before anything starts a JAX backend (Workdir.make does)
    wd = Workdir(workdir).make()
    write_config(wd, config)  # process 0 writes
    timings: dict[str, float] = {}
    t0 = time.time()
    data_dir, gt_dir = json.loads(mesh_lib.on_process_0("data", lambda: json.dumps(prepare_data(config, wd))))
    if jax.process_index() > 0:  # process 0's build (or, with no shared file system, the same build here)
        data_dir, gt_dir = prepare_data(config, wd)
    labelled_all, meta = features.load_split(config.dataset, config.labelled_split, data_dir)
    labelled = features.labelled_subset(labelled_all)
    submission, _ = features.load_split(config.dataset, config.submission_split, data_dir)
    skill_vocab = [str(s) for s in meta["skill_vocab"]]
    timings["data_s"] = time.time() - t0
    summary(f"{len(labelled)} labelled students ({int(labelled.labels.sum())} STEM), {len(submission)} "
            f"submission rows, {len(skill_vocab)} skills")

    kt_results = {}
    for name in config.kt_models:  # every process: the training is collective
        t = time.time()
        _, kt_results[name] = train_or_reuse(config, name, data_dir, wd, load=False)
        timings[f"train_{name}_s"] = time.time() - t

    done: dict[str, dict] = {}

    def rest() -> str:
        done["results"] = _export_and_evaluate(config, wd, data_dir, gt_dir, labelled, submission, skill_vocab,
                                               kt_results, timings, t0)
        return json.dumps(done["results"], default=float)

    payload = mesh_lib.on_process_0("results", rest)  # process 0 runs it; the others wait for its results
    return done.get("results") or json.loads(payload)


def _export_and_evaluate(config: ml_collections.ConfigDict, wd: Workdir, data_dir: str, gt_dir: str | None,
                         labelled: features.StudentTable, submission: features.StudentTable,
                         skill_vocab: list[str], kt_results: dict, timings: dict, t0: float) -> dict:
    """The stages after the KT training (process 0 only): export, BKT, sklearn, analyses, results, report."""
    exports, states = {}, {}
    ids, seqs = _union(labelled, submission)
    for name in config.kt_models:
        params, _ = train_dkt.load_params(wd.path("kt", name))
        t = time.time()
        ex = export.export_knowledge_states(params, seqs, student_ids=ids, skill_vocab=skill_vocab,
                                    chunk_len=config.export.chunk_len, batch_size=config.export.batch_size,
                                    desc=f"export {name}")
        timings[f"export_{name}_s"] = time.time() - t
        export.write_export(wd.path("knowledge_states"), name, ex)
        exports[name], states[name] = ex, ex.frame(config.export.state_feature)

    # Alternative per-skill summaries of the same models (not the paper's feature): correlation rows only.
    label = {"dkt": "DKT", "dkt_plus": "DKT+"}
    extra_states = {f"{label.get(k, k)} ({kind.replace('_', ' ')})": _subset(ex, labelled.student_ids).states(kind)
                    for kind in ("last_practice", "mean") for k, ex in exports.items()}
    if config.bkt.enabled:
        t = time.time()
        kt_train, _ = features.load_split(config.dataset, config.kt_train_split, data_dir)
        bkt_params, history = bkt.fit_bkt(kt_train.skills, kt_train.correct, len(skill_vocab),
                                          num_iters=config.bkt.num_iters)
        mastery = bkt.bkt_final_mastery(bkt_params, [s for s, _ in seqs], [c for _, c in seqs])
        states["bkt"] = pd.DataFrame({"student_id": ids, **{f"kt_{j}": mastery[:, j] for j in range(len(skill_vocab))}})
        os.makedirs(wd.path("knowledge_states"), exist_ok=True)
        states["bkt"].to_csv(wd.path("knowledge_states", "knowledge_states_bkt.csv"), index=False,
                             float_format="%.6f")
        with open(wd.path("knowledge_states", "bkt_params.json"), "w", encoding="utf-8") as f:
            json.dump({"skill_vocab": skill_vocab, "log_likelihood": history, **bkt_params.to_dict()}, f)
        bkt_labelled = features.feature_matrix("BKT&SP", labelled, states)[0][:, len(labelled.sp_columns):]
        extra_states["BKT (fitted, kt_train)"] = bkt_labelled
        timings["bkt_s"] = time.time() - t
        summary(f"BKT fitted on {len(kt_train)} kt_train students ({len(history)} EM iterations)")
    oracle = features.oracle_frames(gt_dir, labelled.student_ids, skill_vocab) if gt_dir else None

    t = time.time()
    clf = classify.run_classification(config.sklearn, labelled, submission, states, wd.path("classify"),
                                      oracle=oracle)
    timings["sklearn_s"] = time.time() - t
    t = time.time()
    os.makedirs(wd.path("analyses"), exist_ok=True)
    ana = analyses.run_analyses(labelled.student_ids, labelled.labels, labelled.skills, labelled.ln,
                                {k: _subset(ex, labelled.student_ids) for k, ex in exports.items()},
                                skill_vocab, wd.path("analyses"), window=config.analyses.nlg_window,
                                ground_truth_dir=gt_dir, extra_states=extra_states)
    with open(wd.path("analyses", "analyses.json"), "w", encoding="utf-8") as f:
        json.dump(ana, f, indent=2, default=float)
    timings["analyses_s"] = time.time() - t
    timings["total_s"] = time.time() - t0

    results = {"num_labelled": len(labelled), "num_stem": int(labelled.labels.sum()),
               "num_submission": len(submission), "num_skills": len(skill_vocab), "kt": kt_results,
               "outer_folds": config.sklearn.outer_folds, "inner_folds": config.sklearn.inner_folds,
               "outer_repeats": clf["outer_repeats"], "rfecv": bool(config.sklearn.rfecv),
               "state_feature": config.export.state_feature,
               "classification": clf["frame"].drop(columns=["best_params_per_fold"]).to_dict("records"),
               "selected_by_inner_cv": clf["selected"].to_dict("records"), "comparison": clf["comparison"],
               "submission_cell": list(clf["best"]), "analyses": ana, "timings": timings,
               "acceptance": acceptance(clf["selected"], clf["comparison"], ana, config.export.state_feature)}
    with open(wd.path("results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=float)
    with open(wd.path("report.md"), "w", encoding="utf-8") as f:
        f.write(report.markdown_report(results, clf["frame"], clf["selected"]))
    summary(f"STEM pipeline done in {timings['total_s']:.1f} s; report at {wd.path('report.md')}")
    return results


def acceptance(selected: Any, comparison: dict, ana: dict, state_feature: str = "final") -> dict:
    """The STEM claim checked with the paired protocol: DKT+&SP vs SP (inner-CV-selected model per split,
    Nadeau-Bengio 95 % interval of the AUC difference), the targets of the signal issue (difference >= 0.05
    with the interval above 0; DKT+ states track the true mastery at least as well as BKT), NLG STEM > non-STEM.
    """
    from dkt_jax.stem.compare import comparison_key

    means = dict(zip(selected["feature_set"], selected["auc_mean"])) if len(selected) else {}
    out: dict[str, Any] = {"selected_auc_SP": means.get("SP"), "selected_auc_DKT+&SP": means.get("DKT+&SP")}
    for fs in ("DKT+&SP", "DKT&SP"):
        test = comparison.get(comparison_key(fs, "SP"))
        if test:
            out[f"{fs} beats SP (95% CI above 0)"] = bool(test["ci95"][0] > 0)
    test = comparison.get(comparison_key("DKT+&SP", "SP"))
    if test:
        out["target_delta_auc_ge_0.05_and_ci_above_0"] = bool(test["delta_auc"] >= 0.05 and test["ci95"][0] > 0)
    corr = ana.get("correlation", {})
    track = {k: v.get("tracks_true_mastery") for k, v in corr.items() if v.get("tracks_true_mastery") is not None}
    if track:
        out["tracks_true_mastery"] = track
    profile = {k: v.get("pearson_with_true_profile") for k, v in corr.items()
               if v.get("pearson_with_true_profile") is not None}
    if profile:
        out["r_profile_with_true_profile"] = profile
        # DKT+ row of the configured state feature. The BKT reference is the release's detector
        # (last Ln); the fitted BKT is checked as well.
        dkt_plus = "DKT+" if state_feature == "final" else f"DKT+ ({state_feature.replace('_', ' ')})"
        for key, bkt_row in (("target_dkt_plus_profile_ge_bkt_ln", "BKT (last Ln)"),
                             ("dkt_plus_profile_ge_fitted_bkt", "BKT (fitted, kt_train)")):
            if dkt_plus in profile and bkt_row in profile:
                out[key] = bool(profile[dkt_plus] >= profile[bkt_row])
    nlg = ana["nlg"].get("dkt_plus") or next(iter(ana["nlg"].values()), None)
    if nlg:
        out["nlg_stem_higher"] = bool(nlg["stem_mean"] > nlg["non_stem_mean"])
        out["nlg_cohens_d"] = nlg["cohens_d"]
        out["nlg_welch_p"] = nlg["welch_p"]
    gt = ana.get("ground_truth", {}).get("learning_gain")
    if gt:
        out["true_learning_gain_cohens_d"] = gt["cohens_d"]
    return out
