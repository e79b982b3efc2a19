"""Knowledge-state export: full-length DKT/DKT+ runs over every labelled and submission student.

Each student's whole action sequence is run (no truncation). Students are sorted by length and batched
with similar lengths; each batch goes through :func:`dkt_jax.knowledge_states_chunked` (fixed
``chunk_len`` chunks, the LSTM carry passed from chunk to chunk, one compiled program for every chunk).

Per student the export keeps
* the final knowledge state: the model output after the last interaction, (M,) (dkt_spec.md §6.2);
* the mean-mastery trajectory: the mean over skills of the output after every interaction, (T_i,);
* two alternative per-skill summaries (NOT the paper's feature; ``config.export.state_feature`` selects
  them for the classifiers, default 'final'): ``last_practice`` = for each skill the output for that skill
  right after the student's last practice of it (the final state for never-practised skills), and ``mean``
  = the output averaged over the student's whole sequence.

Files (``write_export``): ``knowledge_states_<name>.csv`` (student_id, kt_0..kt_{M-1}) and
``knowledge_states_<name>.npz`` (student_ids, final_states, trajectory values + offsets, skill_vocab),
plus ``skill_vocab.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import dkt_jax
from dkt_jax.models import architecture_from_params

@dataclasses.dataclass
class Export:
    """Exported knowledge states of N students over M skills."""
    student_ids: np.ndarray              # (N,)
    final_states: np.ndarray             # (N, M) float32
    trajectories: list[np.ndarray]       # N arrays (T_i,) of mean mastery after each interaction
    skill_vocab: list[str]               # (M,)
    last_practice_states: np.ndarray | None = None   # (N, M) output for skill k after the last practice of k
    mean_states: np.ndarray | None = None            # (N, M) output averaged over the sequence

    def frame(self, kind: str = "final") -> pd.DataFrame:
        """student_id, kt_0..kt_{M-1} as a DataFrame (the authors' CSV layout) of the ``kind`` summary:
        'final' (the paper's), 'last_practice' or 'mean'."""
        x = self.states(kind)
        return pd.DataFrame({"student_id": self.student_ids, **{f"kt_{j}": x[:, j] for j in range(x.shape[1])}})

    def states(self, kind: str = "final") -> np.ndarray:
        """(N, M) per-skill summary ``kind`` ('final', 'last_practice', 'mean')."""
        table = {"final": self.final_states, "last_practice": self.last_practice_states, "mean": self.mean_states}
        if kind not in table:
            raise ValueError(f"state summary must be one of {sorted(table)}, got {kind!r}")
        if table[kind] is None:
            raise ValueError(f"this export has no {kind!r} states (re-run the export)")
        return table[kind]


def length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of ``batch_size`` students of similar length (longest first)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def write_export(out_dir: str, name: str, export: Export) -> dict[str, str]:
    """Writes ``knowledge_states_<name>.{csv,npz}`` and ``skill_vocab.json``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"knowledge_states_{name}.csv")
    npz_path = os.path.join(out_dir, f"knowledge_states_{name}.npz")
    vocab_path = os.path.join(out_dir, "skill_vocab.json")
    export.frame().to_csv(csv_path, index=False, float_format="%.6f")
    offsets = np.cumsum([0] + [len(t) for t in export.trajectories]).astype(np.int64)
    extra = {k: v for k, v in (("last_practice_states", export.last_practice_states),
                               ("mean_states", export.mean_states)) if v is not None}
    np.savez_compressed(npz_path, student_ids=export.student_ids, final_states=export.final_states, **extra,
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
                      skill_vocab=[str(s) for s in z["skill_vocab"]],
                      last_practice_states=z["last_practice_states"] if "last_practice_states" in z else None,
                      mean_states=z["mean_states"] if "mean_states" in z else None)


def export_knowledge_states(params: Any, sequences: Sequence[tuple[np.ndarray, np.ndarray]], *,
                            student_ids: Sequence, skill_vocab: Sequence[str], chunk_len: int = 64,
                            batch_size: int = 128, desc: str = "export") -> Export:
    """Runs every full sequence through the DKT ``params`` and keeps the final states and trajectories.

    Args:
      sequences: per student ``(skills (T_i,), correct (T_i,))`` int arrays, T_i >= 1.
      chunk_len, batch_size: the fixed (batch_size, chunk_len) shape of every compiled chunk.
    Returns:
      ``Export`` with final / last-practice / mean states (N, M) and trajectories (T_i,), in the order of
      ``sequences``.
    """
    arch = architecture_from_params(params)
    if arch["num_skills"] != len(skill_vocab):
        raise ValueError(f"model has {arch['num_skills']} skills, the skill vocabulary {len(skill_vocab)}.")
    num = len(sequences)
    if num == 0:
        raise ValueError("export_knowledge_states: no sequences to export.")
    lengths = np.array([len(s) for s, _ in sequences], np.int64)
    empty = [student_ids[i] for i in np.flatnonzero(lengths == 0)]
    if empty:
        raise ValueError(f"export_knowledge_states: students with no actions: {empty[:10]}")
    m = len(skill_vocab)
    final = np.zeros((num, m), np.float32)
    last_practice, mean_states = np.zeros((num, m), np.float32), np.zeros((num, m), np.float32)
    trajectories: list[np.ndarray] = [np.zeros(0, np.float32)] * num
    for rows in tqdm(length_batches(lengths, batch_size), desc=desc, unit="batch", mininterval=1.0):
        max_len = int(lengths[rows].max())
        skills = np.zeros((batch_size, max_len), np.int32)  # full batches: one compiled chunk shape
        correct = np.zeros((batch_size, max_len), np.int32)
        row_len = np.zeros(batch_size, np.int32)
        for r, i in enumerate(rows):
            s, c = sequences[i]
            skills[r, :len(s)], correct[r, :len(c)], row_len[r] = s, c, len(s)
        states, _ = dkt_jax.knowledge_states_chunked(params, skills, correct, row_len, chunk_len=chunk_len)
        states = np.asarray(states)                                                     # (B, T, M) on host
        means = states.mean(axis=-1)                                                    # (B, T)
        last = states[np.arange(len(rows)), row_len[:len(rows)] - 1]                    # (rows, M)
        for r, i in enumerate(rows):
            n = row_len[r]
            final[i] = last[r]
            trajectories[i] = means[r, :n].astype(np.float32)
            mean_states[i] = states[r, :n].mean(axis=0)
            s = skills[r, :n]
            ok = (s >= 0) & (s < m)
            last_t = np.full(m, -1)
            np.maximum.at(last_t, s[ok], np.flatnonzero(ok))                            # last practice per skill
            hit = np.flatnonzero(last_t >= 0)
            last_practice[i] = last[r]
            last_practice[i, hit] = states[r, last_t[hit], hit]
    return Export(student_ids=np.asarray(student_ids), final_states=final, trajectories=trajectories,
                  skill_vocab=list(skill_vocab), last_practice_states=last_practice, mean_states=mean_states)
