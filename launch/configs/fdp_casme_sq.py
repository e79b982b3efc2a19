"""FDP on CAS(ME)^2 micro-expressions (4 classes: the dataset's own emotion category), LOSO, paper mode.

    python -m launch.fdp --config=launch/configs/fdp_casme_sq.py --workdir=workdirs/fdp_casme_sq \
        --config.data.manual_dir=<unpacked CAS(ME)^2 release> [--config.data.name=casme_sq/3class]
"""
from launch.configs.fdp_casme2 import base_config


def get_config():
    c = base_config("casme_sq/4class")
    c.batch_size = 24  # 57 clips in total: keep several batches per epoch
    return c
