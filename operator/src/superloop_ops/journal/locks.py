"""Locks for writers that must not interleave on one journal entry, in and across processes.

* :class:`KeyedLocks`: one in-process lock per key, created on demand and dropped as soon as
  nobody holds or waits for it, so a long-running process does not accumulate one lock per key.
* :func:`file_lock`: an exclusive ``flock`` on a lock file (created if missing) or on a
  directory. ``flock`` locks belong to the open file description, so two threads of one process
  exclude each other exactly as two processes do (two CLI runs, two reconcile passes, a service
  next to a CLI). The lock is released when the holder exits, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["KeyedLocks", "file_lock"]

_K = TypeVar("_K")


class KeyedLocks(Generic[_K]):
    """One lock per key, dropped when nobody holds or waits for it (bounded memory)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[_K, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: _K) -> Iterator[None]:
        with self._guard:
            lock, users = self._entries.get(key, (threading.Lock(), 0))
            self._entries[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._entries[key]
                if users == 1:
                    del self._entries[key]
                else:
                    self._entries[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (an existing directory, else a lock file).

    The lock file is opened without following a symbolic link, so a link planted at its name
    cannot make the caller create or lock a file elsewhere.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        flags |= os.O_CREAT
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
