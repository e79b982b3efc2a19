"""Packed training rows (several students per row, LSTM state reset per student): the loss, its gradients and
every metric equal the unpacked computation; nothing crosses a student boundary; the packing is deterministic
and its grain iterator resumes exactly; knowledge-state export of long students stays exact."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dkt_jax
from dkt_jax import input_pipeline as ip
from dkt_jax import losses, metrics, train_steps
from dkt_jax.lstm import masked_lstm
from launch import train_dkt
from launch.configs import dkt_tiny

M = 5
LAMBDAS = {"r": 0.1, "w1": 0.3, "w2": 3.0}


def _seqs(lengths=(3, 7, 12, 4, 9, 5, 2, 6, 11, 3), seed=0) -> ip.Sequences:
    rng = np.random.default_rng(seed)
    return ip.read_sequences([{"skills": rng.integers(0, M, n), "correct": rng.integers(0, 2, n)} for n in lengths],
                             num_skills=M)


def _model_and_params(hidden=8):
    cfg = dkt_tiny.get_config()
    cfg.model.num_skills, cfg.model.hidden_size, cfg.model.dropout_rate = M, hidden, 0.0
    return dkt_jax.model_from_config(cfg.model), dkt_jax.init(jax.random.key(0), cfg.model)


def _as_batch(table) -> dict:
    keys = ("skills", "correct", "lengths") + (("segments",) if isinstance(table, ip.PackedTable) else ())
    return {k: getattr(table, k) for k in keys}


def test_pack_chunks_keeps_every_chunk_once_and_is_deterministic():
    chunks = ip.make_chunks(_seqs(), max_len=8, min_len=2)
    packed = ip.pack_chunks(chunks, seed=0)
    assert len(packed) < len(chunks) and packed.skills.shape[1] == chunks.skills.shape[1]
    assert packed.lengths.sum() == chunks.lengths.sum()
    assert ip.fill_ratio(packed) > ip.fill_ratio(chunks)
    # every chunk appears exactly once, contiguous, as one segment
    original = sorted((tuple(chunks.skills[i, :n]), tuple(chunks.correct[i, :n]))
                      for i, n in enumerate(chunks.lengths))
    found = []
    for r in range(len(packed)):
        seg = packed.segments[r]
        n = packed.lengths[r]
        assert (seg[:n] > 0).all() and (seg[n:] == 0).all() and (np.diff(seg[:n]) >= 0).all()
        for k in range(1, seg.max() + 1):
            sel = seg == k
            found.append((tuple(packed.skills[r, sel]), tuple(packed.correct[r, sel])))
    assert sorted(found) == original
    again = ip.pack_chunks(chunks, seed=0)
    for k in ("skills", "correct", "segments", "lengths"):
        np.testing.assert_array_equal(getattr(again, k), getattr(packed, k))


@pytest.mark.parametrize("lambdas", [{"r": 0.0, "w1": 0.0, "w2": 0.0}, LAMBDAS])
def test_packed_loss_and_gradients_equal_unpacked(lambdas):
    model, params = _model_and_params()
    chunks = ip.make_chunks(_seqs(), max_len=8, min_len=2)
    packed = ip.pack_chunks(chunks, seed=1)
    grad_fn = jax.jit(jax.value_and_grad(functools.partial(train_steps.loss_fn, model=model, lambdas=lambdas),
                                         has_aux=True))
    key = jax.random.key(3)
    (loss_u, means_u), grads_u = grad_fn(params, _as_batch(chunks), key)
    (loss_p, means_p), grads_p = grad_fn(params, _as_batch(packed), key)
    np.testing.assert_allclose(float(loss_p), float(loss_u), rtol=1e-6)
    for k in means_u:
        np.testing.assert_allclose(float(means_p[k]), float(means_u[k]), rtol=1e-5, atol=1e-9)
    for gu, gp in zip(jax.tree.leaves(grads_u), jax.tree.leaves(grads_p)):
        np.testing.assert_allclose(np.asarray(gp), np.asarray(gu), rtol=1e-4, atol=1e-7)


def test_regularisers_never_cross_a_student_boundary():
    """Two students in one row: the boundary pair has a huge jump in the logits, which must not count."""
    t = 8
    skills = np.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    correct = np.array([[1, 0, 1, 1, 0, 0, 1, 1]])
    segments = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    logits = np.random.default_rng(0).normal(size=(1, t, M)) * 0.1
    logits[0, 4:] += 20.0  # the second student's outputs are far from the first's
    packed = losses.loss_terms(jnp.asarray(logits), skills, correct, np.array([t]), segments)
    rows = losses.loss_terms(jnp.asarray(np.concatenate([logits[:, :4], logits[:, 4:]], 0)),
                             skills.reshape(2, 4), correct.reshape(2, 4), np.array([4, 4]))
    for k in losses.TERMS:
        np.testing.assert_allclose(np.asarray(packed[k]), np.asarray(rows[k]), rtol=1e-6)
    out_mask, diff_mask = losses.step_masks(np.array([t]), t, segments)
    # output 3 (last of student 1) has no next-step target; no difference pair spans outputs 3/4
    assert not bool(out_mask[0, 3]) and not bool(diff_mask[0, 2]) and not bool(diff_mask[0, 3])
    assert float(rows["w1"][0]) < 5.0  # sanity: had the jump counted, w1 would be ~20


def test_packed_predictions_and_metrics_equal_unpacked():
    _, params = _model_and_params()
    chunks = ip.make_chunks(_seqs(seed=5), max_len=8, min_len=2)
    packed = ip.pack_chunks(chunks, seed=0)
    model = dkt_jax.models.DKT(**dkt_jax.architecture_from_params(params))
    _, logits_p = model.apply({"params": params}, packed.skills, packed.correct, packed.lengths,
                              segments=packed.segments)
    probs_u = dkt_jax.apply(params, chunks.skills, chunks.correct, chunks.lengths)
    acc_u, acc_p = metrics.MetricAccumulator(M), metrics.MetricAccumulator(M)
    acc_u.add(metrics.batch_statistics(probs_u, chunks.skills, chunks.correct, chunks.lengths))
    acc_p.add(metrics.batch_statistics(jax.nn.sigmoid(logits_p), packed.skills, packed.correct, packed.lengths,
                                       packed.segments))
    res_u, res_p = acc_u.result(), acc_p.result()
    assert res_u["num_targets"] == res_p["num_targets"]
    for k in metrics.METRIC_NAMES:
        assert res_p[k] == pytest.approx(res_u[k], rel=1e-5, abs=1e-7), k
    # each segment's predictions equal its own unpacked row (the state is reset at the boundary)
    probs_p = np.asarray(jax.nn.sigmoid(logits_p))
    by_content = {tuple(chunks.skills[i, :n]) + tuple(chunks.correct[i, :n]): np.asarray(probs_u)[i, :n]
                  for i, n in enumerate(chunks.lengths)}
    for r in range(len(packed)):
        for k in range(1, packed.segments[r].max() + 1):
            sel = packed.segments[r] == k
            key = tuple(packed.skills[r, sel]) + tuple(packed.correct[r, sel])
            np.testing.assert_allclose(probs_p[r, sel], by_content[key], atol=2e-6)


def _naive_lstm(xs, kernel, bias, mask, reset, c, h):
    """Plain autodiff recurrence with mask and reset, for the hand-written VJP."""
    hs = []
    for t in range(xs.shape[0]):
        keep = ~reset[t][:, None]
        c, h = jnp.where(keep, c, 0.0), jnp.where(keep, h, 0.0)
        z = xs[t] + h @ kernel + bias
        i, f, g, o = jnp.split(z, 4, -1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        m = mask[t][:, None]
        c, h = jnp.where(m, c_new, c), jnp.where(m, h_new, h)
        hs.append(h)
    return jnp.stack(hs), (c, h)


def test_reset_mask_vjp_matches_autodiff():
    rng = np.random.default_rng(0)
    t, b, hd = 7, 3, 4
    xs = jnp.asarray(rng.normal(size=(t, b, 4 * hd)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(hd, 4 * hd)) * 0.5, jnp.float32)
    bias = jnp.asarray(rng.normal(size=(4 * hd,)) * 0.1, jnp.float32)
    mask = jnp.asarray(np.arange(t)[:, None] < np.array([7, 5, 6])[None], bool)
    reset = jnp.asarray(np.zeros((t, b), bool)).at[3, 0].set(True).at[2, 1].set(True).at[6, 2].set(True)
    c0 = jnp.asarray(rng.normal(size=(b, hd)), jnp.float32)
    h0 = jnp.asarray(rng.normal(size=(b, hd)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(t, b, hd)), jnp.float32)

    def objective(fn):
        def f(xs, kernel, bias, c0, h0):
            hs, (c, h) = fn(xs, kernel, bias, mask, reset, c0, h0)
            return (hs * w).sum() + (c * 0.3).sum() + (h * 0.7).sum()
        return f
    ours = jax.grad(objective(masked_lstm), argnums=(0, 1, 2, 3, 4))(xs, kernel, bias, c0, h0)
    ref = jax.grad(objective(_naive_lstm), argnums=(0, 1, 2, 3, 4))(xs, kernel, bias, c0, h0)
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(masked_lstm(xs, kernel, bias, mask, reset, c0, h0)[0]),
                               np.asarray(_naive_lstm(xs, kernel, bias, mask, reset, c0, h0)[0]), atol=1e-6)


def test_packed_grain_iterator_resumes_exactly():
    packed = ip.pack_chunks(ip.make_chunks(_seqs(), max_len=8, min_len=2), seed=0)
    ds, steps = ip.train_dataset(packed, global_batch_size=2, seed=4)
    assert steps == len(packed) // 2
    it = iter(ds)
    _ = [next(it) for _ in range(5)]
    state = it.get_state()
    rest = [next(it) for _ in range(4)]
    it2 = iter(ds)
    it2.set_state(state)
    for a in rest:
        b = next(it2)
        for k in ("skills", "correct", "segments", "lengths"):
            np.testing.assert_array_equal(a[k], b[k])


def test_export_of_long_students_stays_exact():
    """Knowledge states of students longer than a chunk: chunked with the carried state == one pass."""
    _, params = _model_and_params()
    seqs = _seqs(lengths=(37, 5, 23), seed=2)
    batch = next(ip.eval_batches(seqs, batch_size=3, length_multiple=8))
    full, carry_full = dkt_jax.knowledge_states(params, batch["skills"], batch["correct"], batch["lengths"])
    chunked, carry_chunked = dkt_jax.knowledge_states_chunked(params, batch["skills"], batch["correct"],
                                                              batch["lengths"], chunk_len=8)
    mask = np.arange(batch["skills"].shape[1])[None] < batch["lengths"][:, None]
    np.testing.assert_allclose(np.asarray(chunked)[mask], np.asarray(full)[mask], atol=2e-6)
    np.testing.assert_allclose(np.asarray(carry_chunked[1]), np.asarray(carry_full[1]), atol=2e-6)


def test_training_rows_follow_config_packing():
    chunks = ip.make_chunks(_seqs(), max_len=8, min_len=2)
    cfg = dkt_tiny.get_config()
    cfg.packing = "auto"
    assert isinstance(train_dkt.training_rows(chunks, cfg), ip.PackedTable)  # 14 -> 10 rows: packs
    cfg.packing = "off"
    assert train_dkt.training_rows(chunks, cfg) is chunks
    full = ip.make_chunks(_seqs(lengths=(8,) * 6), max_len=8, min_len=2)  # nothing to gain
    cfg.packing = "auto"
    assert train_dkt.training_rows(full, cfg) is full
    cfg.packing, cfg.model.lstm_impl = "auto", "hoisted"
    assert train_dkt.training_rows(chunks, cfg) is chunks
    cfg.packing = "on"
    with pytest.raises(train_dkt.ConfigError, match="lstm_impl='fused'"):
        train_dkt.training_rows(chunks, cfg)
