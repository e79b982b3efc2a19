"""fdp_jax.lean_vjp: hand-written VJPs of ReLU and train-mode BN equal autodiff, and keep fewer buffers."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdp_jax import lean_vjp
from tests.multidevice import run_with_devices


def _bn_autodiff(x, scale, bias, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = xf.mean(axes)
    var = jnp.square(xf - mean).mean(axes)
    return ((xf - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias).astype(x.dtype)


def _mlp_autodiff(x, w1, b1, w2, b2):
    return jax.nn.relu(x @ w1 + b1) @ w2 + b2


def _mlp_params(key, c=6, h=12, o=5):
    k = jax.random.split(key, 4)
    return (jax.random.normal(k[0], (c, h)) * 0.5, jax.random.normal(k[1], (h,)) * 0.5,
            jax.random.normal(k[2], (h, o)) * 0.5, jax.random.normal(k[3], (o,)))


def test_mlp_relu_matches_autodiff_values_and_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 6))
    params = _mlp_params(jax.random.PRNGKey(1))
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 4, 5))
    np.testing.assert_allclose(lean_vjp.mlp_relu(x, *params), _mlp_autodiff(x, *params), rtol=1e-6, atol=1e-6)
    ours = jax.jit(jax.grad(lambda *a: jnp.sum(w * jnp.sin(lean_vjp.mlp_relu(*a))), argnums=range(5)))(x, *params)
    ref = jax.grad(lambda *a: jnp.sum(w * jnp.sin(_mlp_autodiff(*a))), argnums=range(5))(x, *params)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_mlp_relu_under_vmap_matches_per_example():
    xs = jax.random.normal(jax.random.PRNGKey(3), (4, 7, 6))
    params = _mlp_params(jax.random.PRNGKey(4))
    grad = jax.grad(lambda x, w1: jnp.sum(lean_vjp.mlp_relu(x, w1, *params[1:]) ** 2), argnums=1)
    batched = jax.vmap(grad, in_axes=(0, None))(xs, params[0])
    for i in range(4):
        np.testing.assert_allclose(batched[i], grad(xs[i], params[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (7, 16)])
def test_batch_norm_train_matches_autodiff(shape):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = 3.0 * jax.random.normal(k[0], shape) + 1.5
    scale = jax.random.uniform(k[1], shape[-1:], minval=0.5, maxval=2.0)
    bias = jax.random.normal(k[2], shape[-1:])
    w = jax.random.normal(k[3], shape)  # a loss that weights every output differently
    loss_ours = lambda x, s, b: jnp.sum(w * jnp.tanh(lean_vjp.batch_norm_train(x, s, b, 1e-5)))
    loss_ref = lambda x, s, b: jnp.sum(w * jnp.tanh(_bn_autodiff(x, s, b)))
    np.testing.assert_allclose(lean_vjp.batch_norm_train(x, scale, bias, 1e-5), _bn_autodiff(x, scale, bias),
                               rtol=0, atol=1e-6)
    ours = jax.jit(jax.grad(loss_ours, argnums=(0, 1, 2)))(x, scale, bias)
    ref = jax.grad(loss_ref, argnums=(0, 1, 2))(x, scale, bias)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the input gradient of BN sums to zero over the batch for every channel (mean subtraction)
    np.testing.assert_allclose(ours[0].reshape(-1, shape[-1]).sum(0), 0.0, atol=1e-4)


def test_batch_norm_train_bfloat16_output_dtype_and_gradient():
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 16)).astype(jnp.bfloat16)
    scale, bias = jnp.ones((16,)), jnp.zeros((16,))
    y = lean_vjp.batch_norm_train(x, scale, bias, 1e-5)
    assert y.dtype == jnp.bfloat16
    dx = jax.grad(lambda x: jnp.sum(lean_vjp.batch_norm_train(x, scale, bias, 1e-5).astype(jnp.float32) ** 2))(x)
    ref = jax.grad(lambda x: jnp.sum(_bn_autodiff(x, scale, bias).astype(jnp.float32) ** 2))(x)
    assert dx.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(dx, np.float32), np.asarray(ref, np.float32), atol=0.1)


def test_compiled_gradient_keeps_fewer_activation_buffers():
    """Residual MLP blocks (C=32 -> 96 -> 32 on 16384 rows): XLA's temp memory of the gradient with
    mlp_relu is lower than with autodiff, which keeps both the pre-activation and the activation."""
    x = jax.random.normal(jax.random.PRNGKey(2), (16384, 32))
    blocks = [_mlp_params(jax.random.PRNGKey(3 + i), 32, 96, 32) for i in range(4)]

    def temp_bytes(mlp):
        def loss(x, blocks):
            for params in blocks:
                x = x + mlp(x, *params)
            return jnp.sum(x ** 2)
        return jax.jit(jax.grad(loss, argnums=1)).lower(x, blocks).compile().memory_analysis().temp_size_in_bytes

    cpu_mlp = lambda x, *p: lean_vjp.mlp_relu(x, *p, None, True)  # as platform="cpu" models call it
    lean, plain = temp_bytes(cpu_mlp), temp_bytes(_mlp_autodiff)
    assert lean < 0.85 * plain, (lean, plain)


def test_batch_norm_train_cross_device_matches_one_device():
    """Under pmap with axis_name, statistics and gradients equal the single-device BN over the whole batch."""
    result = run_with_devices("""
        import json, jax, jax.numpy as jnp, numpy as np
        from fdp_jax import lean_vjp
        x = jax.random.normal(jax.random.PRNGKey(0), (32, 3, 3, 4)) * 2 + 1
        w = jax.random.normal(jax.random.PRNGKey(1), x.shape)
        s, b = jnp.linspace(0.5, 2, 4), jnp.linspace(-1, 1, 4)
        loss = lambda x, s, b, w, axis: jnp.sum(w * jnp.sin(lean_vjp.batch_norm_train(x, s, b, 1e-5, axis)))
        ref = jax.grad(loss, argnums=(0, 1, 2))(x, s, b, w, None)
        def per_device(x, w):
            gx, gs, gb = jax.grad(loss, argnums=(0, 1, 2))(x, s, b, w, 'd')
            return gx, jax.lax.psum(gs, 'd'), jax.lax.psum(gb, 'd')
        gx, gs, gb = jax.pmap(per_device, axis_name='d')(x.reshape(8, 4, 3, 3, 4), w.reshape(8, 4, 3, 3, 4))
        err = [float(jnp.max(jnp.abs(gx.reshape(x.shape) - ref[0]))), float(jnp.max(jnp.abs(gs[0] - ref[1]))),
               float(jnp.max(jnp.abs(gb[0] - ref[2])))]
        print(json.dumps({"err": err}))
    """)
    assert max(result["err"]) < 1e-4, result
