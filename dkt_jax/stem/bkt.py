"""A small standard Bayesian Knowledge Tracing model (Corbett & Anderson 1995), the classic baseline of the
STEM comparison: per skill k the four parameters pL0 (initial mastery), pT (learn), guess, slip, no
forgetting, fitted by Baum-Welch EM on the ``kt_train`` students' (student, skill) practice sequences.

Vectorised over all (student, skill) sequences at once: the forward and backward passes loop over the
opportunity index (the n-th practice of a skill), not over students.

    params = fit_bkt(skills, correct, num_skills)          # lists of (T_i,) arrays
    mastery = bkt_final_mastery(params, skills, correct)    # (N, M) P(known) after the last practice
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class BKTParams:
    """Per-skill BKT parameters, each (M,)."""
    prior: np.ndarray   # pL0
    learn: np.ndarray   # pT
    guess: np.ndarray
    slip: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {k: np.asarray(v).round(5).tolist() for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class _Practice:
    """All actions flattened and grouped by (student, skill) sequence ("pair"), A actions, P pairs."""
    pair: np.ndarray         # (A,) pair index of each action
    opportunity: np.ndarray  # (A,) position of the action in its pair's sequence (0-based)
    skill: np.ndarray        # (A,) skill of each action
    correct: np.ndarray      # (A,) 0/1
    student: np.ndarray      # (A,) student row of each action
    levels: list[np.ndarray]  # levels[n]: action indices at opportunity n (one per pair that long)
    pair_skill: np.ndarray   # (P,)


def _practice(skills: Sequence[np.ndarray], correct: Sequence[np.ndarray], num_skills: int) -> _Practice:
    lengths = np.array([len(s) for s in skills], np.int64)
    skill = np.concatenate([np.asarray(s, np.int64) for s in skills]) if len(skills) else np.zeros(0, np.int64)
    resp = np.concatenate([np.asarray(c, np.int64) for c in correct]) if len(skills) else np.zeros(0, np.int64)
    student = np.repeat(np.arange(len(skills)), lengths)
    keep = (skill >= 0) & (skill < num_skills)
    skill, resp, student = skill[keep], resp[keep], student[keep]
    key = student * num_skills + skill
    pair_key, pair = np.unique(key, return_inverse=True)
    order = np.argsort(pair, kind="stable")               # time order within each pair is preserved
    opportunity = np.empty(len(pair), np.int64)
    counts = np.bincount(pair)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    opportunity[order] = np.arange(len(pair)) - np.repeat(starts, counts)
    by_level = np.argsort(opportunity, kind="stable")
    bounds = np.searchsorted(opportunity[by_level], np.arange(int(opportunity.max(initial=-1)) + 2))
    levels = [by_level[bounds[n]:bounds[n + 1]] for n in range(len(bounds) - 1)]
    return _Practice(pair=pair, opportunity=opportunity, skill=skill, correct=resp, student=student,
                     levels=levels, pair_skill=(pair_key % num_skills).astype(np.int64))


def _emission(p: BKTParams, skill: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(observation | known), P(observation | unknown), each (n,)."""
    right = correct == 1
    e_known = np.where(right, 1.0 - p.slip[skill], p.slip[skill])
    e_unknown = np.where(right, p.guess[skill], 1.0 - p.guess[skill])
    return e_known, e_unknown


def _forward(p: BKTParams, data: _Practice) -> tuple[np.ndarray, np.ndarray, float]:
    """Filtered P(known | obs up to t) per action (A,), P(known) before each action (A,), log-likelihood."""
    known = p.prior[data.pair_skill].astype(np.float64)       # P(known) before the next practice, per pair
    filtered, before = np.empty(len(data.pair)), np.empty(len(data.pair))
    loglik = 0.0
    for idx in data.levels:
        pr, sk = data.pair[idx], data.skill[idx]
        prev = known[pr]
        before[idx] = prev
        e_k, e_u = _emission(p, sk, data.correct[idx])
        num, den = prev * e_k, prev * e_k + (1.0 - prev) * e_u
        post = num / den
        loglik += float(np.log(den).sum())
        filtered[idx] = post
        known[pr] = post + (1.0 - post) * p.learn[sk]
    return filtered, before, loglik


