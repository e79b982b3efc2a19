"""FDP on CAS(ME)^3 Part A (7 classes by default; casme3/4class and casme3/3class also exist), LOSO.

    python -m launch.fdp --config=launch/configs/fdp_casme3.py --workdir=workdirs/fdp_casme3 \
        --config.data.manual_dir=<unpacked CAS(ME)^3 release> [--config.data.name=casme3/3class]
"""
from launch.configs.fdp_casme2 import base_config


def get_config():
    return base_config("casme3/7class")
