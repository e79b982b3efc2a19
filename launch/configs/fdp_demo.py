"""The embedded demo (README main job): FDP on a synthetic CASME II release, LOSO, 5 classes, on CPU.

    python -m launch.fdp --config=launch/configs/fdp_demo.py --workdir=workdirs/fdp_demo

Generates a synthetic CASME II release (procedural faces, AU-like motion carries the class) into
``<workdir>/synthetic/casme2`` unless present, builds it into ``<workdir>/tfds``, then runs LOSO with the
``small`` paper-mode model and a short fixed schedule (model = last step; nothing is selected on the test
subject). Sized to finish in <= 10 minutes on 2 CPU cores.
"""
from launch.configs.fdp_casme2 import base_config


def get_config():
    c = base_config("casme2/5class", size="small", mode="paper")
    c.data.data_dir = ""
    c.data.synthetic.enabled = True
    c.data.synthetic.num_subjects = 10
    c.data.synthetic.clips_per_subject = 12
    c.batch_size = 16
    c.num_steps = 150
    c.optimizer.learning_rate = 1e-3
    c.log_every = 10
    c.checkpoint_every = 50
    return c
