r"""Benchmarks. Each ``--model`` lives in ``launch/benchmarks/<model>.py`` and defines ``main(argv)``
(plus its own flags).

    python -m launch.benchmark --model=dkt
    python -m launch.benchmark --model=dkt_data --dataset=kt_csv/assist2009 --manual_dir=DIR [--epochs=N] [--json=OUT]
    python -m launch.benchmark --model=dkt_export
    python -m launch.benchmark --model=fdp [--reference_repo=PATH]
    python -m launch.benchmark --model=fdp_compile   # what the full train step's compile time is made of
    python -m launch.benchmark --model=fdp_decoder --fdp_decoder_workdir=W  # why the DI decoder stays flat
    python -m launch.benchmark --model=fdp_loso      # host memory after each of 5 tiny LOSO folds
    python -m launch.benchmark --model=fdp_start     # init / first-call / export costs
    python -m launch.benchmark --model=me_pipeline
"""
from __future__ import annotations

import importlib
import sys

from absl import app, flags

MODELS = ("dkt", "dkt_data", "dkt_export", "fdp", "fdp_compile", "fdp_decoder", "fdp_loso", "fdp_start",
          "me_pipeline")

flags.DEFINE_enum("model", None, MODELS, "Which benchmark to run.")


def _selected(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg == "--model" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def run() -> None:
    name = _selected(sys.argv[1:])
    if name not in MODELS:
        sys.exit(f"usage: python -m launch.benchmark --model={{{','.join(MODELS)}}} [flags]")
    module = importlib.import_module(f"launch.benchmarks.{name}")  # defines the module's flags
    app.run(module.main)


if __name__ == "__main__":
    run()
