r"""STEM pipeline on the full-size synthetic ASSISTments 2017 release (the default demo).

    python -m launch.stem --config=launch/configs/stem_synthetic.py --workdir=workdirs/stem_synthetic
    python -m launch.stem --config=launch/configs/stem_synthetic.py:paper --workdir=...   # full grids (slow)
    python -m launch.stem --config=launch/configs/stem_synthetic.py:signal --workdir=...  # not the paper:
        # per-skill states at the last practice + DKT+ lambdas (0.1, 0.03, 0.3); see docs/stem.md

The generator's ground truth adds the oracle rows (ceilings) to the comparison; see docs/stem.md.
"""
from __future__ import annotations

import ml_collections

from launch.configs import stem_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return stem_base.get_config(arg)
