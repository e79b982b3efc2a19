"""FDP on SAMM (5 classes: anger, contempt, happiness, surprise, other), LOSO, paper mode, full size.

    python -m launch.fdp --config=launch/configs/fdp_samm.py --workdir=workdirs/fdp_samm \
        --config.data.manual_dir=<unpacked SAMM release>
"""
from launch.configs.fdp_casme2 import base_config


def get_config():
    return base_config("samm/5class")
