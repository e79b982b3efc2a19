r"""Knowledge-state export benchmark: full-length DKT runs over a full-size ASSISTments 2017 population.

    python -m launch.benchmark --model=dkt_export [--dkt_export_out=bench/dkt_export.json]
    python -m launch.benchmark --model=dkt_export --dkt_export_workdir=workdirs/stem_synthetic

Times ``dkt_jax.stem.export.export_knowledge_states`` (length-batched, chunked with the carried LSTM state)
over every student. Default population: 1,709 students with lengths drawn like the synthetic generator
(lognormal, median 440, sigma 0.6, clipped to [5, 3000]; about 940k actions), random skills/answers and a
randomly initialised LSTM-200 over 102 skills (the cost does not depend on the values).
``--dkt_export_workdir`` instead uses a finished ``launch.stem`` workdir: all students of its built dataset
(kt_train + kt_test) and its trained DKT+ parameters. Target: < 30 s on the 2-core CPU.
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import flags, logging

_STUDENTS = flags.DEFINE_integer("dkt_export_students", 1709, "Students (synthetic population).")
_SKILLS = flags.DEFINE_integer("dkt_export_skills", 102, "Skills M (synthetic population).")
_HIDDEN = flags.DEFINE_integer("dkt_export_hidden", 200, "LSTM width (synthetic population).")
_MEDIAN = flags.DEFINE_float("dkt_export_length_median", 440.0, "Median sequence length.")
_TARGET_ACTIONS = flags.DEFINE_integer("dkt_export_actions", 940_000, "Rescale lengths to about this total.")
_CHUNK = flags.DEFINE_list("dkt_export_chunk_len", ["64"], "Chunk lengths to time.")
_BATCH = flags.DEFINE_list("dkt_export_batch_size", ["128"], "Batch sizes to time.")
_REPEATS = flags.DEFINE_integer("dkt_export_repeats", 2, "Timed repeats after the first (compiling) run.")
_WORKDIR = flags.DEFINE_string("dkt_export_workdir", None, "A finished launch.stem workdir to take data and "
                               "DKT+ parameters from (default: the synthetic population).")
_OUT = flags.DEFINE_string("dkt_export_out", None, "JSON result path.")


def _synthetic_population(seed: int = 0) -> tuple[list, list[str], object]:
    import jax

    import dkt_jax

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(_MEDIAN.value), 0.6, _STUDENTS.value)), 5, 3000)
    lengths = np.clip(np.round(lengths * _TARGET_ACTIONS.value / lengths.sum()), 5, 3000).astype(int)
    m = _SKILLS.value
    seqs = [(rng.integers(0, m, n).astype(np.int32), rng.integers(0, 2, n).astype(np.int32)) for n in lengths]
    params = dkt_jax.init(jax.random.key(0), {"num_skills": m, "hidden_size": _HIDDEN.value})
    return seqs, [f"skill_{j}" for j in range(m)], params


def _workdir_population(workdir: str) -> tuple[list, list[str], object]:
    from launch import train_dkt
    from dkt_jax.stem import features

    seqs, vocab = [], None
    for split in ("kt_train", "kt_test"):
        table, meta = features.load_split("assistments2017", split, os.path.join(workdir, "tfds"))
        seqs += table.sequences()
        vocab = [str(s) for s in meta["skill_vocab"]]
    params, _ = train_dkt.load_params(os.path.join(workdir, "kt", "dkt_plus"))
    return seqs, vocab, params


def main(argv):
    del argv
    from launch.benchmarks import common
    from dkt_jax.stem import export

    t0 = time.perf_counter()
    seqs, vocab, params = (_workdir_population(_WORKDIR.value) if _WORKDIR.value
                           else _synthetic_population())
    lengths = np.array([len(s) for s, _ in seqs])
    population = {"students": len(seqs), "actions": int(lengths.sum()), "max_len": int(lengths.max()),
                  "median_len": float(np.median(lengths)), "source": _WORKDIR.value or "synthetic",
                  "setup_s": time.perf_counter() - t0}
    logging.info("population %s", population)
    ids = np.arange(len(seqs))
    rows = []
    for chunk_len in map(int, _CHUNK.value):
        for batch_size in map(int, _BATCH.value):
            run = lambda: export.export_knowledge_states(  # noqa: E731
                params, seqs, student_ids=ids, skill_vocab=vocab,
                chunk_len=chunk_len, batch_size=batch_size, desc="export")
            t = time.perf_counter()
            run()
            first = time.perf_counter() - t
            timing = common.time_calls(run, warmup=0, repeats=_REPEATS.value)
            rows.append({"chunk_len": chunk_len, "batch_size": batch_size, "first_run_s": first,
                         "median_s": timing["median_s"], "min_s": timing["min_s"],
                         "actions_per_s": population["actions"] / timing["median_s"],
                         "under_30s": bool(first < 30.0)})
            print(f"chunk {chunk_len} batch {batch_size}: first run (with compile) {first:.1f}s, "
                  f"then median {timing['median_s']:.1f}s ({rows[-1]['actions_per_s'] / 1e3:.0f}k actions/s)",
                  flush=True)
    payload = {"population": population, "results": rows, "load_average_1_5_15": list(os.getloadavg()),
               "peak_rss_mb": common.peak_rss_mb(), "machine": common.machine_info()}
    print(common.format_table(rows, ["chunk_len", "batch_size", "first_run_s", "median_s", "actions_per_s",
                                     "under_30s"]))
    print(f"population: {population}; load average {payload['load_average_1_5_15']}")
    common.write_json(_OUT.value, payload)
