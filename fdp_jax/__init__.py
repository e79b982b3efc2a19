"""FDP (fine-grained dynamic perception) micro-expression recognition in JAX/Flax.

Public API::

    variables = fdp_jax.init(rng, config)                       # config: fdp_jax.get_model_config(...)
    logits, di = fdp_jax.apply(variables, clips, train=False)   # clips (B, 8, 64, 64, 1) -> (B, K), (B, 64, 64)
    di = fdp_jax.dynamic_image(frames)                          # approximate rank pooling
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from fdp_jax.configs import (MODES, PLATFORMS, SIZES, ModelSpec, get_model_config, model_spec, normalize_platform,
                             with_platform)
from fdp_jax.models import FDP, build_model, dummy_clips, init_variables
from fdp_jax.rank_pooling import (dynamic_image, dynamic_image_target, dynamic_image_target_np,
                                  rank_pooling_coefficients)

__all__ = ["FDP", "PLATFORMS", "ModelSpec", "apply", "build_model", "dynamic_image", "dynamic_image_target",
           "dynamic_image_target_np", "get_model_config", "init", "init_variables", "model_spec", "normalize_platform",
           "rank_pooling_coefficients", "spec_from_variables", "with_platform"]


def init(rng: jax.Array, config: Any = None, batch_size: int = 1) -> dict:
    """Fresh variables ``{'params', 'batch_stats'}`` for ``config`` (default: full paper-mode FDP).

    Jittable. Every parameter of a kind (truncated normal, uniform) is cut from one random vector drawn by a
    tiny compiled program (:mod:`fdp_jax.initializers`), so a first call costs an abstract trace plus
    ~0.5 s of compilation instead of one kernel per parameter. The values depend on ``rng`` and the
    model's structure only (not on ``config.platform`` nor ``batch_size``); they follow the same
    distributions as ``FDP(spec).init`` but are not equal to it.
    """
    spec = model_spec(get_model_config() if config is None else config)
    return init_variables(rng, spec, batch_size)


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
