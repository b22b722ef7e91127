"""``superloop-ops snapshot``: print a loop's loop_run_snapshot envelope (spec loop-core §2.1)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import dumps_compact
from superloop_ops.transports import local

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, type=Path, help="repository holding .superloop/")
    parser.add_argument("--loop", required=True, help="loop id")
    parser.add_argument("--run-id", default="", help="override the inferred run id")
    parser.add_argument("--trace-id", default="", help="trace id copied into the envelope")
    parser.add_argument("--pretty", action="store_true", help="pretty-print the JSON")


def run(args: argparse.Namespace) -> int:
    snapshot = local.fetch_snapshot(
        args.repo,
        args.loop,
        trace_id=args.trace_id or None,
        now=SystemClock().now(),
        run_id=args.run_id or None,
    )
    print(json.dumps(snapshot, indent=2, ensure_ascii=False) if args.pretty else dumps_compact(snapshot))
    return 0
