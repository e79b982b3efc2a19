"""The decisive comparison: Nadeau-Bengio statistic by hand, model choice by inner score, the same outer splits
for every feature set and model, oracle features never reaching the other feature sets, the fitted BKT."""
from __future__ import annotations

import functools
import math

import ml_collections
import numpy as np
import pandas as pd
import pytest

from dkt_jax.stem import bkt, classifiers, classify, compare, evaluate, features


def test_corrected_resampled_ttest_by_hand():
    # J = 6 splits, n_train 80, n_test 20. mean 0.02; squared deviations sum 1e-3 -> s^2 = 2e-4;
    # corrected variance (1/6 + 20/80) * 2e-4 = 1/12000 -> se = 0.0091287, t = 0.02 * sqrt(12000) = 2.19089.
    d = [0.01, 0.03, 0.02, 0.04, 0.00, 0.02]
    r = compare.corrected_resampled_ttest(d, n_train=80, n_test=20)
    se = math.sqrt(1 / 12000)
    t = 0.02 / se
    assert r["delta_auc"] == pytest.approx(0.02)
    assert r["se"] == pytest.approx(se) and r["t"] == pytest.approx(t) and r["df"] == 5
    # t_{5, 0.975} = 2.570582 (table value): interval 0.02 ± 0.0234661.
    assert r["ci95"] == pytest.approx([0.02 - 2.570582 * se, 0.02 + 2.570582 * se], abs=1e-6)
    # Two-sided p from the closed-form Student t CDF for 5 degrees of freedom:
    # F(t) = 1/2 + (theta + sin(theta) cos(theta) (1 + 2/3 cos^2(theta))) / pi, theta = atan(t / sqrt(5)).
    theta = math.atan(t / math.sqrt(5))
    cdf = 0.5 + (theta + math.sin(theta) * math.cos(theta) * (1 + 2 / 3 * math.cos(theta) ** 2)) / math.pi
    assert r["p"] == pytest.approx(2 * (1 - cdf), rel=1e-6)
    # The correction widens the naive standard error sqrt(s^2 / J).
    assert r["naive_se"] == pytest.approx(math.sqrt(2e-4 / 6)) and r["se"] > r["naive_se"]
    assert compare.comparison_key("DKT+&SP", "SP") == "DKT+&SP \u2212 SP"


def test_model_choice_uses_inner_scores_only():
    scores = {"lr": [0.9, 0.1, 0.5], "lda": [0.2, 0.8, 0.6]}     # outer-test AUCs (must not drive the choice)
    inner = {"lr": [1.0, 1.2, None], "lda": [1.1, 1.0, 1.3]}     # inner-CV best scores
    sel, chosen = compare.select_per_split(scores, inner, ["lr", "lda"])
    assert chosen == ["lda", "lr", "lda"] and sel.tolist() == [0.2, 0.1, 0.6]
    sel, chosen = compare.select_per_split({"lr": [0.3], "lda": [0.9]}, {"lr": [1.0], "lda": [1.0]}, ["lr", "lda"])
    assert chosen == ["lr"]                                      # ties: config order


