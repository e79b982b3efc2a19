"""DKT / DKT+ knowledge tracing in JAX/Flax: public, jittable API.

    params = dkt_jax.init(rng, model_config)                       # ConfigDict/dict: num_skills, hidden_size,
                                                                   #   encoding, embedding_dim, dropout_rate
    probs = dkt_jax.apply(params, skills, correct, lengths)        # (B, T, M) next-step P(correct), eval mode
    states, carry = dkt_jax.knowledge_states(params, skills, correct, lengths, carry=None)

``skills``/``correct`` are (B, T) int arrays (0-based skill ids, 0/1 answers; padding arbitrary),
``lengths`` (B,) the valid steps per row. ``states[b, t]`` is the knowledge state after step t (the model's
prediction for every skill). ``carry`` is the LSTM state ``(c, h)``, each (B, H), after each row's last
valid step: feeding it back with the next chunk gives exactly the full-sequence result
(:func:`knowledge_states_chunked` does that loop). The architecture is read from the parameter shapes,
so ``apply``/``knowledge_states`` need only ``params``. All three work under ``jax.jit``, ``jax.vmap`` and
``jax.grad``. Trained parameters of a ``launch.dkt`` workdir: ``launch.train_dkt.load_params(workdir)``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dkt_jax.models import DKT, Carry, architecture_from_params

MODEL_FIELDS = ("num_skills", "hidden_size", "encoding", "embedding_dim", "dropout_rate", "lstm_impl",
                "unroll")


def model_from_config(config: Mapping[str, Any] | Any) -> DKT:
    """A :class:`DKT` module from a model config (ConfigDict or dict); unknown fields are an error."""
    cfg = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    unknown = sorted(set(cfg) - set(MODEL_FIELDS))
    if unknown:
        raise ValueError(f"Unknown model config field(s) {unknown}; known: {list(MODEL_FIELDS)}")
    if cfg.get("num_skills") is None:
        raise ValueError("model config needs num_skills (an int > 0)")
    return DKT(**cfg)


def init(rng: jax.Array, config: Mapping[str, Any] | Any) -> dict:
    """Initial parameters (a pytree) for the model described by ``config``: one compiled program per model,
    cached for the process (not op by op)."""
    return _jitted_init(model_from_config(config))(rng)


@functools.lru_cache(maxsize=16)
def _jitted_init(model: DKT) -> Callable[[jax.Array], dict]:
    def init_params(rng: jax.Array) -> dict:
        dummy = jnp.zeros((1, 2), jnp.int32)
        return model.init(rng, dummy, dummy, jnp.array([2], jnp.int32))["params"]
    return jax.jit(init_params)


def _model_for(params: Mapping[str, Any]) -> DKT:
    return DKT(**architecture_from_params(params))


def knowledge_states(params: Mapping[str, Any], skills: jax.Array, correct: jax.Array, lengths: jax.Array,
                     carry: Carry | None = None) -> tuple[jax.Array, Carry]:
    """Per-step knowledge states (B, T, M) in (0, 1) and the final LSTM carry ``(c, h)`` (B, H) each."""
    params = params.get("params", params)
    carry, logits = _model_for(params).apply({"params": params}, skills, correct, lengths, carry,
                                             train=False)
    return jax.nn.sigmoid(logits), carry


def apply(params: Mapping[str, Any], skills: jax.Array, correct: jax.Array, lengths: jax.Array) -> jax.Array:
    """Next-step predictions (B, T, M): ``out[b, t, k]`` = P(correct on skill k at step t + 1)."""
    return knowledge_states(params, skills, correct, lengths)[0]


_knowledge_states_jit = jax.jit(knowledge_states)


def knowledge_states_chunked(params: Mapping[str, Any], skills: np.ndarray, correct: np.ndarray,
                             lengths: np.ndarray, chunk_len: int = 500, carry: Carry | None = None, *,
                             shard: Callable[[Any], Any] | None = None) -> tuple[jax.Array, Carry]:
    """:func:`knowledge_states` over long sequences in ``chunk_len`` pieces, carrying the LSTM state.

    The one chunked-inference loop of the project (evaluation, knowledge-state export and users call it).
    Exact (equal to one full-length pass). ``T`` is padded up to a multiple of ``chunk_len`` internally,
    so every chunk reuses one compiled program. ``shard`` (optional) places each chunk's
    ``(skills, correct, lengths)`` on devices, e.g. split over a mesh's batch axis.
    Returns states (B, T, M) and the final carry ``(c, h)`` (B, H) each.
    """
    skills, correct = np.asarray(skills), np.asarray(correct)
    lengths = np.asarray(lengths, np.int32)
    b, t = skills.shape
    n_chunks = max(1, -(-t // chunk_len))
    pad = n_chunks * chunk_len - t
    if pad:
        skills = np.pad(skills, ((0, 0), (0, pad)), constant_values=-1)
        correct = np.pad(correct, ((0, 0), (0, pad)))
    outs = []
    for i in range(n_chunks):
        sl = slice(i * chunk_len, (i + 1) * chunk_len)
        chunk = (skills[:, sl], correct[:, sl], np.clip(lengths - i * chunk_len, 0, chunk_len).astype(np.int32))
        if shard is not None:
            chunk = shard(chunk)
        states, carry = _knowledge_states_jit(params, *chunk, carry)
        outs.append(states)
    states = outs[0] if n_chunks == 1 else jnp.concatenate(outs, axis=1)
    return (states[:, :t] if pad else states), carry


__all__ = ["DKT", "init", "apply", "knowledge_states", "knowledge_states_chunked", "model_from_config",
           "architecture_from_params"]
