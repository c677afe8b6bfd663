"""JSON-lines logs (no torch): ``metrics.jsonl``, ``eval.jsonl``, ``history.jsonl``, curation edits.

Each line is one JSON object, appended by one writer. A writer killed in the middle of a line leaves
that line cut short, and whatever is appended later follows it, so a cut line can sit anywhere in
the file. Readers skip it instead of failing: a log stays readable after a crash. A resumed run
removes the lines of the steps it will repeat with ``drop_lines_after``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from pldc_core.atomic import write_text


class JsonLinesError(ValueError):
    """A line of a JSON-lines file that is not a JSON object (strict reading only)."""


def append_json_lines(path: str | os.PathLike, records: Iterable[dict], *, sync: bool = False) -> int:
    """Append one line per record to ``path``; returns how many. ``sync`` forces them to disk
    (for decisions a user made, not for a training step's metrics)."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    if not text:
        return 0
    with open(path, "a") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    return text.count("\n")


def parse_json_lines(lines: Iterable[str]) -> list[dict]:
    """The JSON objects among ``lines``; blank lines, lines cut short and other JSON values are skipped."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def read_json_lines(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """The JSON objects of the file ``path`` in order; [] when it does not exist.

    By default every line that is not a JSON object is skipped (``parse_json_lines``). ``strict``
    skips only a last line that does not parse (a writer may still be on it) and raises
    ``JsonLinesError`` naming the file and line for any other bad line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    if not strict:
        return parse_json_lines(lines)
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise JsonLinesError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise JsonLinesError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return records


def drop_lines_after(path: str | os.PathLike, iteration: int, key: str = "iter") -> None:
    """Keep only the lines of ``path`` that are JSON objects whose ``key`` is at most ``iteration``
    (a line without it counts as 0); rewrites the file atomically, and only if a line goes."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    kept = [line for line in lines if (record := parse_json_lines([line])) and record[0].get(key, 0) <= iteration]
    if len(kept) != len(lines):
        write_text(path, "".join(line + "\n" for line in kept))
