r"""ASSISTments 2017 clickstream -> DKT / DKT+ knowledge states -> scikit-learn isSTEM prediction.

    python -m launch.stem --config=launch/configs/stem_synthetic.py --workdir=workdirs/stem_synthetic
    python -m launch.stem --config=launch/configs/stem_assistments2017.py --workdir=... \
        --config.manual_dir=PATH/TO/RELEASE

One command: generate/build the data, train DKT and DKT+ (or reuse them from the workdir), export the
full-length knowledge states, run the nested-CV sklearn stage, the NLG / correlation analyses, and write
<workdir>/report.md (see launch/train_stem.py for the layout and docs/stem.md). Several processes (e.g.
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) train the KT models together; process 0 does the
rest, writes every file and prints the summary.
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from launch.runtime import compile_cache
from launch.runtime.cli import exit_on_user_error, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a launch/configs/stem_*.py file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (created; reused on re-runs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import jax

    from launch import train_stem
    from launch.runtime.progress import set_default_verbosity

    set_default_verbosity()
    compile_cache.enable_compilation_cache()  # --compile_cache_dir; re-runs skip compiling
    results = exit_on_user_error("launch.stem", train_stem.train_and_evaluate, _CONFIG.value, _WORKDIR.value)
    if jax.process_index() > 0:  # the same results; process 0 prints them
        return
    print(f"done in {results['timings']['total_s']:.0f} s; acceptance: {results['acceptance']}")
    for key, test in results["comparison"].items():
        print(f"{key}: delta AUC {test['delta_auc']:+.4f}, 95% CI [{test['ci95'][0]:+.4f}, {test['ci95'][1]:+.4f}], "
              f"p {test['p']:.3g}{' (oracle)' if test.get('oracle') else ''}")
    print(f"report: {_WORKDIR.value}/report.md")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
