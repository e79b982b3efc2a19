"""Counted build report (``build_report.json``): every quirk fixed and every row skipped is counted and listed.

A successful build writes the report into the dataset's version folder
(``<data_dir>/<name>/<config>/<version>/build_report.json``). A failed build writes it one level up
(``<data_dir>/<name>/<config>/build_report.json``, ``info.status = "failed"``), since the version folder of a
failed build never appears; ``datasets.registry.build`` names that file in its error message.
"""
from __future__ import annotations

import collections
import json
import os
from typing import Any

from absl import logging

REPORT_FILE = "build_report.json"
MAX_EVENTS_PER_KIND = 200  # keep the JSON small; counts stay exact
MAX_LOGGED_PER_KIND = 20  # warnings per kind of skip; the rest are only counted (and listed up to the cap)


class BuildReport:
    """Collects counts and example events (file, row, detail) of one build.

    ``fixes`` are quirks that were repaired (the clip is kept), ``skips`` are clips that were left out,
    ``notes`` are informational counts (e.g. rows excluded by the class protocol).
    """

    def __init__(self, dataset: str, config: str):
        self.dataset = dataset
        self.config = config
        self.counts: dict[str, collections.Counter] = {k: collections.Counter() for k in ("fixes", "skips", "notes")}
        self.events: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.info: dict[str, Any] = {}

    def _add(self, category: str, kind: str, detail: dict[str, Any]) -> None:
        self.counts[category][kind] += 1
        events = self.events[f"{category}/{kind}"]
        if len(events) < MAX_EVENTS_PER_KIND and detail:
            events.append(detail)

    def fix(self, kind: str, **detail: Any) -> None:
        """A quirk that was handled; the clip is kept."""
        self._add("fixes", kind, detail)

    def skip(self, kind: str, **detail: Any) -> None:
        """A clip (row, student) that is left out; logged as a warning with its file and row."""
        self._add("skips", kind, detail)
        n = self.counts["skips"][kind]
        if n <= MAX_LOGGED_PER_KIND:
            logging.warning("[%s/%s] skipped (%s): %s", self.dataset, self.config, kind, detail)
        elif n == MAX_LOGGED_PER_KIND + 1:
            logging.warning("[%s/%s] more rows skipped (%s); counted in build_report.json, not logged.",
                            self.dataset, self.config, kind)

    def note(self, kind: str, **detail: Any) -> None:
        self._add("notes", kind, detail)

    def num(self, category: str, kind: str) -> int:
        return self.counts[category][kind]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": self.config, "info": self.info,
                **{k: dict(sorted(v.items())) for k, v in self.counts.items()},
                "events": dict(sorted(self.events.items()))}

    def write(self, directory: str, filename: str = REPORT_FILE) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, filename)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1, default=str)
        logging.info("[%s/%s] build report: fixes=%s skips=%s notes=%s -> %s", self.dataset, self.config,
                     dict(self.counts["fixes"]), dict(self.counts["skips"]), dict(self.counts["notes"]), path)
        return path

    def write_failed(self, builder: Any, error: BaseException) -> str:
        """Writes the report of a build that fails with ``error`` next to the builder's version folder."""
        self.info.update(status="failed", error=f"{type(error).__name__}: {error}")
        return self.write(failure_dir(builder))


def failure_dir(builder: Any) -> str:
    """``<data_dir>/<name>/<config>``: the parent of the version folder (also while TFDS builds into its
    ``incomplete.*`` folder, which sits in the same parent)."""
    return os.path.dirname(os.path.normpath(os.fspath(builder.data_dir)))


def read_report(directory: str, filename: str = REPORT_FILE) -> dict[str, Any]:
    with open(os.path.join(directory, filename)) as f:
        return json.load(f)
