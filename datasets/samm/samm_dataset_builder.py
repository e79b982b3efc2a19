"""SAMM micro-expressions (manual download; TF-free array_record builder).

Configs: ``5class`` (surprise, happiness, anger, contempt, others; disgust, fear, sadness excluded) and
``3class`` (MEGC: negative = anger + contempt + disgust + fear + sadness, positive = happiness, surprise),
each also as ``<name>_reference`` with the official FDP frame sampling.
"""
from __future__ import annotations

from datasets.me_common import annotations as ann_lib
from datasets.me_common import frames as frames_lib
from datasets.me_common.builder import FrameVariant, MEBuilder, Protocol, make_configs

PROTOCOLS = {
    "5class": Protocol(
        classes=("surprise", "happiness", "anger", "contempt", "others"),
        mapping={"surprise": "surprise", "happiness": "happiness", "anger": "anger", "contempt": "contempt",
                 "other": "others"},
        description="5 classes in the FDP order (Other -> others); disgust, fear and sadness excluded"),
    "3class": Protocol(
        classes=("negative", "positive", "surprise"),
        mapping={"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
                 "sadness": "negative", "happiness": "positive", "surprise": "surprise"},
        description="MEGC 3 classes; Other excluded"),
}
CROPPED_DIRS = ("SAMM_CROP", "SAMM_CROP2", "samm_aligned_wan")
RAW_DIRS = ("SAMM",)
SUBJECT_DIR = r"\d{3}"


class Builder(MEBuilder):
    """SAMM from the user's manual_dir (see README.md)."""
    BUILDER_CONFIGS = make_configs(PROTOCOLS)
    ANNOTATION_PATTERNS = (r"SAMM_Micro_FACS_Codes_v2\.xlsx", r"SAMM.*Micro.*FACS.*Codes.*\.xlsx?",
                           r"SAMM.*Micro.*FACS.*\.csv")
    KNOWN_LABELS = frozenset({"anger", "other", "happiness", "surprise", "contempt", "disgust", "fear", "sadness"})
    HOMEPAGE = "https://personalpages.manchester.ac.uk/staff/adrian.davison/SAMM.html"
    CITATION = """@article{davison2018samm,
  title={{SAMM}: A Spontaneous Micro-Facial Movement Dataset},
  author={Davison, Adrian K. and Lansley, Cliff and Costen, Nicholas and Tan, Kevin and Yap, Moi Hoon},
  journal={IEEE Transactions on Affective Computing}, volume={9}, number={1}, pages={116--129}, year={2018}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
SAMM is licensed (signed license agreement): request it from the authors (Manchester Metropolitan
University). Put into manual_dir (unzipped; a doubled SAMM/SAMM/ folder is fine):
  SAMM_Micro_FACS_Codes_v2.xlsx
  SAMM/<sss>/<sss>_<k>_<n>/<sss>_<frame>.jpg     (frame numbers with 4 or 5 digits)
Optionally a face-cropped copy in the same layout: SAMM_CROP/ (used in preference to SAMM/).
"""

    def parse(self, path: str, report) -> list[ann_lib.ClipAnnotation]:
        return ann_lib.parse_samm(path, report)

    def frame_variants(self, manual_dir: str) -> list[FrameVariant]:
        out = []
        for name, cropped, candidates in (("cropped", True, CROPPED_DIRS), ("raw", False, RAW_DIRS)):
            root = frames_lib.find_release_dir(manual_dir, candidates)
            if root and name == "raw" and not frames_lib.find_parent_of(root, SUBJECT_DIR, max_depth=0):
                root = frames_lib.find_parent_of(root, SUBJECT_DIR, max_depth=2) or root
            if root:
                out.append(FrameVariant(name, cropped, frames_lib.subject_clip_resolver(root), root))
        if not out and frames_lib.find_parent_of(manual_dir, SUBJECT_DIR, max_depth=0):  # manual_dir = SAMM/
            out.append(FrameVariant("raw", False, frames_lib.subject_clip_resolver(manual_dir), manual_dir))
        return out
