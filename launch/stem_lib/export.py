"""Knowledge-state export: full-length DKT/DKT+ runs over every labelled and submission student.

Each student's whole action sequence is run (no truncation). Students are sorted by length and batched
with similar lengths; each batch is cut into fixed ``chunk_len`` chunks and the LSTM carry is passed from
chunk to chunk, so a single jitted function of shape (batch_size, chunk_len) serves every chunk.

Per student the export keeps
* the final knowledge state: the model output after the last interaction, (M,) (dkt_spec.md §6.2);
* the mean-mastery trajectory: the mean over skills of the output after every interaction, (T_i,).

Files (``write_export``): ``knowledge_states_<name>.csv`` (student_id, kt_0..kt_{M-1}) and
``knowledge_states_<name>.npz`` (student_ids, final_states, trajectory values + offsets, skill_vocab),
plus ``skill_vocab.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

# (params, skills (B,T), correct (B,T), lengths (B,), carry or None) -> (states (B,T,M), carry)
KnowledgeStatesFn = Callable[..., tuple[jax.Array, Any]]


@dataclasses.dataclass
class Export:
    """Exported knowledge states of N students over M skills."""
    student_ids: np.ndarray              # (N,)
    final_states: np.ndarray             # (N, M) float32
    trajectories: list[np.ndarray]       # N arrays (T_i,) of mean mastery after each interaction
    skill_vocab: list[str]               # (M,)

    def frame(self) -> pd.DataFrame:
        """student_id, kt_0..kt_{M-1} as a DataFrame (the authors' CSV layout)."""
        cols = {f"kt_{j}": self.final_states[:, j] for j in range(self.final_states.shape[1])}
        return pd.DataFrame({"student_id": self.student_ids, **cols})


def length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of ``batch_size`` students of similar length (longest first)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _chunk_step(knowledge_states_fn: KnowledgeStatesFn) -> Callable:
    """Jitted chunk function returning only what the export keeps (saves host transfers)."""

    def step(params, skills, correct, lengths, carry):
        states, new_carry = knowledge_states_fn(params, skills, correct, lengths, carry)
        mean_mastery = states.mean(axis=-1)                                    # (B, C)
        last = jnp.clip(lengths - 1, 0, skills.shape[1] - 1)
        last_state = jnp.take_along_axis(states, last[:, None, None], axis=1)[:, 0]  # (B, M)
        return mean_mastery, last_state, new_carry

    return jax.jit(step)


def export_knowledge_states(knowledge_states_fn: KnowledgeStatesFn, params: Any,
                            sequences: Sequence[tuple[np.ndarray, np.ndarray]], *, student_ids: Sequence,
                            skill_vocab: Sequence[str], init_carry: Callable[[int], Any],
                            chunk_len: int = 64, batch_size: int = 128,
                            desc: str = "export") -> Export:
    """Runs every full sequence through the model, chunked with the carried LSTM state.

    Args:
      knowledge_states_fn: ``(params, skills (B,C), correct (B,C), lengths (B,), carry) -> (states
        (B,C,M), carry)``; the carry must stop at each row's last valid step (``lengths`` may be 0).
      sequences: per student ``(skills (T_i,), correct (T_i,))`` int arrays, T_i >= 1.
      init_carry: batch_size -> initial carry (zeros), so that every chunk has the same pytree shape and
        the step compiles exactly once.
    Returns:
      ``Export`` with final states (N, M) and trajectories (T_i,), in the order of ``sequences``.
    """
    from launch.runtime.progress import progress

    num = len(sequences)
    if num == 0:
        raise ValueError("export_knowledge_states: no sequences to export.")
    lengths = np.array([len(s) for s, _ in sequences], np.int64)
    empty = [student_ids[i] for i in np.flatnonzero(lengths == 0)]
    if empty:
        raise ValueError(f"export_knowledge_states: students with no actions: {empty[:10]}")
    step = _chunk_step(knowledge_states_fn)
    num_skills = len(skill_vocab)
    final = np.zeros((num, num_skills), np.float32)
    trajectories: list[np.ndarray | None] = [None] * num
    batches = length_batches(lengths, batch_size)
    total_chunks = sum(-(-int(lengths[b].max()) // chunk_len) for b in batches)
    bar = progress(total=total_chunks, desc=desc, unit="chunk")
    for rows in batches:
        max_len = int(lengths[rows].max())
        padded = -(-max_len // chunk_len) * chunk_len
        skills = np.zeros((batch_size, padded), np.int32)
        correct = np.zeros((batch_size, padded), np.int32)
        row_len = np.zeros(batch_size, np.int64)
        for r, i in enumerate(rows):
            s, c = sequences[i]
            skills[r, :len(s)], correct[r, :len(c)], row_len[r] = s, c, len(s)
        carry = init_carry(batch_size)
        pieces: list[np.ndarray] = []
        for start in range(0, padded, chunk_len):
            chunk_lengths = np.clip(row_len - start, 0, chunk_len).astype(np.int32)
            mean_mastery, last_state, carry = step(params, skills[:, start:start + chunk_len],
                                                   correct[:, start:start + chunk_len], chunk_lengths, carry)
            pieces.append(np.asarray(mean_mastery))
            ends_here = (row_len > start) & (row_len <= start + chunk_len)
            last_state = np.asarray(last_state)
            for r in np.flatnonzero(ends_here[:len(rows)]):
                final[rows[r]] = last_state[r]
            bar.update(1)
        means = np.concatenate(pieces, axis=1)
        for r, i in enumerate(rows):
            trajectories[i] = means[r, :row_len[r]].astype(np.float32)
    bar.close()
    return Export(student_ids=np.asarray(student_ids), final_states=final,
                  trajectories=[t for t in trajectories], skill_vocab=list(skill_vocab))


def write_export(out_dir: str, name: str, export: Export) -> dict[str, str]:
    """Writes ``knowledge_states_<name>.{csv,npz}`` and ``skill_vocab.json``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"knowledge_states_{name}.csv")
    npz_path = os.path.join(out_dir, f"knowledge_states_{name}.npz")
    vocab_path = os.path.join(out_dir, "skill_vocab.json")
    export.frame().to_csv(csv_path, index=False, float_format="%.6f")
    offsets = np.cumsum([0] + [len(t) for t in export.trajectories]).astype(np.int64)
    np.savez_compressed(npz_path, student_ids=export.student_ids, final_states=export.final_states,
                        trajectory_values=np.concatenate(export.trajectories).astype(np.float32),
                        trajectory_offsets=offsets, skill_vocab=np.asarray(export.skill_vocab))
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump({"skill_vocab": list(export.skill_vocab)}, f, indent=1)
    return {"csv": csv_path, "npz": npz_path, "skill_vocab": vocab_path}


def read_export(npz_path: str) -> Export:
    """Loads an ``Export`` written by ``write_export``."""
    with np.load(npz_path, allow_pickle=False) as z:
        offsets = z["trajectory_offsets"]
        values = z["trajectory_values"]
        trajectories = [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        return Export(student_ids=z["student_ids"], final_states=z["final_states"], trajectories=trajectories,
                      skill_vocab=[str(s) for s in z["skill_vocab"]])


def export_with_dkt(params: Any, sequences: Sequence[tuple[np.ndarray, np.ndarray]], *, student_ids: Sequence,
                    skill_vocab: Sequence[str], chunk_len: int = 64, batch_size: int = 128,
                    desc: str = "export") -> Export:
    """``export_knowledge_states`` with ``dkt_jax.knowledge_states`` and a zero initial carry."""
    import dkt_jax
    from dkt_jax.models import architecture_from_params, zero_carry

    arch = architecture_from_params(params)
    if arch["num_skills"] != len(skill_vocab):
        raise ValueError(f"model has {arch['num_skills']} skills, the skill vocabulary {len(skill_vocab)}.")
    return export_knowledge_states(dkt_jax.knowledge_states, params, sequences, student_ids=student_ids,
                                   skill_vocab=skill_vocab, chunk_len=chunk_len, batch_size=batch_size,
                                   init_carry=lambda b: zero_carry(b, arch["hidden_size"]), desc=desc)
