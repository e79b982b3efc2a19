"""DKT model and the public dkt_jax API: impl parity, masking, exact chunked carry, jit/vmap/grad."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import dkt_jax
from dkt_jax import models

M, H = 6, 8


def _cfg(**kw):
    base = {"num_skills": M, "hidden_size": H, "encoding": "onehot", "embedding_dim": 5, "dropout_rate": 0.3}
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _batch(seed=0, b=3, t=11):
    rng = np.random.default_rng(seed)
    skills = rng.integers(0, M, (b, t)).astype(np.int32)
    correct = rng.integers(0, 2, (b, t)).astype(np.int32)
    lengths = np.array([t, 4, 1][:b], np.int32)
    return skills, correct, lengths


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_hoisted_equals_flax_optimized_lstm(encoding):
    skills, correct, lengths = _batch()
    flax_model = models.DKT(M, H, encoding=encoding, embedding_dim=5, lstm_impl="flax")
    p_flax = flax_model.init(jax.random.key(1), skills, correct, lengths)["params"]
    p_hoisted = models.flax_to_hoisted(p_flax)
    if encoding == "embedding":  # hoisted keeps W_i separate from the embedding table
        p_hoisted["input_kernel"] = jnp.concatenate(
            [p_flax["lstm"][f"i{g}"]["kernel"] for g in models.GATES], -1)
    carry_f, logits_f = flax_model.apply({"params": p_flax}, skills, correct, lengths)
    states_h, carry_h = dkt_jax.knowledge_states(p_hoisted, skills, correct, lengths)
    mask = np.arange(skills.shape[1])[None] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits_f))[mask], np.asarray(states_h)[mask],
                               atol=2e-6)
    np.testing.assert_allclose(np.asarray(carry_f[1]), np.asarray(carry_h[1]), atol=2e-6)


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_fused_vjp_matches_autodiff_hoisted(encoding):
    """The hand-written VJP (lstm_impl='fused') against autodiff of nn.RNN (lstm_impl='hoisted')."""
    skills, correct, _ = _batch(seed=7, t=9)
    lengths = np.array([9, 4, 0], np.int32)
    cfg = _cfg(encoding=encoding, dropout_rate=0.0)
    params = dkt_jax.init(jax.random.key(4), cfg)
    carry0 = tuple(jax.random.normal(k, (3, H)) * 0.5 for k in jax.random.split(jax.random.key(5), 2))
    w = jax.random.normal(jax.random.key(6), (3, 9, M))
    mask = (np.arange(9)[None] < lengths[:, None])[..., None]

    def objective(p, c0, impl):
        model = models.DKT(M, H, encoding=encoding, embedding_dim=5, lstm_impl=impl)
        carry, logits = model.apply({"params": p}, skills, correct, lengths, c0)
        return jnp.sum(jnp.sin(logits * w) * mask) + jnp.sum(carry[0] ** 2) + jnp.sum(carry[1])

    values = {impl: jax.jit(jax.value_and_grad(objective, argnums=(0, 1)), static_argnums=2)(params, carry0, impl)
              for impl in ("fused", "hoisted")}
    (v_f, g_f), (v_h, g_h) = values["fused"], values["hoisted"]
    assert float(v_f) == pytest.approx(float(v_h), rel=1e-5)
    for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_h)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


def test_init_shapes_and_architecture_inference():
    for enc in ("onehot", "embedding"):
        params = dkt_jax.init(jax.random.key(0), _cfg(encoding=enc))
        arch = models.architecture_from_params(params)
        assert arch["num_skills"] == M and arch["hidden_size"] == H and arch["encoding"] == enc
    params = dkt_jax.init(jax.random.key(0), _cfg(encoding="reference_tf"))
    assert models.architecture_from_params(params)["encoding"] == "reference_tf"
    with pytest.raises(ValueError, match="Unknown model config"):
        dkt_jax.init(jax.random.key(0), {"num_skills": 3, "hiden_size": 4})
    with pytest.raises(ValueError, match="Not a DKT parameter tree"):
        dkt_jax.apply({"foo": 1}, *_batch())


def test_padding_does_not_change_valid_outputs_or_carry():
    skills, correct, lengths = _batch(t=7)
    params = dkt_jax.init(jax.random.key(0), _cfg())
    states, carry = dkt_jax.knowledge_states(params, skills, correct, lengths)
    pad_s = np.concatenate([skills, np.full((3, 5), 3, np.int32)], 1)
    pad_c = np.concatenate([correct, np.ones((3, 5), np.int32)], 1)
    states2, carry2 = dkt_jax.knowledge_states(params, pad_s, pad_c, lengths)
    mask = np.arange(7)[None] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(states)[mask], np.asarray(states2)[:, :7][mask], atol=1e-6)
    for a, b in zip(carry, carry2):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert states.shape == (3, 7, M) and float(states.min()) > 0 and float(states.max()) < 1


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_chunked_carry_is_exact(encoding):
    skills, correct, _ = _batch(seed=5, t=23)
    lengths = np.array([23, 10, 0], np.int32)
    params = dkt_jax.init(jax.random.key(2), _cfg(encoding=encoding))
    full, carry_full = dkt_jax.knowledge_states(params, skills, correct, lengths)
    chunked, carry_chunked = dkt_jax.knowledge_states_chunked(params, skills, correct, lengths, chunk_len=5)
    mask = np.arange(23)[None] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(full)[mask], np.asarray(chunked)[mask], atol=1e-5)
    for a, b in zip(carry_full, carry_chunked):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # a manual two-call split with the carry passed by hand
    s1, c1 = dkt_jax.knowledge_states(params, skills[:, :9], correct[:, :9], np.minimum(lengths, 9))
    s2, _ = dkt_jax.knowledge_states(params, skills[:, 9:], correct[:, 9:], np.clip(lengths - 9, 0, None), c1)
    np.testing.assert_allclose(np.asarray(full)[0], np.concatenate([s1[0], s2[0]]), atol=1e-5)
    # zero-length row: carry is the initial zeros
    assert float(jnp.abs(carry_full[1][2]).max()) == 0.0


def test_api_under_jit_vmap_grad():
    skills, correct, lengths = _batch(t=6)
    params = dkt_jax.init(jax.random.key(0), _cfg())
    eager = dkt_jax.apply(params, skills, correct, lengths)
    jitted = jax.jit(dkt_jax.apply)(params, skills, correct, lengths)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6)

    # vmap over an extra leading axis of sequences (each call sees a batch of 1)
    vm = jax.vmap(lambda s, c, n: dkt_jax.apply(params, s[None], c[None], n[None])[0])(skills, correct, lengths)
    mask = np.arange(6)[None] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(vm)[mask], np.asarray(eager)[mask], atol=1e-6)
    # vmap over an ensemble of parameters
    ens = jax.vmap(lambda k: dkt_jax.init(k, _cfg()))(jax.random.split(jax.random.key(3), 2))
    out = jax.jit(jax.vmap(dkt_jax.apply, in_axes=(0, None, None, None)))(ens, skills, correct, lengths)
    assert out.shape == (2, 3, 6, M)

    def objective(p):
        states, carry = dkt_jax.knowledge_states(p, skills, correct, lengths)
        return jnp.mean(states) + jnp.mean(carry[1])
    grads = jax.jit(jax.grad(objective))(params)
    flat = jax.tree.leaves(grads)
    assert all(np.isfinite(np.asarray(g)).all() for g in flat)
    assert sum(float(jnp.abs(g).sum()) for g in flat) > 0
    # gradients w.r.t. an incoming carry flow too
    carry0 = models.zero_carry(3, H)
    g_carry = jax.grad(lambda c: jnp.sum(dkt_jax.knowledge_states(params, skills, correct, lengths, c)[0]))(carry0)
    assert float(jnp.abs(g_carry[1]).sum()) > 0


def test_dropout_only_in_train_mode():
    skills, correct, lengths = _batch()
    model = dkt_jax.model_from_config(_cfg(dropout_rate=0.5))
    params = dkt_jax.init(jax.random.key(0), _cfg(dropout_rate=0.5))
    _, a = model.apply({"params": params}, skills, correct, lengths, train=True, rngs={"dropout": jax.random.key(1)})
    _, b = model.apply({"params": params}, skills, correct, lengths, train=True, rngs={"dropout": jax.random.key(2)})
    _, c = model.apply({"params": params}, skills, correct, lengths)
    assert not np.allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(c)), np.asarray(dkt_jax.apply(params, skills, correct,
                                                                                       lengths)), atol=1e-6)


def test_reference_tf_encoding_matches_explicit_input_and_its_skill0_quirk():
    """encoding='reference_tf' == X @ W with the TF reference's X; skill 0 correct looks like skill 0 wrong."""
    skills, correct, lengths = _batch(seed=9, t=8)
    skills[:, 0] = 0  # make sure skill 0 appears, both correct and wrong
    correct[0, 0], correct[1, 0] = 1, 0
    params = dkt_jax.init(jax.random.key(1), _cfg(encoding="reference_tf"))
    table = params["input_kernel_tf"]
    second = np.where(skills * correct * correct == 0, -1, skills * correct * correct)  # the reference's trick
    x = np.concatenate([np.eye(M)[skills], np.where(second[..., None] >= 0, np.eye(M)[second], 0.0)], -1)
    np.testing.assert_allclose(np.asarray(models.reference_tf_projection(table, skills, correct, M)),
                               x @ np.asarray(table), atol=1e-5)
    s = np.zeros((2, 3), np.int32)
    c = np.array([[1, 1, 1], [0, 1, 1]], np.int32)
    out = dkt_jax.apply(params, s, c, np.array([3, 3]))
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(out[1]), atol=1e-6)  # the quirk
    onehot = dkt_jax.init(jax.random.key(1), _cfg())
    out2 = dkt_jax.apply(onehot, s, c, np.array([3, 3]))
    assert not np.allclose(np.asarray(out2[0]), np.asarray(out2[1]))  # q + M a keeps them apart
