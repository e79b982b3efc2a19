"""Counted build report: every quirk fixed and every row skipped is counted and listed here."""
from __future__ import annotations

import collections
import json
import os
from typing import Any

from absl import logging

MAX_EVENTS_PER_KIND = 200  # keep the JSON small; counts stay exact


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
        """A clip that is left out; logged as a warning with its file and row."""
        self._add("skips", kind, detail)
        logging.warning("[%s/%s] skipped (%s): %s", self.dataset, self.config, kind, detail)

    def note(self, kind: str, **detail: Any) -> None:
        self._add("notes", kind, detail)

    def num(self, category: str, kind: str) -> int:
        return self.counts[category][kind]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": self.config, "info": self.info,
                **{k: dict(sorted(v.items())) for k, v in self.counts.items()},
                "events": dict(sorted(self.events.items()))}

    def write(self, directory: str, filename: str = "build_report.json") -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, filename)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1, default=str)
        logging.info("[%s/%s] build report: fixes=%s skips=%s notes=%s -> %s", self.dataset, self.config,
                     dict(self.counts["fixes"]), dict(self.counts["skips"]), dict(self.counts["notes"]), path)
        return path


def read_report(directory: str, filename: str = "build_report.json") -> dict[str, Any]:
    with open(os.path.join(directory, filename)) as f:
        return json.load(f)
