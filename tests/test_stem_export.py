"""Knowledge-state export (dkt_jax.stem.export) equals dkt_jax.knowledge_states on each student."""
from __future__ import annotations

import jax
import numpy as np
import pytest

import dkt_jax
from dkt_jax.stem import export


@pytest.fixture(scope="module")
def model_and_sequences():
    num_skills = 7
    params = dkt_jax.init(jax.random.key(3), {"num_skills": num_skills, "hidden_size": 16})
    rng = np.random.default_rng(0)
    lengths = [1, 2, 5, 8, 9, 16, 17, 31, 40, 3, 12]
    seqs = [(rng.integers(0, num_skills, n).astype(np.int32), rng.integers(0, 2, n).astype(np.int32))
            for n in lengths]
    return params, seqs, [f"s{j}" for j in range(num_skills)]


def test_export_equals_knowledge_states(model_and_sequences):
    params, seqs, vocab = model_and_sequences
    ids = np.arange(100, 100 + len(seqs))
    # chunk_len 8 and batch 3: sequences span up to 5 chunks and batches mix lengths; padded dummy rows.
    got = export.export_knowledge_states(params, seqs, student_ids=ids, skill_vocab=vocab, chunk_len=8, batch_size=3)
    assert got.final_states.shape == (len(seqs), len(vocab))
    for i, (s, c) in enumerate(seqs):
        states, _ = dkt_jax.knowledge_states(params, s[None], c[None], np.array([len(s)], np.int32))
        states = np.asarray(states[0])                                   # (T, M), one full-length pass
        np.testing.assert_allclose(got.final_states[i], states[-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.trajectories[i], states.mean(-1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.mean_states[i], states.mean(0), rtol=1e-5, atol=1e-6)
        # last_practice: skill k's output right after the last practice of k, else the final state.
        expected = states[-1].copy()
        for t, k in enumerate(s):
            expected[k] = states[t, k]
        np.testing.assert_allclose(got.last_practice_states[i], expected, rtol=1e-5, atol=1e-6)
    assert list(got.student_ids) == list(ids)
    frame = got.frame()
    assert list(frame.columns[:3]) == ["student_id", "kt_0", "kt_1"] and len(frame) == len(seqs)


def test_export_roundtrip_and_errors(model_and_sequences, tmp_path):
    params, seqs, vocab = model_and_sequences
    got = export.export_knowledge_states(params, seqs[:4], student_ids=[7, 8, 9, 10], skill_vocab=vocab,
                                 chunk_len=4, batch_size=8)
    paths = export.write_export(str(tmp_path), "dkt", got)
    back = export.read_export(paths["npz"])
    np.testing.assert_array_equal(back.final_states, got.final_states)
    np.testing.assert_array_equal(back.states("last_practice"), got.states("last_practice"))
    np.testing.assert_array_equal(back.frame("mean").to_numpy()[:, 1:], got.mean_states)
    with pytest.raises(ValueError, match="one of"):
        got.states("median")
    assert [len(t) for t in back.trajectories] == [len(s) for s, _ in seqs[:4]]
    assert back.skill_vocab == vocab
    with pytest.raises(ValueError, match="no actions"):
        export.export_knowledge_states(params, [seqs[0], (np.zeros(0, np.int32), np.zeros(0, np.int32))],
                               student_ids=[1, 2], skill_vocab=vocab)
    with pytest.raises(ValueError, match="skill vocabulary"):
        export.export_knowledge_states(params, seqs[:1], student_ids=[1], skill_vocab=vocab[:3])
