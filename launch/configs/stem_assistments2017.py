r"""STEM pipeline on the real ASSISTments 2017 competition release (not distributed with this repo).

    python -m launch.stem --config=launch/configs/stem_assistments2017.py --workdir=workdirs/stem_real \
        --config.manual_dir=PATH/TO/RELEASE

PATH/TO/RELEASE holds student_log_*.csv (or anonymized_full_release_competition_dataset.csv),
training_label.csv and validation_test_label.csv (see datasets/assistments2017/README.md). DKT / DKT+ are
trained like the authors (up to 500-step chunks, early stopping, patience 10); ``:paper`` uses the full
dkt_spec §6.4 grids.
"""
from __future__ import annotations

import ml_collections

from launch.configs import stem_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = stem_base.get_config(arg)
    c.generate = False
    c.dkt.max_len = 500
    c.dkt.num_epochs = 60
    c.dkt.patience = 10
    return c
