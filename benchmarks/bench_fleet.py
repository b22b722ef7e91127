"""Fleet pass cost: reconcile rollup + policy + handoff for fleets of 50 and 1,000 simulated loops.

For each size, the simulator writes one shared repository with that many loops (a mix of
running, failing, stopped, stale-heartbeat and awaiting-approval runs, so the policy has
candidates and the handoff has intents), a registry names every loop (``guarded_auto`` with
governance relative to now, a kill switch so nothing is executed), and a fresh child process
runs the three steps through the fleet engine in local mode (in-process loop reconciles,
``maxParallel`` 4, deterministic order). Each step is timed; the child's peak RSS is reported.

When ``SUPERLOOP_REFERENCE_DIR`` names a checkout of the bash reference, its fleet scripts run
on a copy of the same 50-loop repository and registry, after our runs so the two never share
the CPU, in a child process bounded by ``--reference-timeout`` (default 600 s; the scripts'
process group is killed when the budget runs out), and a ratio table compares the two. The 1,000-loop
case is never given to the reference: it spawns several jq processes per loop and event.

    .venv/bin/python benchmarks/bench_fleet.py [--sizes 50,1000] [--reference-timeout 600]

Every size up to 50 is also given to the reference (``--sizes 5,50,1000`` adds a small fleet
whose reference run finishes). A step killed at the budget shows ``>`` (a lower bound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet.rollup import FanOutSettings
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.sim.simulator import Simulator

SCENARIOS = ("running", "failing", "stopped", "stale_heartbeat", "awaiting_approval")
STEPS = ("reconcile", "policy", "handoff")


def _registry(loop_ids: list[str], now: dt.datetime) -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "fleetId": "bench-fleet",
        "loops": [{"loopId": loop_id, "transport": "local"} for loop_id in loop_ids],
        "policy": {
            "mode": "guarded_auto",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "autonomous": {
                "safety": {
                    "maxActionsPerRun": 5,
                    "maxActionsPerLoop": 1,
                    "cooldownSeconds": 0,
                    "killSwitch": True,
                },
                "governance": {
                    "actor": "bench",
                    "approvalRef": "BENCH-1",
                    "rationale": "benchmark",
                    "changedAt": format_ts(now - dt.timedelta(days=1)),
                    "reviewBy": format_ts(now + dt.timedelta(days=90)),
                },
            },
        },
    }


def build_fleet_repo(root: Path, size: int) -> Path:
    """A shared repository with ``size`` simulated loops and its registry."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = FrozenClock(now - dt.timedelta(minutes=30))
    sim = Simulator(root, clock, loops=size, scenarios=list(SCENARIOS), loop_prefix="loop", shared_repo=True)
    sim.run(12)
    loop_ids = [loop.loop_id for loop in sim.loops]
    registry = root / ".superloop" / "ops-manager" / "fleet" / "registry.v1.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps(_registry(loop_ids, now)))
    return root


def run_ours(repo: Path) -> dict[str, Any]:
    """The three steps in this process (called in a fresh child); seconds per step, peak RSS."""
    paths = fleet_commands.FleetPaths.for_repo(repo)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    state = fleet_commands.run_fleet_reconcile(
        paths, settings=FanOutSettings(max_parallel=4, deterministic_order=True), env={}
    )
    timings["reconcile"] = time.perf_counter() - start
    start = time.perf_counter()
    policy = fleet_commands.run_fleet_policy(paths, env={})
    timings["policy"] = time.perf_counter() - start
    start = time.perf_counter()
    plan = fleet_commands.run_fleet_handoff(paths, fleet_commands.HandoffOptions(), env={})
    timings["handoff"] = time.perf_counter() - start
    return {
        "seconds": timings,
        "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loops": state["loopCount"],
        "fleetStatus": state["status"],
        "candidates": policy["candidateCount"],
        "intents": plan["summary"]["intentCount"],
    }


