"""The official FDP protocol (CYF-cuber/FDP) on CASME II, for like-for-like comparisons.

reference_compat model (20 LFA blocks, dense MHCA, raw reshape), the official i*floor(L/8) frame sampling
(builder config ``5class_reference``) and per-split scalar normalisation, no augmentation, Adam 1e-4 with
coupled weight decay 1e-3, batch 36, 501 steps per fold, CE + 100 * MSE, BN frozen in eval mode after the
first epoch (the official ``model.eval()`` that is never undone). Model selection stays on the last step;
add ``--config.select_on_test=True --config.selection_metric=accuracy`` for the official (LEAKY) best epoch
on the test subject, labelled as such in the report.

    python -m launch.fdp --config=launch/configs/fdp_reference.py --workdir=workdirs/fdp_reference \
        --config.data.manual_dir=<unpacked CASME II release>
"""
from launch.configs.fdp_casme2 import base_config

# FDP's LOSO list in the official code: 01..26 without 18.
OFFICIAL_CASME2_SUBJECTS = tuple(f"sub{i:02d}" for i in range(1, 27) if i != 18)


def get_config():
    c = base_config("casme2/5class_reference", size="full", mode="reference_compat")
    c.data.normalization = "reference"
    c.data.augment = False
    c.data.eval_batch_size = 48
    c.data.subjects = OFFICIAL_CASME2_SUBJECTS
    c.eval_mode_after_first_epoch = True
    c.selection_metric = "accuracy"
    c.compute_dtype = "float32"
    return c
