"""Benchmark: one loop's reconcile pass at growing event histories (not a timed test).

For each history size N it generates a repository whose ``events.jsonl`` holds N runtime events
(plus a run summary that grows with the iterations, as a real one does), then measures with
``superloop-ops reconcile`` as a separate process, the way the reference script is run:

* ``first``: the first pass over the whole history (cursor at 0);
* ``incr``: a second pass after 100 more events were appended (the steady state of an operator);
* peak RSS of the first pass (``ru_maxrss`` of the child).

The run summary is an artifact the runtime rewrites whole, so each pass must re-read it: its size
grows with the iterations, and so does that part of a pass. A second in-process column caps it
at 100 entries to show what the events history alone costs.

Also in-process (no interpreter start-up) the incremental pass through
:func:`superloop_ops.engine.loop.reconcile_pass.run_reconcile`, to show its cost does not grow with history.

With ``SUPERLOOP_REFERENCE_DIR`` pointing at a checkout of the reference implementation, the
reference's ``scripts/ops-manager-reconcile.sh`` runs on a copy of the same repository for the sizes
in ``--reference-sizes`` (default 100,300,1000: it costs about a third of a second per event), and
the table gets a ratio column. Larger ratios are extrapolated from a least-squares line through the
measured reference points and marked ``~`` (estimated), never presented as measured.

    .venv/bin/python benchmarks/bench_loop_reconcile.py --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLES = ("planner", "implementer", "tester", "reviewer")
LOOP = "bench-loop"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _ts(seconds: int) -> str:
    return (START + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _events(first: int, count: int) -> list[str]:
    """Runtime-shaped event lines number ``first`` .. ``first + count - 1`` (1-based)."""
    lines = []
    per_iteration = 2 + 2 * len(ROLES)
    for number in range(first, first + count):
        index = number - 1
        iteration = index // per_iteration + 1
        step = index % per_iteration
        row: dict[str, object] = {
            "timestamp": _ts(index),
            "loop_id": LOOP,
            "run_id": "run-1",
            "iteration": iteration,
        }
        if step == 0:
            row["event"] = "iteration_start"
        elif step == per_iteration - 1:
            row["event"] = "iteration_end"
            row["data"] = {"promise_matched": False, "tests": "ok"}
        else:
            role = ROLES[(step - 1) // 2]
            row["event"] = "role_start" if step % 2 == 1 else "role_end"
            row["role"] = role
            row["data"] = {"exit_code": 0, "duration_seconds": 42} if step % 2 == 0 else None
        lines.append(json.dumps(row, separators=(",", ":")) + "\n")
    return lines


def build_repo(root: Path, events: int, summary_entries: int | None = None) -> Path:
    """A repository with ``events`` events; the run summary has one entry per iteration unless capped."""
    repo = root / f"repo-{events}-{summary_entries}"
    loop_dir = repo / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True)
    with (loop_dir / "events.jsonl").open("w") as handle:
        chunk = 10_000
        for first in range(1, events + 1, chunk):
            handle.writelines(_events(first, min(chunk, events - first + 1)))
    iterations = max(1, events // (2 + 2 * len(ROLES)))
    if summary_entries is not None:
        iterations = min(iterations, summary_entries)
    summary = {
        "version": 1,
        "loop_id": LOOP,
        "entries": [
            {
                "run_id": "run-1",
                "iteration": n,
                "started_at": _ts(n * 10),
                "ended_at": _ts(n * 10 + 9),
                "promise": {"expected": "SUPERLOOP_COMPLETE", "text": None, "matched": False},
                "gates": {"tests": "ok", "validation": "ok", "approval": "none"},
                "completion_ok": False,
            }
            for n in range(1, iterations + 1)
        ],
    }
    (loop_dir / "run-summary.json").write_text(json.dumps(summary))
    last = _ts(events)
    (loop_dir / "heartbeat.v1.json").write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "loopId": LOOP,
                "runId": "run-1",
                "timestamp": last,
                "iteration": iterations,
            }
        )
    )
    (repo / ".superloop" / "state.json").write_text(
        json.dumps({"active": True, "current_loop_id": LOOP, "iteration": iterations, "updated_at": last})
    )
    return repo


def append_events(repo: Path, total_before: int, count: int) -> None:
    with (repo / ".superloop" / "loops" / LOOP / "events.jsonl").open("a") as handle:
        handle.writelines(_events(total_before + 1, count))


def run_timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS KiB of the child tree) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stderr[-2000:])
        raise SystemExit(f"{argv[0]} failed with {result.returncode}")
    return elapsed, result.returncode, max(peak, before)


def ours(repo: Path) -> list[str]:
    exe = Path(sys.executable).parent / "superloop-ops"
    return [str(exe), "reconcile", "--repo", str(repo), "--loop", LOOP, "--alerts-enabled", "false"]


def reference(ref_dir: Path, repo: Path) -> list[str]:
    script = ref_dir / "scripts" / "ops-manager-reconcile.sh"
    return ["bash", str(script), "--repo", str(repo), "--loop", LOOP, "--alerts-enabled", "false"]


def in_process_incremental(repo: Path, events: int) -> float:
    """Median of 5 in-process incremental passes of 100 new events each."""
    from superloop_ops.core.loop import threshold_profiles
    from superloop_ops.engine.loop import reconcile_pass

    resolved = threshold_profiles.Thresholds(
        profile=None,
        degraded_ingest_lag_seconds=10**9,
        critical_ingest_lag_seconds=10**9 + 1,
        degraded_heartbeat_lag_seconds=10**9,
        critical_heartbeat_lag_seconds=10**9 + 1,
        degraded_transport_failure_streak=2,
        critical_transport_failure_streak=4,
    )
    options = reconcile_pass.ReconcileOptions(repo=repo, loop_id=LOOP, thresholds=resolved)
    samples = []
    for round_ in range(5):
        append_events(repo, events + 100 * round_, 100)
        started = time.perf_counter()
        reconcile_pass.run_reconcile(options)
        samples.append(time.perf_counter() - started)
    return sorted(samples)[len(samples) // 2]


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return slope, mean_y - slope * mean_x


def main() -> int:
    parser = argparse.ArgumentParser(description="loop reconcile benchmark")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--reference-sizes", default="100,300,1000")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    ref_sizes = [int(s) for s in args.reference_sizes.split(",") if s]
    ref_env = os.environ.get("SUPERLOOP_REFERENCE_DIR")
    ref_dir = Path(ref_env) if ref_env else None
    work = args.workdir or Path(tempfile.mkdtemp(prefix="superloop-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    rows = []
    for size in sizes:
        repo = build_repo(work, size)
        first, _, rss = run_timed(ours(repo))
        append_events(repo, size, 100)
        incr, _, _ = run_timed(ours(repo))
        inproc = in_process_incremental(repo, size + 100)
        shutil.rmtree(repo)
        fixed_repo = build_repo(work, size, summary_entries=100)
        run_timed(ours(fixed_repo))
        inproc_fixed = in_process_incremental(fixed_repo, size)
        shutil.rmtree(fixed_repo)
        rows.append((size, first, incr, inproc, inproc_fixed, rss))
        print(
            f"ours  N={size:>7}: first {first:7.3f}s  incr(+100) {incr:6.3f}s  "
            f"incr in-process {inproc * 1000:6.1f}ms "
            f"(summary of 100 entries: {inproc_fixed * 1000:6.1f}ms)  "
            f"peak RSS {rss / 1024:6.1f} MiB",
            flush=True,
        )

    ref_points: list[tuple[int, float]] = []
    if ref_dir is not None:
        for size in ref_sizes:
            repo = build_repo(work, size)
            elapsed, _, _ = run_timed(reference(ref_dir, repo))
            ref_points.append((size, elapsed))
            shutil.rmtree(repo)
            print(f"ref   N={size:>7}: first {elapsed:7.1f}s", flush=True)

    print(
        "\n| events | ours first pass | ours incremental (+100) | in-process incr | in-process incr, "
        "100-entry summary | peak RSS | reference first pass | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    slope, intercept = fit_line(ref_points) if len(ref_points) >= 2 else (0.0, 0.0)
    measured = dict(ref_points)
    for size, first, incr, inproc, inproc_fixed, rss in rows:
        if size in measured:
            ref_cell, ratio_cell = f"{measured[size]:.1f}s", f"{measured[size] / first:.0f}x"
        elif slope > 0:
            estimate = slope * size + intercept
            ref_cell, ratio_cell = f"~{estimate:.0f}s (fit)", f"~{estimate / first:.0f}x"
        else:
            ref_cell, ratio_cell = "n/a", "n/a"
        print(
            f"| {size} | {first:.3f}s | {incr:.3f}s | {inproc * 1000:.1f}ms | {inproc_fixed * 1000:.1f}ms "
            f"| {rss / 1024:.1f} MiB "
            f"| {ref_cell} | {ratio_cell} |"
        )
    if ref_points:
        print(
            f"\nreference fit: {slope:.3f} s/event + {intercept:.2f} s "
            f"(from {', '.join(f'{n}:{t:.1f}s' for n, t in ref_points)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
