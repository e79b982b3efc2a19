"""Name -> TFDS builder registry, and one TF-free build function used by every launcher.

Names are ``<dataset>`` or ``<dataset>/<builder config>``, e.g. ``simulated5``, ``kt_csv/assist2009``,
``casme2/5class``. Builders read only from the user's ``manual_dir``; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

from absl import logging

from datasets import build_report, fingerprint

try:
    import fcntl
except ImportError:  # not POSIX: builds are not locked
    fcntl = None

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


def input_files(builder: Any, manual_dir: str) -> tuple[list[str], list[str]]:
    """(files, frame roots) that ``builder`` reads from ``manual_dir`` (its ``input_files`` method)."""
    method = getattr(builder, "input_files", None)
    if method is None:
        return [], []
    files, roots = method(manual_dir)
    return list(files), list(roots)


def check_inputs(builder: Any, name: str, manual_dir: str) -> None:
    """Raises DatasetError when the built dataset of ``builder`` was built from other inputs than those now in
    ``manual_dir`` (see datasets/fingerprint.py). A build without a fingerprint (made before fingerprints were
    stored) is accepted with a warning; so is a manual_dir that no longer holds any of the inputs."""
    stored = fingerprint.read(os.fspath(builder.data_path))
    if stored is None:
        logging.warning("%s at %s has no %s (built by an older version); cannot tell whether %s changed since; "
                        "using it as is (rebuild with --overwrite to record one).", name, builder.data_dir,
                        fingerprint.FINGERPRINT_FILE, manual_dir)
        return
    manual_dir = os.path.abspath(manual_dir)
    try:
        try:
            current = fingerprint.compute(manual_dir, *input_files(builder, manual_dir))
        except DatasetError:  # the builder cannot list its inputs any more (a file is gone): compare what was read
            current = fingerprint.recompute(manual_dir, stored)
    except PermissionError as e:
        raise DatasetError(f"{name}: cannot read {e.filename!r} ({e.strerror}) to check that the build at "
                           f"{builder.data_dir} is up to date.") from None
    changes, missing = fingerprint.diff(stored, current)
    if not changes and missing and not current["files"] and not current["frame_dirs"]:
        logging.warning("%s: %s no longer holds the files it was built from; using the existing build at %s.",
                        name, manual_dir, builder.data_dir)
        return
    changes += missing
    if changes:
        more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
        raise DatasetError(
            f"{name} at {builder.data_dir} was built from different inputs than those now in {manual_dir}: "
            f"{'; '.join(changes[:3])}{more}. Pass --overwrite (or overwrite=True) to rebuild it.")


def _lock_path(builder: Any) -> str:
    """``<data_dir>/<name>/<config>/.build.lock`` (next to the version folder, which is swapped)."""
    return os.path.join(os.path.dirname(os.fspath(builder.data_path)), ".build.lock")


@contextlib.contextmanager
def build_lock(builder: Any, name: str, timeout: float | None = None) -> Iterator[None]:
    """An exclusive OS lock (``fcntl.flock``) on ``<data_dir>/<name>/<config>/.build.lock`` for one build.

    A second build of the same dataset into the same data_dir waits until the first one is done (logging the
    pid that holds the lock), or, with ``timeout`` seconds (0 = do not wait), fails with a DatasetError.
    The OS releases the lock when its process exits, so a killed build never blocks the next one.
    """
    path = _lock_path(builder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                if timeout is not None and timeout <= 0:
                    raise DatasetError(f"{name} is being built by another process (pid {holder}, lock {path}); "
                                       "try again when it is done.") from None
                logging.warning("%s is being built by another process (pid %s, lock %s); waiting for it.",
                                name, holder, path)
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    time.sleep(0.2)
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if deadline is not None and time.monotonic() > deadline:
                            raise DatasetError(f"{name} is being built by another process (pid {holder}, lock "
                                               f"{path}); gave up waiting after {timeout:g} s.") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def _swap_in(new: str, final: str) -> None:
    """Replaces the version folder ``final`` by ``new`` (same file system): two renames, the old build is
    deleted only once the new one is in place."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if not os.path.exists(final):
        os.rename(new, final)
        return
    old = os.path.join(os.path.dirname(final), f".replaced-{os.path.basename(final)}-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _writable_data_dir(data_dir: str, name: str) -> None:
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create data_dir {data_dir!r} for {name}: {e.strerror or e} "
                           f"({e.filename or data_dir}); choose a writable --data_dir.") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DatasetError(f"data_dir {data_dir!r} is not writable (permission denied); choose a writable "
                           f"--data_dir for {name}.")


