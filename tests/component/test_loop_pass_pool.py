"""Loop passes in worker processes (issue 12, ``controllers.loop_pass_pool``), through the Loop
handler on real files and real worker processes: a pass in a worker writes the same journal and
the same status as in the handler's thread (recorded real-runtime artifacts, the simulator), only
a large enough backlog goes to a worker, and a worker killed mid-pass or hung in it fails that
pass only: the journal stays whole, no event is lost or ingested twice, the next pass succeeds."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import (
    LOOP,
    event_line,
    isolate_cli_env,
    journal_defects,
    ops_dir,
    write_runtime_artifacts,
)

from helpers import real_runtime
from helpers.operator_fakes import FakeEdge, build_context
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import loop_controller
from superloop_ops.controllers.loop_pass_pool import LoopPassPool, PassWorkerLostError
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.engine.loop.reconcile_pass import RECONCILE_LOCK_FILE
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.journal import crash_points, locks
from superloop_ops.main import build_pass_pool, start_loop_scheduler, stop_loop_scheduler
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings
from superloop_ops.sim.simulator import Simulator

NS = "team-a"
CLAIM = "claim-a"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[LoopPassPool]:
    """One worker for every pass (threshold 0), shared by the tests that only compare results."""
    pool = LoopPassPool(1, min_bytes=0, timeout_seconds=60)
    yield pool
    pool.close()


def _operator(
    work: Path, repo: Path, clock: FrozenClock, pool: LoopPassPool | None
) -> tuple[OperatorContext, FakeEdge]:
    edge = FakeEdge(NS)
    ctx = build_context(work, edge, clock, {CLAIM: repo}, control_confirm_timeout_seconds=20)
    ctx.new_trace_id = lambda: "00000000-0000-4000-8000-000000000001"
    ctx.pass_pool = pool
    return ctx, edge


def _add_loop(edge: FakeEdge, loop_id: str) -> None:
    spec = {"loopId": loop_id, "transport": "local", "source": {"pvc": {"claimName": CLAIM}}}
    edge.add(
        "loops",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "rr"},
            "spec": spec,
        },
    )


def _pass(ctx: OperatorContext, edge: FakeEdge) -> loop_handlers.PassReport:
    return loop_handlers.reconcile_loop(edge.get("loops", "rr"), ctx)


def _journal(state: Path) -> dict[str, bytes]:
    """Every journal file's bytes (the lock files hold nothing)."""
    return {
        str(path.relative_to(state)): path.read_bytes()
        for path in sorted(state.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


Outcome = tuple[dict[str, Any], list[str], dict[str, bytes]]


def _recorded_run(tmp_path: Path, scenario: str, pool: LoopPassPool | None) -> Outcome:
    """Passes over a recorded scenario, in ``tmp_path/work`` (the same paths for each run)."""
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    installed = real_runtime.install(scenario, work / "repo")
    clock = FrozenClock(installed.at(10))
    ctx, edge = _operator(work, installed.repo, clock, pool)
    _add_loop(edge, real_runtime.LOOP)
    for offset in (10, 20 * 60):
        clock.advance((installed.at(offset) - clock.now()).total_seconds())
        assert _pass(ctx, edge).error is None
    return edge.get("loops", "rr")["status"], edge.reasons("rr"), _journal(work / "state")


@pytest.mark.parametrize("scenario", ["complete", "approval_waiting", "runner_failure", "rate_limited"])
def test_a_pass_in_a_worker_writes_the_journal_and_status_it_writes_in_the_thread(
    tmp_path: Path, scenario: str, shared_pool: LoopPassPool
) -> None:
    before = shared_pool.passes
    in_thread = _recorded_run(tmp_path, scenario, None)
    in_worker = _recorded_run(tmp_path, scenario, shared_pool)
    assert shared_pool.passes == before + 2
    assert in_worker == in_thread


def _simulated_run(tmp_path: Path, start: dt.datetime, pool: LoopPassPool | None) -> Outcome:
    """A simulated runtime with a backlog of a few hundred events, then more between passes."""
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    clock = FrozenClock(start)
    sim = Simulator(work / "pvc", clock, loops=1, scenarios=["running"], heartbeat=True)
    repo = sim.repo_of("sim-loop-1")
    sim.run(300)
    _touch(repo, clock)
    ctx, edge = _operator(work, repo, clock, pool)
    _add_loop(edge, "sim-loop-1")
    for _ in range(3):
        assert _pass(ctx, edge).error is None
        clock.advance(30)
        sim.run(40)
        _touch(repo, clock)
    return edge.get("loops", "rr")["status"], edge.reasons("rr"), _journal(work / "state")


def _touch(repo: Path, clock: FrozenClock) -> None:
    """The simulator's files modified at the frozen clock (the pass reads their mtimes)."""
    stamp = clock.now().timestamp()
    for path in repo.rglob("*"):
        os.utime(path, (stamp, stamp))


def test_a_simulated_backlog_ingested_in_a_worker_matches_the_thread(
    tmp_path: Path, shared_pool: LoopPassPool
) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    in_thread = _simulated_run(tmp_path, start, None)
    in_worker = _simulated_run(tmp_path, start, shared_pool)
    assert in_worker == in_thread
    rows = in_thread[2][f"{NS}/.superloop/ops-manager/sim-loop-1/telemetry/reconcile.jsonl"].splitlines()
    assert len(rows) == 3
    assert json.loads(rows[0])["eventsIngested"] > 100


def _local_loop(tmp_path: Path) -> tuple[Path, FrozenClock]:
    """The runtime's artifacts with two events, and a clock a minute after them."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    repo = tmp_path / "pvc"
    write_runtime_artifacts(repo, format_ts(now - dt.timedelta(seconds=60)))
    return repo, FrozenClock(now)


def _append_events(repo: Path, count: int, stamp: str) -> int:
    """Append ``count`` events; the bytes appended."""
    lines = [event_line("role_end", stamp, 2) for _ in range(count)]
    with (repo / ".superloop" / "loops" / LOOP / "events.jsonl").open("a") as handle:
        handle.writelines(lines)
    return sum(len(line.encode()) for line in lines)


def test_only_a_backlog_of_at_least_the_threshold_goes_to_a_worker(tmp_path: Path) -> None:
    repo, clock = _local_loop(tmp_path)
    small = _append_events(repo, 1, format_ts(clock.now()))
    pool = LoopPassPool(1, min_bytes=small * 20, timeout_seconds=60)
    try:
        ctx, edge = _operator(tmp_path, repo, clock, pool)
        _add_loop(edge, LOOP)
        assert _pass(ctx, edge).error is None  # three events: under the threshold
        assert (pool.passes, pool.worker_pids()) == (0, [None])
        _append_events(repo, 19, format_ts(clock.now()))  # 19 of 20 needed
        assert _pass(ctx, edge).error is None
        assert pool.passes == 0
        _append_events(repo, 21, format_ts(clock.now()))
        assert _pass(ctx, edge).error is None
        assert pool.passes == 1
        assert pool.worker_pids()[0] is not None
        _append_events(repo, 1, format_ts(clock.now()))
        assert _pass(ctx, edge).error is None
        assert pool.passes == 1
    finally:
        pool.close()
    rows = (ops_dir(tmp_path / "state" / NS) / "telemetry" / "reconcile.jsonl").read_text().splitlines()
    assert [json.loads(row)["eventsIngested"] for row in rows] == [3, 19, 21, 1]


def test_the_backlog_is_the_events_past_the_cursor_or_the_whole_file_for_a_replay(tmp_path: Path) -> None:
    repo, clock = _local_loop(tmp_path)
    settings = Settings(state_dir=tmp_path / "state", pvc_dirs={(NS, CLAIM): repo})
    body = {"metadata": {"name": "rr", "namespace": NS}, "spec": {"loopId": LOOP, "transport": "local",
            "source": {"pvc": {"claimName": CLAIM}}}}  # fmt: skip
    loop = Loop.from_body(body)
    target = loop_controller.build_loop_target(loop, NS, "rr", settings)

    def backlog(*, replay: bool = False) -> int:
        stamps = loop_controller.stat_inputs(loop_controller.compute_input_paths(target))
        return loop_controller.compute_backlog_bytes(target, stamps, replay=replay)

    size = (repo / ".superloop" / "loops" / LOOP / "events.jsonl").stat().st_size
    assert backlog() == size  # no cursor yet
    loop_controller.run_loop_pass(
        loop, target, token=None, replay_token=None, replay_pending=False, clock=clock
    )
    assert backlog() == 0
    added = _append_events(repo, 3, format_ts(clock.now()))
    assert backlog() == added
    assert backlog(replay=True) == size + added
    service = dataclasses.replace(target, transport="sprite_service")
    assert loop_controller.compute_backlog_bytes(service, (), replay=True) == 0


def test_no_pool_unless_processes_are_asked_for_and_start_starts_each_worker() -> None:
    assert build_pass_pool(Settings()) is None
    pool = build_pass_pool(Settings(loop_pass_processes=2, loop_pass_process_min_bytes=10))
    assert pool is not None
    assert (pool.processes, pool.min_bytes, pool.worker_pids()) == (2, 10, [None, None])
    try:
        pool.start()
        pids = pool.worker_pids()
        assert None not in pids
        assert len(set(pids)) == 2
        assert os.getpid() not in pids
    finally:
        pool.close()


def test_the_operator_starts_its_workers_with_the_scheduler_and_stops_them_at_cleanup(tmp_path: Path) -> None:
    repo, clock = _local_loop(tmp_path)
    ctx, _ = _operator(tmp_path, repo, clock, None)
    ctx.settings = dataclasses.replace(ctx.settings, loop_pass_processes=1)
    memo = types.SimpleNamespace(operator=ctx)

    async def lifecycle() -> list[int | None]:
        await start_loop_scheduler(memo)  # type: ignore[arg-type]
        assert ctx.pass_pool is not None
        pids = ctx.pass_pool.worker_pids()
        await stop_loop_scheduler(memo)  # type: ignore[arg-type]
        return pids

    pids = asyncio.run(lifecycle())
    assert pids[0] is not None
    _wait_gone(pids[0])


# --------------------------------------------------------------------------- lost workers


def _reconcile_rows(tmp_path: Path) -> list[int]:
    path = ops_dir(tmp_path / "state" / NS) / "telemetry" / "reconcile.jsonl"
    return [json.loads(line)["eventsIngested"] for line in path.read_text().splitlines()]


def _assert_whole_and_caught_up(tmp_path: Path, events: int) -> None:
    journal = ops_dir(tmp_path / "state" / NS)
    assert journal_defects(journal) == []
    cursor = json.loads((journal / "cursor.json").read_text())
    state = json.loads((journal / "state.json").read_text())
    assert cursor["eventLineOffset"] == events
    assert state["cursor"] == {"eventLineOffset": events, "eventLineCount": events}


def _started_with_backlog(tmp_path: Path) -> tuple[OperatorContext, FakeEdge, Path]:
    """A Loop whose first pass ran in the thread (2 events) and that has 5 new events."""
    repo, clock = _local_loop(tmp_path)
    ctx, edge = _operator(tmp_path, repo, clock, None)
    _add_loop(edge, LOOP)
    assert _pass(ctx, edge).error is None
    _append_events(repo, 5, format_ts(clock.now()))
    return ctx, edge, repo


EXPECTED_INGESTS = {  # as for a killed CLI run (tests/component/test_journal_commit.py)
    "reconcile.cursor": [2, 5],
    "reconcile.rows": [2, 0],
    "reconcile.cursor_commit": [2, 5, 0],
}


@pytest.mark.parametrize("point", crash_points.RECONCILE_POINTS)
def test_a_worker_killed_at_each_commit_of_its_pass_loses_no_event_and_ingests_none_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """The worker SIGKILLs itself mid-pass (``SUPERLOOP_OPS_CRASH_AT``; ``spawn`` gives it the
    variable): the pass fails as retryable, the worker is replaced (without the variable) and
    the next pass completes the journal exactly as after a killed CLI run."""
    ctx, edge, _ = _started_with_backlog(tmp_path)
    monkeypatch.setenv(crash_points.ENV, point)
    pool = LoopPassPool(1, min_bytes=0, timeout_seconds=60, start_method="spawn")
    ctx.pass_pool = pool
    try:
        lost = _pass(ctx, edge)
        assert isinstance(lost.error, PassWorkerLostError), lost
        assert (lost.outcome, lost.retry_after) == ("blocked", 5.0)
        ready = _condition(edge, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InternalError")
        assert journal_defects(ops_dir(tmp_path / "state" / NS)) == []
        monkeypatch.delenv(crash_points.ENV)
        assert _pass(ctx, edge).error is None
    finally:
        pool.close()
    assert pool.passes == 2
    _assert_whole_and_caught_up(tmp_path, 7)
    assert _reconcile_rows(tmp_path) == EXPECTED_INGESTS[point]


def _condition(edge: FakeEdge, kind: str) -> dict[str, Any]:
    conditions = edge.get("loops", "rr")["status"]["conditions"]
    return next(condition for condition in conditions if condition["type"] == kind)


def _waiting_for_the_journal_lock(pool: LoopPassPool, timeout: float = 30.0) -> int:
    """The worker's pid once it waits for the journal's flock (a blocked ``FLOCK`` in /proc/locks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = pool.worker_pids()[0]
        if pid is not None and any(
            "->" in line and "FLOCK" in line and f" {pid} " in line
            for line in Path("/proc/locks").read_text().splitlines()
        ):
            return pid
        time.sleep(0.02)
    raise AssertionError("the worker never reached the journal lock")


def _in_background(ctx: OperatorContext, edge: FakeEdge) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(report=_pass(ctx, edge)))
    thread.start()
    return thread, box


def test_a_worker_killed_mid_pass_fails_that_pass_and_the_next_one_catches_up(tmp_path: Path) -> None:
    """The worker is inside the pass, waiting for the journal's lock (held here, as a CLI run
    would), when it is SIGKILLed: the pass fails as retryable and nothing of it is written."""
    ctx, edge, _ = _started_with_backlog(tmp_path)
    journal = ops_dir(tmp_path / "state" / NS)
    before = _journal(journal)
    pool = ctx.pass_pool = LoopPassPool(1, min_bytes=0, timeout_seconds=60)
    try:
        with locks.file_lock(journal / RECONCILE_LOCK_FILE):
            thread, box = _in_background(ctx, edge)
            os.kill(_waiting_for_the_journal_lock(pool), signal.SIGKILL)
            thread.join(30)
        assert isinstance(box["report"].error, PassWorkerLostError)
        assert "died" in str(box["report"].error)
        assert _journal(journal) == before
        assert _pass(ctx, edge).error is None
    finally:
        pool.close()
    _assert_whole_and_caught_up(tmp_path, 7)
    assert _reconcile_rows(tmp_path) == [2, 5]


def test_a_hung_worker_is_killed_after_the_timeout_and_replaced(tmp_path: Path) -> None:
    """A pass that cannot finish (its journal lock held elsewhere) holds its thread for the
    timeout only: the worker is killed (the lock it waited for is not taken), the pass fails as
    retryable, and the next pass runs in a new worker."""
    ctx, edge, _ = _started_with_backlog(tmp_path)
    journal = ops_dir(tmp_path / "state" / NS)
    pool = ctx.pass_pool = LoopPassPool(1, min_bytes=0, timeout_seconds=2)
    try:
        with locks.file_lock(journal / RECONCILE_LOCK_FILE):
            thread, box = _in_background(ctx, edge)
            hung = _waiting_for_the_journal_lock(pool)
            thread.join(30)
            assert not thread.is_alive()
        assert isinstance(box["report"].error, PassWorkerLostError)
        assert "longer than 2 s" in str(box["report"].error)
        _wait_gone(hung)
        assert _pass(ctx, edge).error is None
        assert pool.worker_pids()[0] not in (None, hung)
    finally:
        pool.close()
    _assert_whole_and_caught_up(tmp_path, 7)
    assert _reconcile_rows(tmp_path) == [2, 5]


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"worker {pid} still alive")
