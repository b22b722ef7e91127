"""One durable commit for many journal writes (issue 12): grouped fsyncs, unchanged documents skipped.

A reconcile pass stages its documents (``put_json``) and log rows (``add_rows``) in a
:class:`JournalBatch` and commits them together. :meth:`JournalBatch.commit`:

1. drops every staged document whose bytes equal the file on disk (nothing is rewritten, so its
   inode and mtime stay; a document staged twice is written once, with its last value);
2. writes each remaining document to a temp file in its directory and each log's rows with one
   ``write`` (rows staged earlier and already written by :meth:`JournalBatch.write_rows` included);
3. fsyncs every temp file and every log that got rows;
4. renames the temp files over their documents, in staging order;
5. fsyncs each directory a rename touched (or a log was created in) once; with
   ``sync_dirs=False`` those directories are kept for the next commit's step 5.

What a reader or a crash (SIGKILL) can observe is what ``files.write_json_atomic`` and
``files.append_jsonl`` promise one call at a time: a document is the old or the new one, never
half of one, and no temp file is left behind; a log holds whole rows only (a torn last line left
by a crashed writer is terminated first); a failed write (disk full) takes back the rows of that
write, a failed fsync every row of the commit, and either raises ``OSError`` before any document of
that commit is renamed. Two commits keep their order: every document of the first is renamed
before any temp file of the second is written.

:data:`DIRECT` writes each call at once (one fsync each), for callers outside a pass.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from superloop_ops.journal import files

__all__ = ["DIRECT", "JournalBatch", "JournalWrites"]


class JournalWrites(Protocol):
    """Where a step puts its journal writes: at once (:data:`DIRECT`) or into a pass's batch."""

    def put_json(self, path: Path, value: Any, *, pretty: bool = False) -> None: ...

    def add_rows(self, path: Path, rows: Iterable[Any]) -> None: ...


class _DirectWrites:
    def put_json(self, path: Path, value: Any, *, pretty: bool = False) -> None:
        files.write_json_atomic(path, value, pretty=pretty)

    def add_rows(self, path: Path, rows: Iterable[Any]) -> None:
        files.append_jsonl(path, rows)


DIRECT: JournalWrites = _DirectWrites()


@dataclass
class _Written:
    """A log that got rows in this commit: its size before them (to take them back), and whether it is new."""

    size_before: int
    created: bool


@dataclass
class JournalBatch:
    """The staged writes of one pass; see the module docstring for what a commit guarantees."""

    _documents: dict[Path, bytes] = field(default_factory=dict)
    _rows: dict[Path, list[bytes]] = field(default_factory=dict)
    _written: dict[Path, _Written] = field(default_factory=dict)
    _pending_dirs: set[Path] = field(default_factory=set)

    def put_json(self, path: Path, value: Any, *, pretty: bool = False) -> None:
        data = files.encode_json(value, pretty=pretty) + b"\n"
        self._documents.pop(path, None)  # a document staged again moves to its latest position
        self._documents[path] = data

    def add_rows(self, path: Path, rows: Iterable[Any]) -> None:
        lines = [files.encode_json(row) + b"\n" for row in rows]
        if lines:
            self._rows.setdefault(path, []).extend(lines)

    def write_rows(self) -> None:
        """Write the staged rows now (one ``write`` per log), so later steps of the pass read them;
        their fsync waits for the next commit."""
        rows, self._rows = self._rows, {}
        for path, lines in rows.items():
            self._append(path, b"".join(lines))

    def commit(self, *, sync_dirs: bool = True) -> None:
        documents, self._documents = self._documents, {}
        changed = {path: data for path, data in documents.items() if not files.holds(path, data)}
        temps: list[tuple[int, str, Path]] = []
        try:
            for path, data in changed.items():
                temps.append((*_write_temp(path, data), path))
            self.write_rows()
            for fd, _, _ in temps:
                os.fsync(fd)
            self._sync_rows()
            while temps:
                fd, temp, path = temps[0]
                temps[0] = (-1, temp, path)
                os.close(fd)
                os.replace(temp, path)
                temps.pop(0)
                self._pending_dirs.add(path.parent)
        finally:
            for fd, temp, _ in temps:  # not renamed: nothing of it stays
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        if sync_dirs:
            dirs, self._pending_dirs = self._pending_dirs, set()
            for directory in sorted(dirs):
                files.fsync_dir(directory)

    def _append(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        size_before = files.append_bytes(path, data, sync=False)
        if path not in self._written:
            self._written[path] = _Written(size_before, created=size_before == 0)

    def _sync_rows(self) -> None:
        written, self._written = self._written, {}
        try:
            for path in written:
                _fsync_path(str(path))
        except OSError:
            for path, state in written.items():  # take back every row of this commit: none is durable
                with contextlib.suppress(OSError):
                    os.truncate(path, state.size_before)
            raise
        self._pending_dirs.update(path.parent for path, state in written.items() if state.created)


def _write_temp(path: Path, data: bytes) -> tuple[int, str]:
    """(open descriptor, name) of a temp file beside ``path`` holding ``data`` (not yet fsynced)."""
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        files.write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    return fd, temp


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
