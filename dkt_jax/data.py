"""Dataset loading for launch.dkt: TFDS (array_record, TF-free) or in-memory sources -> Sequences.

``config.dataset`` is a registry name (``simulated5``, ``kt_csv/assist2009``, ``assistments2017``...).
For ``simulated5`` the raw files are generated into ``config.manual_dir`` (default
``<workdir>/simulated5_raw``) with ``config.simulated5`` kwargs when that folder has none yet.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Mapping

import jax
import ml_collections
from absl import logging

from datasets import registry
from dkt_jax import input_pipeline as ip

REFERENCE_FEATURES = ("p_true", "p_bayes")  # simulated5 per-interaction oracle / Bayes predictions


@dataclasses.dataclass
class Splits:
    train: ip.Sequences
    test: ip.Sequences
    num_skills: int
    metadata: dict


def _maybe_generate_simulated5(config: ml_collections.ConfigDict, manual_dir: str) -> None:
    if glob.glob(os.path.join(manual_dir, "*.csv")):
        return
    from datasets.simulated5 import generate

    kwargs = dict(config.get("simulated5", {}) or {})
    logging.info("Generating Simulated-5 into %s with %s", manual_dir, kwargs)
    if jax.process_index() == 0:
        summary = generate(manual_dir, **kwargs)
        logging.info("Simulated-5 summary: %s", summary)


def load_splits(config: ml_collections.ConfigDict, workdir: str,
                sources: Mapping[str, Any] | None = None) -> Splits:
    """Reads the train/test splits named by the config (or the given in-memory ``sources``)."""
    if sources is not None:
        m = int(sources["num_skills"])
        read = lambda split: ip.read_sequences(  # noqa: E731
            sources[split], num_skills=m, name=f"sources[{split!r}]",
            extra_features=[k for k in REFERENCE_FEATURES if len(sources[split]) and k in sources[split][0]])
        return Splits(read("train"), read("test"), m, {})

    name = config.dataset
    base, _ = registry.split_name(name)
    if base not in registry.BUILDER_MODULES:
        raise registry.DatasetError(
            f"Unknown dataset {name!r} in config.dataset. Known: {', '.join(sorted(registry.BUILDER_MODULES))}.")
    data_dir = config.get("data_dir") or os.path.join(workdir, "tfds")
    manual_dir = config.get("manual_dir")
    if base == "simulated5":
        manual_dir = manual_dir or os.path.join(workdir, "simulated5_raw")
        os.makedirs(manual_dir, exist_ok=True)
        _maybe_generate_simulated5(config, manual_dir)
    builder = registry.get_builder(name, data_dir)
    if not builder.is_prepared():  # type: ignore[attr-defined]
        builder = registry.build(name, manual_dir, data_dir)
    metadata = dict(builder.info.metadata or {})
    if "num_skills" not in metadata:
        raise registry.DatasetError(f"{name}: builder metadata has no 'num_skills' ({builder.data_dir}).")
    m = int(metadata["num_skills"])
    feature_names = set(builder.info.features.keys())
    extras = [k for k in REFERENCE_FEATURES if k in feature_names]
    out = {}
    for role in ("train", "test"):
        split = config.get(f"{role}_split", role)
        if split not in builder.info.splits:
            raise registry.DatasetError(f"{name}: no split {split!r} (config.{role}_split); "
                                        f"available: {sorted(builder.info.splits)}.")
        source = builder.as_data_source(split=split)
        out[role] = ip.read_sequences(source, num_skills=m, name=f"{name}:{split}",
                                      extra_features=extras if role == "test" else ())
    return Splits(out["train"], out["test"], m, metadata)
