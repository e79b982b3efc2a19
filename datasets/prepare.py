"""One way for every launcher to get a dataset ready: generate a synthetic release if asked and missing,
then build it (TF-free) unless it is built already from the same inputs (``input_fingerprint.json``).

    builder = prepare.prepare_dataset("simulated5", manual_dir=raw, data_dir=tfds_dir,
                                      generate=functools.partial(simulated5.generate, num_students=500))

Generation writes into ``<manual_dir>.partial-<pid>`` and renames it to ``manual_dir`` only when the
generator returned, with a ``GENERATED.json`` summary inside; so an interrupted generation leaves no
half-written release behind and is simply redone on the next run.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, Callable

from datasets import registry

GENERATED_MARKER = "GENERATED.json"

Generator = Callable[[str], Any]  # out_dir -> summary (a JSON-able dict, or anything)


def _has_files(path: str) -> bool:
    return os.path.isdir(path) and any(not name.startswith(".") for name in os.listdir(path))


def ensure_generated(manual_dir: str, generate: Generator) -> bool:
    """Runs ``generate(tmp_dir)`` and moves the result to ``manual_dir`` unless ``manual_dir`` already
    holds files (a finished generation or a user's own release). Returns True when it generated."""
    if _has_files(manual_dir):
        return False
    parent = os.path.dirname(os.path.abspath(manual_dir))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(os.path.normpath(manual_dir))
    for stale in os.listdir(parent):  # partial folders of killed generations
        if stale.startswith(base + ".partial-"):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    tmp = os.path.join(parent, f"{base}.partial-{os.getpid()}")
    logging.info("Generating a synthetic release into %s", manual_dir)
    summary = generate(tmp)
    with open(os.path.join(tmp, GENERATED_MARKER), "w", encoding="utf-8") as f:
        json.dump(summary if isinstance(summary, dict) else {"summary": str(summary)}, f, indent=1, default=str)
    if os.path.isdir(manual_dir) and not _has_files(manual_dir):
        os.rmdir(manual_dir)
    try:
        os.rename(tmp, manual_dir)
    except OSError:  # another process finished the same generation first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def prepare_dataset(name: str, *, manual_dir: str | None, data_dir: str,
                    generate: Generator | None = None) -> Any:
    """The built TFDS builder of ``name`` (``dataset[/config]``) under ``data_dir``.

    With ``generate``, a synthetic release is first generated into ``manual_dir`` when that folder is
    missing or empty. The dataset is built from ``manual_dir`` only when ``data_dir`` does not hold it yet.
    An existing build is checked against ``manual_dir`` (when that folder exists): if the files it was built
    from changed, ``registry.DatasetError`` names them (rebuild with ``launch.build --overwrite``); a build
    without a stored fingerprint (older builds) is used with a warning.
    Raises ``registry.DatasetError`` (naming the folder) when it must be built and ``manual_dir`` is absent.
    """
    if generate is not None:
        if not manual_dir:
            raise registry.DatasetError(f"{name}: a synthetic release needs a manual_dir to be written to.")
        ensure_generated(manual_dir, generate)
    builder = registry.get_builder(name, data_dir)
    if builder.is_prepared():
        if manual_dir and os.path.isdir(manual_dir):
            registry.check_inputs(builder, name, manual_dir)
        elif manual_dir:
            logging.info("%s: manual_dir %s does not exist; using the build at %s without checking its inputs.",
                         name, manual_dir, builder.data_dir)
        return builder
    if not manual_dir:
        dataset = registry.split_name(name)[0]
        raise registry.DatasetError(
            f"{name} is not built under {data_dir} and no manual_dir is given: pass the unpacked release "
            f"(see datasets/{dataset}/README.md).")
    return registry.build(name, manual_dir, data_dir)