def run_reference(reference: Path, repo: Path, timeout: float) -> dict[str, Any]:
    """The reference's fleet scripts on the same registry; stops at the first step over budget."""
    scripts = reference / "scripts"
    commands = {
        "reconcile": [scripts / "ops-manager-fleet-reconcile.sh", "--repo", repo, "--max-parallel", "4",
                      "--deterministic-order"],
        "policy": [scripts / "ops-manager-fleet-policy.sh", "--repo", repo],
        "handoff": [scripts / "ops-manager-fleet-handoff.sh", "--repo", repo],
    }  # fmt: skip
    timings: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    for step in STEPS:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"seconds": timings, "error": f"{step}: time budget exhausted"}
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(part) for part in commands[step]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=reference,
            start_new_session=True,  # the scripts fork jq and subshells: stop them as a group
        )
        try:
            _, stderr = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            timings[step] = time.perf_counter() - start
            return {"seconds": timings, "timedOut": step, "error": f"{step}: timed out"}
        done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
        timings[step] = time.perf_counter() - start
        if done.returncode != 0:
            return {
                "seconds": timings,
                "error": f"{step}: exit {done.returncode}: {done.stderr.strip()[-300:]}",
            }
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    state = json.loads((repo / ".superloop" / "ops-manager" / "fleet" / "state.json").read_text())
    return {
        "seconds": timings,
        "peakRssMiB": peak,
        "loops": state.get("loopCount"),
        "fleetStatus": state.get("status"),
    }


def _child(repo: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(repo)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,1000")
    parser.add_argument("--reference-timeout", type=float, default=600.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reference-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_child:
        found = run_reference(
            Path(os.environ["SUPERLOOP_REFERENCE_DIR"]), Path(args.reference_child), args.reference_timeout
        )
        print(json.dumps(found))
        return 0
    if args.child:
        print(json.dumps(run_ours(Path(args.child))))
        return 0
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    reference_dir = os.environ.get("SUPERLOOP_REFERENCE_DIR")
    rows: list[tuple[str, ...]] = [("loops", "step", "ours (s)", "reference (s)", "ratio ref/ours")]
    memory: list[tuple[str, ...]] = [
        ("loops", "impl", "peak RSS (MiB)", "fleet status", "candidates", "intents")
    ]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        results: dict[int, dict[str, Any]] = {}
        for size in sizes:
            repo = build_fleet_repo(Path(tmp) / f"fleet-{size}", size)
            if reference_dir and size <= 50:
                shutil.copytree(repo, Path(tmp) / f"ref-{size}", symlinks=True)
            results[size] = _child(repo)
        references: dict[int, dict[str, Any]] = {}
        for size in sizes:
            if not (reference_dir and size <= 50):
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--reference-child", str(Path(tmp) / f"ref-{size}"),
                 "--reference-timeout", str(args.reference_timeout)],
                capture_output=True, text=True, check=False, timeout=args.reference_timeout + 120,
            )  # fmt: skip
            lines = out.stdout.strip().splitlines()
            references[size] = json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-300:]}
        for size in sizes:
            ours = results[size]
            ref_result = references.get(size)
            memory.append(
                (str(size), "ours", f"{ours['peakRssMiB']:.0f}", str(ours["fleetStatus"]),
                 str(ours["candidates"]), str(ours["intents"]))
            )  # fmt: skip
            for step in STEPS:
                mine = ours["seconds"][step]
                theirs = (ref_result or {}).get("seconds", {}).get(step)
                bound = ">" if (ref_result or {}).get("timedOut") == step else ""  # killed: a lower bound
                ratio = f"{bound}{theirs / mine:.1f}x" if theirs and mine > 0 else "-"
                shown = f"{bound}{theirs:.3f}" if theirs else "-"
                rows.append((str(size), step, f"{mine:.3f}", shown, ratio))
            if ref_result is not None:
                if "error" in ref_result:
                    print(f"reference ({size} loops): {ref_result['error']}", file=sys.stderr)
                if "peakRssMiB" in ref_result:
                    memory.append(
                        (str(size), "reference", f"{ref_result['peakRssMiB']:.0f}",
                         str(ref_result["fleetStatus"]), "-", "-")
                    )  # fmt: skip
    print(_table(rows))
    print()
    print(_table(memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
