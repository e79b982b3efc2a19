r"""Host memory across LOSO folds: does a long protocol leak? Runs the tiny FDP config over 5 synthetic subjects
(5 folds) in this process and reports the resident set size after each fold.

    python -m launch.benchmark --model=fdp_loso [--fdp_loso_folds=5] [--fdp_loso_out=bench/fdp_loso.json]

The target: the RSS after the last fold within 5% of the RSS after the first (the first fold compiles the
steps; later folds reuse them, so growth would be a leak of arrays, checkpoint managers or data iterators).
"""
from __future__ import annotations

import os
import tempfile

from absl import flags

_FOLDS = flags.DEFINE_integer("fdp_loso_folds", 5, "Subjects (= LOSO folds) of the synthetic release.")
_STEPS = flags.DEFINE_integer("fdp_loso_steps", 6, "Train steps per fold.")
_OUT = flags.DEFINE_string("fdp_loso_out", None, "JSON result path.")
_KEEP = flags.DEFINE_bool("fdp_loso_keep_host_memory", True,
                          "The allocator setting of launch.fdp (its default --keep_host_memory): "
                          "launch.runtime.host_memory.keep_freed_host_memory + release after compiles.")


def main(argv):
    del argv
    import numpy as np

    from launch import train_fdp
    from launch.benchmarks import common
    from launch.configs import fdp_tiny
    from launch.runtime import host_memory

    if _KEEP.value and host_memory.keep_freed_host_memory():  # as launch.fdp does by default
        host_memory.release_after_compiles()

    config = fdp_tiny.get_config()
    config.data.synthetic.num_subjects = _FOLDS.value
    config.num_steps = _STEPS.value
    config.log_every = _STEPS.value
    config.checkpoint_every = max(1, _STEPS.value // 2)
    with tempfile.TemporaryDirectory() as workdir:
        results = train_fdp.train_and_evaluate(config, workdir)
        rss = []
        for subject in results["subjects"]:
            with np.load(os.path.join(workdir, "folds", subject, "predictions.npz")) as z:
                rss.append(float(z["host_rss_mb"]))
    rows = [{"fold": i + 1, "subject": s, "rss_mb": r, "vs_fold_1": r / rss[0]}
            for i, (s, r) in enumerate(zip(results["subjects"], rss))]
    payload = {"folds": rows, "last_vs_first": rss[-1] / rss[0], "within_5_percent": abs(rss[-1] / rss[0] - 1) <= 0.05,
               "keep_host_memory": _KEEP.value, "peak_rss_mb": common.peak_rss_mb(),
               "load_average_1_5_15": list(os.getloadavg()),
               "machine": common.machine_info()}
    print(common.format_table(rows, ["fold", "subject", "rss_mb", "vs_fold_1"]))
    print(f"RSS after fold {len(rss)} / after fold 1: {payload['last_vs_first']:.3f} "
          f"(within 5%: {payload['within_5_percent']}); peak {payload['peak_rss_mb']:.0f} MB")
    common.write_json(_OUT.value, payload)
