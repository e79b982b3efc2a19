"""Errors of the STEM stage that end a ``launch.stem`` run with one clear line (no sklearn import here, so
the command-line layer can name them cheaply)."""
from __future__ import annotations


class ClassificationError(RuntimeError):
    """No (feature set, model) cell gave a score on every outer split (e.g. a grid sklearn refuses)."""
