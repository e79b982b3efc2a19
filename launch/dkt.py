r"""Train and evaluate DKT / DKT+.

    python -m launch.dkt --config=launch/configs/dkt_simulated5.py --workdir=workdirs/dkt_simulated5 \
        [--config.loss.lambda_w2=3.0 ...]

The workdir receives checkpoints/ (resumed on re-run), metrics.jsonl + tensorboard/, results.json,
report.md (AUC(N), AUC(C), w1, w2, m1, m2 [+ oracle and Bayes-optimal AUC on simulated5]),
best_params.msgpack and plots/{knowledge_state,training}.png. Training packs several students per row
(``config.packing='auto'``, LSTM state reset per student) wherever that cuts the rows by 1.1x or more.
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from launch.runtime import compile_cache
from launch.runtime.cli import exit_on_user_error, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a launch/configs/*.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (created; re-running resumes).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dkt_jax import report
    from launch import train_dkt
    from launch.runtime.progress import set_default_verbosity

    set_default_verbosity()
    compile_cache.enable_compilation_cache()  # --compile_cache_dir; re-runs skip compiling
    results = exit_on_user_error("launch.dkt", train_dkt.train_and_evaluate, _CONFIG.value, _WORKDIR.value)
    print(report.results_table(results))
    print(f"best epoch {results['best_epoch']} of {results['epochs_run']}; outputs in {_WORKDIR.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
