"""Benchmark: catching up on large backlogs with Loop passes in worker processes (issue 12, item 3).

After a restart, or a burst of events, many Loops each have a backlog to ingest. Every pass runs
in a thread of the operator, all under one GIL; with ``SUPERLOOP_LOOP_PASS_PROCESSES`` the file
side of a pass with a large backlog runs in a worker process (``controllers.loop_pass_pool``).

* **catch-up** (the default): ``--loops`` Loops, each with about ``--backlog-kb`` KiB of events
  written by the runtime simulator (``superloop_ops.sim``; one Loop simulated, then copied), get
  their first pass through the operator's own scheduler (``PassScheduler`` over
  ``handlers.loop.run_periodic_pass``, on ``--threads`` threads, every Loop due at once) with an
  in-memory API server; once with each value of ``--processes`` (0: every pass in its thread),
  each in a fresh child process on fresh copies of the files. Reported: wall time until every
  Loop's pass is done, CPU-seconds of the operator process and of its worker processes (from
  /proc: the workers are the fork server's children, so ``RUSAGE_CHILDREN`` would not see them),
  and the machine's load average. The pool is started before the clock runs, as the operator's
  startup does; its start (a fork server importing the pass code, then the workers) is reported
  apart.
* ``--crossover``: one pass after ``SIZE`` new bytes, for each size of ``--sizes``, in the
  calling thread and in a (warm) worker: wall time, CPU of the calling process, CPU of the
  worker. Where the worker saves the operator's CPU for little added wall time is where
  ``SUPERLOOP_LOOP_PASS_PROCESS_MIN_BYTES`` belongs.

    PYTHONPATH=operator/src .venv/bin/python benchmarks/bench_loop_catchup.py --loops 8 --backlog-kb 1024
    PYTHONPATH=operator/src .venv/bin/python benchmarks/bench_loop_catchup.py --crossover

The in-memory API server is the component tests' ``FakeEdge`` (``tests/helpers``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.operator_fakes import FakeEdge  # noqa: E402
from superloop_ops.clock import FrozenClock  # noqa: E402
from superloop_ops.controllers import loop_alerts, loop_controller  # noqa: E402
from superloop_ops.controllers.loop_pass_pool import LoopPassPool  # noqa: E402
from superloop_ops.controllers.loop_scheduler import PassScheduler, ScheduledLoop  # noqa: E402
from superloop_ops.handlers import loop as loop_handlers  # noqa: E402
from superloop_ops.handlers.context import OperatorContext  # noqa: E402
from superloop_ops.metrics import build_metrics  # noqa: E402
from superloop_ops.models.loop import Loop  # noqa: E402
from superloop_ops.settings import Settings  # noqa: E402
from superloop_ops.sim.simulator import Simulator  # noqa: E402

NS = "bench"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _spec(loop_id: str) -> dict[str, Any]:
    return {
        "loopId": loop_id,
        "transport": "local",
        "source": {"pvc": {"claimName": loop_id}},
        "reconcileIntervalSeconds": 30,
        # a backlog is old: no ingest-lag reason should make the passes differ
        "thresholds": {"overrides": {"degradedIngestLagSeconds": 10**8, "criticalIngestLagSeconds": 10**9}},
    }


def _loop_id(index: int) -> str:
    return f"catchup-{index:03d}"


def _simulate(root: Path, loops: int, backlog_bytes: int) -> FrozenClock:
    """One simulated runtime with at least ``backlog_bytes`` of events, copied to ``loops``
    Loops (its loop id rewritten in every file): the simulator rewrites the whole run summary
    every iteration, so simulating each Loop would cost ``loops`` times as long for the same files."""
    clock = FrozenClock(START)
    sim = Simulator(root, clock, loops=1, loop_ids=[_loop_id(0)], scenarios=["running"], heartbeat=True)
    first = sim.loops[0].events_file
    while not first.is_file() or first.stat().st_size < backlog_bytes:
        sim.step()
        clock.advance(1)
    for index in range(1, loops):
        copy = root / _loop_id(index)
        shutil.copytree(root / _loop_id(0), copy)
        (copy / ".superloop" / "loops" / _loop_id(0)).rename(copy / ".superloop" / "loops" / _loop_id(index))
        for path in copy.rglob("*"):
            if path.is_file():
                path.write_bytes(path.read_bytes().replace(_loop_id(0).encode(), _loop_id(index).encode()))
    return clock


def _descendants(pid: int) -> dict[int, list[str]]:
    """The /proc/<pid>/stat fields (after the name) of every live process below ``pid``."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    below: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, fields in stats.items() if int(fields[1]) in frontier} - below
        below |= frontier
    return {child: stats[child] for child in below}


