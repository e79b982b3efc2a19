"""Synthetic ASSISTments 2017 competition release (all 77 log columns, label files) with a planted ground truth.

``generate(out_dir)`` writes ``student_log_1..10.csv`` (or the single re-release
``anonymized_full_release_competition_dataset.csv`` with ``studentId``), ``training_label.csv`` (514 rows, 467
students) and ``validation_test_label.csv`` (172 rows, 48 of them also in the training labels) into ``out_dir``,
and the ground truth into ``ground_truth_dir`` (default: ``<out_dir>_ground_truth``, next to the release).

isSTEM (about 25%) follows a logistic model of the final mastery of the STEM skills, the learning gain and three SP
features (``AveResConf``, ``AveResEngcon``, ``AveCarelessness``) plus Gaussian noise, so that (1) SP plus
knowledge-state features beat SP alone and (2) STEM students show higher mastery and higher learning gain.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from tqdm.auto import tqdm

from datasets.assistments2017 import schema
from datasets.synthetic_assistments2017 import clickstream, latent
from datasets.synthetic_assistments2017.ground_truth import effect_summary, nlg_of_trajectory

STEM_COEFFICIENTS = {"stem_mastery": 2.5, "learning_gain": 0.3, "AveResConf": -0.2, "AveResEngcon": 0.2,
                     "AveCarelessness": -0.15}
_TOPICS = ["addition", "subtraction", "multiplication", "division", "fraction", "decimal", "percent", "ratio",
           "proportion", "equation", "inequality", "exponent", "square-root", "area", "perimeter", "volume",
           "angle", "triangle", "circle", "polygon", "coordinate", "slope", "probability", "mean-median-mode",
           "pattern", "algebraic-expression", "integer", "scientific-notation", "pythagorean-theorem",
           "symmetry", "transformation", "graph-interpretation", "unit-conversion", "estimation"]
_ASPECTS = ["", "-word-problems", "-of-negative-numbers", "-properties", "-modeling"]


def skill_names(num_skills: int) -> list[str]:
    """``noskill`` followed by num_skills - 1 distinct math-skill names."""
    names = [t + a for a in _ASPECTS for t in _TOPICS]
    if num_skills - 1 > len(names):
        names += [f"skill-{i}" for i in range(num_skills - 1 - len(names))]
    return [schema.NO_SKILL] + names[:num_skills - 1]


def _scaled(value: int | None, full: int, num_students: int) -> int:
    return int(round(full * num_students / 1709)) if value is None else int(value)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def generate(out_dir: str, *, ground_truth_dir: str | None = None, num_students: int = 1709, seed: int = 0,
             num_skills: int = 102, length_median: float = 440.0, length_sigma: float = 0.65, min_length: int = 5,
             max_length: int = 3000, num_labeled: int | None = None, num_duplicate_label_rows: int | None = None,
             num_submission: int | None = None, num_submission_overlap: int | None = None,
             stem_rate: float = 0.25, num_stem_skills: int = 12, num_log_files: int = 10,
             single_file: bool = False, write_index: bool = False, shuffle_rows: bool = False,
             num_problems: int = 3162, stem_coefficients: dict[str, float] | None = None,
             stem_noise_sd: float = 0.5, effect_cv: bool = True) -> dict[str, Any]:
    """Writes the synthetic release into ``out_dir`` and the ground truth into ``ground_truth_dir``.

    Label counts default to the real ones scaled by ``num_students / 1709`` (467 labelled students, 47 duplicate
    rows, 172 submission rows, 48 of them overlapping). ``shuffle_rows`` writes each log file's rows in random
    order (the builder sorts by actionId); ``write_index`` adds the pandas index column (``Unnamed: 0``);
    ``stem_coefficients`` overrides entries of STEM_COEFFICIENTS (weights on z-scored features);
    ``effect_cv`` adds cross-validated reference AUCs (SP vs SP + true mastery) to the ground-truth effects.
    Returns a summary dict (paths, sizes, prevalence, planted effect sizes). Same seed -> identical files.
    """
    num_labeled = _scaled(num_labeled, 467, num_students)
    num_dup = _scaled(num_duplicate_label_rows, 47, num_students)
    num_sub = _scaled(num_submission, 172, num_students)
    num_overlap = _scaled(num_submission_overlap, 48, num_students)
    if num_labeled + num_sub - num_overlap > num_students or num_overlap > min(num_labeled, num_sub):
        raise ValueError("label counts exceed the number of students.")
    rng = np.random.default_rng(seed)
    names = np.array(skill_names(num_skills))
    skills = latent.draw_skills(rng, num_skills, num_stem_skills)
    students = latent.draw_students(rng, num_students)
    ids = np.sort(rng.choice(np.arange(1, 10 * num_students + 1), num_students, replace=False))
    lengths = np.clip(np.round(rng.lognormal(np.log(length_median), length_sigma, num_students)),
                      min_length, max_length).astype(np.int64)

    # actions, student after student; practice comes in segments (assignments) of one skill.
    n = int(lengths.sum())
    sidx = np.repeat(np.arange(num_students), lengths)
    pos = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    segment = np.cumsum((rng.random(n) < 1 / 8) | (pos == 0)) - 1
    skill = rng.choice(num_skills, size=int(segment[-1]) + 1, p=skills.popularity)[segment]
    skill_key = sidx.astype(np.int64) * num_skills + skill
    opportunity = pd.Series(skill_key).groupby(skill_key, sort=False).cumcount().to_numpy()
    m0, learn = latent.initial_mastery(skills, students), latent.transition(skills, students)
    mastery = latent.mastery_after(m0[sidx, skill], learn[sidx, skill], opportunity)
    correct = (rng.random(n) < latent.p_correct(skills, skill, mastery)).astype(np.int64)
    practices = np.bincount(skill_key, minlength=num_students * num_skills).reshape(num_students, num_skills)
    final = latent.mastery_after(m0, learn, practices)
    mastery_next = latent.mastery_after(m0[sidx, skill], learn[sidx, skill], opportunity + 1)
    trajectory = m0.mean(1)[sidx] + clickstream.past_window_sum((mastery_next - mastery) / num_skills, pos, None) \
        + (mastery_next - mastery) / num_skills  # latent mean mastery after each action

    cols = clickstream.action_columns(rng, sidx=sidx, pos=pos, lengths=lengths, skill=skill, segment=segment,
                                      correct=correct, num_problems=num_problems, popularity=skills.popularity)
    pair = np.unique(skill_key, return_inverse=True)[1]
    prior = m0.mean(0)
    ln_before, ln_after = latent.bkt_detector(correct, pair, opportunity, skill, prior, learn.mean(0),
                                              skills.guess, skills.slip)
    cols.update({"ITEST_id": ids[sidx], "skill": names[skill], "Ln": ln_after, "Ln-1": ln_before})
    per_student = {
        "AveCorrect": np.bincount(sidx, correct) / lengths, "AveKnow": np.bincount(sidx, ln_after) / lengths,
        "NumActions": lengths, "AveCarelessness": rng.beta(2, 12, num_students),
    }
    for column, ave in clickstream.AVE_OF_AFFECT.items():
        per_student[ave] = np.bincount(sidx, cols[column]) / lengths
    for column, values in per_student.items():
        cols[column] = values[sidx]

    # isSTEM: logistic in planted features, intercept solved for the target prevalence.
    stem_mastery = final[:, skills.is_stem].mean(1)
    learning_gain = nlg_of_trajectory(trajectory, sidx, pos, lengths)
    features = {"stem_mastery": stem_mastery, "learning_gain": learning_gain,
                **{k: per_student[k] for k in ("AveResConf", "AveResEngcon", "AveCarelessness")}}
    coefficients = {**STEM_COEFFICIENTS, **(stem_coefficients or {})}
    unknown = set(coefficients) - set(features)
    if unknown:
        raise ValueError(f"unknown stem_coefficients {sorted(unknown)}; known: {sorted(features)}.")
    score = sum(w * _zscore(features[k]) for k, w in coefficients.items())
    score = score + rng.normal(0, stem_noise_sd, num_students)
    intercept = brentq(lambda b: expit(score + b).mean() - stem_rate, -20, 20)
    p_stem = expit(score + intercept)
    is_stem = (rng.random(num_students) < p_stem).astype(np.int64)

    # label files
    labeled_pool = rng.permutation(num_students)[:num_labeled + num_sub - num_overlap]
    train_students, extra_sub = labeled_pool[:num_labeled], labeled_pool[num_labeled:]
    sub_students = rng.permutation(np.concatenate([rng.choice(train_students, num_overlap, replace=False),
                                                   extra_sub]))
    school = rng.integers(1, max(2, num_students // 40) + 1, num_students) * 7 + 3000
    mcas = np.clip(np.round(rng.normal(32 + 8 * students.theta + 3 * students.phi, 5)), 0, 54).astype(np.int64)
    mcas[rng.random(num_students) < 0.15] = schema.MISSING_MCAS
    ave_correct_label = np.round(per_student["AveCorrect"], 6)

    def label_frame(rows: np.ndarray, with_stem: bool) -> pd.DataFrame:
        frame = pd.DataFrame({"ITEST_id": ids[rows], "SchoolId": school[rows], "AveCorrect": ave_correct_label[rows],
                              "MCAS": mcas[rows]})
        if with_stem:
            frame["isSTEM"] = is_stem[rows]
        return frame

    dup_rows = np.concatenate([train_students, rng.choice(train_students, num_dup, replace=False)])
    training = label_frame(rng.permutation(dup_rows), True)
    validation = label_frame(sub_students, False)

    os.makedirs(out_dir, exist_ok=True)
    for column in schema.LOG_COLUMNS:
        if cols[column].dtype == np.float64:
            cols[column] = np.round(cols[column], 6)
    if single_file:
        files = [schema.FULL_RELEASE_FILE]
        bounds = np.array([0, n])
    else:
        files = [f"student_log_{i + 1}.csv" for i in range(num_log_files)]
        bounds = np.searchsorted(sidx, np.linspace(0, num_students, num_log_files + 1).round().astype(int))
    for i, name in enumerate(tqdm(files, desc="writing logs", unit="file", disable=None)):
        rows = slice(bounds[i], bounds[i + 1])
        frame = pd.DataFrame({c: cols[c][rows] for c in schema.LOG_COLUMNS}, index=np.arange(n)[rows])
        if single_file:
            frame = frame.rename(columns={"ITEST_id": "studentId"})
        _write_log(frame, os.path.join(out_dir, name), rng, shuffle_rows, write_index)
    training.to_csv(os.path.join(out_dir, schema.TRAINING_LABEL_FILE), index=False)
    validation.to_csv(os.path.join(out_dir, schema.VALIDATION_LABEL_FILE), index=False)

    gt_dir = ground_truth_dir or os.path.normpath(out_dir) + "_ground_truth"
    os.makedirs(gt_dir, exist_ok=True)
    table = pd.DataFrame({
        "ITEST_id": ids, "isSTEM": is_stem, "p_stem": p_stem, "theta": students.theta, "phi": students.phi,
        "rho": students.rho, "stem_mastery": stem_mastery, "mean_initial_mastery": m0.mean(1),
        "mean_final_mastery": final.mean(1), "learning_gain": learning_gain, "num_actions": lengths,
        "in_training_label": np.isin(np.arange(num_students), train_students),
        "in_submission": np.isin(np.arange(num_students), sub_students),
        **{k: per_student[k] for k in schema.SP_COLUMNS},
    })
    table.to_csv(os.path.join(gt_dir, "students.csv"), index=False)
    np.savez_compressed(os.path.join(gt_dir, "mastery.npz"), ITEST_id=ids, skill_vocab=names,
                        initial_mastery=m0, final_mastery=final, practices=practices, is_stem_skill=skills.is_stem,
                        skill_difficulty=skills.difficulty, skill_learn_logit=skills.learn_logit,
                        skill_guess=skills.guess, skill_slip=skills.slip)
    effects = effect_summary(table, final, schema.SP_COLUMNS, seed=seed, with_cv=effect_cv)
    effects.update({"coefficients_on_zscores": coefficients, "intercept": float(intercept),
                    "noise_sd": stem_noise_sd, "stem_skills": names[skills.is_stem].tolist()})
    with open(os.path.join(gt_dir, "effects.json"), "w") as f:
        json.dump(effects, f, indent=2)
    return {"out_dir": out_dir, "ground_truth_dir": gt_dir, "log_files": files, "num_students": num_students,
            "num_actions": n, "length_median": float(np.median(lengths)), "length_max": int(lengths.max()),
            "mean_correct": float(correct.mean()), "num_training_label_rows": len(training),
            "num_labeled": num_labeled, "num_submission": len(validation), "stem_rate": float(is_stem.mean()),
            "effects": effects}


def _write_log(frame: pd.DataFrame, path: str, rng: np.random.Generator, shuffle: bool, index: bool) -> None:
    """CSV via pyarrow (about 5x faster than DataFrame.to_csv; pyarrow comes with tensorflow-datasets)."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    if shuffle:
        frame = frame.iloc[rng.permutation(len(frame))]
    if index:  # as DataFrame.to_csv(index=True): an unnamed first column, read back as "Unnamed: 0"
        frame = frame.reset_index(names="")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(quoting_style="none"))
