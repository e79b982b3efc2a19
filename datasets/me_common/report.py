"""Counted build report of the micro-expression builders (``build_report.json``); see datasets/build_report.py."""
from __future__ import annotations

from datasets.build_report import MAX_EVENTS_PER_KIND, REPORT_FILE, BuildReport, failure_dir, read_report

__all__ = ["MAX_EVENTS_PER_KIND", "REPORT_FILE", "BuildReport", "failure_dir", "read_report"]
