"""Bounded reads of append-only logs: the physical last line, without reading the whole file.

Health and the status surface only ever need the latest row of a log (intents, telemetry). The
logs grow without bound, so these readers seek from the end and read at most a few blocks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["fetch_last_jsonl_row", "fetch_last_line", "fetch_last_lines"]

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
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
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
