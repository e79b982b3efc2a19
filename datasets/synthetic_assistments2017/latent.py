"""Planted latent model of the synthetic ASSISTments 2017 clickstream (pure numpy, vectorised).

Per student s: general ability theta_s, a math/STEM aptitude phi_s and a learning-rate factor rho_s, all N(0, 1).
Per skill k: difficulty a_k, learn rate t_k, guess g_k, slip sl_k; a subset of "STEM skills".

* initial mastery m0[s,k] = sigmoid(a_k + theta_s) for other skills and sigmoid(a_k + 1.5 phi_s) for
  STEM skills (so per-skill knowledge states separate phi from theta, which the SP averages mix)
* per-practice transition T[s,k] = sigmoid(t_k + 0.6 rho_s)
* mastery before the n-th practice (BKT marginal): m = 1 - (1 - m0) (1 - T)^n
* P(correct) = g_k + (1 - g_k - sl_k) m
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import expit


@dataclasses.dataclass(frozen=True)
class SkillParams:
    """Per-skill parameters, each (K,)."""

    difficulty: np.ndarray
    learn_logit: np.ndarray
    guess: np.ndarray
    slip: np.ndarray
    is_stem: np.ndarray  # bool
    popularity: np.ndarray  # sampling weights of practice segments, sums to 1


@dataclasses.dataclass(frozen=True)
class StudentParams:
    """Per-student latent factors, each (S,)."""

    theta: np.ndarray
    phi: np.ndarray
    rho: np.ndarray


def draw_skills(rng: np.random.Generator, num_skills: int, num_stem_skills: int) -> SkillParams:
    """Skill 0 is ``noskill``; STEM skills are drawn among the 40 most practised named skills."""
    rank = rng.permutation(num_skills)
    popularity = 1.0 / (rank + 4.0) ** 0.9
    popularity /= popularity.sum()
    named_by_popularity = [k for k in np.argsort(-popularity) if k != 0][:max(num_stem_skills, 40)]
    is_stem = np.zeros(num_skills, bool)
    is_stem[rng.choice(named_by_popularity, size=min(num_stem_skills, len(named_by_popularity)), replace=False)] = True
    return SkillParams(difficulty=rng.normal(-2.9, 0.8, num_skills),
                       learn_logit=rng.normal(np.log(0.03 / 0.97), 0.4, num_skills),
                       guess=rng.uniform(0.05, 0.25, num_skills), slip=rng.uniform(0.05, 0.15, num_skills),
                       is_stem=is_stem, popularity=popularity)


def draw_students(rng: np.random.Generator, num_students: int) -> StudentParams:
    return StudentParams(theta=rng.normal(size=num_students), phi=rng.normal(size=num_students),
                         rho=rng.normal(size=num_students))


def initial_mastery(skills: SkillParams, students: StudentParams) -> np.ndarray:
    """(S, K) mastery before any practice."""
    stem = skills.is_stem[None, :]
    return expit(skills.difficulty[None, :] + np.where(stem, 0.0, 1.0) * students.theta[:, None]
                 + 1.5 * stem * students.phi[:, None])


def transition(skills: SkillParams, students: StudentParams) -> np.ndarray:
    """(S, K) probability of learning a skill at each practice."""
    return expit(skills.learn_logit[None, :] + 0.6 * students.rho[:, None])


def mastery_after(m0: np.ndarray, learn: np.ndarray, practices: np.ndarray) -> np.ndarray:
    """Mastery after ``practices`` opportunities (broadcasting)."""
    return 1.0 - (1.0 - m0) * (1.0 - learn) ** practices


def p_correct(skills: SkillParams, skill: np.ndarray, mastery: np.ndarray) -> np.ndarray:
    """P(correct) of actions on ``skill`` (N,) at latent ``mastery`` (N,)."""
    g, sl = skills.guess[skill], skills.slip[skill]
    return g + (1.0 - g - sl) * mastery


def bkt_detector(correct: np.ndarray, pair: np.ndarray, opportunity: np.ndarray, skill: np.ndarray,
                 prior: np.ndarray, learn: np.ndarray, guess: np.ndarray, slip: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Standard BKT knowledge estimate per action, as the release's ``Ln-1`` (before) and ``Ln`` (after).

    ``pair`` (N,) indexes the (student, skill) sequence of each action and ``opportunity`` (N,) its position there;
    ``prior``/``learn``/``guess``/``slip`` are per-skill (K,) detector parameters. Loops over opportunity levels only.
    """
    num_pairs = int(pair.max()) + 1 if len(pair) else 0
    pair_skill = np.zeros(num_pairs, np.int64)
    pair_skill[pair] = skill
    know = prior[pair_skill].astype(np.float64)
    before, after = np.empty(len(pair)), np.empty(len(pair))
    order = np.argsort(opportunity, kind="stable")
    bounds = np.searchsorted(opportunity[order], np.arange(int(opportunity.max(initial=0)) + 2))
    for level in range(len(bounds) - 1):
        idx = order[bounds[level]:bounds[level + 1]]
        p, k = pair[idx], skill[idx]
        prev = know[p]
        before[idx] = prev
        right = correct[idx] == 1
        num = np.where(right, prev * (1 - slip[k]), prev * slip[k])
        den = num + np.where(right, (1 - prev) * guess[k], (1 - prev) * (1 - guess[k]))
        post = num / den
        know[p] = post + (1 - post) * learn[k]
        after[idx] = know[p]
    return before, after
