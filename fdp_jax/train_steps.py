"""Train/eval steps for FDP: TrainState with BN batch_stats, optimiser, pure steps, jit (NamedSharding)
and pmap variants.

Batch contract (host numpy or global jax arrays)::

    {'frames': float32 (B, T, H, W, 1), 'di_target': float32 (B, H, W) in [0, 1], 'label': int32 (B,),
     'mask': optional float32 (B,) (1 = real example, 0 = padding)}

``train_step(state, batch, rng) -> (state, metrics)`` with metrics ``loss, ce, mse, accuracy, count``
(means over valid examples); ``eval_step(state, batch) -> dict`` with ``logits (B, K)``, ``di_pred (B, H, W)``
and per-example ``ce, mse, correct, mask`` (B,).

``bn_train=False`` reproduces the official quirk that training after the first epoch runs in eval mode
(``model.eval()`` is never undone): BN uses and keeps its running statistics, DropPath/Dropout are off,
while gradients and the optimiser update are unchanged.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fdp_jax.configs import normalize_platform
from fdp_jax.losses import fdp_loss_sums, per_example_losses
from fdp_jax.models import build_model, init_variables

DATA_AXIS = "data"


class TrainState(train_state.TrainState):
    """flax TrainState plus the BN running statistics."""
    batch_stats: Any = None


def make_optimizer(name: str = "adam_l2", learning_rate: float | optax.Schedule = 1e-4,
                   weight_decay: float = 1e-3, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8) -> optax.GradientTransformation:
    """'adam_l2': the official torch Adam(weight_decay) = coupled L2 (wd * param added to the gradient
    before Adam); 'adamw': decoupled weight decay (optax.adamw); 'adam': no decay."""
    if name == "adam_l2":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(b1, b2, eps),
                           optax.scale_by_learning_rate(learning_rate))
    if name == "adamw":
        return optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay)
    if name == "adam":
        return optax.adam(learning_rate, b1, b2, eps)
    raise ValueError(f"unknown optimizer {name!r}; expected 'adam_l2', 'adamw' or 'adam'")


def learning_rate_schedule(optimizer_config: Any, num_steps: int) -> float | optax.Schedule:
    """``optimizer_config.learning_rate`` (a ConfigDict or dict) as a float ('constant' schedule, the official
    one) or an optax schedule ('warmup_cosine': linear warmup over ``warmup_steps`` from 0, cosine to 0 at
    ``num_steps``)."""
    name = optimizer_config.get("schedule", "constant")
    peak = float(optimizer_config["learning_rate"])
    if name == "constant":
        return peak
    if name == "warmup_cosine":
        warmup = int(optimizer_config.get("warmup_steps", 0))
        if not 0 <= warmup < num_steps:
            raise ValueError(f"optimizer.warmup_steps={warmup} must be in [0, num_steps={num_steps}).")
        return optax.warmup_cosine_decay_schedule(0.0 if warmup else peak, peak, warmup, num_steps, 0.0)
    raise ValueError(f"optimizer.schedule={name!r}: expected 'constant' or 'warmup_cosine'.")


def create_train_state(rng: jax.Array, config: Any, *, optimizer: str = "adam_l2",
                       learning_rate: float | optax.Schedule = 1e-4, weight_decay: float = 1e-3,
                       tx: optax.GradientTransformation | None = None, axis_name: str | None = None,
                       variables: Any = None) -> TrainState:
    """Fresh (or given ``variables``) FDP TrainState. ``config``: model ConfigDict/dict/ModelSpec.

    ``axis_name`` builds the model with cross-device BN statistics (needed by the pmap step only).
    """
    model = build_model(config, bn_axis_name=axis_name)
    if variables is None:
        variables = init_variables(rng, model.spec)
    if tx is None:
        tx = make_optimizer(optimizer, learning_rate, weight_decay)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables.get("batch_stats", {}), tx=tx)


def _rngs(rng: jax.Array) -> dict:
    return {"droppath": jax.random.fold_in(rng, 0), "dropout": jax.random.fold_in(rng, 1)}


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, bn_train: bool = True,
               ce_weight: float = 1.0, mse_weight: float = 100.0,
               axis_name: str | None = None) -> tuple[TrainState, dict]:
    """One optimiser step (pure; jit it with the keyword arguments static or use :func:`make_train_step`).

    ``axis_name``: set inside ``pmap`` (losses normalised by the global count, gradients psum'ed).
    """
    mask = batch.get("mask")
    count = jnp.sum(mask) if mask is not None else jnp.asarray(batch["label"].shape[0], jnp.float32)
    if axis_name is not None:
        count = jax.lax.psum(count, axis_name)
    count = jnp.maximum(count, 1.0)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        if bn_train:
            (logits, di_logits), updates = state.apply_fn(variables, batch["frames"], train=True,
                                                          rngs=_rngs(rng), mutable=["batch_stats"])
            new_stats = updates["batch_stats"]
        else:
            logits, di_logits = state.apply_fn(variables, batch["frames"], train=False)
            new_stats = state.batch_stats
        loss_sum, sums = fdp_loss_sums(logits, jax.nn.sigmoid(di_logits), batch["label"], batch["di_target"],
                                       mask, ce_weight=ce_weight, mse_weight=mse_weight)
        return loss_sum / count, (sums, new_stats)

    (_, (sums, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads = jax.lax.psum(grads, axis_name)
        sums = jax.lax.psum(sums, axis_name)
    state = state.apply_gradients(grads=grads, batch_stats=new_stats)
    metrics = {"loss": (ce_weight * sums["ce"] + mse_weight * sums["mse"]) / count, "ce": sums["ce"] / count,
               "mse": sums["mse"] / count, "accuracy": sums["correct"] / count, "count": sums["count"]}
    return state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
    """Eval-mode forward: logits (B, K), di_pred (B, H, W) and per-example ce, mse, correct, mask (B,)."""
    logits, di_logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                                       batch["frames"], train=False)
    di_pred = jax.nn.sigmoid(di_logits)
    out = {"logits": logits, "di_pred": di_pred}
    mask = batch.get("mask")
    out["mask"] = mask if mask is not None else jnp.ones(logits.shape[:1], jnp.float32)
    if "label" in batch and "di_target" in batch:
        out.update(per_example_losses(logits, di_pred, batch["label"], batch["di_target"]))
    return out


# XLA:CPU's MLIR fusion emitters hold ~80 KB of host memory per compiled kernel (~1 GB for the full FDP
# batch-36 step, whose compile also peaked above the step itself); the LLVM emitters ~20 KB, same step time.
_LEAN_CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.lru_cache(maxsize=None)
def _cpu_options_supported() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=_LEAN_CPU_COMPILER_OPTIONS).lower(jnp.float32(0)).compile()
        return True
    except Exception as e:  # an XLA without the option: compile with its defaults
        logging.warning("XLA:CPU compile options %s not accepted (%s); using the defaults.",
                        _LEAN_CPU_COMPILER_OPTIONS, e)
        return False


def compiler_options(platform: Any) -> dict | None:
    """``jax.jit`` compiler options of the FDP steps for ``platform`` (a name such as 'cpu'/'gpu'/'cuda'/'tpu',
    a ``jax.Device`` or a ``Mesh``; ``None``: XLA's defaults): for 'cpu' the LLVM (not MLIR) fusion emitters,
    for ~4x less host memory per compiled kernel (the FDP batch-36 step: peak RSS 5.2 -> 4.4 GB, same step
    time); ``None`` (XLA's defaults) elsewhere or where the option is unknown. Compile flags only: the maths
    follows the model config's ``platform`` (:func:`fdp_jax.configs.with_platform`)."""
    if platform is None or normalize_platform(platform) != "cpu":
        return None
    return dict(_LEAN_CPU_COMPILER_OPTIONS) if _cpu_options_supported() else None


def _step_platform(mesh: Mesh | None, platform: Any) -> Any:
    """The platform whose compile flags a step gets: ``platform`` if given, else the mesh's devices', else
    the local devices' (compile flags for the machine the jit runs on; they never change the maths)."""
    if platform is not None:
        return platform
    return mesh if mesh is not None else jax.local_devices()[0]


def make_train_step(mesh: Mesh | None = None, *, bn_train: bool = True, ce_weight: float = 1.0,
                    mse_weight: float = 100.0, donate: bool = True, platform: Any = None) -> Callable:
    """``jit``-ed ``(state, batch, rng) -> (state, metrics)``; with a mesh, the state is replicated and the
    batch split over the ``data`` axis (NamedSharding; XLA inserts the gradient/BN all-reduces).
    ``platform``: whose :func:`compiler_options` to use (default: the mesh's, else the local devices'); pass
    ``platform='generic'`` (no options) for a step that is only lowered/exported for another platform."""
    fn = functools.partial(train_step, bn_train=bn_train, ce_weight=ce_weight, mse_weight=mse_weight)
    kwargs = {"donate_argnums": (0,)} if donate else {}
    kwargs["compiler_options"] = compiler_options(_step_platform(mesh, platform))
    if mesh is None:
        return jax.jit(fn, **kwargs)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(mesh.axis_names[0]))
    return jax.jit(fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl), **kwargs)


def make_eval_step(mesh: Mesh | None = None, *, platform: Any = None) -> Callable:
    """``jit``-ed ``eval_step``; with a mesh the outputs stay split over ``data`` like the batch. ``platform``:
    as :func:`make_train_step`."""
    options = compiler_options(_step_platform(mesh, platform))
    if mesh is None:
        return jax.jit(eval_step, compiler_options=options)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(mesh.axis_names[0]))
    return jax.jit(eval_step, in_shardings=(repl, data), out_shardings=data, compiler_options=options)


def make_pmap_train_step(*, bn_train: bool = True, ce_weight: float = 1.0, mse_weight: float = 100.0,
                         axis_name: str = DATA_AXIS) -> Callable:
    """``pmap``-ed ``(replicated_state, batch[(D, B/D, ...)], rng) -> (state, metrics)``.

    The state must come from ``create_train_state(..., axis_name=axis_name)`` then
    ``flax.jax_utils.replicate``; each device folds its index into ``rng`` for DropPath.
    """
    def step(state, batch, rng):
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        return train_step(state, batch, rng, bn_train=bn_train, ce_weight=ce_weight, mse_weight=mse_weight,
                          axis_name=axis_name)
    return jax.pmap(step, axis_name=axis_name, in_axes=(0, 0, None))


def split_for_pmap(batch: dict, num_devices: int) -> dict:
    """(B, ...) -> (num_devices, B / num_devices, ...) for every array of the batch."""
    def split(x):
        if x.shape[0] % num_devices:
            raise ValueError(f"batch of {x.shape[0]} does not split over {num_devices} devices")
        return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])
    return jax.tree.map(split, batch)


replicate = flax.jax_utils.replicate
unreplicate = flax.jax_utils.unreplicate
