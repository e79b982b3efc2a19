"""FDP's parameter initializers, in a form that :func:`fdp_jax.init` draws for all parameters at once.

Every variable of the model is created by one :class:`Initializer`:

* ``trunc_normal``: N(0, 1) truncated to [-2, 2], times ``scale`` (the official encoder's
  ``trunc_normal_(std=.02)``);
* ``uniform``: U(-b, b) with b = ``scale`` / sqrt(fan_in) when ``fan_in_from_shape`` (PyTorch's default
  Conv/Linear kernel init, kaiming_uniform(a=sqrt(5)): fan_in = prod(shape[:-1])), else b = ``scale``
  (PyTorch's default bias init, b = 1/sqrt(fan_in) given);
* ``zeros`` / ``ones``.

Called as a Flax initializer ``(key, shape, dtype)`` it draws one array (``model.init``). With
``ModelSpec.deferred_init`` the modules get :func:`param_init` wrappers instead, which return a
:class:`Deferred` box (zeros of the right shape + the initializer): :func:`fdp_jax.init` then reads the
boxes from an abstract ``model.init`` and draws every parameter of a kind from one random vector. XLA:CPU
then compiles two random kernels instead of one per parameter (412 for the tiny preset): the tiny preset's
cold init went from ~12 s to ~1.5 s of CPU. Same distributions, different values than ``model.init``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

RANDOM_KINDS = ("trunc_normal", "uniform")


@dataclasses.dataclass(frozen=True)
class Initializer:
    """A parameter initializer (see the module docstring); hashable, usable as a Flax initializer."""
    kind: str  # 'trunc_normal' | 'uniform' | 'zeros' | 'ones'
    scale: float = 1.0
    fan_in_from_shape: bool = False

    def bound(self, shape: tuple[int, ...]) -> float:
        """The uniform bound (or the normal's scale) for a parameter of ``shape``."""
        if self.fan_in_from_shape:
            return self.scale / float(np.sqrt(max(1, int(np.prod(shape[:-1])))))
        return self.scale

    def __call__(self, key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        if self.kind == "zeros":
            return jnp.zeros(shape, dtype)
        if self.kind == "ones":
            return jnp.ones(shape, dtype)
        unit = _unit_draw(self.kind, key, shape, dtype)
        return unit * jnp.asarray(self.bound(shape), dtype)


TRUNC_NORMAL = Initializer("trunc_normal", 0.02)
TORCH_DEFAULT_KERNEL = Initializer("uniform", 1.0, fan_in_from_shape=True)
ZEROS = Initializer("zeros")
ONES = Initializer("ones")


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return Initializer("uniform", 1.0 / float(np.sqrt(fan_in)))


def _unit_draw(kind: str, key: jax.Array, shape: Any, dtype: Any) -> jax.Array:
    if kind == "trunc_normal":
        return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype, -1.0, 1.0)
    raise ValueError(f"unknown initializer kind {kind!r}")


class Deferred(flax.struct.PyTreeNode, meta.AxisMetadata):
    """A placeholder variable (``value``: zeros of its shape) with the initializer that will fill it."""
    value: Any
    initializer: Initializer = flax.struct.field(pytree_node=False)

    def unbox(self) -> Any:
        return self.value

    def replace_boxed(self, val: Any) -> "Deferred":
        return self.replace(value=val)

    def add_axis(self, index: int, params: dict) -> "Deferred":
        raise ValueError("deferred FDP initializers are not used inside axis-adding transforms")

    def remove_axis(self, index: int, params: dict) -> "Deferred":
        raise ValueError("deferred FDP initializers are not used inside axis-removing transforms")


def param_init(spec: Any, initializer: Initializer) -> Callable:
    """The Flax initializer of a parameter: ``initializer`` itself, or with ``spec.deferred_init`` one that
    returns a :class:`Deferred` placeholder."""
    if not getattr(spec, "deferred_init", False):
        return initializer
    return lambda key, shape, dtype=jnp.float32: Deferred(jnp.zeros(shape, dtype), initializer)


def variable_init(deferred: bool, initializer: Initializer, shape: tuple[int, ...],
                  dtype: Any = jnp.float32) -> Callable[[], Any]:
    """The init function of a non-parameter variable (BN running statistics), deferred or not."""
    if deferred:
        return lambda: Deferred(jnp.zeros(shape, dtype), initializer)
    return lambda: initializer(None, shape, dtype)


def draw(rng: jax.Array, boxes: Any) -> Any:
    """Fills a tree of :class:`Deferred` boxes (abstract or concrete values): one random vector per
    (kind, dtype), cut into the parameters in tree order and scaled. Returns the tree of arrays.

    With a concrete ``rng`` the vectors are drawn by one small compiled program and cut on the host
    (numpy views, then one transfer per array); under a JAX transform (a traced ``rng``) everything stays
    in the traced program (equal to the host path up to float rounding of XLA's fusions, ~1e-5 relative).
    """
    leaves, treedef = jax.tree.flatten(boxes, is_leaf=lambda x: isinstance(x, Deferred))
    for leaf in leaves:
        if not isinstance(leaf, Deferred):
            raise TypeError(f"fdp_jax.init: a variable without an fdp_jax.initializers initializer "
                            f"({type(leaf).__name__}); build it with param_init / variable_init.")
    groups: dict[tuple[str, Any], list[int]] = {}
    for i, box in enumerate(leaves):
        if box.initializer.kind in RANDOM_KINDS:
            groups.setdefault((box.initializer.kind, jnp.dtype(box.value.dtype)), []).append(i)
    keys = sorted(groups, key=lambda g: (g[0], g[1].name))
    sizes = {g: [int(np.prod(leaves[i].value.shape)) for i in groups[g]] for g in keys}
    totals = tuple((g, sum(sizes[g])) for g in keys)
    traced = isinstance(rng, jax.core.Tracer)
    vectors = (_draw_vectors(rng, totals) if traced else
               [np.asarray(v) for v in _jitted_draw_vectors(totals)(rng)])
    xp = jnp if traced else np
    out: list[Any] = [None] * len(leaves)
    for g, vector in zip(keys, vectors):
        offset = 0
        for i, n in zip(groups[g], sizes[g]):
            box = leaves[i]
            shape = tuple(box.value.shape)
            out[i] = vector[offset:offset + n].reshape(shape) * xp.asarray(box.initializer.bound(shape), g[1])
            offset += n
    for i, box in enumerate(leaves):
        if out[i] is None:
            fill = xp.zeros if box.initializer.kind == "zeros" else xp.ones
            out[i] = fill(tuple(box.value.shape), jnp.dtype(box.value.dtype))
    tree = jax.tree.unflatten(treedef, out)
    return tree if traced else jax.device_put(tree)


def _draw_vectors(rng: jax.Array, totals: tuple) -> list[jax.Array]:
    keys = jax.random.split(rng, max(1, len(totals)))
    return [_unit_draw(kind, k, (total,), dtype) for ((kind, dtype), total), k in zip(totals, keys)]


@functools.lru_cache(maxsize=16)
def _jitted_draw_vectors(totals: tuple) -> Callable:
    """One tiny program per set of vector sizes (per model config): a few random kernels, compiled in ~0.5 s."""
    return jax.jit(lambda rng: _draw_vectors(rng, totals))
