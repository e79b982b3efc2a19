r"""STEM pipeline on the full-size synthetic ASSISTments 2017 release (the default demo).

    python -m launch.stem --config=launch/configs/stem_synthetic.py --workdir=workdirs/stem_synthetic
    python -m launch.stem --config=launch/configs/stem_synthetic.py:paper --workdir=...   # full grids (slow)
"""
from __future__ import annotations

import ml_collections

from launch.configs import stem_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return stem_base.get_config(arg)