def build(name: str, manual_dir: str | None, data_dir: str | None = None, *, overwrite: bool = False,
          lock_timeout: float | None = None) -> Any:
    """Builds ``name`` from ``manual_dir`` into ``data_dir`` (TF-free). Returns the (re-opened) builder.

    - An existing build is reused when its inputs are unchanged (``input_fingerprint.json``); changed inputs
      raise a DatasetError naming the changed files (pass ``overwrite=True``).
    - The dataset is built into a temporary data_dir next to the real one and its version folder is swapped in
      only when the build succeeded: a failing build (also with ``overwrite``) leaves the old build untouched.
    - Builds of the same dataset take an OS lock (see ``build_lock``; ``lock_timeout``).
    - A failing build's ``build_report.json`` is kept in ``<data_dir>/<name>/<config>/`` and named in the error.
    Raises DatasetError with the offending path when ``manual_dir`` is missing or data_dir is not writable.
    """
    data_dir = data_dir or DEFAULT_DATA_DIR
    builder = get_builder(name, data_dir)
    if manual_dir is None or not os.path.isdir(manual_dir):
        raise DatasetError(f"manual_dir {manual_dir!r} for dataset {name!r} does not exist or is not a "
                           f"directory. See datasets/{split_name(name)[0]}/README.md for the expected layout.")
    manual_dir = os.path.abspath(manual_dir)
    try:
        if builder.is_prepared() and not overwrite:
            check_inputs(builder, name, manual_dir)
            builder.build_status = "reused"
            return builder
        _writable_data_dir(data_dir, name)
        with build_lock(builder, name, lock_timeout):
            builder = get_builder(name, data_dir)  # another process may have built it while we waited
            if builder.is_prepared() and not overwrite:
                check_inputs(builder, name, manual_dir)
                builder.build_status = "reused"
                return builder
            _build_and_swap(builder, name, manual_dir, data_dir)
    except PermissionError as e:
        raise DatasetError(f"{name}: permission denied on {e.filename!r} ({e.strerror}); check the permissions "
                           f"of data_dir {data_dir!r} and manual_dir {manual_dir!r}.") from None
    built = get_builder(name, data_dir)
    built.build_status = "built"
    return built


def _build_and_swap(builder: Any, name: str, manual_dir: str, data_dir: str) -> None:
    """Builds into a temporary data_dir inside ``data_dir``, then swaps the version folder in (lock held)."""
    import tensorflow_datasets as tfds

    inputs = fingerprint.compute(manual_dir, *input_files(builder, manual_dir))
    inputs["dataset"] = name
    dataset = split_name(name)[0]
    prefix = f".build.{dataset}.{builder.builder_config.name if builder.builder_config else ''}."
    for stale in os.listdir(data_dir):  # temporary folders of killed builds (we hold the lock)
        if stale.startswith(prefix):
            shutil.rmtree(os.path.join(data_dir, stale), ignore_errors=True)
    tmp_root = tempfile.mkdtemp(prefix=prefix, dir=data_dir)
    failed_report = os.path.join(build_report.failure_dir(builder), build_report.REPORT_FILE)
    try:
        tmp_builder = get_builder(name, tmp_root)
        try:
            tmp_builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
        except Exception as e:
            kept = _keep_failure_report(tmp_builder, failed_report)
            if kept and isinstance(e, DatasetError):
                raise DatasetError(f"{e} Build report: {kept}") from e
            if kept:
                logging.error("%s failed; build report: %s", name, kept)
            raise
        fingerprint.write(os.fspath(tmp_builder.data_path), inputs)
        config_meta = os.path.join(tmp_root, dataset, ".config")
        if os.path.isdir(config_meta) and not os.path.exists(os.path.join(data_dir, dataset, ".config")):
            shutil.copytree(config_meta, os.path.join(data_dir, dataset, ".config"))
        _swap_in(os.fspath(tmp_builder.data_path), os.fspath(builder.data_path))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    if os.path.isfile(failed_report):  # the report of an earlier failed build
        os.remove(failed_report)


def _keep_failure_report(tmp_builder: Any, target: str) -> str | None:
    """Moves the failed build's report out of the temporary data_dir (to ``target``); its path or None."""
    source = os.path.join(build_report.failure_dir(tmp_builder), build_report.REPORT_FILE)
    if not os.path.isfile(source):
        return None
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(source, target)
    return target


def data_source(name: str, split: str, data_dir: str | None = None) -> Any:
    """``tfds.data_source`` for an already-built dataset (random access, TF-free)."""
    builder = get_builder(name, data_dir)
    return builder.as_data_source(split=split)
