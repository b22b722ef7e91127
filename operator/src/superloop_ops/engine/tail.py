"""Bounded reads of append-only logs: the physical last line, without reading the whole file.

Health and the status surface only ever need the latest row of a log (intents, telemetry). The
logs grow without bound, so these readers seek from the end and read at most a few blocks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["fetch_last_jsonl_row", "fetch_last_line"]

_BLOCK = 8192


def fetch_last_line(path: Path) -> str | None:
    """The physical last line (``tail -n 1``), without its newline; None when the file is missing."""
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return ""
        handle.seek(size - 1)
        stop = size - 1 if handle.read(1) == b"\n" else size
        buffer = b""
        position = stop
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            buffer = handle.read(step) + buffer  # covers [position, stop)
            newline = buffer.rfind(b"\n")
            if newline >= 0:
                return buffer[newline + 1 :].decode("utf-8", errors="replace")
        return buffer.decode("utf-8", errors="replace")


def fetch_last_jsonl_row(path: Path) -> Any | None:
    """The parsed last line; None when missing, empty or not valid JSON (no search backwards)."""
    line = fetch_last_line(path)
    if not line:
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
