"""Benchmark: the I/O and CPU of one active Loop pass as the operator runs it (issue 12, item 2).

The operator's steady state for an active Loop: the runtime appends about one event a second and
the Loop's interval is 30 s, so each full pass ingests ~30 new events. This script builds that
layout (a PVC directory with the runtime's artifacts, the operator's state tree for the journal)
and runs :func:`superloop_ops.controllers.loop_controller.run_loop_pass` in-process, exactly as
the Loop handler calls it (standard drift hook, the operator's alert dispatch with the shipped
sink catalog), once per simulated interval:

* **CPU per pass** (``time.process_time``: user + system of this process) and wall time, median
  and p90 over ``--passes`` passes after ``--warmup`` passes;
* **fsyncs, renames and write calls per pass**, counted in this process by wrapping
  ``os.fsync``, ``os.replace``/``os.rename`` and ``os.write`` (the journal's only durable
  primitives; buffered file writes are not counted here, use ``--strace``);
* with ``--strace``: the same passes in a child under ``strace -f -c`` (once with ``--passes``
  measured passes and once with none, the difference divided by ``--passes``), so every
  ``fsync``, ``write``, ``rename`` and ``openat`` syscall is counted, not only the wrapped ones;
* with ``--profile``: a cProfile of the measured passes (top functions by cumulative time).

    .venv/bin/python benchmarks/bench_loop_pass_io.py --passes 40 --strace
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_loop_reconcile as history
from superloop_ops.clock import FrozenClock

NS = "bench"
CLAIM = "bench-pvc"
EVENTS_PER_PASS = 30
TRACED = "fsync,fdatasync,rename,renameat,renameat2,write,openat"
INTERVAL = dt.timedelta(seconds=30)


class _NoObjects:
    """The alert config reader: the Loop names no ConfigMap or Secret, so nothing is read."""

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str:
        raise LookupError(name)

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str:
        raise LookupError(name)


class _Setup:
    def __init__(self, work: Path, events: int) -> None:
        from superloop_ops.controllers import loop_alerts, loop_controller
        from superloop_ops.models.loop import Loop
        from superloop_ops.settings import Settings

        pvc = work / "pvc"
        pvc.mkdir(parents=True, exist_ok=True)
        repo = history.build_repo(pvc, events)
        self.events = events
        self.repo = repo
        spec: dict[str, Any] = {
            "loopId": history.LOOP,
            "transport": "local",
            "source": {"pvc": {"claimName": CLAIM, "subPath": repo.name}},
            "thresholds": {
                "overrides": {"degradedIngestLagSeconds": 10**8, "criticalIngestLagSeconds": 10**9}
            },
        }
        self.loop = Loop.from_body({"metadata": {"name": "l1", "namespace": NS}, "spec": spec})
        settings = Settings(
            state_dir=work / "state", pvc_dirs={(NS, CLAIM): pvc}, pvc_mount_root=work / "mnt"
        )
        self.target = loop_controller.build_loop_target(self.loop, NS, "l1", settings)
        config = loop_alerts.fetch_loop_alert_config(
            self.loop, NS, _NoObjects(), default_catalog=loop_alerts.compute_default_catalog_path(None)
        )
        self.hooks = loop_alerts.build_operator_hooks(config)
        self.clock = FrozenClock(history.START + dt.timedelta(seconds=events))

    def run_pass(self) -> None:
        from superloop_ops.controllers import loop_controller

        history.append_events(self.repo, self.events, EVENTS_PER_PASS)
        self.events += EVENTS_PER_PASS
        self.clock.advance(INTERVAL.total_seconds())
        self._touch_heartbeat()
        loop_controller.run_loop_pass(
            self.loop,
            self.target,
            token=None,
            replay_token=None,
            replay_pending=False,
            clock=self.clock,
            hooks=self.hooks,
        )

    def _touch_heartbeat(self) -> None:
        path = self.repo / ".superloop" / "loops" / history.LOOP / "heartbeat.v1.json"
        document = json.loads(path.read_text())
        document["timestamp"] = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        path.write_text(json.dumps(document))


@contextlib.contextmanager
def counting_io() -> Iterator[Counter[str]]:
    """Count os.fsync, os.replace/os.rename and os.write calls while the block runs."""
    counts: Counter[str] = Counter()
    originals: dict[str, Callable[..., Any]] = {
        name: getattr(os, name) for name in ("fsync", "replace", "rename", "write")
    }

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)

        return counted

    for name, real in originals.items():
        setattr(os, name, wrap(name, real))
    try:
        yield counts
    finally:
        for name, real in originals.items():
            setattr(os, name, real)


def measure(setup: _Setup, passes: int) -> dict[str, Any]:
    cpu: list[float] = []
    wall: list[float] = []
    with counting_io() as counts:
        for _ in range(passes):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            setup.run_pass()
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
    return {
        "passes": passes,
        "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
        "cpu_ms_p90": round(sorted(cpu)[int(0.9 * (len(cpu) - 1))] * 1000, 2),
        "cpu_ms_mean": round(statistics.fmean(cpu) * 1000, 2),
        "wall_ms_median": round(statistics.median(wall) * 1000, 2),
        "per_pass": {
            name: round(counts[name] / passes, 2) for name in ("fsync", "replace", "rename", "write")
        },
    }


def run_child(work: Path, events: int, warmup: int, passes: int) -> None:
    setup = _Setup(work, events)
    for _ in range(warmup):
        setup.run_pass()
    for _ in range(passes):
        setup.run_pass()


def strace_counts(events: int, warmup: int, passes: int) -> dict[str, float]:
    """Syscalls per pass: a child with ``passes`` passes minus one with none, divided."""

    def run(measured: int) -> dict[str, int]:
        with tempfile.TemporaryDirectory(prefix="superloop-io-") as tmp:
            out = Path(tmp) / "strace.txt"
            argv = [
                "strace", "-f", "-c", "-o", str(out), "-e", f"trace={TRACED}",
                sys.executable, __file__, "--child", "--workdir", str(Path(tmp) / "w"),
                "--events", str(events), "--warmup", str(warmup), "--passes", str(measured),
            ]  # fmt: skip
            subprocess.run(argv, check=True)
            return _parse_strace(out.read_text())

    base, loaded = run(0), run(passes)
    return {name: round((loaded.get(name, 0) - base.get(name, 0)) / passes, 2) for name in sorted(loaded)}


def _parse_strace(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description="I/O and CPU of one active Loop pass")
    parser.add_argument("--events", type=int, default=1000, help="events in the history before the run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--strace", action="store_true", help="also count syscalls under strace -f -c")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured passes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="superloop-pass-io-"))
    if args.child:
        run_child(work, args.events, args.warmup, args.passes)
        return 0
    setup = _Setup(work, args.events)
    for _ in range(args.warmup):
        setup.run_pass()
    result: dict[str, Any] = {"events_per_pass": EVENTS_PER_PASS, **measure(setup, args.passes)}
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(args.passes):
            setup.run_pass()
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(45)
    if args.strace:
        result["strace_per_pass"] = strace_counts(args.events, args.warmup, args.passes)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
