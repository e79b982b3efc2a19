r"""Builds a dataset TF-free (the ``tfds build`` CLI needs TensorFlow and apache-beam).

    python -m launch.build --dataset=casme2/5class --manual_dir=~/mer/casme2 --data_dir=data/tfds
    python -m launch.build --list

An existing build is reused when its inputs are unchanged; if they changed, the command fails and names the
changed files (rebuild with --overwrite). --overwrite builds into a temporary folder and replaces the old build
only when the new one succeeded. A second build of the same dataset waits for the first (--lock_timeout).
Dataset problems end the command with exit status 1 and one line ``error: ...`` naming the file.
"""
from __future__ import annotations

import sys
import time

from absl import app, flags, logging

from datasets import registry
from launch.runtime.cli import parse_flags

_DATASET = flags.DEFINE_string("dataset", None, "Dataset name, optionally with a config: name[/config].")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with the official release files.")
_DATA_DIR = flags.DEFINE_string("data_dir", registry.DEFAULT_DATA_DIR, "TFDS data_dir to write to.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset already exists.")
_LIST = flags.DEFINE_bool("list", False, "List the known datasets and their configs, then exit.")
_LOCK_TIMEOUT = flags.DEFINE_float("lock_timeout", None, "Seconds to wait for another build of the same dataset "
                                   "(default: wait until it is done; 0: fail at once).")


def _list() -> None:
    for name in sorted(registry.BUILDER_MODULES):
        try:
            cls = registry.builder_class(name)
            configs = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
        except Exception as e:  # a builder whose module fails to import is reported, not fatal
            configs = [f"<unavailable: {type(e).__name__}: {e}>"]
        print(f"{name:18s} {' '.join(configs)}")


def main(argv):
    del argv
    from launch.runtime.progress import set_default_verbosity

    set_default_verbosity()
    if _LIST.value:
        _list()
        return
    if not _DATASET.value:
        sys.exit("--dataset is required (see --list).")
    t0 = time.time()
    try:
        builder = registry.build(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value, overwrite=_OVERWRITE.value,
                                 lock_timeout=_LOCK_TIMEOUT.value)
    except registry.DatasetError as e:
        sys.exit("error: " + " ".join(str(e).split()))
    info = builder.info
    splits = {k: v.num_examples for k, v in info.splits.items()}
    status = getattr(builder, "build_status", "built")
    what = "built" if status == "built" else "already built from the same inputs:"
    logging.info("%s %s in %.1fs", status, _DATASET.value, time.time() - t0)
    print(f"{what} {info.full_name} at {builder.data_dir} in {time.time() - t0:.1f}s; splits: {splits}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