def _cpu_of_descendants(pid: int) -> float:
    """User + system CPU-seconds of every live process below ``pid``."""
    return sum((int(fields[11]) + int(fields[12])) / _TICKS for fields in _descendants(pid).values())


def _rss_of_descendants_mb(pid: int) -> float:
    """Resident memory of every live process below ``pid``, MB."""
    return sum(int(fields[21]) * _PAGE for fields in _descendants(pid).values()) / 1e6


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- catch-up


def _context(work: Path, loops: list[str], clock: FrozenClock) -> tuple[OperatorContext, FakeEdge]:
    edge = FakeEdge(NS)
    settings = Settings(
        state_dir=work / "state",
        pvc_dirs={(NS, loop_id): work / "pvc" / loop_id for loop_id in loops},
        pvc_mount_root=work / "mnt",
        metrics_port=0,
    )
    ctx = OperatorContext(settings=settings, edge=edge, clock=clock, metrics=build_metrics())
    for loop_id in loops:
        edge.add("loops", {"metadata": {"name": loop_id}, "spec": _spec(loop_id)})
    return ctx, edge


async def _drive(ctx: OperatorContext, edge: FakeEdge, loops: list[str], threads: int) -> float:
    """Every Loop due at once through the scheduler; the seconds until each has had its pass."""
    done: asyncio.Queue[str] = asyncio.Queue()
    event_loop = asyncio.get_running_loop()

    def run_pass(entry: ScheduledLoop) -> float | None:
        try:
            return loop_handlers.run_periodic_pass(entry, ctx)
        finally:
            event_loop.call_soon_threadsafe(done.put_nowait, entry.key)

    scheduler = PassScheduler(run_pass, workers=threads, jitter=lambda _interval: 0.0)
    started = time.perf_counter()
    scheduler.start()
    for loop_id in loops:
        scheduler.upsert(ScheduledLoop.from_body(loop_id, 3600.0, edge.get("loops", loop_id)))
    finished = {await done.get() for _ in loops}
    seconds = time.perf_counter() - started
    await scheduler.stop()
    assert finished == set(loops)
    return seconds


def run_catchup(template: Path, processes: int, threads: int, min_bytes: int) -> dict[str, Any]:
    """One configuration, in this (fresh) process, on a copy of the simulated files."""
    clock = FrozenClock(START + dt.timedelta(seconds=int((template / "ticks").read_text())))
    with tempfile.TemporaryDirectory(prefix="superloop-catchup-") as tmp:
        work = Path(tmp)
        shutil.copytree(template / "pvc", work / "pvc")
        loops = sorted(path.name for path in (work / "pvc").iterdir())
        ctx, edge = _context(work, loops, clock)
        ctx.pass_pool = (
            LoopPassPool(processes, min_bytes=min_bytes, timeout_seconds=3600) if processes else None
        )
        started = time.perf_counter()
        if ctx.pass_pool is not None:  # as the operator's startup does
            ctx.pass_pool.start()
        pool_start = time.perf_counter() - started
        load_before, cpu_before = os.getloadavg()[0], _own_cpu()
        cpu_workers_before = _cpu_of_descendants(os.getpid())
        seconds = asyncio.run(_drive(ctx, edge, loops, threads))
        own, workers = _own_cpu() - cpu_before, _cpu_of_descendants(os.getpid()) - cpu_workers_before
        rss_workers = _rss_of_descendants_mb(os.getpid())
        if ctx.pass_pool is not None:
            ctx.pass_pool.close()
        _check_caught_up(work, loops)
        return {
            "processes": processes,
            "threads": threads,
            "loops": len(loops),
            "backlog_bytes": sum(
                (work / "pvc" / lid / ".superloop/loops" / lid / "events.jsonl").stat().st_size
                for lid in loops
            ),
            "pool_start_s": round(pool_start, 2),
            "pool_start_cpu_s": round(cpu_workers_before, 2),
            "wall_s": round(seconds, 2),
            "cpu_operator_s": round(own, 2),
            "cpu_workers_s": round(workers, 2),
            "cpu_total_s": round(own + workers, 2),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "peak_rss_operator_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000, 1),
            "rss_workers_mb": round(rss_workers, 1),
            "offloaded_passes": ctx.pass_pool.passes if ctx.pass_pool is not None else 0,
        }


def _check_caught_up(work: Path, loops: list[str]) -> None:
    """Every Loop's cursor at the end of its events file: the whole backlog was ingested."""
    for loop_id in loops:
        events = work / "pvc" / loop_id / ".superloop" / "loops" / loop_id / "events.jsonl"
        cursor = work / "state" / NS / ".superloop" / "ops-manager" / loop_id / "cursor.json"
        lines = events.read_bytes().count(b"\n")
        offset = json.loads(cursor.read_text())["eventLineOffset"]
        if offset != lines:
            raise SystemExit(f"{loop_id}: cursor at {offset} of {lines} events")


