"""Action-level columns of the synthetic clickstream, computed with vectorised numpy / pandas group ops.

Actions are stored student after student (contiguous), in time order inside a student; ``pos`` is the position
inside the student's sequence. Columns follow the release schema (dkt_spec §5.3); their definitions here are
plausible reconstructions (the official column dictionary is not available), consistent among themselves:
e.g. ``endTime - startTime == timeTaken``, ``hint == 1`` implies ``correct == 0``, ``scaffold == 1 - original``,
student-level ``Ave*`` columns are the means of the student's action-level values.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

AFFECTS = {  # release column -> (student-level Beta(a, b) of its mean, confidence column)
    "RES_BORED": ((5, 15), "confidence(BORED)"),
    "RES_CONCENTRATING": ((13, 7), "confidence(CONCENTRATING)"),
    "RES_CONFUSED": ((2, 18), "confidence(CONFUSED)"),
    "RES_FRUSTRATED": ((2, 18), "confidence(FRUSTRATED)"),
    "RES_GAMING": ((3, 17), "confidence(GAMING)"),
    "RES_OFFTASK": ((4, 16), "confidence(OFF TASK)"),
}
AVE_OF_AFFECT = {"RES_BORED": "AveResBored", "RES_CONCENTRATING": "AveResEngcon", "RES_CONFUSED": "AveResConf",
                 "RES_FRUSTRATED": "AveResFrust", "RES_GAMING": "AveResGaming", "RES_OFFTASK": "AveResOfftask"}
PROBLEM_TYPES = np.array(["algebra", "choose_1", "textfieldquestion", "choose_n", "fill_in_1"])
INTEGER_COLUMNS = (
    "frPast5HelpRequest", "frPast8HelpRequest", "frPast5WrongCount", "frPast8WrongCount", "prev5count", "Prev5count",
    "past8BottomOut", "consecutiveErrorsInRow", "sumRight", "totalFrSkillOpportunities", "totalFrPastWrongCount",
    "totalFrSkillOpportunitiesByScaffolding", "frTotalSkillOpportunitiesScaffolding", "totalFrTimeOnSkill",
    "sumTimePerSkill", "timeSinceSkill")
SCHOOL_YEARS = np.array(["2004-2005", "2005-2006", "2006-2007"])
YEAR_START_EPOCH = {"2004-2005": 1094169600, "2005-2006": 1125878400, "2006-2007": 1157414400}  # Sep 1st


def past_window_sum(x: np.ndarray, pos: np.ndarray, window: int | None) -> np.ndarray:
    """Sum of ``x`` over the previous ``window`` actions of the same student (all previous if None)."""
    cs = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    i = np.arange(len(x))
    lo = i - (pos if window is None else np.minimum(pos, window))
    return cs[i] - cs[lo]


def group_prior_sum(x: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Sum of ``x`` over earlier actions with the same ``key`` (actions in time order)."""
    s = pd.Series(x, dtype=np.float64)
    return (s.groupby(key, sort=False).cumsum() - s).to_numpy()


