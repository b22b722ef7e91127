"""One scheduler for the periodic Loop passes (issue 12), instead of one kopf daemon per Loop.

The Loop watch feeds a ``ScheduledLoop`` per Loop this shard owns (``PassScheduler.upsert``) and
removes it when the Loop is deleted or leaves the shard (``PassScheduler.remove``). An entry is
what a periodic pass needs and no more: the watched body without ``metadata.managedFields``,
kept as compact JSON bytes and parsed only when its pass runs, and the interval.

``PassSchedule`` is the bookkeeping, with the clock passed in: a heap of due times. A new entry
is first due at a random point of its first interval (Loops created together do not pass in one
wave forever); after a pass the next due time is the previous one plus the interval (now, when
passes fell behind), or the pass's ``retry_after`` from now when that is sooner
(``compute_next_due``). An interval change moves a waiting entry to its previous due time plus
the new interval. Superseded heap rows are skipped when they come up (each row carries the
entry's version).

``PassScheduler`` drives it: one asyncio task (started and stopped by the operator's startup and
cleanup handlers) sleeps until the earliest due time or until the watch changes the schedule,
and runs due passes on a thread pool of ``workers`` threads; when every thread is busy, due
passes wait (and are late) rather than queue without bound. A pass that raises is logged and
scheduled again like any other. Everything but the pass itself runs on the event loop's thread,
so the schedule needs no lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["PassSchedule", "PassScheduler", "ScheduledLoop", "compute_next_due"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScheduledLoop:
    """What a periodic pass of one Loop needs: its key, interval and the watched body (bytes)."""

    key: str
    interval: float
    body: bytes

    @classmethod
    def from_body(cls, key: str, interval: float, body: Mapping[str, Any]) -> ScheduledLoop:
        """Keep the body without ``metadata.managedFields`` (no pass reads them), as compact JSON."""
        compact = {name: value for name, value in body.items() if name != "metadata"}
        compact["metadata"] = {
            name: value for name, value in (body.get("metadata") or {}).items() if name != "managedFields"
        }
        return cls(key, interval, json.dumps(compact, separators=(",", ":")).encode())

    def load_body(self) -> dict[str, Any]:
        body = json.loads(self.body)
        return body if isinstance(body, dict) else {}


def compute_next_due(due: float, interval: float, now: float, retry_after: float | None) -> float:
    """The next due time: one interval after the last one (now, when passes fell behind), or
    ``retry_after`` from now when that is sooner."""
    following = max(due + interval, now)
    if retry_after is not None:
        following = min(following, now + retry_after)
    return following


def _uniform_jitter(interval: float) -> float:
    return random.uniform(0.0, interval)


@dataclasses.dataclass
class _Slot:
    entry: ScheduledLoop
    due: float
    previous_due: float
    retry_at: float | None = None
    version: int = 0
    running: bool = False


class PassSchedule:
    """Due times of the periodic passes, ``now`` passed in (no clock, no I/O, no threads)."""

    def __init__(self, jitter: Callable[[float], float] = _uniform_jitter) -> None:
        self._jitter = jitter
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, str]] = []  # (due, version, key)
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def keys(self) -> Iterator[str]:
        return iter(self._slots)

    def due_of(self, key: str) -> float | None:
        slot = self._slots.get(key)
        return None if slot is None or slot.running else slot.due

    def upsert(self, entry: ScheduledLoop, now: float) -> None:
        """Add a Loop (first due at a random point of its first interval), or replace its entry;
        a new interval moves the next due time to the previous one plus the new interval."""
        slot = self._slots.get(entry.key)
        if slot is None:
            first = now + min(max(self._jitter(entry.interval), 0.0), entry.interval)
            slot = self._slots[entry.key] = _Slot(entry, first, first - entry.interval)
            self._push(slot)
            return
        changed = slot.entry.interval != entry.interval
        slot.entry = entry
        if changed and not slot.running:
            due = max(slot.previous_due + entry.interval, now)
            slot.due = min(due, slot.retry_at) if slot.retry_at is not None else due
            self._push(slot)

    def remove(self, key: str) -> bool:
        """Forget a Loop (deleted, or no longer this shard's); whether it was scheduled."""
        return self._slots.pop(key, None) is not None

    def next_due(self) -> float | None:
        """The earliest due time of a waiting entry (None when none waits)."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> ScheduledLoop | None:
        """The entry due first, if it is due at ``now``; it counts as running until ``finish``."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        slot = self._slots[key]
        slot.running = True
        return slot.entry

    def finish(self, key: str, now: float, retry_after: float | None) -> None:
        """A pass of ``key`` ended at ``now``: schedule the next one (unless it was removed)."""
        slot = self._slots.get(key)
        if slot is None or not slot.running:
            return
        slot.running = False
        slot.previous_due = slot.due
        slot.due = compute_next_due(slot.due, slot.entry.interval, now, retry_after)
        slot.retry_at = now + retry_after if retry_after is not None else None
        self._push(slot)

    def _push(self, slot: _Slot) -> None:
        slot.version = next(self._order)  # unique across slots: a re-added key never matches old rows
        heapq.heappush(self._heap, (slot.due, slot.version, slot.entry.key))

    def _drop_stale(self) -> None:
        while self._heap:
            _, version, key = self._heap[0]
            slot = self._slots.get(key)
            if slot is not None and slot.version == version and not slot.running:
                return
            heapq.heappop(self._heap)


class PassScheduler:
    """Runs the schedule's due passes on a bounded thread pool, from one asyncio task.

    ``run_pass(entry)`` runs in a pool thread and returns the pass's ``retry_after`` (or None).
    ``upsert`` and ``remove`` must be called on the event loop's thread (kopf's async handlers).
    """

    def __init__(
        self,
        run_pass: Callable[[ScheduledLoop], float | None],
        *,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = _uniform_jitter,
    ) -> None:
        if workers < 1:
            raise ValueError("a pass scheduler needs at least one worker")
        self.schedule = PassSchedule(jitter)
        self.workers = workers
        self._run_pass = run_pass
        self._clock = clock
        self._free = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running_passes(self) -> int:
        return self.workers - self._free

    def start(self) -> None:
        """Start the scheduling task on the running event loop."""
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="loop-pass")
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop pass scheduler")

    async def stop(self) -> None:
        """Stop scheduling; passes already running finish in their threads."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._task = self._pool = None

    def upsert(self, entry: ScheduledLoop) -> None:
        self.schedule.upsert(entry, self._clock())
        self._poke()

    def remove(self, key: str) -> bool:
        removed = self.schedule.remove(key)
        self._poke()
        return removed

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self._clock()
            while self._free > 0 and (entry := self.schedule.pop_due(now)) is not None:
                self._submit(entry)
            following = self.schedule.next_due() if self._free > 0 else None
            timeout = None if following is None else max(0.0, following - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _submit(self, entry: ScheduledLoop) -> None:
        self._free -= 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._guarded, entry)
        future.add_done_callback(lambda done: self._finished(entry.key, done))

    def _guarded(self, entry: ScheduledLoop) -> float | None:
        try:
            return self._run_pass(entry)
        except Exception:  # the scheduler outlives any single bad pass
            log.exception("periodic pass of %s failed", entry.key)
            return None

    def _finished(self, key: str, done: asyncio.Future[float | None]) -> None:
        self._free += 1
        retry_after = None if done.cancelled() or done.exception() is not None else done.result()
        self.schedule.finish(key, self._clock(), retry_after)
        self._poke()
