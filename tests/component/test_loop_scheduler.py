"""The one scheduler of periodic Loop passes (issue 12): due times with the clock passed in, the
asyncio driver on a real thread pool, and the Loop watch handler that feeds it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import pytest

from helpers.operator_fakes import FakeEdge, build_context, build_frozen_clock
from superloop_ops.controllers.loop_scheduler import (
    PassSchedule,
    PassScheduler,
    ScheduledLoop,
    compute_next_due,
)
from superloop_ops.core.common.shards import parse_shard
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.main import bound_kopf
from superloop_ops.settings import Settings

NS = "team-a"


def _entry(key: str, interval: float = 30.0, body: dict[str, Any] | None = None) -> ScheduledLoop:
    return ScheduledLoop.from_body(key, interval, body or {"metadata": {"name": key}})


def _fixed(*offsets: float) -> Callable[[float], float]:
    values = iter(offsets)
    return lambda _interval: next(values)


def _drain(schedule: PassSchedule, now: float) -> list[str]:
    keys = []
    while (entry := schedule.pop_due(now)) is not None:
        keys.append(entry.key)
    return keys


def test_due_order_follows_the_first_jitter_then_the_interval() -> None:
    schedule = PassSchedule(jitter=_fixed(20.0, 5.0, 12.0))
    for key in ("a", "b", "c"):
        schedule.upsert(_entry(key), now=1000.0)
    assert schedule.next_due() == 1005.0
    assert _drain(schedule, 1004.9) == []
    assert _drain(schedule, 1012.0) == ["b", "c"]
    schedule.finish("b", 1013.0, None)  # a pass that took 8 s: next due 30 s after its due time
    schedule.finish("c", 1013.0, None)
    assert (schedule.due_of("b"), schedule.due_of("c")) == (1035.0, 1042.0)
    assert _drain(schedule, 1036.0) == ["a", "b"]


def test_first_due_is_within_the_first_interval() -> None:
    schedule = PassSchedule()
    for index in range(300):
        schedule.upsert(_entry(f"l{index}", interval=30.0), now=50.0)
    dues = [schedule.due_of(key) for key in list(schedule.keys())]
    assert all(due is not None and 50.0 <= due <= 80.0 for due in dues)
    assert len({round(due or 0, 3) for due in dues}) > 250  # spread, not one wave


def test_retry_after_brings_the_next_pass_forward_only_when_sooner() -> None:
    schedule = PassSchedule(jitter=_fixed(0.0, 0.0))
    schedule.upsert(_entry("a"), now=100.0)
    schedule.upsert(_entry("b"), now=100.0)
    assert _drain(schedule, 100.0) == ["a", "b"]
    schedule.finish("a", 101.0, 15.0)
    schedule.finish("b", 101.0, 60.0)
    assert (schedule.due_of("a"), schedule.due_of("b")) == (116.0, 130.0)
    assert compute_next_due(100.0, 30.0, 140.0, None) == 140.0  # fell behind: due now, no burst


def test_an_interval_change_moves_the_waiting_pass() -> None:
    schedule = PassSchedule(jitter=_fixed(10.0))
    schedule.upsert(_entry("a", interval=60.0), now=0.0)  # due 10, previous due -50
    assert _drain(schedule, 10.0) == ["a"]
    schedule.finish("a", 11.0, None)
    assert schedule.due_of("a") == 70.0
    schedule.upsert(_entry("a", interval=20.0), now=12.0)
    assert schedule.due_of("a") == 30.0
    assert _drain(schedule, 29.0) == []
    assert _drain(schedule, 30.0) == ["a"]
    schedule.upsert(_entry("a", interval=5.0), now=31.0)  # changed while running: used at finish
    schedule.finish("a", 31.0, None)
    assert schedule.due_of("a") == 35.0
    schedule.upsert(_entry("a", interval=1.0), now=40.0)  # 35 + 1 is past: due now
    assert schedule.due_of("a") == 40.0


def test_a_removed_loop_leaves_the_schedule_even_while_its_pass_runs() -> None:
    schedule = PassSchedule(jitter=_fixed(0.0, 0.0, 3.0))
    schedule.upsert(_entry("gone"), now=0.0)
    schedule.upsert(_entry("kept"), now=0.0)
    assert schedule.remove("gone")
    assert not schedule.remove("gone")
    assert _drain(schedule, 100.0) == ["kept"]
    assert schedule.remove("kept")
    schedule.finish("kept", 1.0, None)  # its pass ends after the removal: not scheduled again
    assert "kept" not in schedule
    assert schedule.next_due() is None
    schedule.upsert(_entry("kept"), now=2.0)  # back (e.g. the shard label changed back)
    assert schedule.due_of("kept") == 5.0
    assert len(schedule) == 1


def test_the_entry_keeps_the_body_without_managed_fields() -> None:
    body = {
        "metadata": {"name": "x", "generation": 3, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"loopId": "x"},
        "status": {"lifecycle": "running"},
    }
    entry = ScheduledLoop.from_body("uid-x", 30.0, body)
    assert entry.load_body() == {
        "metadata": {"name": "x", "generation": 3},
        "spec": {"loopId": "x"},
        "status": {"lifecycle": "running"},
    }
    assert len(entry.body) == len(json.dumps(entry.load_body(), separators=(",", ":")))


def _run_scheduler(
    scheduler: PassScheduler,
    entries: list[ScheduledLoop],
    until: Callable[[], bool],
    *,
    then: Callable[[], None] = lambda: None,
) -> None:
    """Start the scheduler, feed it ``entries``, wait (real time) until ``until()``, stop it."""

    async def drive() -> None:
        scheduler.start()
        try:
            for entry in entries:
                scheduler.upsert(entry)
            await asyncio.sleep(0.3)
            then()
            async with asyncio.timeout(10.0):
                while not until():  # noqa: ASYNC110 (the condition is set by pool threads)
                    await asyncio.sleep(0.01)
        finally:
            await scheduler.stop()

    asyncio.run(drive())


def test_the_pool_bounds_the_passes_running_at_once() -> None:
    lock, running, peak, done = threading.Lock(), [0], [0], []
    gate = threading.Event()

    def run_pass(entry: ScheduledLoop) -> float | None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(5.0)
        with lock:
            running[0] -= 1
            done.append(entry.key)
        return None

    scheduler = PassScheduler(run_pass, workers=2, jitter=lambda _interval: 0.0)

    def release() -> None:
        assert scheduler.running_passes == 2
        assert not done
        gate.set()

    entries = [_entry(f"l{index}", interval=3600.0) for index in range(6)]
    _run_scheduler(scheduler, entries, lambda: len(done) == 6, then=release)
    assert peak[0] == 2
    assert sorted(done) == [f"l{index}" for index in range(6)]


def test_a_pass_that_raises_does_not_stop_the_scheduler() -> None:
    runs: dict[str, int] = {"bad": 0, "good": 0}

    def run_pass(entry: ScheduledLoop) -> float | None:
        runs[entry.key] += 1
        if entry.key == "bad":
            raise RuntimeError("boom")
        return None

    scheduler = PassScheduler(run_pass, workers=1, jitter=lambda _interval: 0.0)
    entries = [_entry("bad", interval=0.1), _entry("good", interval=0.1)]
    _run_scheduler(scheduler, entries, lambda: runs["bad"] >= 3 and runs["good"] >= 3)
    assert scheduler.running_passes == 0


def test_a_dependency_retry_runs_before_the_interval() -> None:
    started: list[float] = []

    def run_pass(entry: ScheduledLoop) -> float | None:
        started.append(time.monotonic())
        return 0.05  # DependencyNotReady's retry_after

    scheduler = PassScheduler(run_pass, workers=1, jitter=lambda _interval: 0.0)
    _run_scheduler(scheduler, [_entry("waiting", interval=3600.0)], lambda: len(started) >= 3)
    assert started[2] - started[0] < 5.0  # retried every 0.05 s, not every hour


# --- the Loop watch feeds the scheduler ------------------------------------------------------


def _operator(tmp_path: Path, shard: str = "") -> tuple[OperatorContext, Any]:
    edge = FakeEdge(NS)
    ctx = build_context(tmp_path, edge, build_frozen_clock(), {}, control_confirm_timeout_seconds=20,
                        shard=parse_shard(shard))  # fmt: skip
    ctx.scheduler = PassScheduler(lambda _entry: None, workers=1)
    return ctx, types.SimpleNamespace(operator=ctx)


def _body(name: str, interval: int = 30, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, **meta},
        "spec": {"loopId": name, "reconcileIntervalSeconds": interval},
    }


def _event(memo: Any, body: dict[str, Any], kind: str | None = "MODIFIED") -> None:
    asyncio.run(loop_handlers.on_loop_event(event={"type": kind, "object": body}, body=body, memo=memo))


def test_the_watch_adds_updates_and_removes_loops(tmp_path: Path) -> None:
    ctx, memo = _operator(tmp_path)
    assert ctx.scheduler is not None
    schedule = ctx.scheduler.schedule
    _event(memo, _body("a"), None)  # the initial listing
    _event(memo, _body("b"), "ADDED")
    assert sorted(schedule.keys()) == ["uid-a", "uid-b"]
    first = schedule.due_of("uid-a")
    _event(memo, _body("a", interval=90))  # the interval goes from 30 to 90 s
    assert first is not None
    assert schedule.due_of("uid-a") == pytest.approx(first + 60.0)
    ctx.metrics.record_loop_pass(NS, "b", 1.0)
    _event(memo, _body("b", deletionTimestamp="2026-01-01T00:00:00Z"))
    assert "uid-b" not in schedule
    assert 'loop="b"' not in ctx.metrics.render().decode()
    _event(memo, _body("a"), "DELETED")
    assert len(schedule) == 0


def test_a_loop_that_leaves_the_shard_leaves_the_schedule(tmp_path: Path) -> None:
    label = "ops.superloop.dev/shard"
    ctx, memo = _operator(tmp_path, shard="0/2")
    assert ctx.scheduler is not None
    _event(memo, _body("pinned", labels={label: "0"}), "ADDED")
    _event(memo, _body("other", labels={label: "1"}), "ADDED")
    assert list(ctx.scheduler.schedule.keys()) == ["uid-pinned"]
    _event(memo, _body("pinned", labels={label: "1"}))
    assert len(ctx.scheduler.schedule) == 0
    _event(memo, _body("other", labels={label: "0"}))
    assert list(ctx.scheduler.schedule.keys()) == ["uid-other"]


def test_kopf_workers_idle_time_and_listing_pages_are_bounded_by_the_settings() -> None:
    """kopf's defaults are unlimited per-object workers (each holding its object's latest body)
    and one LIST of every object at start; the operator bounds both (issue 12, memory)."""
    settings = kopf.OperatorSettings()
    assert settings.queueing.worker_limit is None
    assert settings.watching.chunk_size is None
    bound_kopf(settings, Settings(kopf_worker_limit=7, kopf_idle_seconds=1.5, list_chunk_size=40))
    assert settings.queueing.worker_limit == 7
    assert settings.queueing.idle_timeout == 1.5
    assert settings.watching.chunk_size == 40
    # the default sets no worker limit: a limit queues waiting objects' events without bound
    bound_kopf(settings, Settings())
    assert settings.queueing.worker_limit is None