def _em_step(p: BKTParams, data: _Practice, num_skills: int, max_guess_slip: float
             ) -> tuple[BKTParams, float]:
    filtered, _, loglik = _forward(p, data)
    gamma = np.empty(len(data.pair))                # P(known at t | all obs of the pair)
    xi_learn, xi_stay = np.zeros(len(data.pair)), np.zeros(len(data.pair))  # unknown->known / unknown->unknown
    g_k = np.ones(len(data.pair_skill))             # e_{t+1}(known) beta_{t+1}(known), scaled, per pair
    g_u = np.ones(len(data.pair_skill))
    has_next = np.zeros(len(data.pair_skill), bool)
    for idx in reversed(data.levels):
        pr, sk = data.pair[idx], data.skill[idx]
        t = p.learn[sk]
        a_k, a_u = filtered[idx], 1.0 - filtered[idx]
        b_k, b_u = g_k[pr], t * g_k[pr] + (1.0 - t) * g_u[pr]
        post = a_k * b_k / (a_k * b_k + a_u * b_u)
        gamma[idx] = post
        nxt = has_next[pr]
        x_l, x_s, x_kk = a_u * t * g_k[pr], a_u * (1.0 - t) * g_u[pr], a_k * g_k[pr]
        z = x_l + x_s + x_kk
        xi_learn[idx] = np.where(nxt, x_l / z, 0.0)
        xi_stay[idx] = np.where(nxt, x_s / z, 0.0)
        e_k, e_u = _emission(p, sk, data.correct[idx])
        nk, nu = e_k * b_k, e_u * b_u
        scale = nk + nu
        g_k[pr], g_u[pr], has_next[pr] = nk / scale, nu / scale, True
    m = num_skills

    def total(w: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        sk = data.skill if where is None else data.skill[where]
        return np.bincount(sk, w if where is None else w[where], minlength=m)

    first = data.levels[0] if data.levels else np.zeros(0, np.int64)
    n_pairs = np.bincount(data.skill[first], minlength=m)
    right = data.correct == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = total(gamma, first) / n_pairs
        learn = total(xi_learn) / (total(xi_learn) + total(xi_stay))
        guess = total((1.0 - gamma) * right) / total(1.0 - gamma)
        slip = total(gamma * ~right) / total(gamma)
    eps = 1e-4
    new = BKTParams(prior=np.clip(np.where(np.isfinite(prior), prior, p.prior), eps, 1 - eps),
                    learn=np.clip(np.where(np.isfinite(learn), learn, p.learn), eps, 1 - eps),
                    guess=np.clip(np.where(np.isfinite(guess), guess, p.guess), eps, max_guess_slip),
                    slip=np.clip(np.where(np.isfinite(slip), slip, p.slip), eps, max_guess_slip))
    return new, loglik


def fit_bkt(skills: Sequence[np.ndarray], correct: Sequence[np.ndarray], num_skills: int, *,
            num_iters: int = 30, tol: float = 1e-4, max_guess_slip: float = 0.3) -> tuple[BKTParams, list[float]]:
    """Baum-Welch EM of per-skill BKT parameters on the students' sequences.

    Args:
      skills, correct: per student (T_i,) int arrays (skill index in [0, num_skills), 0/1 response).
      max_guess_slip: the usual bound on guess and slip (avoids the degenerate "known = wrong" solution).
    Returns:
      (params, log-likelihood per iteration). Deterministic: EM starts from fixed values
      (pL0 0.3, pT 0.1, guess 0.2, slip 0.1).
    """
    data = _practice(skills, correct, num_skills)
    full = lambda v: np.full(num_skills, v, np.float64)  # noqa: E731
    params = BKTParams(prior=full(0.3), learn=full(0.1), guess=full(0.2), slip=full(0.1))
    history: list[float] = []
    for _ in range(num_iters):
        params, loglik = _em_step(params, data, num_skills, max_guess_slip)
        history.append(loglik)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * abs(history[-2]):
            break
    return params, history


def bkt_final_mastery(params: BKTParams, skills: Sequence[np.ndarray], correct: Sequence[np.ndarray]
                      ) -> np.ndarray:
    """(N, M) BKT P(known) after each student's last practice of each skill (including the learning step,
    as the ``Ln`` column of the release); never-practised skills keep the skill's prior pL0."""
    m = len(params.prior)
    data = _practice(skills, correct, m)
    filtered, _, _ = _forward(params, data)
    after = filtered + (1.0 - filtered) * params.learn[data.skill]
    out = np.tile(params.prior, (len(skills), 1))
    is_last = data.opportunity == np.bincount(data.pair)[data.pair] - 1     # one action per pair
    out[data.student[is_last], data.skill[is_last]] = after[is_last]
    return out
