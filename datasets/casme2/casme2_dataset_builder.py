"""CASME II micro-expressions (manual download; TF-free array_record builder).

Configs: ``5class`` (surprise, happiness, disgust, repression, others; fear and sadness excluded),
``3class`` (MEGC: negative = disgust + repression, positive = happiness, surprise), each also as
``<name>_reference`` with the official FDP frame sampling.
"""
from __future__ import annotations


from datasets.me_common import annotations as ann_lib
from datasets.me_common import frames as frames_lib
from datasets.me_common.builder import FrameVariant, MEBuilder, Protocol, make_configs

PROTOCOLS = {
    "5class": Protocol(
        classes=("surprise", "happiness", "disgust", "repression", "others"),
        mapping={"surprise": "surprise", "happiness": "happiness", "disgust": "disgust",
                 "repression": "repression", "others": "others"},
        description="5 classes in the FDP order; fear and sadness excluded"),
    "3class": Protocol(
        classes=("negative", "positive", "surprise"),
        mapping={"disgust": "negative", "repression": "negative", "happiness": "positive", "surprise": "surprise"},
        description="MEGC 3 classes; others, fear and sadness excluded"),
}

# Folder names of the two frame variants (the first found wins within a variant).
CROPPED_DIRS = ("Cropped-updated/Cropped", "CASME2_preprocessed_Li Xiaobai/Cropped", "Cropped")
RAW_DIRS = ("CASME2_RAW_selected", "CASME2-RAW")


class Builder(MEBuilder):
    """CASME II from the user's manual_dir (see README.md)."""
    BUILDER_CONFIGS = make_configs(PROTOCOLS)
    ANNOTATION_PATTERNS = (r"CASME2-coding-20190701\.xlsx", r"CASME2-coding-20140508\.xlsx",
                           r"CASME2-coding.*\.xlsx?", r"CASME2-coding.*\.csv")
    KNOWN_LABELS = frozenset({"happiness", "disgust", "repression", "surprise", "others", "sadness", "fear"})
    HOMEPAGE = "http://casme.psych.ac.cn/casme/e2"
    CITATION = """@article{yan2014casme2,
  title={{CASME II}: An Improved Spontaneous Micro-Expression Database and the Baseline Evaluation},
  author={Yan, Wen-Jing and Li, Xiaobai and Wang, Su-Jing and Zhao, Guoying and Liu, Yong-Jin and
          Chen, Yu-Hsin and Fu, Xiaolan},
  journal={PLOS ONE}, volume={9}, number={1}, pages={e86041}, year={2014}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
CASME II is licensed: apply at http://casme.psych.ac.cn/casme/e2 (signed license agreement). Put into
manual_dir (unzipped; a doubled X/X/ folder or one extra folder level is fine):
  CASME2-coding-20190701.xlsx or CASME2-coding-20140508.xlsx (20190701 preferred when both are present)
  Cropped/subXX/<Filename>/reg_img<N>.jpg   (or Cropped-updated/Cropped/...; the authors' face crops)
  and/or CASME2_RAW_selected/subXX/<Filename>/img<N>.jpg   (raw frames; faces found with OpenCV)
"""

    def parse(self, path: str, report) -> list[ann_lib.ClipAnnotation]:
        return ann_lib.parse_casme2(path, report)

    def frame_variants(self, manual_dir: str) -> list[FrameVariant]:
        out = []
        for name, cropped, candidates in (("cropped", True, CROPPED_DIRS), ("raw", False, RAW_DIRS)):
            root = frames_lib.find_release_dir(manual_dir, candidates)
            if root:
                out.append(FrameVariant(name, cropped, frames_lib.subject_clip_resolver(root), root))
        return out
