"""Bounded reads of append-only logs: the physical last line, without reading the whole file.

Health and the status surface only ever need the latest row of a log (intents, telemetry). The
logs grow without bound, so these readers seek from the end and read at most a few blocks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "RowsRead",
    "fetch_last_jsonl_row",
    "fetch_last_line",
    "fetch_last_lines",
    "fetch_rows_after",
    "fetch_rows_from",
]

_BLOCK = 8192


def fetch_last_lines(path: Path, count: int, *, block: int = _BLOCK) -> list[str]:
    """The last ``count`` physical lines (``tail -n count``: a trailing newline ends the last line).

    Reads backwards ``block`` bytes at a time until it holds more than ``count`` line breaks.
    Raises ``FileNotFoundError`` (and the like) when the file cannot be opened.
    """
    if count < 1:
        return []
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        chunks: list[bytes] = []
        breaks = 0
        while position > 0 and breaks <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            chunks.append(handle.read(step))
            breaks += chunks[-1].count(b"\n")  # each block counted once: linear in what is read
    data = b"".join(reversed(chunks))
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data and position == 0:
        return []
    lines = data.split(b"\n")
    return [line.decode("utf-8", errors="replace") for line in lines[-count:]]


def fetch_last_line(path: Path) -> str | None:
    """The physical last line (``tail -n 1``), without its newline; None when the file is missing."""
    try:
        lines = fetch_last_lines(path, 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return lines[-1] if lines else ""


def fetch_last_jsonl_row(path: Path) -> Any | None:
    """The parsed last line; None when missing, empty or not valid JSON (no search backwards)."""
    line = fetch_last_line(path)
    if not line:
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


class RowsRead(list[Any]):
    """Rows read from the end of a log, in file order; ``bytes_read`` says how much of it was read."""

    bytes_read: int = 0


def _parse_line(line: bytes, *, torn_ok: bool) -> tuple[bool, Any]:
    try:
        return True, json.loads(line)
    except (ValueError, RecursionError) as exc:
        if torn_ok:
            return False, None
        raise ValueError("invalid JSON line") from exc


def fetch_rows_after(path: Path, stop: Callable[[Any], bool], *, block: int = _BLOCK) -> RowsRead:
    """The JSONL rows after the last one for which ``stop`` is true (all of them when none is), in
    file order, read backwards ``block`` bytes at a time: an append-only log ordered by time is read
    only back to the first row older than what the caller needs. Blank lines are skipped, a torn
    last line is ignored, any other line that does not parse raises ``ValueError``; a missing
    file has no rows."""
    found = RowsRead()
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return found
    with handle:
        position = end = handle.seek(0, os.SEEK_END)
        pending, last = b"", True
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            lines = (handle.read(step) + pending).split(b"\n")
            pending = lines.pop(0) if position > 0 else b""
            for line in reversed(lines):
                torn_ok, last = last, False  # only text after the final line break may be torn
                if not line.strip():
                    continue
                parsed, row = _parse_line(line, torn_ok=torn_ok)
                if not parsed:
                    continue
                if stop(row):
                    found.reverse()
                    found.bytes_read = end - position
                    return found
                found.append(row)
        found.reverse()
        found.bytes_read = end
        return found


def fetch_rows_from(path: Path, offset: int) -> tuple[RowsRead, int]:
    """The JSONL rows whose lines start at or after byte ``offset`` and end with a line break, and
    the offset after the last of them (where the next read starts; a torn last line is read again
    then). From 0 when the file is shorter than ``offset`` (replaced). A line that does not parse
    raises ``ValueError``; a missing file has no rows."""
    found = RowsRead()
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return found, 0
    with handle:
        start = offset if 0 <= offset <= handle.seek(0, os.SEEK_END) else 0
        handle.seek(start)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.split(b"\n"):
        if line.strip():
            found.append(_parse_line(line, torn_ok=False)[1])
    found.bytes_read = len(data)
    return found, start + len(complete)