def catchup(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="superloop-catchup-template-") as tmp:
        template = Path(tmp)
        clock = _simulate(template / "pvc", args.loops, args.backlog_kb * 1024)
        (template / "ticks").write_text(str(int((clock.now() - START).total_seconds())))
        for processes in args.processes:
            argv = [
                sys.executable, __file__, "--child", str(template), "--threads", str(args.threads),
                "--min-bytes", str(args.min_bytes), "--processes", str(processes),
            ]  # fmt: skip
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
    return results


# --------------------------------------------------------------------------- crossover


class _Crossover:
    """Two copies of one simulated Loop: one passed in this thread, one in a worker."""

    def __init__(self, work: Path) -> None:
        self.clock = FrozenClock(START)
        self.sims = {
            mode: Simulator(
                work / mode, self.clock, loops=1, loop_ids=["x"], scenarios=["running"], heartbeat=True
            )
            for mode in ("thread", "worker")
        }
        loop = Loop.from_body({"metadata": {"name": "x", "namespace": NS}, "spec": _spec("x")})
        config = loop_alerts.LoopAlertConfig(enabled=False, source="")
        self.jobs = {}
        for mode in self.sims:
            self.sims[mode].step()
            settings = Settings(state_dir=work / mode / "state", pvc_dirs={(NS, "x"): work / mode / "x"})
            target = loop_controller.build_loop_target(loop, NS, "x", settings)
            self.jobs[mode] = loop_controller.LoopPassJob(
                loop=loop, target=target, token=None, replay_token=None, replay_pending=False,
                clock=self.clock, alert_config=config,
            )  # fmt: skip
        self.pool = LoopPassPool(1, min_bytes=0, timeout_seconds=600)

    def grow(self, size: int) -> None:
        """Both runtimes write at least ``size`` new bytes of events (the same ones)."""
        events = self.sims["thread"].loops[0].events_file
        goal = events.stat().st_size + size
        while events.stat().st_size < goal:
            for sim in self.sims.values():
                sim.step()
            self.clock.advance(1)

    def measure(self, mode: str) -> tuple[float, float, float]:
        """(wall, CPU of this process, CPU of the worker) of one pass."""
        job = self.jobs[mode]
        wall, own, worker = time.perf_counter(), _own_cpu(), _cpu_of_descendants(os.getpid())
        if mode == "thread":
            loop_controller.run_loop_pass_job(job)
        else:
            self.pool.run("x", job)
        return (
            time.perf_counter() - wall,
            _own_cpu() - own,
            _cpu_of_descendants(os.getpid()) - worker,
        )


def crossover(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="superloop-crossover-") as tmp:
        bench = _Crossover(Path(tmp))
        bench.grow(4096)
        for mode in ("thread", "worker"):
            bench.measure(mode)  # the first passes (and the worker's start) are not measured
        for size in args.sizes:
            rows: dict[str, list[tuple[float, float, float]]] = {"thread": [], "worker": []}
            for _ in range(args.repeat):
                bench.grow(size)
                for mode in ("thread", "worker"):
                    rows[mode].append(bench.measure(mode))
            results.append({"new_bytes": size, **_summary(rows)})
            print(json.dumps(results[-1]), file=sys.stderr)
        bench.pool.close()
    return results


def _summary(rows: dict[str, list[tuple[float, float, float]]]) -> dict[str, float]:
    """Median wall times; mean CPU times (/proc counts CPU in 10 ms ticks: a mean resolves them)."""

    def wall(mode: str) -> float:
        return round(statistics.median(row[0] for row in rows[mode]) * 1000, 1)

    def cpu(mode: str, index: int) -> float:
        return round(statistics.fmean(row[index] for row in rows[mode]) * 1000, 1)

    return {
        "thread_wall_ms": wall("thread"),
        "thread_cpu_ms": cpu("thread", 1),
        "worker_wall_ms": wall("worker"),
        "worker_operator_cpu_ms": cpu("worker", 1),
        "worker_cpu_ms": cpu("worker", 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Loop catch-up passes with and without worker processes")
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--backlog-kb", type=int, default=1024, help="events per Loop, KiB")
    parser.add_argument("--processes", type=lambda text: [int(n) for n in text.split(",")], default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=Settings.loop_pass_workers)
    parser.add_argument("--min-bytes", type=int, default=Settings.loop_pass_process_min_bytes)
    parser.add_argument("--crossover", action="store_true", help="one pass per backlog size instead")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1024, 4096, 16384, 65536, 262144, 1048576],
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        result = run_catchup(args.child, args.processes[0], args.threads, args.min_bytes)
        print(json.dumps(result))
        return 0
    results = crossover(args) if args.crossover else catchup(args)
    print(json.dumps({"cpus": os.cpu_count(), "load": os.getloadavg(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