def consecutive_errors_before(correct: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Number of wrong answers in a row immediately before each action (same student)."""
    i = np.arange(len(correct))
    last_right = np.maximum.accumulate(np.where(correct == 1, i, -1))
    prev_right = np.concatenate([[-1], last_right[:-1]])
    prev_right = np.maximum(prev_right, i - pos - 1)
    return i - 1 - prev_right


def action_columns(rng: np.random.Generator, *, sidx: np.ndarray, pos: np.ndarray, lengths: np.ndarray,
                   skill: np.ndarray, segment: np.ndarray, correct: np.ndarray, num_problems: int,
                   popularity: np.ndarray) -> dict[str, np.ndarray]:
    """All action-level columns except the skill name, ITEST_id, Ln/Ln-1 and student-level averages."""
    n, num_students, num_skills = len(sidx), len(lengths), len(popularity)
    first = pos == 0
    same_segment_as_prev = np.concatenate([[False], segment[1:] == segment[:-1]]) & ~first
    prev_correct = np.concatenate([[1], correct[:-1]])
    original = ~(same_segment_as_prev & (prev_correct == 0) & (rng.random(n) < 0.6))
    original = original.astype(np.int64)

    pool = np.maximum(3, np.round(popularity * num_problems)).astype(np.int64)  # problems per skill
    base = 100000 + np.concatenate([[0], np.cumsum(pool)[:-1]])
    problem = base[skill] + (rng.random(n) * pool[skill]).astype(np.int64)
    problem_rng = np.random.default_rng(rng.integers(2 ** 32))
    num_ids = int(base[-1] + pool[-1] - 100000)
    problem_hints = problem_rng.integers(0, 5, num_ids)
    problem_type = PROBLEM_TYPES[problem_rng.choice(len(PROBLEM_TYPES), num_ids, p=[.35, .25, .2, .1, .1])]
    ends_scaffolding = problem_rng.random(num_ids) < 0.3
    ends_auto = ends_scaffolding & (problem_rng.random(num_ids) < 0.3)
    pid = problem - 100000

    wrong = 1 - correct
    hint_total = problem_hints[pid]
    hint = (wrong == 1) & (hint_total > 0) & (rng.random(n) < 0.35)
    hint_count = np.where(hint, np.minimum(hint_total, 1 + rng.poisson(0.8, n)), 0)
    bottom_hint = hint & (hint_count == hint_total)
    attempts = np.where(correct == 1, 1, 1 + rng.poisson(1.2, n))
    time_taken = np.maximum(1, np.round(rng.lognormal(np.log(22.0), 0.9, n) * np.where(correct == 1, 1.0, 1.4)))

    # times: consecutive actions of a segment seconds apart, segments days apart; all integer seconds.
    gap = np.where(same_segment_as_prev, 1 + rng.exponential(12.0, n), 3600 + rng.exponential(2 * 86400.0, n))
    gap = np.round(gap)
    gap[first] = 0
    delta = gap + np.concatenate([[0.0], time_taken[:-1]]) * ~first
    year = SCHOOL_YEARS[rng.integers(0, len(SCHOOL_YEARS), num_students)]
    epoch0 = np.array([YEAR_START_EPOCH[y] for y in year]) + np.round(rng.uniform(0, 120 * 86400, num_students))
    start = (epoch0[sidx] + past_window_sum(delta, pos, None) + delta).astype(np.int64)
    end = start + time_taken.astype(np.int64)
    order = np.lexsort((sidx, start))
    action_id = np.empty(n, np.int64)
    action_id[order] = 1000 + np.arange(n) * 3 + rng.integers(0, 3, n)[order]  # increasing in time

    skill_key = sidx.astype(np.int64) * num_skills + skill
    prior_opps = group_prior_sum(np.ones(n), skill_key)
    prior_wrong_skill = group_prior_sum(wrong, skill_key)
    prior_time_skill = group_prior_sum(time_taken, skill_key)
    scaffold = 1 - original
    prev_end_skill = pd.Series(end).groupby(skill_key, sort=False).shift(1).to_numpy()
    next_correct = np.concatenate([correct[1:], [0]]) * np.concatenate([pos[1:] != 0, [False]])
    prev2_wrong = past_window_sum(wrong, pos, 2) == 2
    past5_wrong = past_window_sum(wrong, pos, 5)
    past8_wrong = past_window_sum(wrong, pos, 8)
    pct_wrong = np.divide(prior_wrong_skill, prior_opps, out=np.zeros(n), where=prior_opps > 0)
    run3_right = past_window_sum(correct, pos, 3) == 3
    in_school = (((start // 3600) % 24) >= 12) & (((start // 3600) % 24) <= 20)  # 8:00-16:00 EST as UTC hours

    cols: dict[str, np.ndarray] = {
        "actionId": action_id, "assignmentId": 200000 + segment, "assistmentId": 30000 + pid // 2,
        "problemId": problem, "problemType": problem_type[pid], "original": original, "scaffold": scaffold,
        "correct": correct.astype(np.int64), "attemptCount": attempts, "hint": hint.astype(np.int64),
        "hintCount": hint_count, "hintTotal": hint_total, "bottomHint": bottom_hint.astype(np.int64),
        "startTime": start, "endTime": end, "timeTaken": time_taken,
        "endsWithScaffolding": ends_scaffolding[pid].astype(np.int64),
        "endsWithAutoScaffolding": ends_auto[pid].astype(np.int64),
        "responseIsFillIn": np.isin(problem_type[pid], ["algebra", "textfieldquestion", "fill_in_1"]).astype(np.int64),
        "responseIsChosen": np.isin(problem_type[pid], ["choose_1", "choose_n"]).astype(np.int64),
        "frIsHelpRequest": hint.astype(np.int64),
        "frIsHelpRequestScaffolding": (hint & (scaffold == 1)).astype(np.int64),
        "stlHintUsed": (hint_count > 1).astype(np.int64),
        "helpAccessUnder2Sec": (hint & (time_taken <= 2)).astype(np.int64),
        "frPast5HelpRequest": past_window_sum(hint, pos, 5), "frPast8HelpRequest": past_window_sum(hint, pos, 8),
        "frPast5WrongCount": past5_wrong, "frPast8WrongCount": past8_wrong, "prev5count": past5_wrong,
        "Prev5count": past_window_sum(hint, pos, 5) + past5_wrong,
        "past8BottomOut": past_window_sum(bottom_hint, pos, 8), "manywrong": (past8_wrong >= 5).astype(np.int64),
        "consecutiveErrorsInRow": consecutive_errors_before(correct, pos),
        "sumRight": past_window_sum(correct, pos, None),
        "totalFrAttempted": pos.astype(np.int64), "totalFrSkillOpportunities": prior_opps,
        "totalFrPastWrongCount": prior_wrong_skill, "totalFrPercentPastWrong": pct_wrong,
        "totalFrSkillOpportunitiesByScaffolding": group_prior_sum(scaffold, skill_key),
        "frTotalSkillOpportunitiesScaffolding": group_prior_sum(scaffold, skill_key),
        "totalFrTimeOnSkill": prior_time_skill, "sumTimePerSkill": prior_time_skill + time_taken,
        "frTimeTakenOnScaffolding": time_taken * scaffold,
        "timeSinceSkill": np.nan_to_num(start - prev_end_skill, nan=0.0),
        "timeOver80": (time_taken > 80).astype(np.int64),
        "timeGreater10SecAndNextActionRight": ((time_taken > 10) & (next_correct == 1)).astype(np.int64),
        "timeGreater5Secprev2wrong": ((time_taken > 5) & prev2_wrong).astype(np.int64),
        "sumTime3SDWhen3RowRight": np.where(run3_right, time_taken, 0.0),
        "totalTimeByPercentCorrectForskill": prior_time_skill / np.maximum(1.0 - pct_wrong, 0.05),
        "frWorkingInSchool": in_school.astype(np.int64),
        "SY ASSISTments Usage": year[sidx],
    }
    for column in INTEGER_COLUMNS:
        cols[column] = np.asarray(cols[column]).astype(np.int64)
    for column, ((a, b), confidence) in AFFECTS.items():
        level = rng.beta(a, b, num_students)[sidx]
        value = np.clip(level + rng.normal(0, 0.08, n), 0.0, 1.0)
        cols[column] = value
        cols[confidence] = np.clip(value + rng.normal(0, 0.05, n), 0.0, 1.0)
    return cols