def _toy(n: int = 90, m: int = 4, seed: int = 0):
    """A labelled table, estimated states whose features are noise, and an oracle equal to the label."""
    rng = np.random.default_rng(seed)
    y = np.array([1] * (n // 3) + [0] * (n - n // 3))
    ids = np.arange(100, 100 + n)
    table = features.StudentTable(student_ids=ids, labels=y, sp=rng.normal(size=(n, 3)), sp_columns=["a", "b", "c"],
                                  skills=[np.zeros(2, np.int32)] * n, correct=[np.zeros(2, np.int32)] * n,
                                  ln=[np.zeros(2, np.float32)] * n)
    states = {k: pd.DataFrame({"student_id": ids, **{f"kt_{j}": rng.random(n) for j in range(m)}})
              for k in ("dkt", "dkt_plus", "bkt")}
    oracle = {"true_mastery": pd.DataFrame({"student_id": ids, **{f"true_{j}": y + 0.01 * rng.random(n)
                                                                  for j in range(m)}}),
              "true_latents": pd.DataFrame({"student_id": ids, "stem_mastery": y.astype(float),
                                            "learning_gain": rng.random(n)})}
    return table, states, oracle


def test_oracle_features_never_reach_other_feature_sets():
    table, states, oracle = _toy()
    for fs in features.FEATURE_SETS:
        x_without, names = features.feature_matrix(fs, table, states)
        x_with, names_with = features.feature_matrix(fs, table, states, oracle)
        np.testing.assert_array_equal(x_without, x_with)
        assert names == names_with and not any("oracle" in n or "true" in n for n in names)
    for fs in features.ORACLE_FEATURE_SETS:
        assert features.is_oracle(fs)
        x, names = features.feature_matrix(fs, table, states, oracle)
        assert any(n.startswith("oracle:") for n in names)
        with pytest.raises(ValueError, match="ground truth"):
            features.feature_matrix(fs, table, states)


def _cfg(**kw) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict({
        "feature_sets": ("SP", "DKT", "DKT+&SP", "BKT&SP"), "oracle_feature_sets": features.ORACLE_FEATURE_SETS,
        "models": ("lr", "lda"), "grid": "tiny", "outer_folds": 3, "outer_repeats": 2, "inner_folds": 2,
        "rfecv": False, "rfecv_step": 1, "rfecv_folds": 2, "rfecv_estimator": "lr", "cache": False,
        "n_jobs": 1, "seed": 4})
    cfg.update(kw)
    return cfg


def test_same_splits_for_every_cell_and_oracles_stay_apart(tmp_path):
    table, states, oracle = _toy()
    sub = features.StudentTable(student_ids=table.student_ids[:5], labels=-np.ones(5, int), sp=table.sp[:5],
                                sp_columns=table.sp_columns, skills=table.skills[:5], correct=table.correct[:5],
                                ln=table.ln[:5])
    out = classify.run_classification(_cfg(), table, sub, states, str(tmp_path), oracle=oracle)
    expected = evaluate.outer_splits(table.labels, 3, seed=4, repeats=2)
    assert len(expected) == 6
    for (fs, model), folds in out["folds"].items():
        assert [f.fold for f in folds] == list(range(6)), (fs, model)
        for f, (_, test) in zip(folds, expected):
            np.testing.assert_array_equal(np.sort(f.test_index), np.sort(test))
    sets = set(out["selected"]["feature_set"])
    assert {"SP", "DKT", "DKT+&SP", "BKT&SP", *features.ORACLE_FEATURE_SETS} <= sets
    sel = out["selected"].set_index("feature_set")["auc_mean"]
    # The oracle equals the label: a perfect ceiling; the noise feature sets that never see it stay near chance.
    assert sel["oracle:SP+true_mastery"] > 0.99 and sel["oracle:SP+true_latents"] > 0.99
    for fs in ("SP", "DKT", "DKT+&SP", "BKT&SP"):
        assert sel[fs] < 0.8, fs
    key = compare.comparison_key("DKT+&SP", "SP")
    assert set(out["comparison"][key]) >= {"delta_auc", "ci95", "p"} and len(out["comparison"][key]["ci95"]) == 2
    assert out["comparison"][compare.comparison_key("oracle:SP+true_mastery", "SP")]["oracle"]
    assert not features.is_oracle(out["best"][0])             # the submission never uses an oracle
    assert (tmp_path / "paired_differences.png").stat().st_size > 1000
    # Without ground truth there are no oracle rows.
    out2 = classify.run_classification(_cfg(), table, sub, states, str(tmp_path / "no_truth"), oracle=None)
    assert not any(features.is_oracle(fs) for fs in out2["selected"]["feature_set"])
    # Same inputs, same seed: the same numbers.
    pd.testing.assert_frame_equal(out["selected"][out2["selected"].columns].iloc[:len(out2["selected"])],
                                  out2["selected"])


def test_every_cell_failing_is_one_clear_error(tmp_path, monkeypatch):
    from dkt_jax.stem.errors import ClassificationError
    from launch.runtime import cli

    table, states, _ = _toy()
    # A grid sklearn refuses for every model (as `rfecv_step=1.0` did): every cell fails on every split.
    monkeypatch.setattr(classifiers, "pipeline_grid", lambda name, preset: {"model__no_such_param": [1]})
    run = functools.partial(classify.run_classification, _cfg(feature_sets=("SP",), models=("lr",)), table, table,
                            states, str(tmp_path))
    with pytest.raises(ClassificationError, match="no_such_param"):
        run()
    with pytest.raises(SystemExit, match=r"^launch.stem: error: every \(feature set, model\) cell failed"):
        cli.exit_on_user_error("launch.stem", run)


def _simulate_bkt(params: bkt.BKTParams, num_students: int, rng: np.random.Generator):
    m = len(params.prior)
    skills, correct = [], []
    for _ in range(num_students):
        n = int(rng.integers(20, 150))
        s = rng.integers(0, m, n)
        known = rng.random(m) < params.prior
        c = np.zeros(n, np.int64)
        for t, k in enumerate(s):
            c[t] = rng.random() < (1 - params.slip[k] if known[k] else params.guess[k])
            known[k] |= rng.random() < params.learn[k]
        skills.append(s)
        correct.append(c)
    return skills, correct


def test_bkt_em_recovers_parameters_and_final_mastery():
    true = bkt.BKTParams(prior=np.array([0.1, 0.4, 0.6]), learn=np.array([0.05, 0.15, 0.3]),
                         guess=np.array([0.1, 0.2, 0.25]), slip=np.array([0.05, 0.1, 0.15]))
    skills, correct = _simulate_bkt(true, 400, np.random.default_rng(0))
    fitted, history = bkt.fit_bkt(skills, correct, 3, num_iters=100, tol=1e-8)
    assert all(b >= a - 1e-6 for a, b in zip(history, history[1:]))      # EM never lowers the likelihood
    for name in ("prior", "learn", "guess", "slip"):
        np.testing.assert_allclose(getattr(fitted, name), getattr(true, name), atol=0.06, err_msg=name)
    # Final mastery by hand for one student with one practice of skill 0 (correct) and none of skills 1, 2:
    # posterior = p0 (1 - slip) / (p0 (1 - slip) + (1 - p0) guess), then the learning step.
    p = true
    m = bkt.bkt_final_mastery(p, [np.array([0])], [np.array([1])])
    post = p.prior[0] * (1 - p.slip[0]) / (p.prior[0] * (1 - p.slip[0]) + (1 - p.prior[0]) * p.guess[0])
    np.testing.assert_allclose(m[0], [post + (1 - post) * p.learn[0], p.prior[1], p.prior[2]])


def test_presets_and_config_validation():
    from launch import train_stem
    from launch.configs import stem_synthetic
    from launch.runtime.cli import ConfigError

    default, signal = stem_synthetic.get_config(), stem_synthetic.get_config("signal")
    assert default.export.state_feature == "final" and default.kt_models.dkt_plus.lambda_w2 == 3.0   # the paper
    assert signal.export.state_feature == "last_practice" and signal.kt_models.dkt_plus.lambda_w2 == 0.3
    for cfg in (default, signal):
        train_stem.validate_config(cfg)
    paper = stem_synthetic.get_config("paper")
    train_stem.validate_config(paper)
    # ml_collections keeps rfecv_step a float (1.0); sklearn's RFECV refuses 1.0, so every :paper fit failed
    # before make_pipeline turned a whole number into an int.
    assert isinstance(paper.sklearn.rfecv_step, float) and paper.sklearn.rfecv
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0.3).astype(int)
    pipe = classifiers.make_pipeline("lr", scorer=evaluate.make_stem_scorer(), seed=0, rfecv=True,
                                     rfecv_step=paper.sklearn.rfecv_step, rfecv_folds=3).fit(X, y)
    assert pipe.named_steps["select"].step == 1 and isinstance(pipe.named_steps["select"].step, int)
    bad_values = [("paper", "sklearn", "rfecv_step", 1.5, "rfecv_step"),
                  (None, "sklearn", "models", ("lr", "xgboost"), "unknown model"),
                  (None, "export", "state_feature", "median", "state_feature"),
                  (None, "sklearn", "feature_sets", ("SP", "DKT++"), "unknown feature set")]
    for preset, group, field, value, message in bad_values:
        bad = stem_synthetic.get_config(preset)
        bad[group][field] = value
        with pytest.raises(ConfigError, match=message):
            train_stem.validate_config(bad)
