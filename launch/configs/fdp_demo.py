"""The embedded demo (README main job): FDP on a synthetic CASME II release, LOSO, 5 classes, on CPU.

    python -m launch.fdp --config=launch/configs/fdp_demo.py --workdir=workdirs/fdp_demo

Generates a synthetic CASME II release (procedural faces, AU-like motion carries the class) into
``<workdir>/synthetic/casme2`` unless present, builds it into ``<workdir>/tfds``, then runs LOSO with a
paper-mode FDP and a short fixed schedule (model = last step; nothing is selected on the test subject).

Sizing for 2 CPU cores / 10 minutes: the ``small`` preset (37.5 GFLOP per batch-8 train step by XLA's cost
analysis; its whole LOSO took 9 min 48 s) is narrowed further here (same paper topology: stem, 4 stages of
1 LFA + 1 GFA block, time-major rank scorer, SegNet decoder), to 8.3 GFLOP per batch-8 step; 8 subjects x 24
clips, 150 steps per fold (warmup + cosine learning rate). The clips are centred in time (``data.center_time``, a
documented data-side option that is NOT in the paper; paper-faithful settings stayed at chance on this budget) and
the frame encoder's head flattens its final map instead of average-pooling it (``model.head_pool='flatten'``, also
NOT in the paper). See docs/fdp_training.md for the measured scores and what was tried.
"""
import ml_collections

from launch.configs.fdp_casme2 import base_config


def get_config():
    c = base_config("casme2/5class", size="small", mode="paper")
    c.model.stem_chs = (16, 16, 16)
    c.model.depths = (1, 1, 1, 1)
    c.model.lfa_widths = (16, 32, 48, 64)
    c.model.gfa_widths = (64, 64, 64, 64)
    c.model.mix_block_ratio = 0.5     # GFA width 64 = 32 attention + 32 conv channels
    c.model.segnet_width = 0.125
    # NOT in the paper: the frame encoder's head flattens its final 2x2 map instead of averaging it, so the
    # frame features keep *where* on the face the motion is (the class is carried by where the AU-like
    # motion happens; docs/fdp_training.md: pooled UF1 on the tuning releases 0.559 -> 0.711 on average).
    c.model.head_pool = "flatten"
    c.data.data_dir = ""
    c.data.synthetic.enabled = True
    c.data.synthetic.num_subjects = 8
    c.data.synthetic.clips_per_subject = 24
    # What makes the short CPU schedule learn (tuned on releases of another generator seed, see
    # docs/fdp_training.md): clips centred in time (NOT in the paper: the static face is removed, only the
    # motion is left), 24 clips per subject, a larger learning rate with warmup + cosine decay, a smaller
    # dynamic-image loss weight, no augmentation and no DropPath.
    c.data.center_time = True
    c.data.augment = False
    c.model.path_dropout = 0.0
    c.loss.di_weight = 10.0
    c.batch_size = 8
    c.num_steps = 150
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10
    c.log_every = 10
    c.checkpoint_every = 50
    # Measured spread over training seeds (README; --config.seeds=0,1,2,3,4 on 2026-12-07, code 4127910): a single
    # run prints where its pooled UF1 falls in it. A reference figure for the reader, not used by training.
    c.reference_seed_spread = ml_collections.ConfigDict(
        {"uf1_mean": 0.7905, "uf1_std": 0.0557, "seeds": "5", "source": "README, 2026-12-07"})
    return c
