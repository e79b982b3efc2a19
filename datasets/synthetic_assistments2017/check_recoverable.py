r"""How much of the planted isSTEM signal simple features of the *observed* release recover (no DKT involved).

    python -m datasets.synthetic_assistments2017.check_recoverable --manual_dir=data/manual/assistments2017

Prints 5-fold (x ``--repeats``) CV AUCs on the de-duplicated training-label students of an L1 logistic
regression (C tuned by inner CV) on: SP; SP + BKT last ``Ln`` per skill (row-mean filled, the paper's BKT
baseline); SP + observed correctness on the STEM skills (one aggregated column, using the ground truth's list
of STEM skills); SP + the true STEM-skill mastery (ground truth). A reference for the knowledge-state pipeline.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from absl import app, flags
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from datasets.assistments2017 import schema
from datasets.assistments2017.release import load_release

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Release folder written by generate().", required=True)
_GT_DIR = flags.DEFINE_string("ground_truth_dir", None, "Ground truth folder (default <manual_dir>_ground_truth).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Repetitions of the shuffled 5-fold CV.")


def feature_sets(manual_dir: str, ground_truth_dir: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature matrices per name (rows = training-label students in file order) and the isSTEM labels."""
    release = load_release(manual_dir)
    ids = release.training["ITEST_id"].to_numpy()
    y = release.training["isSTEM"].to_numpy().astype(int)
    actions = release.actions[release.actions["ITEST_id"].isin(ids)]
    last_ln = actions.groupby(["ITEST_id", "skill"])["Ln"].last().unstack().reindex(ids)
    last_ln = last_ln.apply(lambda row: row.fillna(row.mean()), axis=1).to_numpy()
    with open(os.path.join(ground_truth_dir, "mastery.npz"), "rb") as f, np.load(f) as truth:
        stem_skills = set(truth["skill_vocab"][truth["is_stem_skill"]].tolist())
    on_stem = actions[actions["skill"].isin(stem_skills)].groupby("ITEST_id")["correct"].mean()
    on_stem = on_stem.reindex(ids).fillna(actions["correct"].mean()).to_numpy()[:, None]
    sp = actions.groupby("ITEST_id")[list(schema.SP_COLUMNS)].first().reindex(ids).to_numpy()
    true_stem = pd.read_csv(os.path.join(ground_truth_dir, "students.csv")).set_index("ITEST_id")
    true_stem = true_stem.reindex(ids)[["stem_mastery"]].to_numpy()
    return {"SP": sp, "SP+BKT_last_Ln_per_skill": np.hstack([sp, last_ln]),
            "SP+observed_STEM_skill_correctness": np.hstack([sp, on_stem]),
            "SP+true_STEM_mastery": np.hstack([sp, true_stem])}, y


def main(argv):
    del argv
    warnings.filterwarnings("ignore")
    gt_dir = _GT_DIR.value or os.path.normpath(_MANUAL_DIR.value) + "_ground_truth"
    sets, y = feature_sets(_MANUAL_DIR.value, gt_dir)
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, penalty="l1", solver="liblinear",
                                                                 scoring="roc_auc", cv=4))
    print(f"{len(y)} students, {y.mean():.3f} STEM")
    for name, x in sets.items():
        aucs = [cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=k),
                                scoring="roc_auc").mean() for k in range(_REPEATS.value)]
        print(f"{name:40s} AUC {np.mean(aucs):.4f}")


if __name__ == "__main__":
    app.run(main)
