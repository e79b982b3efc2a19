"""CLI: ``python -m datasets.synthetic_me --dataset=casme2 --out_dir=data/manual/casme2 [--profile=...]``.

Writes the synthetic release and prints its summary (without the per-clip list) as JSON.
"""
from __future__ import annotations

import json

from absl import app, flags

from datasets.synthetic_me.generator import DATASETS, PROFILES, generate

_DATASET = flags.DEFINE_enum("dataset", "casme2", list(DATASETS), "Which release layout to write.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Target folder (the manual_dir of the builder).", required=True)
_PROFILE = flags.DEFINE_enum("profile", "learnable", list(PROFILES), "learnable demo data or official counts.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", None, "Subjects (learnable profile; default 20).")
_CLIPS = flags.DEFINE_integer("clips_per_subject", None, "Clips per subject (learnable profile; default 12).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed; the output is a deterministic function of it.")
_VARIANTS = flags.DEFINE_list("variants", None, "Frame variants, e.g. raw,cropped (default per dataset).")
_FRAME_SIZE = flags.DEFINE_list("frame_size", None, "Raw frame size: H,W or one int.")
_CLIP_LEN = flags.DEFINE_list("clip_len", None, "min,max frames from onset to offset.")
_QUIRKS = flags.DEFINE_boolean("quirks", True, "Plant the documented annotation/layout quirks.")
_SUMMARY = flags.DEFINE_string("summary_json", None, "Also write the full summary (with clips) here.")


def main(argv: list[str]) -> None:
    del argv
    frame_size = None
    if _FRAME_SIZE.value:
        frame_size = [int(v) for v in _FRAME_SIZE.value]
        frame_size = frame_size[0] if len(frame_size) == 1 else frame_size
    clip_len = tuple(int(v) for v in _CLIP_LEN.value) if _CLIP_LEN.value else None
    summary = generate(_OUT_DIR.value, _DATASET.value, num_subjects=_NUM_SUBJECTS.value,
                       clips_per_subject=_CLIPS.value, seed=_SEED.value, variants=_VARIANTS.value,
                       frame_size=frame_size, clip_len=clip_len, quirks=_QUIRKS.value, profile=_PROFILE.value,
                       show_progress=True)
    if _SUMMARY.value:
        with open(_SUMMARY.value, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "clips"}, indent=1))


if __name__ == "__main__":
    app.run(main)
