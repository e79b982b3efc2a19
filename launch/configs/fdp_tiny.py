"""Tiny FDP LOSO run for tests and the notebook test: 3 synthetic subjects, tiny model, a few steps.

    python -m launch.fdp --config=launch/configs/fdp_tiny.py --workdir=workdirs/fdp_tiny

Checks that the pipeline runs end to end; its scores mean nothing.
"""
import ml_collections

from launch.configs.fdp_casme2 import base_config


def get_config():
    c = base_config("casme2/5class", size="tiny", mode="paper")
    c.model.image_size = 64          # the builders write 64x64 frames (the tiny preset defaults to 32)
    c.data.data_dir = ""
    c.data.synthetic.enabled = True
    c.data.synthetic.num_subjects = 3
    c.data.synthetic.clips_per_subject = 6
    c.data.synthetic.generator_kwargs = ml_collections.ConfigDict(dict(
        frame_size=64, clip_len=(8, 10), variants=("cropped",)))
    c.data.augment = False
    c.batch_size = 4
    c.num_steps = 3
    c.log_every = 1
    c.checkpoint_every = 2
    c.optimizer.learning_rate = 1e-3
    c.async_checkpointing = False
    return c
