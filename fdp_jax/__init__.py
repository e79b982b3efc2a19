"""FDP (fine-grained dynamic perception) micro-expression recognition in JAX/Flax.

Public API::

    variables = fdp_jax.init(rng, config)                       # config: fdp_jax.get_model_config(...)
    logits, di = fdp_jax.apply(variables, clips, train=False)   # clips (B, 8, 64, 64, 1) -> (B, K), (B, 64, 64)
    di = fdp_jax.dynamic_image(frames)                          # approximate rank pooling
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from fdp_jax.configs import (MODES, PLATFORMS, SIZES, ModelSpec, get_model_config, model_spec, normalize_platform,
                             with_platform)
from fdp_jax.models import FDP, build_model, dummy_clips
from fdp_jax.rank_pooling import (dynamic_image, dynamic_image_target, dynamic_image_target_np,
                                  rank_pooling_coefficients)

__all__ = ["FDP", "PLATFORMS", "ModelSpec", "apply", "build_model", "dynamic_image", "dynamic_image_target",
           "dynamic_image_target_np", "get_model_config", "init", "model_spec", "normalize_platform",
           "rank_pooling_coefficients", "spec_from_variables", "with_platform"]


def init(rng: jax.Array, config: Any = None, batch_size: int = 1) -> dict:
    """Fresh variables ``{'params', 'batch_stats'}`` for ``config`` (default: full paper-mode FDP).

    One compiled program per (spec, batch size), cached for the process (and by JAX's persistent compilation
    cache when one is configured); the variables do not depend on ``config.platform``."""
    spec = model_spec(get_model_config() if config is None else config)
    return _jitted_init(dataclasses.replace(spec, platform="generic"), batch_size)(rng)


# Init runs once: XLA's backend optimisations only cost compile time there (tiny preset on the loaded 2-core
# host: compile 55 -> 15 s wall). Generic XLA debug options (every backend); dropped if an XLA rejects them.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.lru_cache(maxsize=16)
def _jitted_init(spec: ModelSpec, batch_size: int) -> Any:
    model = FDP(spec)
    fn = lambda r: model.init({"params": r}, dummy_clips(spec, batch_size), train=False)  # noqa: E731
    fast, plain = jax.jit(fn, compiler_options=_INIT_COMPILER_OPTIONS), jax.jit(fn)

    def init_fn(rng: jax.Array) -> dict:
        try:
            return fast(rng)
        except Exception:  # an XLA without these options
            return plain(rng)
    return init_fn


def apply(variables: dict, clips: jax.Array, train: bool = False, *, config: Any = None,
          rng: jax.Array | None = None, platform: str | None = None) -> tuple[jax.Array, jax.Array]:
    """(logits (B, K), dynamic image (B, H, W) in (0, 1)) for clips (B, T, H, W[, 1]).

    ``config`` defaults to :func:`spec_from_variables` (structure read from the parameter shapes). In
    ``train=True`` (needs ``rng``) BN uses batch statistics and DropPath is active; the updated statistics
    are discarded (use :mod:`fdp_jax.train_steps` for training). ``platform`` (default: the config's, or
    'generic' with ``config=None``) picks the code paths (:mod:`fdp_jax.configs`; 'cpu' for XLA:CPU speed).
    """
    spec = spec_from_variables(variables) if config is None else model_spec(config)
    if platform is not None:
        spec = with_platform(spec, platform)
    model = FDP(spec)
    if train:
        if rng is None:
            raise ValueError("fdp_jax.apply(train=True) needs an rng for DropPath/Dropout.")
        rngs = {"droppath": jax.random.fold_in(rng, 0), "dropout": jax.random.fold_in(rng, 1)}
        (logits, di_logits), _ = model.apply(variables, clips, train=True, rngs=rngs, mutable=["batch_stats"])
    else:
        logits, di_logits = model.apply(variables, clips, train=False)
    return logits, jax.nn.sigmoid(di_logits)


@functools.lru_cache(maxsize=32)
def _preset_shapes(size: str, mode: str, num_classes: int) -> tuple[ModelSpec, dict]:
    spec = model_spec(get_model_config(size, mode, num_classes=num_classes))
    model = FDP(spec)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, dummy_clips(spec, 1)))
    return spec, _shape_tree(shapes)


def _shape_tree(variables: Any) -> dict:
    return {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(
        {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})}


def spec_from_variables(variables: dict) -> ModelSpec:
    """The preset (size x mode, :mod:`fdp_jax.configs`) whose parameter shapes match ``variables``
    (``num_classes`` read from the MER head). Raises ``ValueError`` when none matches: then pass
    ``config=`` to :func:`apply`."""
    num_classes = int(np.shape(variables["params"]["mer"]["fc2"]["kernel"])[-1])
    got = _shape_tree(variables)
    for size in SIZES:
        for mode in MODES:
            spec, want = _preset_shapes(size, mode, num_classes)
            if want == got:
                return spec
    raise ValueError("variables do not match any FDP preset (sizes %s x modes %s); pass config= to "
                     "fdp_jax.apply" % (SIZES, MODES))
