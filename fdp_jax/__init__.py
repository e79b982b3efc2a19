"""FDP (fine-grained dynamic perception) micro-expression recognition in JAX/Flax.

Public API::

    variables = fdp_jax.init(rng, config)                       # config: fdp_jax.get_model_config(...)
    logits, di = fdp_jax.apply(variables, clips, train=False)   # clips (B, 8, 64, 64, 1) -> (B, K), (B, 64, 64)
    di = fdp_jax.dynamic_image(frames)                          # approximate rank pooling
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdp_jax.configs import ModelSpec, get_model_config, model_spec
from fdp_jax.models import FDP, build_model, dummy_clips
from fdp_jax.rank_pooling import (dynamic_image, dynamic_image_target, dynamic_image_target_np,
                                  rank_pooling_coefficients)

__all__ = ["FDP", "ModelSpec", "apply", "build_model", "dynamic_image", "dynamic_image_target",
           "dynamic_image_target_np", "get_model_config", "init", "model_spec", "rank_pooling_coefficients",
           "spec_from_variables"]


def init(rng: jax.Array, config: Any = None, batch_size: int = 1) -> dict:
    """Fresh variables ``{'params', 'batch_stats'}`` for ``config`` (default: full paper-mode FDP)."""
    model = build_model(get_model_config() if config is None else config)
    return model.init({"params": rng}, dummy_clips(model.spec, batch_size), train=False)


def apply(variables: dict, clips: jax.Array, train: bool = False, *, config: Any = None,
          rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(logits (B, K), dynamic image (B, H, W) in (0, 1)) for clips (B, T, H, W[, 1]).

    ``config`` defaults to :func:`spec_from_variables` (structure read from the parameter shapes). In
    ``train=True`` (needs ``rng``) BN uses batch statistics and DropPath is active; the updated statistics
    are discarded (use :mod:`fdp_jax.train_steps` for training).
    """
    spec = spec_from_variables(variables) if config is None else model_spec(config)
    model = FDP(spec)
    if train:
        if rng is None:
            raise ValueError("fdp_jax.apply(train=True) needs an rng for DropPath/Dropout.")
        rngs = {"droppath": jax.random.fold_in(rng, 0), "dropout": jax.random.fold_in(rng, 1)}
        (logits, di_logits), _ = model.apply(variables, clips, train=True, rngs=rngs, mutable=["batch_stats"])
    else:
        logits, di_logits = model.apply(variables, clips, train=False)
    return logits, jax.nn.sigmoid(di_logits)


def spec_from_variables(variables: dict) -> ModelSpec:
    """Reads the model structure from parameter shapes. The official structure (no GFA, dense MHCA) maps
    to the ``reference_compat`` preset (raw reshape), everything else to ``time_major``; strides,
    sr_ratios and head_dim are the defaults. Pass ``config=`` to :func:`apply` for other combinations."""
    params = variables["params"]
    enc = params["frame_rep"]
    stem_chs = tuple(int(enc[f"stem_{i}"]["conv"]["kernel"].shape[-1]) for i in range(3))
    in_channels = int(enc["stem_0"]["conv"]["kernel"].shape[2])
    blocks = [enc[f"features_{i}"] for i in range(sum(k.startswith("features_") for k in enc))]
    use_gfa = any("e_mhsa" in b for b in blocks)
    depths, lfa_widths, gfa_widths = [], [], []
    for b in blocks:
        width = int(b["mlp"]["conv2"]["kernel"].shape[-1])
        if "e_mhsa" in b:
            gfa_widths.append(width)
            continue
        new_stage = (not depths) or ("patch_embed" in b and (use_gfa is False or len(gfa_widths) == len(depths)))
        if new_stage:
            depths.append(0)
            lfa_widths.append(width)
        depths[-1] += 1
    mhca_dense = "projection" not in blocks[0]["mhca"]
    mer = params["mer"]
    image_size = int(round(int(enc["proj_head_0"]["kernel"].shape[-1]) ** 0.5))
    n = len(depths)
    return model_spec(dict(
        image_size=image_size, in_channels=in_channels, num_frames=int(mer["conv3d_kernel"].shape[2]),
        num_classes=int(mer["fc2"]["kernel"].shape[-1]), mer_hidden=int(mer["fc1"]["kernel"].shape[-1]),
        rank_channels=int(mer["conv3d_kernel"].shape[-1]), stem_chs=stem_chs, depths=tuple(depths),
        lfa_widths=tuple(lfa_widths), gfa_widths=tuple(gfa_widths) if use_gfa else (128, 256, 512, 1024)[:n],
        strides=(1, 2, 2, 2)[:n], sr_ratios=(8, 4, 2, 1)[:n], use_gfa=use_gfa,
        segnet_width=int(params["dyimg_net"]["conv11"]["kernel"].shape[-1]) / 64.0,
        mhca="dense" if mhca_dense else "grouped",
        temporal_layout="raw" if (mhca_dense and not use_gfa) else "time_major"))
