"""fdp_jax.initializers: the batched draw of fdp_jax.init against the per-parameter initializers."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdp_jax
from fdp_jax import initializers
from fdp_jax.initializers import Deferred, Initializer


def _tiny():
    return fdp_jax.get_model_config("tiny", "paper", num_classes=3)


def _kinds(spec) -> dict:
    """path -> Initializer of every variable, read from the deferred placeholders."""
    from fdp_jax.models import _placeholders
    boxes = _placeholders(spec, 1)
    flat = jax.tree_util.tree_flatten_with_path(boxes, is_leaf=lambda x: isinstance(x, Deferred))[0]
    return {jax.tree_util.keystr(p): b.initializer for p, b in flat}


def test_per_parameter_initializers_match_flax_and_pytorch_defaults():
    key = jax.random.key(3)
    np.testing.assert_array_equal(initializers.TRUNC_NORMAL(key, (3, 3, 8, 16)),
                                  nn.initializers.truncated_normal(stddev=0.02)(key, (3, 3, 8, 16)))
    np.testing.assert_allclose(initializers.TORCH_DEFAULT_KERNEL(key, (3, 3, 8, 16)),
                               nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")(key, (3, 3, 8, 16)),
                               rtol=1e-6)
    bias = initializers.torch_default_bias(72)(key, (4000,))
    assert float(jnp.max(jnp.abs(bias))) <= 1 / np.sqrt(72) and float(jnp.std(bias)) == pytest.approx(
        1 / np.sqrt(72) / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(initializers.ONES(None, (3,)), np.ones(3))


def test_init_draws_every_variable_from_its_distribution():
    cfg = _tiny()
    spec = fdp_jax.model_spec(cfg)
    variables = fdp_jax.init(jax.random.key(0), cfg)
    reference = jax.eval_shape(lambda: fdp_jax.FDP(spec).init({"params": jax.random.key(0)},
                                                              fdp_jax.dummy_clips(spec, 1), train=False))
    assert jax.tree.structure(variables) == jax.tree.structure(reference)
    for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
        assert got.shape == want.shape and got.dtype == want.dtype
    kinds = _kinds(spec)
    flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    assert set(flat) == set(kinds)
    seen = set()
    for path, value in flat.items():
        init = kinds[path]
        seen.add(init.kind)
        if init.kind in ("zeros", "ones"):
            np.testing.assert_array_equal(value, np.full(value.shape, init.kind == "ones", np.float32), path)
            continue
        bound = init.bound(value.shape)
        limit = 2 * bound if init.kind == "trunc_normal" else bound
        assert np.abs(value).max() <= limit * (1 + 1e-6), path
        assert len(np.unique(value)) > 0.9 * value.size, path   # no repeated slices of the shared vector
        if value.size >= 2000:  # truncated N(0,1) on [-2, 2] has std 0.880; U(-1, 1) has 1/sqrt(3)
            unit_std = 0.880 if init.kind == "trunc_normal" else 1 / np.sqrt(3)
            assert value.std() == pytest.approx(unit_std * bound, rel=0.05), path
            assert abs(value.mean()) < 0.05 * bound, path
    assert seen == {"trunc_normal", "uniform", "zeros", "ones"}
    # The encoder's kernels are trunc_normal(.02); the decoder's and MER head's PyTorch's default.
    assert kinds["['params']['frame_rep']['proj_head_0']['kernel']"] == initializers.TRUNC_NORMAL
    assert kinds["['params']['dyimg_net']['conv11']['kernel']"] == initializers.TORCH_DEFAULT_KERNEL


def test_init_is_deterministic_jittable_and_independent_of_platform():
    cfg = _tiny()
    a = fdp_jax.init(jax.random.key(0), cfg)
    b = fdp_jax.init(jax.random.key(0), {**cfg.to_dict(), "platform": "cpu"})
    c = jax.jit(lambda r: fdp_jax.init(r, cfg))(jax.random.key(0))
    d = fdp_jax.init(jax.random.key(1), cfg)
    for x, y, z, w in zip(*(jax.tree.leaves(v) for v in (a, b, c, d))):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-4, atol=1e-7)  # traced == host-cut path, to fusion rounding
        if np.asarray(x).std() > 0:
            assert not np.array_equal(x, w)


def test_a_variable_without_a_batchable_initializer_is_named():
    boxes = {"params": {"ok": Deferred(jax.ShapeDtypeStruct((2,), jnp.float32), initializers.ZEROS),
                        "plain": jax.ShapeDtypeStruct((2,), jnp.float32)}}
    with pytest.raises(TypeError, match="without an fdp_jax.initializers initializer"):
        initializers.draw(jax.random.key(0), boxes)
    with pytest.raises(ValueError, match="unknown initializer kind"):
        Initializer("gaussian")(jax.random.key(0), (2,))
