"""Reader and writer for the 3-lines-per-student knowledge-tracing CSV format (dkt_spec §3.2).

Each student takes three lines::

    15                                   <- number of attempts T
    1,1,1,1,7,7,9,10,10,10,10,11,11,45,54  <- T skill ids (any integers)
    0,1,1,1,1,1,0,0,1,1,1,1,1,0,0        <- T correctness values in {0, 1}

Trailing commas and surrounding whitespace are tolerated; blank lines at the end of the file are ignored.
Fields must be plain decimal integers (``12``; the integral ``12.0`` is tolerated; ``1_000``, ``1e3``, values
beyond int64 are not) and the file must be UTF-8 (a BOM is fine). Every other problem raises
``datasets.registry.DatasetError`` naming the file and the 1-based line (and the byte offset of bad UTF-8).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Sequence

import numpy as np

from datasets.registry import DatasetError
from datasets.text_files import read_utf8


@dataclasses.dataclass(frozen=True)
class Record:
    """One student of a 3-line file. ``skills`` holds the file's own ids (int64, shape (T,)),
    ``correct`` 0/1 (int32, shape (T,)); ``index`` is the 0-based record number, ``line`` the 1-based
    line number of its length line."""

    index: int
    line: int
    skills: np.ndarray
    correct: np.ndarray


def _fields(text: str) -> list[str]:
    """Comma-separated fields of one line, with trailing commas / empty trailing fields dropped."""
    parts = [p.strip() for p in text.strip().split(",")]
    while parts and parts[-1] == "":
        parts.pop()
    return parts


_PLAIN_INT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")  # "12" and the integral "12.0" some exports write
_INT64_MAX = 2 ** 63 - 1


def _parse_int(field: str, path: str, line_no: int, what: str) -> int:
    """A plain decimal integer ("12", "-3", "12.0"); "1_000", "1e3", "0x10", "1.5" or non-ASCII digits are
    errors, and so is a value outside int64."""
    if not _PLAIN_INT.fullmatch(field):
        raise DatasetError(f"{path}, line {line_no}: {what} field {field!r} is not an integer (only plain "
                           f"decimal integers such as 12 are accepted).")
    value = int(field.split(".")[0])
    if abs(value) > _INT64_MAX:
        raise DatasetError(f"{path}, line {line_no}: {what} field {field!r} is out of range (must fit in a "
                           f"signed 64-bit integer).")
    return value


def read_three_line(path: str) -> list[Record]:
    """Parses a 3-line file into records (in file order). Raises DatasetError on malformed input."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found.")
    lines = read_utf8(path).splitlines()
    while lines and not lines[-1].strip():  # blank lines at the end of the file are fine
        lines.pop()
    if len(lines) % 3:
        raise DatasetError(f"{path}: {len(lines)} non-trailing lines is not a multiple of 3; the last record "
                           f"(starting at line {len(lines) - len(lines) % 3 + 1}) is truncated.")
    records = []
    for start in range(0, len(lines), 3):
        line_no = start + 1
        for offset in range(3):
            if not lines[start + offset].strip():
                raise DatasetError(f"{path}, line {line_no + offset}: empty line inside a student record "
                                   f"(record {start // 3} starting at line {line_no}).")
        count_fields = _fields(lines[start])
        if len(count_fields) != 1:
            raise DatasetError(f"{path}, line {line_no}: expected a single attempt count, got {lines[start]!r}.")
        count = _parse_int(count_fields[0], path, line_no, "attempt-count")
        if count < 0:
            raise DatasetError(f"{path}, line {line_no}: negative attempt count {count}.")
        skill_fields = _fields(lines[start + 1])
        correct_fields = _fields(lines[start + 2])
        for fields, offset, what in ((skill_fields, 1, "skill ids"), (correct_fields, 2, "correctness values")):
            if len(fields) != count:
                raise DatasetError(f"{path}, line {line_no + offset}: {len(fields)} {what} but the count on "
                                   f"line {line_no} says {count}.")
        skills = np.array([_parse_int(x, path, line_no + 1, "skill-id") for x in skill_fields], np.int64)
        correct = np.array([_parse_int(x, path, line_no + 2, "correctness") for x in correct_fields], np.int64)
        bad = np.flatnonzero((correct != 0) & (correct != 1))
        if bad.size:
            raise DatasetError(f"{path}, line {line_no + 2}: correctness must be 0 or 1; field {bad[0] + 1} is "
                               f"{correct[bad[0]]}.")
        records.append(Record(index=start // 3, line=line_no, skills=skills, correct=correct.astype(np.int32)))
    return records


def write_three_line(path: str, sequences: Iterable[tuple[Sequence[int], Sequence[int]]], *,
                     trailing_comma: bool = False) -> None:
    """Writes (skills, correct) pairs in the 3-line format (``trailing_comma`` mimics the DKT+ repo files)."""
    tail = "," if trailing_comma else ""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for skills, correct in sequences:
            if len(skills) != len(correct):
                raise ValueError(f"skills and correct differ in length ({len(skills)} vs {len(correct)}).")
            f.write(f"{len(skills)}\n")
            f.write(",".join(str(int(s)) for s in skills) + tail + "\n")
            f.write(",".join(str(int(c)) for c in correct) + tail + "\n")


def skill_vocab(*record_lists: Sequence[Record]) -> list[int]:
    """Sorted unique original skill ids over all given records; position = remapped 0-based id."""
    ids = [r.skills for records in record_lists for r in records]
    return [int(x) for x in np.unique(np.concatenate(ids))] if ids else []


def remap(skills: np.ndarray, vocab: Sequence[int]) -> np.ndarray:
    """Original ids -> 0-based int32 indices into ``vocab`` (every id must be in the vocab)."""
    vocab_arr = np.asarray(vocab, np.int64)
    idx = np.searchsorted(vocab_arr, skills)
    if np.any(idx >= len(vocab_arr)) or np.any(vocab_arr[np.minimum(idx, len(vocab_arr) - 1)] != skills):
        raise DatasetError(f"skill ids {sorted(set(skills.tolist()) - set(vocab_arr.tolist()))} not in vocab.")
    return idx.astype(np.int32)
