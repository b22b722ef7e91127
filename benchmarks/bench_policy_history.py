"""Policy stage cost by journal age: one ``evaluate_policy`` pass over a policy history and a handoff
telemetry log of ``N`` rows each (issue 12: a pass reads only the rows its windows need).

The fleet has 50 loops, 10 of them critical (a candidate each); the history holds one row per
candidate per pass, a pass every 30 s, the newest at now; the handoff telemetry as many plan
rows. The first pass of a size also reads the whole handoff telemetry once (no cursor yet); the
median and best are of the passes after it. Each size runs ``--runs`` passes (each appends its
own rows, as the operator's do); the CPU seconds of this process per pass (user + system, stable
on a shared machine) are printed with the bytes of history the pass read.

    PYTHONPATH=$PWD/operator/src .venv/bin/python benchmarks/bench_policy_history.py \
        [--rows 1000,100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry, policy_rules
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.journal import tail

LOOPS = [f"loop-{i:02d}" for i in range(50)]


def _registry(now: dt.datetime) -> dict[str, Any]:
    raw = {
        "schemaVersion": "v1",
        "fleetId": "bench",
        "loops": [{"loopId": loop_id} for loop_id in LOOPS],
        "policy": {"mode": "advisory", "noiseControls": {"dedupeWindowSeconds": 300}},
    }
    return fleet_registry.build_normalized_registry(raw, "/bench/registry.v1.json")


def _fleet_state(trace: str, now: dt.datetime) -> dict[str, Any]:
    results = [
        {"loopId": loop_id, "status": "success", "healthStatus": "critical" if i < 10 else "healthy",
         "traceId": f"{trace}-{loop_id}"}
        for i, loop_id in enumerate(LOOPS)
    ]  # fmt: skip
    stamp = format_ts(now)
    return {"fleetId": "bench", "traceId": trace, "status": "partial_failure", "results": results,
            "startedAt": stamp, "updatedAt": stamp}  # fmt: skip


def _journal(paths: fleet_commands.FleetPaths, rows: int, now: dt.datetime) -> None:
    """``rows`` history rows (10 candidates a pass, a pass every 30 s) and ``rows`` plan rows."""
    paths.policy_history_file.parent.mkdir(parents=True, exist_ok=True)
    passes = rows // 10
    with paths.policy_history_file.open("w") as history, paths.handoff_telemetry_file.open("w") as handoff:
        for number in range(passes):
            stamp = format_ts(now - dt.timedelta(seconds=30 * (passes - number)))
            for loop_id in LOOPS[:10]:
                row = {
                    "timestamp": stamp, "traceId": f"old-{number}", "loopId": loop_id,
                    "candidateId": f"{loop_id}:health_critical", "candidateCategory": "health_critical",
                    "suppressed": number % 10 != 0, "autonomousEligible": False,
                }  # fmt: skip
                history.write(json.dumps(row) + "\n")
                plan = {"timestamp": stamp, "category": "fleet_handoff_plan", "traceId": f"old-{number}"}
                handoff.write(json.dumps({**plan, "summary": {"intentCount": 10}}) + "\n")


def _one_size(rows: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = fleet_commands.FleetPaths.for_repo(Path(tmp))
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        _journal(paths, rows, now)
        cpu: list[float] = []
        read = 0
        for run in range(runs):
            moment = now + dt.timedelta(seconds=30 * (run + 1))
            registry, state = _registry(moment), _fleet_state(f"bench-{run}", moment)
            read = _history_bytes_read(paths, registry, state, moment)
            began = time.process_time()
            fleet_commands.evaluate_policy(
                paths, registry, state, trace_id=None, dedupe_window_seconds=None, now=moment, env={}
            )
            cpu.append(time.process_time() - began)
        size = paths.policy_history_file.stat().st_size
    return {"rows": rows, "historyBytes": size, "historyBytesRead": read, "cpuSecondsFirst": cpu[0],
            "cpuSecondsMedian": statistics.median(cpu[1:]), "cpuSecondsBest": min(cpu[1:])}  # fmt: skip


def _history_bytes_read(
    paths: fleet_commands.FleetPaths, registry: Any, state: Any, moment: dt.datetime
) -> int:
    """What the pass reads of the history (code before issue 12: the whole file)."""
    if not hasattr(policy_rules, "compute_history_needs"):
        return paths.policy_history_file.stat().st_size
    needs = policy_rules.compute_history_needs(
        registry=registry, fleet_state=state, previous_state=None, dedupe_window_seconds=300,
        trace_id=state["traceId"], now=moment,
    )  # fmt: skip
    return int(tail.fetch_rows_after(paths.policy_history_file, needs.is_older).bytes_read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,100000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for rows in (int(n) for n in args.rows.split(",")):
        print(json.dumps(_one_size(rows, args.runs)))


if __name__ == "__main__":
    main()
