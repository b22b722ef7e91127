"""Durable file primitives for the journal: nothing written here is ever half a document.

* ``write_json_atomic``: temp file in the same directory, fsync, rename (readers see old or new).
* ``append_jsonl``: whole lines only, one ``write`` per batch, fsynced.
* ``read_jsonl``: tolerates a torn (unterminated or unparsable) last line, which a crashed
  writer can leave; a bad line in the middle is reported, not skipped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import dumps_compact

__all__ = [
    "CorruptJournalError",
    "append_jsonl",
    "read_json",
    "read_jsonl",
    "write_json_atomic",
    "write_text_atomic",
]


class CorruptJournalError(ValueError):
    """A JSONL file has an invalid line that is not the last one."""


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, value: Any, *, pretty: bool = False) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False) if pretty else dumps_compact(value)
    write_text_atomic(path, text + "\n")


def append_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Append rows as whole lines; returns how many were written."""
    lines = [dumps_compact(row) + "\n" for row in rows]
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _ends_torn(fd):
            # A crashed writer left half a line: terminate it so our rows stay whole.
            data = b"\n" + data
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


def read_json(path: Path) -> Any | None:
    """The parsed document, or None when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_jsonl(path: Path, *, strict_middle: bool = False) -> list[Any]:
    """Every parsable row; a torn last line is ignored. With ``strict_middle`` a bad inner line raises."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = raw.split(b"\n")
    rows: list[Any] = []
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if index == last or not strict_middle:
                continue
            raise CorruptJournalError(f"{path}: invalid JSON on line {index + 1}") from exc
    return rows


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
