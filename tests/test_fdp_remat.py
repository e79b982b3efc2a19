"""fdp_jax.lean_vjp.remat_after_cotangent: same values, batch stats, DropPath masks and gradients as the plain
block, same variable names, and (unlike nn.remat on XLA:CPU) less memory kept for the backward pass."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdp_jax
from fdp_jax import encoder
from fdp_jax.configs import get_model_config, model_spec
from fdp_jax.lean_vjp import remat_after_cotangent
from fdp_jax.models import build_model


def _block(mode: str, remat: bool):
    spec = model_spec(get_model_config("tiny", mode, platform="cpu"))
    if mode == "paper":
        cls = encoder.GFA
        make = lambda c: c(spec, 128, 1, 2, 0.5)
    else:
        cls = encoder.LFA
        make = lambda c: c(spec, 16, 1, 0.5)
    return make(remat_after_cotangent(cls) if remat else cls), make(cls)


@pytest.mark.parametrize("mode", ["reference_compat", "paper"])
def test_block_matches_plain_block_with_droppath(mode):
    """DropPath (rate 0.5) active: the recomputation must replay the forward pass's masks."""
    block, plain = _block(mode, remat=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 16))
    variables = plain.init({"params": jax.random.PRNGKey(0), "droppath": jax.random.PRNGKey(3)}, x, True)
    assert jax.tree.structure(block.init({"params": jax.random.PRNGKey(0), "droppath": jax.random.PRNGKey(3)},
                                         x, True)) == jax.tree.structure(variables)
    w = jax.random.normal(jax.random.PRNGKey(2), plain.apply(variables, x, False).shape)

    def run(module):
        def loss(params, x):
            y, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, True,
                                      rngs={"droppath": jax.random.PRNGKey(7)}, mutable=["batch_stats"])
            return jnp.sum(w * jnp.sin(y)), (y, updates)
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(variables["params"], x)

    (la, (ya, sa)), ga = run(block)
    (lb, (yb, sb)), gb = run(plain)
    np.testing.assert_allclose(ya, yb, rtol=1e-6, atol=1e-6)
    assert jax.tree.structure(ga) == jax.tree.structure(gb)
    for a, b in zip(jax.tree.leaves((sa, ga)), jax.tree.leaves((sb, gb))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_model_remat_matches_plain_train_step_gradients():
    """Whole model, DropPath on, rematerialised stages (all / only the last) vs none: same loss, batch stats
    and gradients. In float64: the tiny model's last stage (1x1 maps, BN over 16 values, DropPath) amplifies
    float32 rounding differences between any two schedules (nn.remat differs from no remat just as much)."""
    with jax.enable_x64(True):
        cfg = get_model_config("tiny", "reference_compat", path_dropout=0.3, dtype="float64", platform="cpu")
        variables = fdp_jax.init(jax.random.PRNGKey(0), cfg)
        variables = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, variables)
        clips = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 32, 32, 1), dtype=jnp.float64)

        def run(model):
            def loss(params):
                (logits, di), upd = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                                clips, train=True, mutable=["batch_stats"],
                                                rngs={"droppath": jax.random.PRNGKey(5),
                                                      "dropout": jax.random.PRNGKey(6)})
                return jnp.sum(logits ** 2) + jnp.mean(jnp.sin(di)), upd["batch_stats"]
            return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

        (l0, s0), g0 = run(build_model(cfg))
        for stages in [(1, 2, 3, 4), (4,)]:
            (l1, s1), g1 = run(build_model(cfg, remat=True, remat_stages=stages))
            np.testing.assert_allclose(l0, l1, rtol=1e-9)
            assert jax.tree.structure(g0) == jax.tree.structure(g1)
            for a, b in zip(jax.tree.leaves((s0, g0)), jax.tree.leaves((s1, g1))):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_remat_keeps_less_for_the_backward_pass():
    """Compiled gradient of six residual LFA blocks: XLA's temp buffers shrink with remat_after_cotangent
    (on XLA:CPU nn.remat's recomputation is merged into the forward pass, so nn.remat alone is not enough)."""
    spec = model_spec(get_model_config("tiny", "reference_compat", path_dropout=0.0, platform="cpu"))

    class Stack(nn.Module):
        block: type

        @nn.compact
        def __call__(self, x):
            for i in range(6):
                x = self.block(spec, 32, 1, 0.0, name=f"features_{i}")(x, True)
            return x

    x = jax.random.normal(jax.random.PRNGKey(0), (16, 16, 16, 32))

    def temp_bytes(block):
        model = Stack(block)
        variables = model.init(jax.random.PRNGKey(1), x)

        def loss(params):
            y, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                               mutable=["batch_stats"])
            return jnp.sum(y ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain = temp_bytes(encoder.LFA)
    ours = temp_bytes(remat_after_cotangent(encoder.LFA))
    assert ours < 0.75 * plain, (ours, plain)


def test_remat_stages_validated():
    with pytest.raises(ValueError, match="remat_stages"):
        model_spec(get_model_config("tiny", "reference_compat", remat=True, remat_stages=(0, 5)))
