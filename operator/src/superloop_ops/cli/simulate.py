"""``superloop-ops simulate``: write simulated runtime artifacts, and act as the runtime CLI.

* ``simulate [run] --repo DIR --loops N [--scenario S ...] [--interval S] [--iterations K] [--once]``
  drives :class:`superloop_ops.sim.simulator.Simulator` (one tick per interval).
* ``simulate cancel --repo R`` and ``simulate approve --repo R --loop L --by B [--reject] [--note N]``
  mirror the runtime's own commands, so ``SUPERLOOP_RUNTIME_COMMAND="superloop-ops simulate"``
  makes the control path drive simulated loops.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from superloop_ops.clock import SystemClock
from superloop_ops.engine.loop import control_run
from superloop_ops.errors import ContractError
from superloop_ops.sim import simulator

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", choices=["run", "cancel", "approve"])
    parser.add_argument("--repo", required=True, help="root directory (run) or repository (cancel/approve)")
    parser.add_argument("--loops", type=int, default=1, help="number of loops (run)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=simulator.SCENARIOS,
        help="scenario, repeatable: loops take them in turn (default running)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks (run)")
    parser.add_argument("--iterations", type=int, default=0, help="ticks to run; 0 = until interrupted (run)")
    parser.add_argument("--once", action="store_true", help="run a single tick (run)")
    parser.add_argument("--shared-repo", action="store_true", help="all loops in one repository (run)")
    parser.add_argument("--loop-prefix", default="sim-loop", help="loop ids are <prefix>-<n> (run)")
    parser.add_argument(
        "--heartbeat",
        action="store_true",
        help="also write heartbeat.v1.json, which the real runtime never writes (run)",
    )
    parser.add_argument("--loop", default="", help="loop id (approve)")
    parser.add_argument("--by", default="", help="actor (approve)")
    parser.add_argument("--note", default="", help="decision note (approve)")
    parser.add_argument("--reject", action="store_true", help="record a rejection (approve)")


def run(args: argparse.Namespace) -> int:
    repo = Path(args.repo)
    if args.action == "cancel":
        print(simulator.cancel_runtime(repo))
        return 0
    clock = SystemClock()
    if args.action == "approve":
        message = control_run.write_approval_decision(
            repo.resolve(),
            args.loop,
            decision="rejected" if args.reject else "approved",
            by=args.by or os.environ.get("USER", "unknown"),
            note=args.note,
            now=clock.now(),
        )
        print(message)
        return 0
    try:
        sim = simulator.Simulator(
            repo.resolve(),
            clock,
            loops=args.loops,
            scenarios=args.scenario,
            shared_repo=args.shared_repo,
            loop_prefix=args.loop_prefix,
            heartbeat=args.heartbeat,
        )
    except ValueError as exc:
        raise ContractError(str(exc)) from None
    ticks = 1 if args.once else args.iterations
    done = 0
    try:
        while True:
            sim.step()
            done += 1
            if ticks and done >= ticks:
                break
            time.sleep(max(args.interval, 0.0))
    except KeyboardInterrupt:
        pass
    for loop in sim.loops:
        print(f"{loop.loop_id}\t{loop.scenario}\t{loop.repo}")
    return 0
