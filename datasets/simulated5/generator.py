"""Simulated-5 generator (in the spirit of Piech et al. 2015's Synthetic-5) with two reference predictions.

Generative model (after Piech et al. 2015's Synthetic-5, plus a per-student learning gain; see README.md):

* ``num_exercises`` exercises answered by every student in the same fixed order (skill ids 1..J);
  exercise j belongs to concept ``concepts[j]`` (``rng.permutation(arange(J) % K)``, balanced).
* difficulty beta_j ~ N(0, 1); ability alpha_{s,k} ~ N(0, 1) per (student, concept);
  per-student learning gain g_s ~ U(gain_low, gain_high), added to alpha_{s,k} after every attempt on concept k.
* P(correct) = guess + (1 - guess) * sigmoid(alpha_{s,k} + n_{k,t} g_s - beta_j), with n_{k,t} the number of earlier
  attempts on concept k.

For every interaction it records

* ``p_true``: the true P(correct) (the oracle, which knows alpha and g);
* ``p_bayes``: the exact Bayes-filter prediction of an observer that knows beta, guess, the concepts and the
  gain *distribution* but not alpha nor g. Its posterior lives on a grid over (alpha_0 of every concept, g):
  since the concepts are a-priori independent given g, it factorises into one (alpha, g) grid per
  (student, concept) plus a shared posterior over g. The prediction for step t uses answers before t only.

Files written (DKT+ repo layout): ``naive_c{K}_q{J}_s{S}_v1_{train,test}.csv`` in the 3-line format with skill ids
1..J (trailing commas as in the repo files), ``ground_truth.npz`` and ``summary.json``.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from datasets.kt_csv.three_line import write_three_line

GROUND_TRUTH_FILE = "ground_truth.npz"
SUMMARY_FILE = "summary.json"


def file_stem(num_concepts: int, num_exercises: int, num_students: int) -> str:
    """DKT+ repo naming: ``naive_c5_q50_s4000_v1`` for the defaults."""
    return f"naive_c{num_concepts}_q{num_exercises}_s{num_students}_v1"


def bayes_filter(correct: np.ndarray, beta: np.ndarray, concepts: np.ndarray, num_concepts: int, *,
                 guess: float, gain_low: float, gain_high: float, alpha_grid_size: int = 101,
                 gain_grid_size: int = 8, alpha_range: float = 5.0, block: int = 1000) -> np.ndarray:
    """Posterior-predictive P(correct) per interaction, knowing everything but alpha and g.

    Args:
      correct: (S, J) 0/1 answers, all students answering exercises 0..J-1 in order.
      beta: (J,) difficulties; concepts: (J,) concept of each exercise in [0, num_concepts).
    Returns:
      (S, J) float64: prediction for step t given answers at steps < t.
    """
    num_students, num_steps = correct.shape
    alpha_grid = np.linspace(-alpha_range, alpha_range, alpha_grid_size)
    log_prior_alpha = -0.5 * alpha_grid ** 2
    log_prior_alpha -= logsumexp(log_prior_alpha)
    if gain_high > gain_low:  # midpoints of equal-width bins: a discretised uniform prior
        edges = np.linspace(gain_low, gain_high, gain_grid_size + 1)
        gain_grid = 0.5 * (edges[:-1] + edges[1:])
    else:
        gain_grid = np.array([gain_low])
    log_prior_gain = np.full(gain_grid.shape, -np.log(len(gain_grid)))
    exposures = np.zeros(num_concepts, np.int64)
    exposure_at = np.zeros(num_steps, np.int64)  # earlier attempts on the step's concept (same for all students)
    for t in range(num_steps):
        exposure_at[t] = exposures[concepts[t]]
        exposures[concepts[t]] += 1

    out = np.empty((num_students, num_steps), np.float64)
    for lo in tqdm(range(0, num_students, block), desc="Bayes filter", unit="block", disable=None):
        ans = correct[lo:lo + block]
        n = ans.shape[0]
        # log-likelihood of each concept's answers so far on the (alpha_0, g) grid, incl. the alpha prior.
        log_lik = np.broadcast_to(log_prior_alpha[None, None, :, None],
                                  (n, num_concepts, len(alpha_grid), len(gain_grid))).copy()
        # log evidence per concept and gain value: log sum_alpha prior * likelihood.
        log_evidence = np.zeros((n, num_concepts, len(gain_grid)))
        for t in range(num_steps):
            k = concepts[t]
            p_grid = guess + (1.0 - guess) * expit(alpha_grid[:, None] + exposure_at[t] * gain_grid[None, :]
                                                   - beta[t])  # (A, G)
            others = log_evidence.sum(axis=1) - log_evidence[:, k]  # (n, G)
            log_w = log_lik[:, k] + (others + log_prior_gain)[:, None, :]  # (n, A, G)
            log_w -= logsumexp(log_w, axis=(1, 2), keepdims=True)
            out[lo:lo + n, t] = np.einsum("nag,ag->n", np.exp(log_w), p_grid)
            obs = ans[:, t].astype(bool)[:, None, None]
            log_lik[:, k] += np.where(obs, np.log(p_grid)[None], np.log1p(-p_grid)[None])
            log_evidence[:, k] = logsumexp(log_lik[:, k], axis=1)
    return out


def next_step_auc(correct: np.ndarray, predictions: np.ndarray) -> float:
    """AUC over next-step targets (steps 1..T-1 of every student), as a DKT model is scored."""
    return float(roc_auc_score(correct[:, 1:].ravel(), predictions[:, 1:].ravel()))


def generate(out_dir: str, *, num_students: int = 4000, num_train: int = 2000, num_exercises: int = 50,
             num_concepts: int = 5, guess: float = 0.25, gain_low: float = 0.05, gain_high: float = 0.10,
             seed: int = 0, alpha_grid_size: int = 101, gain_grid_size: int = 8,
             trailing_comma: bool = True) -> dict[str, Any]:
    """Writes the Simulated-5 raw files into ``out_dir`` and returns a summary dict.

    The summary has the file paths, sizes, the mean correct rate and the AUCs over the test next-step targets
    (steps 1..T-1) of the oracle (``oracle_auc``), the Bayes filter (``bayes_auc``) and the per-exercise
    marginal estimated on train (``marginal_auc``). Same ``seed`` -> byte-identical files.
    """
    if not 0 < num_train < num_students:
        raise ValueError(f"num_train={num_train} must be in (0, num_students={num_students}).")
    if num_exercises < 2 or num_concepts < 1:
        raise ValueError("need num_exercises >= 2 and num_concepts >= 1.")
    if not (0.0 <= gain_low <= gain_high):
        raise ValueError(f"need 0 <= gain_low <= gain_high, got {gain_low}, {gain_high}.")
    rng = np.random.default_rng(seed)
    concepts = rng.permutation(np.arange(num_exercises) % num_concepts)
    beta = rng.normal(size=num_exercises)
    alpha = rng.normal(size=(num_students, num_concepts))
    gains = rng.uniform(gain_low, gain_high, size=num_students)
    uniforms = rng.uniform(size=(num_students, num_exercises))

    ability = alpha.copy()
    p_true = np.empty((num_students, num_exercises))
    for t in range(num_exercises):
        k = concepts[t]
        p_true[:, t] = guess + (1.0 - guess) * expit(ability[:, k] - beta[t])
        ability[:, k] += gains
    correct = (uniforms < p_true).astype(np.int32)
    p_bayes = bayes_filter(correct, beta, concepts, num_concepts, guess=guess, gain_low=gain_low,
                           gain_high=gain_high, alpha_grid_size=alpha_grid_size, gain_grid_size=gain_grid_size)
    # stored (and scored) as float32, as the builder serves them
    p_true, p_bayes = p_true.astype(np.float32), p_bayes.astype(np.float32)

    os.makedirs(out_dir, exist_ok=True)
    stem = file_stem(num_concepts, num_exercises, num_students)
    skill_ids = np.arange(1, num_exercises + 1)
    paths = {"train": os.path.join(out_dir, f"{stem}_train.csv"), "test": os.path.join(out_dir, f"{stem}_test.csv")}
    rows = {"train": np.arange(num_train), "test": np.arange(num_train, num_students)}
    for split, path in paths.items():
        write_three_line(path, ((skill_ids, correct[r]) for r in rows[split]), trailing_comma=trailing_comma)

    test = rows["test"]
    marginal = np.broadcast_to(correct[:num_train].mean(axis=0), (len(test), num_exercises))
    summary = {
        "files": {k: os.path.basename(v) for k, v in paths.items()},
        "num_students": num_students, "num_train": num_train, "num_test": num_students - num_train,
        "num_exercises": num_exercises, "num_concepts": num_concepts, "guess": guess,
        "gain_low": gain_low, "gain_high": gain_high, "seed": seed,
        "mean_correct": float(correct.mean()), "mean_p_true": float(p_true.mean()),
        "num_test_targets": int(len(test) * (num_exercises - 1)),
        "oracle_auc": next_step_auc(correct[test], p_true[test]),
        "bayes_auc": next_step_auc(correct[test], p_bayes[test]),
        "marginal_auc": next_step_auc(correct[test], marginal),
    }
    np.savez_compressed(
        os.path.join(out_dir, GROUND_TRUTH_FILE), p_true=p_true, p_bayes=p_bayes, correct=correct,
        skills=skill_ids.astype(np.int32), alpha=alpha, beta=beta, concepts=concepts, gains=gains,
        num_train=np.int64(num_train),
        guess=np.float64(guess), gain_range=np.array([gain_low, gain_high]))
    with open(os.path.join(out_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)
    summary["paths"] = {**paths, "ground_truth": os.path.join(out_dir, GROUND_TRUTH_FILE)}
    return summary
