"""CAS(ME)^3 Part A micro-expressions (manual download; TF-free array_record builder).

Configs: ``7class`` (happy, surprise, disgust, anger, fear, sad, others; ``Others`` folded into ``others``),
``4class`` (negative = disgust + anger + fear + sad, positive = happy, surprise, others) and ``3class``
(4class without others), each also as ``<name>_reference`` with the official FDP frame sampling.
The example key is ``<Subject>/<Filename>/<Onset>`` (a video can hold several MEs).
"""
from __future__ import annotations

import os
import re

from datasets.me_common import annotations as ann_lib
from datasets.me_common import frames as frames_lib
from datasets.me_common.builder import FrameVariant, MEBuilder, Protocol, make_configs

SEVEN = ("happy", "surprise", "disgust", "anger", "fear", "sad", "others")
FOUR_MAP = {"happy": "positive", "surprise": "surprise", "disgust": "negative", "anger": "negative",
            "fear": "negative", "sad": "negative", "others": "others"}
PROTOCOLS = {
    "3class": Protocol(classes=("negative", "positive", "surprise"),
                       mapping={k: v for k, v in FOUR_MAP.items() if v != "others"},
                       description="negative/positive/surprise (others excluded)"),
    "4class": Protocol(classes=("negative", "positive", "surprise", "others"), mapping=FOUR_MAP,
                       description="negative/positive/surprise/others"),
    "7class": Protocol(classes=SEVEN, mapping={c: c for c in SEVEN}, description="7 emotions"),
}
SUBJECT_DIR = r"sp(no)?\.?\d+"


class Builder(MEBuilder):
    """CAS(ME)^3 Part A from the user's manual_dir (see README.md)."""
    BUILDER_CONFIGS = make_configs(PROTOCOLS)
    ANNOTATION_PATTERNS = (r"cas\(me\)3_part_A_ME_label_JpgIndex_v2\.xlsx", r"cas\(me\)3_part_A_ME_label.*\.xlsx?",
                           r"cas\(me\)3_part_A_ME_label.*\.csv")
    KNOWN_LABELS = frozenset(SEVEN)
    HOMEPAGE = "http://casme.psych.ac.cn/casme/e4"
    CITATION = """@article{li2023casme3,
  title={{CAS(ME)$^3$}: A Third Generation Facial Spontaneous Micro-Expression Database with Depth
         Information and High Ecological Validity},
  author={Li, Jingting and Dong, Zizhao and Lu, Shaoyuan and Wang, Su-Jing and Yan, Wen-Jing and Ma, Yinhuan and
          Liu, Ye and Huang, Changbing and Fu, Xiaolan},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence}, volume={45}, number={3},
  pages={2782--2800}, year={2023}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
CAS(ME)^3 is licensed: apply at http://casme.psych.ac.cn/casme/e4 (signed license agreement). Put into
manual_dir (unzipped):
  cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx
  Part_A_ME_clip/frame/<Subject>_<Filename>_<Onset>/<N>.jpg          (the ME clip release), and/or
  part_A/.../<Subject>/<Filename>/color/<N>.jpg                         (the full Part A videos)
"""

    def parse(self, path: str, report) -> list[ann_lib.ClipAnnotation]:
        return ann_lib.parse_casme3(path, report)

    def frame_variants(self, manual_dir: str) -> list[FrameVariant]:
        out = []
        clips_root = frames_lib.find_release_dir(manual_dir, ("Part_A_ME_clip/frame", "Part_A_ME_clip"), max_depth=3)
        if clips_root and os.path.basename(clips_root).lower() != "frame":
            clips_root = frames_lib.find_dir(clips_root, "frame") or clips_root
        if clips_root:
            out.append(FrameVariant("me_clip", False, lambda ann, r=clips_root: _clip_dir(r, ann), clips_root))
        videos_root = frames_lib.find_parent_of(manual_dir, SUBJECT_DIR, max_depth=6)
        if videos_root:
            out.append(FrameVariant("part_a", False, lambda ann, r=videos_root: _video_dir(r, ann), videos_root))
        return out


def _clip_dir(root: str, ann: ann_lib.ClipAnnotation) -> str | None:
    """``<Subject>_<Filename>_<Onset>`` matched case-insensitively (``spNo`` vs ``spNO``)."""
    return frames_lib.find_dir(root, f"{ann.subject}_{ann.clip}_{ann.onset}")


def _video_dir(root: str, ann: ann_lib.ClipAnnotation) -> str | None:
    subject_dir = frames_lib.find_dir(root, ann.subject)
    if subject_dir is None:
        number = re.sub(r"\D", "", ann.subject)
        subject_dir = next((os.path.join(root, e) for e in sorted(os.listdir(root))
                            if re.fullmatch(SUBJECT_DIR, e, re.IGNORECASE) and re.sub(r"\D", "", e) == number), None)
    video = _exact_case_dir(subject_dir, ann.clip) if subject_dir else None
    if video is None:
        return None
    return frames_lib.find_dir(video, "color") or video


def _exact_case_dir(parent: str, name: str) -> str | None:
    """Filename letters are case-sensitive in CAS(ME)^3 (``J`` in spNO.14): exact match first."""
    path = os.path.join(parent, name)
    return path if os.path.isdir(path) else frames_lib.find_dir(parent, name)
