"""Per-key in-process locks for writers that must not interleave on one journal entry.

A control run (or a sprite-service request) records its idempotency key before the side effect
and answers a replay from the journal afterwards; two threads with the same key must therefore
run one after the other. Locks are created on demand and dropped as soon as nobody holds or
waits for them, so a long-running process does not accumulate one lock per key it ever saw.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["KeyedLocks"]

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
