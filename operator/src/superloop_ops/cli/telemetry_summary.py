"""``superloop-ops telemetry-summary``: summarise recent reconcile/control telemetry into a profile hint."""

from __future__ import annotations

import argparse

from superloop_ops.cli._common import emit, require_repo, require_repo_and_loop, require_window
from superloop_ops.clock import SystemClock
from superloop_ops.engine.loop import tuning_pass

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="", help="repository root")
    parser.add_argument("--loop", default="", help="loop id")
    parser.add_argument("--reconcile-telemetry-file", default="", help="reconcile telemetry JSONL path")
    parser.add_argument("--control-telemetry-file", default="", help="control telemetry JSONL path")
    parser.add_argument("--window", default="200", help="number of most recent lines to summarise")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def run(args: argparse.Namespace) -> int:
    require_repo_and_loop(args.repo, args.loop)
    window = require_window(args.window, "--window")
    repo = require_repo(args.repo, args.loop)
    summary = tuning_pass.compute_summary(
        repo,
        args.loop,
        window=window,
        now=SystemClock().now(),
        reconcile_file=args.reconcile_telemetry_file or None,
        control_file=args.control_telemetry_file or None,
    )
    emit(summary, args.pretty)
    return 0
