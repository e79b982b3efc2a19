"""Train and eval steps for DKT / DKT+: optimiser, TrainState, pure ``train_step``, jit (NamedSharding) and
pmap variants, and full-history evaluation.

Batch contract (host numpy or global jax arrays)::

    {'skills': int32 (B, T), 'correct': int32 (B, T), 'lengths': int32 (B,)
     [, 'segments': int32 (B, T) for packed rows: student number per step, 0 on padding]}

``train_step(state, batch, rng) -> (state, metrics)`` with metrics ``loss, grad_norm`` and the loss terms'
means (``bce, r, w1, w2``). ``evaluate(params, seqs, ...)`` gives the dkt_spec metrics (AUC(N), AUC(C), w1,
w2, m1, m2) of full-length sequences, run in chunks with the carried LSTM state.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state as train_state_lib
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

import dkt_jax
from dkt_jax import input_pipeline, losses, metrics

TrainState = train_state_lib.TrainState
DATA_AXIS = "data"


# ----------------------------------------------------------------------------------------- optimiser
def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
    """Clips every gradient tensor to L2 norm ``max_norm`` separately (TF ``clip_by_norm`` per variable)."""
    def clip(updates, params=None):
        del params
        def one(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g)))
            return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
        return jax.tree.map(one, updates)
    return optax.stateless(clip)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with ``config.clip`` in {'global_norm', 'per_tensor', 'none'} at ``config.clip_norm``."""
    clips = {"global_norm": lambda: optax.clip_by_global_norm(config.clip_norm),
             "per_tensor": lambda: clip_by_tensor_norm(config.clip_norm),
             "none": optax.identity}
    if config.clip not in clips:
        raise ValueError(f"config.clip must be one of {sorted(clips)}, got {config.clip!r}")
    return optax.chain(clips[config.clip](), optax.adam(config.learning_rate))


def lambdas_from(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The DKT+ regulariser weights ``{'r', 'w1', 'w2'}`` of ``config.loss``."""
    return {"r": float(config.loss.lambda_r), "w1": float(config.loss.lambda_w1),
            "w2": float(config.loss.lambda_w2)}


def create_train_state(rng: jax.Array, model_config: Any, config: ml_collections.ConfigDict) -> TrainState:
    """Fresh parameters of ``model_config`` with the optimiser of ``config``."""
    model = dkt_jax.model_from_config(model_config)
    params = dkt_jax.init(rng, model_config)
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config))


# ----------------------------------------------------------------------------------------- steps
def loss_fn(params: Any, batch: Mapping[str, jax.Array], rng: jax.Array, *, model: Any,
            lambdas: Mapping[str, float], axis_name: str | None = None) -> tuple[jax.Array, dict]:
    """Scalar objective for one (local) batch. With ``axis_name`` the counts are pooled over devices,
    so ``psum`` of this loss (and of its gradient) equals the single-device value."""
    segments = batch.get("segments")
    _, logits = model.apply({"params": params}, batch["skills"], batch["correct"], batch["lengths"],
                            train=True, return_carry=False, segments=segments, rngs={"dropout": rng})
    terms = losses.loss_terms(logits, batch["skills"], batch["correct"], batch["lengths"], segments)
    if axis_name is not None:
        terms = {k: (s, jax.lax.psum(n, axis_name)) for k, (s, n) in terms.items()}
    return losses.combine(terms, lambdas)


def train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, *, model: Any,
               lambdas: Mapping[str, float], axis_name: str | None = None) -> tuple[TrainState, dict]:
    """One Adam step. Pure; ``axis_name`` set means it runs under ``pmap`` over that axis."""
    step_rng = jax.random.fold_in(rng, state.step)
    if axis_name is not None:
        step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, means), grads = grad_fn(state.params, batch, step_rng, model=model, lambdas=lambdas,
                                   axis_name=axis_name)
    if axis_name is not None:  # pmap: per-device partial sums -> global values
        loss, means, grads = jax.lax.psum((loss, means, grads), axis_name)
    new_state = state.apply_gradients(grads=grads)
    out = {"loss": loss, "grad_norm": optax.global_norm(grads), **means}
    return new_state, out


@functools.lru_cache(maxsize=8)
def make_train_step(model: Any, lambdas: tuple[tuple[str, float], ...], mesh: Mesh) -> Callable:
    """``step(state, global_batch, rng) -> (state, metrics)`` under jit: state replicated, batch split over the
    mesh's first axis (NamedSharding; XLA inserts the gradient all-reduce). ``lambdas`` is
    ``tuple(sorted(lambdas.items()))`` so that one compiled step serves repeated runs in a process."""
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(mesh.axis_names[0]))
    return jax.jit(functools.partial(train_step, model=model, lambdas=dict(lambdas)), donate_argnums=0,
                   in_shardings=(repl, data, repl), out_shardings=(repl, repl))


def make_pmap_train_step(model: Any, lambdas: Mapping[str, float], devices: list) -> Callable:
    """``step(pmap_state, host_batch, rng) -> (pmap_state, metrics)`` under ``pmap`` over ``devices``.

    The state carries a leading device axis (:func:`to_pmap_state`); the host batch (B, ...) is reshaped to
    (devices, B / devices, ...). Metrics are returned from device 0 (they are psum'ed, so all agree).
    """
    pmapped = jax.pmap(functools.partial(train_step, model=model, lambdas=lambdas, axis_name=DATA_AXIS),
                       axis_name=DATA_AXIS, in_axes=(0, 0, None), donate_argnums=0, devices=devices)
    n = len(devices)

    def step(state, batch, rng):
        batch = jax.tree.map(lambda x: np.asarray(x).reshape((n, -1) + x.shape[1:]), batch)
        state, out = pmapped(state, batch, rng)
        return state, jax.tree.map(lambda x: x[0], out)
    return step


def to_pmap_state(state: Any, devices: list) -> Any:
    """A replicated state with a leading device axis, for :func:`make_pmap_train_step`."""
    return flax.jax_utils.replicate(state, devices=devices)


def from_pmap_state(state: Any) -> Any:
    """The plain state of device 0 of a pmap state."""
    return jax.tree.map(lambda x: x[0], state)


# ----------------------------------------------------------------------------------------- evaluation
_batch_statistics = jax.jit(metrics.batch_statistics)


def evaluate(params: Any, seqs: input_pipeline.Sequences, num_skills: int, *, batch_size: int, chunk_len: int,
             shard: Callable[[Any], Any] | None = None, desc: str = "eval",
             show_progress: bool = True) -> dict[str, float]:
    """dkt_spec §2.6 metrics of ``params`` on full-length ``seqs``.

    Each batch runs through :func:`dkt_jax.knowledge_states_chunked` (exact: the LSTM state is carried from
    chunk to chunk). ``shard`` places each chunk's arrays on devices (e.g. split over a mesh).
    """
    acc = metrics.MetricAccumulator(num_skills)
    n_batches = -(-len(seqs) // batch_size)
    batches = input_pipeline.eval_batches(seqs, batch_size, chunk_len)
    show = show_progress and jax.process_index() == 0
    for batch in tqdm(batches, total=n_batches, desc=desc, leave=False, mininterval=1.0, disable=not show):
        probs, _ = dkt_jax.knowledge_states_chunked(params, batch["skills"], batch["correct"], batch["lengths"],
                                                    chunk_len=chunk_len, shard=shard)
        acc.add(_batch_statistics(probs, batch["skills"], batch["correct"], batch["lengths"]))
    return acc.result()
