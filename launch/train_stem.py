"""The STEM loop of ``launch.stem``: data -> DKT / DKT+ -> knowledge-state export -> sklearn -> analyses -> report.

    results = train_and_evaluate(config, workdir)

Workdir layout (``<workdir>/``):
    raw/, ground_truth/      generated synthetic release and its planted truth (``config.generate``)
    tfds/                    the built ``assistments2017`` dataset (unless ``config.data_dir``)
    kt/<name>/               dkt_jax workdir per KT model (reused when ``best_params.msgpack`` exists)
    knowledge_states/        knowledge_states_<name>.{csv,npz}, skill_vocab.json
    classify/                results.{md,csv}, roc_curves.png, auc_by_feature_set.png, submission.{txt,csv}
    analyses/                nlg_<name>.png, skill_correlation_heatmap.png, analyses.json
    report.md, results.json, timings in results.json
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import ml_collections
import numpy as np

from datasets import prepare
from dkt_jax.stem import analyses, classify, export, features, report
from launch import train_dkt
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


def train_or_reuse(config: ml_collections.ConfigDict, name: str, data_dir: str, wd: Workdir) -> tuple[Any, dict]:
    """Trained params of KT model ``name``: loads ``kt/<name>/best_params.msgpack`` if present, else trains
    (``train_and_evaluate`` itself resumes from checkpoints of an interrupted run)."""
    kt_dir = wd.path("kt", name)
    if os.path.exists(os.path.join(kt_dir, train_dkt.PARAMS_FILE)):
        summary(f"Reusing trained {name} from {kt_dir}")
        results_path = os.path.join(kt_dir, "results.json")
        results = json.load(open(results_path, encoding="utf-8")) if os.path.exists(results_path) else {}
    else:
        summary(f"Training {name} (lambdas {config.kt_models[name].to_dict()}) into {kt_dir}")
        results = train_dkt.train_and_evaluate(kt_config(config, name, data_dir), kt_dir)
    params, _ = train_dkt.load_params(kt_dir)
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
    return export.Export(student_ids=np.asarray(ids), final_states=ex.final_states[rows],
                         trajectories=[ex.trajectories[i] for i in rows], skill_vocab=ex.skill_vocab)


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
    for field in ("chunk_len", "batch_size"):
        if not isinstance(config.export.get(field), int) or config.export.get(field) <= 0:
            raise ConfigError(f"config.export.{field} must be a positive int, got {config.export.get(field)!r}.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the whole STEM pipeline into ``workdir``; returns the results dict (also results.json)."""
    validate_config(config)
    wd = Workdir(workdir).make()
    write_config(wd, config)
    timings: dict[str, float] = {}
    t0 = time.time()
    data_dir, gt_dir = prepare_data(config, wd)
    labelled_all, meta = features.load_split(config.dataset, config.labelled_split, data_dir)
    labelled = features.labelled_subset(labelled_all)
    submission, _ = features.load_split(config.dataset, config.submission_split, data_dir)
    skill_vocab = [str(s) for s in meta["skill_vocab"]]
    timings["data_s"] = time.time() - t0
    summary(f"{len(labelled)} labelled students ({int(labelled.labels.sum())} STEM), {len(submission)} "
            f"submission rows, {len(skill_vocab)} skills")

    kt_results, exports, states = {}, {}, {}
    ids, seqs = _union(labelled, submission)
    for name in config.kt_models:
        t = time.time()
        params, kt_results[name] = train_or_reuse(config, name, data_dir, wd)
        timings[f"train_{name}_s"] = time.time() - t
        t = time.time()
        ex = export.export_knowledge_states(params, seqs, student_ids=ids, skill_vocab=skill_vocab,
                                    chunk_len=config.export.chunk_len, batch_size=config.export.batch_size,
                                    desc=f"export {name}")
        timings[f"export_{name}_s"] = time.time() - t
        export.write_export(wd.path("knowledge_states"), name, ex)
        exports[name], states[name] = ex, ex.frame()

    t = time.time()
    clf = classify.run_classification(config.sklearn, labelled, submission, states, wd.path("classify"))
    timings["sklearn_s"] = time.time() - t
    t = time.time()
    os.makedirs(wd.path("analyses"), exist_ok=True)
    ana = analyses.run_analyses(labelled.student_ids, labelled.labels, labelled.skills, labelled.ln,
                                {k: _subset(ex, labelled.student_ids) for k, ex in exports.items()},
                                skill_vocab, wd.path("analyses"), window=config.analyses.nlg_window,
                                ground_truth_dir=gt_dir)
    with open(wd.path("analyses", "analyses.json"), "w", encoding="utf-8") as f:
        json.dump(ana, f, indent=2, default=float)
    timings["analyses_s"] = time.time() - t
    timings["total_s"] = time.time() - t0

    results = {"num_labelled": len(labelled), "num_stem": int(labelled.labels.sum()),
               "num_submission": len(submission), "num_skills": len(skill_vocab), "kt": kt_results,
               "outer_folds": config.sklearn.outer_folds, "inner_folds": config.sklearn.inner_folds,
               "classification": clf["frame"].drop(columns=["best_params_per_fold"]).to_dict("records"),
               "submission_cell": list(clf["best"]), "analyses": ana, "timings": timings,
               "acceptance": acceptance(clf["frame"], ana)}
    with open(wd.path("results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=float)
    with open(wd.path("report.md"), "w", encoding="utf-8") as f:
        f.write(report.markdown_report(results, clf["frame"]))
    summary(f"STEM pipeline done in {timings['total_s']:.1f} s; report at {wd.path('report.md')}")
    return results


def acceptance(frame: Any, ana: dict) -> dict:
    """Issue 3 §5 checks: DKT+&SP vs SP AUC (best model of each and per model), NLG higher for STEM."""
    cells = frame[frame["feature_set"] != "baseline"]

    def best_auc(fs: str) -> float:
        sub = cells[cells["feature_set"] == fs]
        return float(sub["auc_mean"].max()) if len(sub) else float("nan")

    out = {"best_auc_SP": best_auc("SP"), "best_auc_DKT+&SP": best_auc("DKT+&SP")}
    out["dkt_plus_sp_beats_sp"] = bool(out["best_auc_DKT+&SP"] > out["best_auc_SP"])
    sp = cells[cells["feature_set"] == "SP"].set_index("model")["auc_mean"]
    both = cells[cells["feature_set"] == "DKT+&SP"].set_index("model")["auc_mean"]
    common = [m for m in sp.index if m in both.index]
    out["models_where_dkt_plus_sp_beats_sp"] = [m for m in common if both[m] > sp[m]]
    out["num_models_compared"] = len(common)
    nlg = ana["nlg"].get("dkt_plus") or next(iter(ana["nlg"].values()), None)
    if nlg:
        out["nlg_stem_higher"] = bool(nlg["stem_mean"] > nlg["non_stem_mean"])
        out["nlg_cohens_d"] = nlg["cohens_d"]
        out["nlg_welch_p"] = nlg["welch_p"]
    gt = ana.get("ground_truth", {}).get("learning_gain")
    if gt:
        out["true_learning_gain_cohens_d"] = gt["cohens_d"]
    return out
