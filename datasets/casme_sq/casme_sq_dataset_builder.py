"""CAS(ME)^2 micro-expressions (manual download; TF-free array_record builder). Only the 57 rows typed
``micro-expression`` are used (macro rows are counted in the build report).

Configs: ``4class`` (the sheet's emotion category: negative, positive, surprise, others) and ``3class``
(others excluded), each also as ``<name>_reference`` with the official FDP frame sampling.
"""
from __future__ import annotations

import os

from datasets.me_common import annotations as ann_lib
from datasets.me_common import frames as frames_lib
from datasets.me_common.builder import FrameVariant, MEBuilder, Protocol, make_configs

PROTOCOLS = {
    "4class": Protocol(classes=("negative", "positive", "surprise", "others"),
                       mapping={c: c for c in ("negative", "positive", "surprise", "others")},
                       description="emotion category column (col 6), micro-expressions only"),
    "3class": Protocol(classes=("negative", "positive", "surprise"),
                       mapping={c: c for c in ("negative", "positive", "surprise")},
                       description="emotion category column (col 6) without others, micro-expressions only"),
}


class Builder(MEBuilder):
    """CAS(ME)^2 from the user's manual_dir (see README.md)."""
    BUILDER_CONFIGS = make_configs(PROTOCOLS)
    ANNOTATION_PATTERNS = (r"CAS\(ME\)\^?2code_final\.xlsx", r"CAS\(ME\)\^?2code_final.*\.xlsx?",
                           r"code_final\.xlsx", r"CAS\(ME\).*code.*\.csv")
    KNOWN_LABELS = frozenset({"negative", "positive", "surprise", "others"})
    HOMEPAGE = "http://casme.psych.ac.cn/casme/e3"
    CITATION = """@article{qu2018casme2,
  title={{CAS(ME)$^2$}: A Database for Spontaneous Macro-Expression and Micro-Expression Spotting and
         Recognition},
  author={Qu, Fangbing and Wang, Su-Jing and Yan, Wen-Jing and Li, He and Wu, Shuhang and Fu, Xiaolan},
  journal={IEEE Transactions on Affective Computing}, volume={9}, number={4}, pages={424--436}, year={2018}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
CAS(ME)^2 is licensed: apply at http://casme.psych.ac.cn/casme/e3 (signed license agreement). Put into
manual_dir (unzipped; one extra folder level such as CAS(ME)^2/ is fine):
  CAS(ME)^2code_final.xlsx  (or CAS(ME)^2code_final(Updated).xlsx)
  cropped/<nn>/<clip>/img<N>.jpg          (authors' crops; subject folder without 's')
  and/or selectedpic/s<nn>/<clip>/img<N>.jpg, or rawpic/s<nn>/<nn>_<code><name>/img<N>.jpg
"""

    def parse(self, path: str, report) -> list[ann_lib.ClipAnnotation]:
        return ann_lib.parse_casme_sq(path, report)

    def frame_variants(self, manual_dir: str) -> list[FrameVariant]:
        out = []
        for name, cropped, folder, resolver in (("cropped", True, "cropped", _clip_resolver(False)),
                                                ("selectedpic", False, "selectedpic", _clip_resolver(True)),
                                                ("rawpic", False, "rawpic", _rawpic_resolver)):
            root = frames_lib.find_release_dir(manual_dir, (folder,))
            if root:
                out.append(FrameVariant(name, cropped, lambda ann, r=root, f=resolver: f(r, ann), root))
        return out


def _subject_dir(root: str, ann: ann_lib.ClipAnnotation, with_s: bool) -> str | None:
    number = ann.extra["folder_number"]
    names = [f"s{number:02d}", f"s{number}"] if with_s else [f"{number:02d}", f"{number}", f"s{number:02d}"]
    return next((d for n in names if (d := frames_lib.find_dir(root, n))), None)


def _clip_resolver(with_s: bool):
    def resolve(root: str, ann: ann_lib.ClipAnnotation) -> str | None:
        subject_dir = _subject_dir(root, ann, with_s)
        return frames_lib.find_dir(subject_dir, ann.clip) if subject_dir else None
    return resolve


def _rawpic_resolver(root: str, ann: ann_lib.ClipAnnotation) -> str | None:
    """``rawpic/s<nn>/<nn>_<code><name>/``: the whole video, found by the 4-digit code of ``naming rule2``
    (the folder's own subject prefix is not trusted: ``s19`` holds ``23_0502funnyerrors``)."""
    code = ann.extra.get("video_code")
    subject_dir = _subject_dir(root, ann, True)
    if not code or not subject_dir:
        return None
    for entry in sorted(os.listdir(subject_dir)):
        parts = entry.split("_", 1)
        if len(parts) == 2 and parts[1].startswith(code) and os.path.isdir(os.path.join(subject_dir, entry)):
            return os.path.join(subject_dir, entry)
    return None
