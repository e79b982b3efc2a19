"""Flax Linen DKT (Piech et al. 2015) as used by DKT+ (Yeung & Yeung 2018).

Interaction ``(q_t, a_t)`` -> input index ``q_t + M * a_t`` (the ``onehot`` encoding of size 2M, or a
learned ``embedding`` of that index) -> LSTM(H) -> dropout -> Dense(M) -> sigmoid. The output at step
``t`` is the predicted probability of answering each skill correctly at step ``t + 1``.

Three interchangeable LSTM implementations, selected by ``lstm_impl``:

* ``'fused'`` (default, fastest): the hoisted recurrence below with a hand-written VJP
  (``dkt_jax.lstm.masked_lstm``).
* ``'hoisted'``: the input projection is taken out of the recurrence. For the one-hot
  encoding ``onehot(q + M a) @ W_i`` is a row gather of ``W_i``; for the embedding encoding it is a
  gather of the (2M, 4H) table ``E @ W_i``. The scanned cell (``HoistedLSTMCell`` under ``nn.RNN``) then
  does only ``h @ W_h`` per step, and the readout is one matmul over all steps.
* ``'flax'``: the textbook ``nn.RNN(nn.OptimizedLSTMCell(H))`` fed with one-hot / embedded inputs.

All three compute the same function (``tests/test_dkt_model.py`` converts parameters and checks it).
Padding is handled with ``seq_lengths``: the carry stops at each sequence's last valid step, so
``carry`` can be passed in and returned to process long sequences in chunks exactly.

Packed rows (``segments``, ``'fused'`` only): several students share one row; ``segments[b, t]`` numbers
the student of step t within the row (1, 2, ...; 0 on padding) and the LSTM state is reset to zero where it
changes, so each student is computed exactly as in a row of its own (:func:`segment_resets`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dkt_jax.lstm import masked_lstm

Carry = tuple[jax.Array, jax.Array]  # (c, h), each (B, H)

GATES = ("i", "f", "g", "o")
# 'reference_tf' reproduces the DKT+ TF code's input exactly, including its skill-0 bug (dkt_spec §1.2);
# use it only for parity with that code (reference_compat).
ENCODINGS = ("onehot", "embedding", "reference_tf")


def input_index(skills: jax.Array, correct: jax.Array, num_skills: int) -> jax.Array:
    """Index ``q + M * a`` of the 2M one-hot encoding; (B, T) int32. Padding (q < 0) maps to 0."""
    skills = jnp.maximum(skills, 0)
    correct = jnp.clip(correct, 0, 1)
    return (skills + num_skills * correct).astype(jnp.int32)


def reference_tf_projection(table: jax.Array, skills: jax.Array, correct: jax.Array, num_skills: int
                            ) -> jax.Array:
    """``X @ W`` for the DKT+ TF reference input ``X = [onehot(q), onehot(q*a*a, with 0 -> none)]``.

    Reproduces the reference's quirk exactly: skill 0 answered correctly gives ``q*a*a = 0``, which the
    reference maps to -1 (a zero row), so it is encoded like skill 0 answered wrongly. (B, T, 4H).
    """
    q = jnp.maximum(skills, 0)
    second = ((correct == 1) & (q != 0))[..., None].astype(table.dtype)
    return jnp.take(table, q, axis=0) + second * jnp.take(table, q + num_skills, axis=0)


def segment_resets(segments: jax.Array) -> jax.Array:
    """(B, T) segment ids -> (B, T) bool, True where a new segment starts after step 0 (state reset)."""
    change = segments[:, 1:] != segments[:, :-1]
    return jnp.concatenate([jnp.zeros_like(change[:, :1]), change], axis=1)


def zero_carry(batch_size: int, hidden_size: int, dtype: Any = jnp.float32) -> Carry:
    """The initial LSTM state ``(c, h)``, zeros of shape (B, H)."""
    z = jnp.zeros((batch_size, hidden_size), dtype)
    return (z, z)


def _recurrent_init(base: Any) -> Any:
    """Orthogonal init per gate block, like the four separate kernels of OptimizedLSTMCell: (H, 4H)."""
    def init(key, shape, dtype=jnp.float32):
        hdim = shape[0]
        return jnp.concatenate([base(k, (hdim, hdim), dtype) for k in jax.random.split(key, 4)], -1)
    return init


class FusedLSTM(nn.Module):
    """The hoisted LSTM recurrence with a hand-written VJP (``dkt_jax.lstm.masked_lstm``).

    Same parameters (``recurrent_kernel`` (H, 4H), ``bias`` (4H,)) as :class:`HoistedLSTMCell`.
    """

    features: int
    unroll: int = 1

    @nn.compact
    def __call__(self, gate_inputs: jax.Array, carry: Carry, lengths: jax.Array,
                 segments: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """gate_inputs (B, T, 4H), carry (c, h), lengths (B,), segments (B, T) or None
        -> (final carry, hs (B, T, H))."""
        kernel = self.param("recurrent_kernel", _recurrent_init(nn.initializers.orthogonal()),
                            (self.features, 4 * self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (4 * self.features,))
        mask = jnp.arange(gate_inputs.shape[1])[:, None] < lengths[None, :]  # (T, B)
        reset = None if segments is None else jnp.swapaxes(segment_resets(segments), 0, 1)
        hs, carry = masked_lstm(jnp.swapaxes(gate_inputs, 0, 1), kernel, bias, mask, reset, carry[0], carry[1],
                                self.unroll)
        return carry, jnp.swapaxes(hs, 0, 1)


class HoistedLSTMCell(nn.RNNCellBase):
    """LSTM cell whose inputs are precomputed gate pre-activations ``x_t W_i`` of shape (..., 4H).

    Gate order (i, f, g, o) as in ``nn.OptimizedLSTMCell``; same initialisers (orthogonal recurrent
    kernel, zero bias).
    """

    features: int
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, carry: Carry, gate_inputs: jax.Array) -> tuple[Carry, jax.Array]:
        c, h = carry
        hdim = self.features
        kernel = self.param("recurrent_kernel", _recurrent_init(self.recurrent_kernel_init), (hdim, 4 * hdim))
        bias = self.param("bias", self.bias_init, (4 * hdim,))
        z = gate_inputs + h @ kernel + bias
        i, f, g, o = jnp.split(z, 4, axis=-1)
        new_c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
        new_h = nn.sigmoid(o) * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        z = jnp.zeros(tuple(input_shape[:-1]) + (self.features,), jnp.float32)
        return (z, z)

    @property
    def num_feature_axes(self) -> int:
        return 1


class DKT(nn.Module):
    """Deep Knowledge Tracing.

    Attributes:
      num_skills: M, number of skills (KCs).
      hidden_size: H, LSTM width (200 in the papers).
      encoding: ``'onehot'`` (index q + M a, size 2M), ``'embedding'`` (learned, ``embedding_dim``) or
        ``'reference_tf'`` (the DKT+ TF code's input, bug included; a reference_compat option).
      embedding_dim: size of the learned input embedding (``encoding='embedding'`` only).
      dropout_rate: dropout on the LSTM outputs (1 - keep_prob of the reference).
      lstm_impl: ``'fused'`` (fastest: hoisted input projection + hand-written VJP), ``'hoisted'``
        (hoisted input projection, ``nn.RNN`` + autodiff) or ``'flax'`` (``nn.RNN(nn.OptimizedLSTMCell)``,
        inputs projected inside the scan). All three compute the same function.
      unroll: scan unroll factor.
    """

    num_skills: int
    hidden_size: int = 200
    encoding: str = "onehot"
    embedding_dim: int = 200
    dropout_rate: float = 0.0
    lstm_impl: str = "fused"
    unroll: int = 1

    @nn.compact
    def __call__(self, skills: jax.Array, correct: jax.Array, lengths: jax.Array,
                 carry: Carry | None = None, *, train: bool = False,
                 return_carry: bool = True, segments: jax.Array | None = None) -> tuple[Carry | None, jax.Array]:
        """Runs the model.

        Args:
          skills: (B, T) int skill ids in [0, M); padded positions may hold anything (e.g. -1).
          correct: (B, T) int 0/1.
          lengths: (B,) number of valid steps per row (0 allowed: the carry passes through).
          carry: optional initial ``(c, h)``, each (B, H); zeros when None.
          train: enables dropout (needs a ``'dropout'`` rng).
          return_carry: when False (training), the final carry is not tracked (returns None): the scan
            then skips the per-step carry history that ``nn.RNN`` keeps to pick each row's last state.
          segments: optional (B, T) int student number per step of packed rows (0 on padding); the LSTM
            state is reset where it changes. ``lstm_impl='fused'`` only.

        Returns:
          ``(final_carry, logits)``: carry after each row's last valid step, logits (B, T, M) whose
          sigmoid is the next-step P(correct) per skill. Logits at padded steps are meaningless.
        """
        m, hdim = self.num_skills, self.hidden_size
        if self.encoding not in ENCODINGS:
            raise ValueError(f"model.encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding == "reference_tf" and self.lstm_impl == "flax":
            raise ValueError("model.encoding='reference_tf' needs lstm_impl 'fused' or 'hoisted'")
        if self.lstm_impl not in ("fused", "hoisted", "flax"):
            raise ValueError(f"model.lstm_impl must be 'fused', 'hoisted' or 'flax', got {self.lstm_impl!r}")
        if segments is not None and self.lstm_impl != "fused":
            raise ValueError("packed rows (segments) need model.lstm_impl='fused'")
        idx = input_index(skills, correct, m)
        batch = skills.shape[0]
        if carry is None:
            carry = zero_carry(batch, hdim)
        initial_carry = carry
        lengths = jnp.asarray(lengths, jnp.int32)
        # Padding sits at the end, so outputs at valid steps never depend on it; seq_lengths is only
        # needed to select each row's last valid carry.
        rnn_kw = {"seq_lengths": lengths, "return_carry": True} if return_carry else {"return_carry": True}

        if self.lstm_impl in ("fused", "hoisted"):
            if self.encoding == "onehot":
                table = self.param("input_kernel", nn.initializers.lecun_normal(), (2 * m, 4 * hdim))
            elif self.encoding == "reference_tf":
                table = self.param("input_kernel_tf", nn.initializers.lecun_normal(), (2 * m, 4 * hdim))
            else:
                emb = nn.Embed(2 * m, self.embedding_dim, name="embedding").embedding
                w_i = self.param("input_kernel", nn.initializers.lecun_normal(),
                                 (self.embedding_dim, 4 * hdim))
                table = emb @ w_i  # (2M, 4H)
            if self.encoding == "reference_tf":
                gate_inputs = reference_tf_projection(table, skills, correct, m)
            else:
                gate_inputs = jnp.take(table, idx, axis=0)  # (B, T, 4H)
            if self.lstm_impl == "fused":  # masked scan: exact carry for any length, incl. 0
                carry, hs = FusedLSTM(hdim, self.unroll, name="lstm")(gate_inputs, carry, lengths, segments)
                return (carry if return_carry else None), self._readout(hs, train)
            rnn = nn.RNN(HoistedLSTMCell(hdim, name="lstm"), unroll=self.unroll)
            carry, hs = rnn(gate_inputs, initial_carry=carry, **rnn_kw)
        else:
            if self.encoding == "onehot":
                x = jax.nn.one_hot(idx, 2 * m, dtype=jnp.float32)
            else:
                x = nn.Embed(2 * m, self.embedding_dim, name="embedding")(idx)
            rnn = nn.RNN(nn.OptimizedLSTMCell(hdim, name="lstm"), unroll=self.unroll)
            carry, hs = rnn(x, initial_carry=carry, **rnn_kw)

        if return_carry:
            # nn.RNN picks carries[seq_lengths - 1], which wraps to the LAST step for length-0 rows;
            # a row with no valid step in this chunk must keep its incoming state.
            keep = (lengths > 0)[:, None]
            carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), carry, initial_carry)
        else:
            carry = None
        return carry, self._readout(hs, train)

    def _readout(self, hs: jax.Array, train: bool) -> jax.Array:
        hs = nn.Dropout(self.dropout_rate, deterministic=not train)(hs)
        return nn.Dense(self.num_skills, name="output")(hs)  # one matmul over all (B, T) steps


def flax_to_hoisted(params: dict) -> dict:
    """Converts ``lstm_impl='flax'`` parameters to the ``'fused'``/``'hoisted'`` layout (same function)."""
    cell = params["lstm"]
    out = {k: v for k, v in params.items() if k != "lstm"}
    out["input_kernel"] = jnp.concatenate([cell[f"i{g}"]["kernel"] for g in GATES], -1)
    out["lstm"] = {
        "recurrent_kernel": jnp.concatenate([cell[f"h{g}"]["kernel"] for g in GATES], -1),
        "bias": jnp.concatenate([cell[f"h{g}"]["bias"] for g in GATES], -1)}
    return out


def architecture_from_params(params: dict) -> dict:
    """Infers the model fields (num_skills, hidden_size, encoding, embedding_dim, lstm_impl)."""
    params = params.get("params", params)
    try:
        hdim, m = params["output"]["kernel"].shape
        cell = params["lstm"]
    except (KeyError, AttributeError, TypeError) as e:
        raise ValueError("Not a DKT parameter tree: expected keys 'output/kernel' and 'lstm'.") from e
    arch = {"num_skills": int(m), "hidden_size": int(hdim),
            "lstm_impl": "fused" if "recurrent_kernel" in cell else "flax"}
    if "embedding" in params:
        arch["encoding"] = "embedding"
        arch["embedding_dim"] = int(params["embedding"]["embedding"].shape[1])
    elif "input_kernel_tf" in params:
        arch["encoding"] = "reference_tf"
    else:
        arch["encoding"] = "onehot"
    return arch
