"""DKT+ losses against a deliberately naive loop, and the §2.6 metrics on hand-made cases."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dkt_jax import losses, metrics


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def naive_loss(logits, skills, correct, lengths, lr, lw1, lw2):
    """Formulas of dkt_spec §1.4/§2.1-2.4 with pyKT masking, one interaction at a time."""
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    m = probs.shape[-1]
    nxt, cur, w1, w2 = [], [], [], []
    for b, length in enumerate(lengths):
        for t in range(length - 1):  # outputs 0..L-2
            nxt.append(_bce(probs[b, t, skills[b, t + 1]], correct[b, t + 1]))
            cur.append(_bce(probs[b, t, skills[b, t]], correct[b, t]))
            if t >= 1:
                d = [probs[b, t, k] - probs[b, t - 1, k] for k in range(m)]
                w1.append(sum(abs(x) for x in d) / m)
                w2.append(sum(x * x for x in d) / m)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    total = mean(nxt) + lr * mean(cur) + lw1 * mean(w1) + lw2 * mean(w2)
    return total, {"bce_next": mean(nxt), "bce_curr": mean(cur), "w1": mean(w1), "w2": mean(w2)}


def _random_batch(seed, b=4, t=9, m=5):
    rng = np.random.default_rng(seed)
    lengths = np.array([t, 1, 2, 6][:b])
    skills = rng.integers(0, m, (b, t))
    correct = rng.integers(0, 2, (b, t))
    for i, n in enumerate(lengths):  # garbage in the padding must not matter
        skills[i, n:] = -1
        correct[i, n:] = 7
    logits = rng.normal(size=(b, t, m)) * 2
    return logits, skills, correct, lengths


@pytest.mark.parametrize("lams", [(0.0, 0.0, 0.0), (0.1, 0.03, 3.0), (0.25, 1.0, 30.0)])
def test_loss_matches_naive_loop(lams):
    logits, skills, correct, lengths = _random_batch(0)
    total, means = losses.dkt_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(skills), jnp.asarray(correct),
                                   jnp.asarray(lengths), *lams)
    want_total, want = naive_loss(logits, skills, correct, lengths, *lams)
    np.testing.assert_allclose(float(total), want_total, rtol=2e-5)
    for k in want:
        np.testing.assert_allclose(float(means[k]), want[k], rtol=2e-5, atol=1e-7)


def test_dkt_is_zero_lambda_case_and_regularisers_change_loss():
    logits, skills, correct, lengths = [jnp.asarray(x) for x in _random_batch(1)]
    dkt, means = losses.dkt_loss(logits, skills, correct, lengths)
    assert float(dkt) == pytest.approx(float(means["bce_next"]))
    plus, _ = losses.dkt_loss(logits, skills, correct, lengths, 0.1, 0.03, 3.0)
    assert float(plus) > float(dkt)


def test_padding_is_ignored():
    logits, skills, correct, lengths = _random_batch(2)
    base, _ = losses.dkt_loss(jnp.asarray(logits), jnp.asarray(skills), jnp.asarray(correct), jnp.asarray(lengths),
                              0.1, 0.1, 1.0)
    logits2 = logits.copy()
    for i, n in enumerate(lengths):
        logits2[i, n:] = 99.0  # anything past the end
    other, _ = losses.dkt_loss(jnp.asarray(logits2), jnp.asarray(skills), jnp.asarray(correct),
                               jnp.asarray(lengths), 0.1, 0.1, 1.0)
    assert float(other) == pytest.approx(float(base), rel=1e-6)


def _stats(probs, skills, correct, lengths, m):
    acc = metrics.MetricAccumulator(m)
    acc.add(metrics.batch_statistics(jnp.asarray(probs, jnp.float32), jnp.asarray(skills), jnp.asarray(correct),
                                     jnp.asarray(lengths)))
    return acc.result()


def test_metrics_hand_case():
    # one student, M=2, L=3: answers (q,a) = (0,1), (1,0), (0,1)
    probs = np.array([[[0.6, 0.5], [0.7, 0.3], [0.8, 0.4]]])
    skills, correct, lengths = np.array([[0, 1, 0]]), np.array([[1, 0, 1]]), np.array([3])
    r = _stats(probs, skills, correct, lengths, 2)
    # AUC(N): y_0[q1]=0.5 vs a1=0 ; y_1[q2]=0.7 vs a2=1 -> perfectly ranked
    assert r["auc_n"] == pytest.approx(1.0)
    # AUC(C): y_0[q0]=0.6 vs 1 ; y_1[q1]=0.3 vs 0 -> 1.0
    assert r["auc_c"] == pytest.approx(1.0)
    # w1 = (|.1|+|-.2| + |.1|+|.1|) / (M * N) with N = L-1 = 2
    assert r["w1"] == pytest.approx(0.5 / 4, rel=1e-5)
    assert r["w2"] == pytest.approx(math.sqrt((0.01 + 0.04 + 0.01 + 0.01) / 4), rel=1e-5)
    # t=1: q=1, a=0 (s=-1), D=(0.3-0.5)=-0.2 -> +1, +0.2 ; t=2: q=0, a=1, D=0.8-0.7=0.1 -> +1, +0.1
    assert r["m1"] == pytest.approx(2 / 2)
    assert r["m2"] == pytest.approx(0.3 / 2, rel=1e-5)
    assert r["num_targets"] == 2


def test_metrics_pool_over_students_and_batches():
    rng = np.random.default_rng(3)
    b, t, m = 5, 7, 4
    probs = rng.uniform(0.05, 0.95, (b, t, m))
    skills = rng.integers(0, m, (b, t))
    correct = rng.integers(0, 2, (b, t))
    lengths = np.array([7, 3, 1, 5, 2])
    whole = _stats(probs, skills, correct, lengths, m)
    acc = metrics.MetricAccumulator(m)
    for sl in (slice(0, 2), slice(2, 5)):
        acc.add(metrics.batch_statistics(jnp.asarray(probs[sl], jnp.float32), jnp.asarray(skills[sl]),
                                         jnp.asarray(correct[sl]), jnp.asarray(lengths[sl])))
    split = acc.result()
    for k in metrics.METRIC_NAMES:
        assert split[k] == pytest.approx(whole[k], rel=1e-6)
    # pooled AUC(N) computed by hand with sklearn
    ys, ps = [], []
    for i in range(b):
        for s in range(lengths[i] - 1):
            ys.append(correct[i, s + 1])
            ps.append(probs[i, s, skills[i, s + 1]])
    assert whole["auc_n"] == pytest.approx(roc_auc_score(ys, ps), rel=1e-6)
    assert whole["num_targets"] == int((lengths - 1).clip(0).sum())


def test_constant_predictions_have_zero_waviness_and_consistency():
    probs = np.full((2, 4, 3), 0.4)
    r = _stats(probs, np.zeros((2, 4), int), np.array([[1, 0, 1, 1], [0, 0, 1, 0]]), np.array([4, 4]), 3)
    assert r["w1"] == 0 and r["w2"] == 0 and r["m1"] == 0 and r["m2"] == 0
    assert r["auc_n"] == pytest.approx(0.5)


def test_single_class_auc_is_nan_not_an_exception():
    assert math.isnan(metrics.roc_auc(np.ones(4), np.linspace(0, 1, 4)))


def test_loss_jit_and_grad_finite():
    logits, skills, correct, lengths = [jnp.asarray(x) for x in _random_batch(4)]
    g = jax.jit(jax.grad(lambda z: losses.dkt_loss(z, skills, correct, lengths, 0.1, 0.3, 3.0)[0]))(
        logits.astype(jnp.float32))
    assert np.isfinite(np.asarray(g)).all()
    # no gradient reaches padded positions
    for i, n in enumerate(np.asarray(lengths)):
        assert np.all(np.asarray(g)[i, max(n - 1, 0):] == 0)
