"""Console output of the launchers: tqdm progress bars, one summary line per epoch / fold / stage, and the
default log verbosity.

A run shows its progress bars, its summary lines and warnings. ``--verbosity=0`` (absl INFO) or higher
brings back the INFO logs of the libraries (orbax checkpoint steps, data loading, ...).
"""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

import jax
from absl import flags, logging
from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             initial: int = 0, leave: bool = True, position: int | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar shown only on process 0. Use ``bar.set_postfix(loss=...)`` for live metrics."""
    return tqdm(iterable, total=total, desc=desc, initial=initial, leave=leave, position=position,
                unit=unit, dynamic_ncols=True, disable=jax.process_index() != 0, file=sys.stderr,
                mininterval=1.0)


def summary(message: str) -> None:
    """One summary line (an epoch, a fold, a stage) on process 0, printed above any open progress bar.

    Shown at every verbosity: logged as INFO when INFO logs are on, else written with ``tqdm.write``."""
    if logging.get_verbosity() >= logging.INFO:
        logging.info("%s", message)
    elif jax.process_index() == 0:
        tqdm.write(message, file=sys.stderr)


def set_default_verbosity() -> None:
    """WARNING for the absl/Python loggers unless the user passed ``--verbosity``; call it in ``main``."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
