"""STEM analyses: NLG, BKT last-Ln mastery, per-skill correlations, Welch comparisons (hand computations)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dkt_jax.stem import analyses


def test_nlg_by_hand():
    traj = np.array([0.2] * 10 + [0.5] * 10)
    # 10-step moving average: first window mean 0.2, last 0.5 -> (0.5 - 0.2) / (1 - 0.2)
    assert analyses.normalized_learning_gain(traj, 10) == pytest.approx(0.3 / 0.8)
    short = np.array([0.1, 0.3, 0.5])          # shorter than the window: one value, gain 0
    assert analyses.normalized_learning_gain(short, 10) == pytest.approx(0.0)
    ramp = np.linspace(0, 1, 30)
    ma = np.convolve(ramp, np.ones(10) / 10, mode="valid")
    assert analyses.normalized_learning_gain(ramp, 10) == pytest.approx((ma[-1] - ma[0]) / (1 - ma[0]))


def test_nlg_analysis_and_welch_match_scipy():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 20 + [0] * 40)
    trajs = [np.clip(0.3 + (0.02 if y else 0.005) * np.arange(40) + 0.01 * rng.normal(size=40), 0, 0.99)
             for y in labels]
    out = analyses.nlg_analysis(trajs, labels, window=10)
    nlg = np.array([analyses.normalized_learning_gain(t, 10) for t in trajs])
    t, p = stats.ttest_ind(nlg[labels == 1], nlg[labels == 0], equal_var=False)
    assert out["welch_t"] == pytest.approx(t) and out["welch_p"] == pytest.approx(p)
    assert out["stem_mean"] > out["non_stem_mean"] and out["cohens_d"] > 1
    pre, post = out["pre"][labels == 1].mean(), out["post"][labels == 1].mean()
    assert out["stem_group_nlg"] == pytest.approx((post - pre) / (1 - pre))


def test_bkt_last_ln_with_row_mean_fill():
    skills = [np.array([0, 1, 0, 2]), np.array([1, 1])]
    ln = [np.array([0.1, 0.4, 0.3, 0.9]), np.array([0.2, 0.6])]
    got = analyses.bkt_final_mastery(skills, ln, 4)
    np.testing.assert_allclose(got[0], [0.3, 0.4, 0.9, (0.3 + 0.4 + 0.9) / 3])
    np.testing.assert_allclose(got[1], [0.6, 0.6, 0.6, 0.6])


def test_pearson_per_column_matches_scipy_and_handles_constants():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    x = np.stack([y + rng.normal(size=50), rng.normal(size=50), np.full(50, 0.3)], axis=1)
    r = analyses.pearson_per_column(x, y)
    assert r[0] == pytest.approx(stats.pearsonr(x[:, 0], y)[0])
    assert r[1] == pytest.approx(stats.pearsonr(x[:, 1], y)[0])
    assert np.isnan(r[2])
    summary = analyses.correlation_summary(r)
    assert summary["n"] == 2


def test_plots_are_written(tmp_path):
    labels = np.array([1, 0, 1, 0, 0, 0])
    out = analyses.nlg_analysis([np.linspace(0.2, 0.2 + 0.1 * k, 12) for k in range(6)], labels)
    p1 = analyses.plot_nlg(out, labels, str(tmp_path / "nlg.png"))
    p2 = analyses.plot_correlation_heatmap({"A": np.array([0.1, -0.2, np.nan])}, str(tmp_path / "h.png"))
    for p in (p1, p2):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
