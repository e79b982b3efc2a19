"""tqdm progress bars that stay quiet on non-zero processes and in non-interactive logs."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

import jax
from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             initial: int = 0, leave: bool = True, position: int | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar shown only on process 0. Use ``bar.set_postfix(loss=...)`` for live metrics."""
    return tqdm(iterable, total=total, desc=desc, initial=initial, leave=leave, position=position,
                unit=unit, dynamic_ncols=True, disable=jax.process_index() != 0, file=sys.stderr,
                mininterval=1.0)
