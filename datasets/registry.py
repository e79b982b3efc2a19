"""Name -> TFDS builder registry, and one TF-free build function used by every launcher.

Names are ``<dataset>`` or ``<dataset>/<builder config>``, e.g. ``simulated5``, ``kt_csv/assist2009``,
``casme2/5class``. Builders read only from the user's ``manual_dir``; nothing is downloaded.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

# dataset name -> module holding `Builder` (a tfds.core.GeneratorBasedBuilder).
BUILDER_MODULES: dict[str, str] = {
    "simulated5": "datasets.simulated5.simulated5_dataset_builder",
    "kt_csv": "datasets.kt_csv.kt_csv_dataset_builder",
    "assistments2017": "datasets.assistments2017.assistments2017_dataset_builder",
    "casme2": "datasets.casme2.casme2_dataset_builder",
    "samm": "datasets.samm.samm_dataset_builder",
    "casme_sq": "datasets.casme_sq.casme_sq_dataset_builder",
    "casme3": "datasets.casme3.casme3_dataset_builder",
}

DEFAULT_DATA_DIR = os.path.join("data", "tfds")


class DatasetError(ValueError):
    """A clear, user-facing dataset problem (bad name, missing manual_dir, malformed file...)."""


def split_name(name: str) -> tuple[str, str | None]:
    """'casme2/5class' -> ('casme2', '5class'); 'simulated5' -> ('simulated5', None)."""
    if "/" in name:
        base, config = name.split("/", 1)
        return base, config or None
    return name, None


def builder_class(dataset: str) -> type:
    """Imports and returns the Builder class of ``dataset`` (without config)."""
    if dataset not in BUILDER_MODULES:
        raise DatasetError(f"Unknown dataset {dataset!r}. Known: {', '.join(sorted(BUILDER_MODULES))}.")
    module = importlib.import_module(BUILDER_MODULES[dataset])
    return module.Builder


def get_builder(name: str, data_dir: str | None = None) -> Any:
    """An array_record builder instance for ``name`` (with its config) rooted at ``data_dir``."""
    dataset, config = split_name(name)
    cls = builder_class(dataset)
    known = [c.name for c in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
    if config is None and known:
        config = known[0]
    if config is not None and known and config not in known:
        raise DatasetError(f"Unknown config {config!r} for dataset {dataset!r}. Known: {', '.join(known)}.")
    kwargs = {"data_dir": data_dir or DEFAULT_DATA_DIR, "file_format": "array_record"}
    if config is not None:
        kwargs["config"] = config
    return cls(**kwargs)


def build(name: str, manual_dir: str | None, data_dir: str | None = None, *, overwrite: bool = False) -> Any:
    """Builds ``name`` from ``manual_dir`` into ``data_dir`` (TF-free). Returns the builder.

    Raises DatasetError with the offending path when ``manual_dir`` is missing.
    """
    import tensorflow_datasets as tfds

    builder = get_builder(name, data_dir)
    if manual_dir is None or not os.path.isdir(manual_dir):
        raise DatasetError(f"manual_dir {manual_dir!r} for dataset {name!r} does not exist or is not a "
                           f"directory. See datasets/{split_name(name)[0]}/README.md for the expected layout.")
    download_mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
                     else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.path.abspath(manual_dir),
                                                     download_mode=download_mode))
    return builder


def data_source(name: str, split: str, data_dir: str | None = None) -> Any:
    """``tfds.data_source`` for an already-built dataset (random access, TF-free)."""
    builder = get_builder(name, data_dir)
    return builder.as_data_source(split=split)
