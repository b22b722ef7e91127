"""Durable file primitives for the journal: nothing written here is ever half a document.

* ``write_json_atomic``: temp file in the same directory, fsync, rename (readers see old or new).
* ``append_jsonl``: whole lines only, one ``write`` per batch, fsynced.
* ``read_jsonl``: tolerates a torn (unterminated or unparsable) last line, which a crashed
  writer can leave; a bad line in the middle is reported, not skipped silently.
* Text that UTF-8 cannot encode (a lone surrogate such as ``"\ud800"`` parsed from a JSON
  escape) is written with JSON's ASCII escapes instead, so it round-trips and never fails a write.
  Unusable documents (invalid, too deeply nested, an integer too long) read as absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from superloop_ops.errors import ContractError

__all__ = [
    "CorruptJournalError",
    "append_bytes",
    "append_jsonl",
    "encode_json",
    "ensure_dir",
    "fsync_dir",
    "holds",
    "read_json",
    "read_jsonl",
    "write_all",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_json_if_changed",
    "write_text_atomic",
]


class CorruptJournalError(ValueError):
    """A JSONL file has an invalid line that is not the last one."""


def ensure_dir(directory: Path) -> None:
    """``mkdir -p``; a path that is a file, or cannot be created, is a ``ContractError``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ContractError(f"journal directory is not a directory: {exc.filename or directory}") from exc
    except OSError as exc:
        raise ContractError(f"journal directory cannot be created: {directory}: {exc.strerror}") from exc


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def encode_json(value: Any, *, pretty: bool = False) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot encode (lone surrogates) is written as ASCII escapes."""
    indent = 2 if pretty else None
    separators = None if pretty else (",", ":")
    try:
        return json.dumps(value, indent=indent, separators=separators, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=indent, separators=separators, ensure_ascii=True).encode("ascii")


def write_json_atomic(path: Path, value: Any, *, pretty: bool = False) -> None:
    write_bytes_atomic(path, encode_json(value, pretty=pretty) + b"\n")


def write_json_if_changed(path: Path, value: Any, *, pretty: bool = False) -> bool:
    """``write_json_atomic`` unless the file already holds exactly these bytes (then its inode and
    mtime stay); returns whether it wrote."""
    data = encode_json(value, pretty=pretty) + b"\n"
    if holds(path, data):
        return False
    write_bytes_atomic(path, data)
    return True


def holds(path: Path, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data`` (a missing or unreadable file does not)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size != len(data):
                return False
            return handle.read() == data
    except OSError:
        return False


def append_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Append rows as whole lines (one ``write``, fsynced); returns how many were written."""
    lines = [encode_json(row) + b"\n" for row in rows]
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    append_bytes(path, b"".join(lines))
    return len(lines)


def append_bytes(path: Path, data: bytes, *, sync: bool = True) -> int:
    """Append whole lines in one ``write`` (fsynced unless ``sync`` is False); returns the size before.

    A journal file is never a link: appending through one would write outside the journal.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        if _ends_torn(fd, size):
            # A crashed writer left half a line: terminate it so our rows stay whole.
            data = b"\n" + data
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        except OSError:
            # Disk full mid-write: take back the part that was written, so no torn row stays.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return size


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_json(path: Path) -> Any | None:
    """The parsed document, or None when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: invalid JSON or UTF-8, a huge integer
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
        except (ValueError, RecursionError) as exc:
            if index == last or not strict_middle:
                continue
            raise CorruptJournalError(f"{path}: invalid JSON on line {index + 1}") from exc
    return rows


def _ends_torn(fd: int, size: int) -> bool:
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so the renames and creations in it are durable (best effort)."""
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
