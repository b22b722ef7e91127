"""``superloop-ops status``: the operator status snapshot of one loop (read-only).

Reconcile and control telemetry always come from their default paths; every other input can be
pointed elsewhere. The telemetry summary that feeds ``tuning`` comes from ``engine.loop.tuning_pass``
at the system clock (``status_read.build_summary_fn``; ``SUMMARY_FN`` is a seam to replace it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from superloop_ops import clock
from superloop_ops.cli.reconcile import print_document
from superloop_ops.core.loop.threshold_profiles import coerce_non_negative_int
from superloop_ops.engine.loop import status_read
from superloop_ops.errors import ContractError

__all__ = ["SUMMARY_FN", "add_arguments", "run"]

SUMMARY_FN: status_read.SummaryFn | None = None


_PATH_FLAGS: tuple[str, ...] = (
    "state_file",
    "cursor_file",
    "health_file",
    "intents_file",
    "heartbeat_state_file",
    "heartbeat_telemetry_file",
    "sequence_state_file",
    "sequence_telemetry_file",
    "control_invocations_file",
    "drift_state_file",
    "drift_history_file",
    "alert_dispatch_state_file",
    "alert_dispatch_telemetry_file",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="", help="repository path (required)")
    parser.add_argument("--loop", default="", help="loop id (required)")
    for name in _PATH_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), default="")
    parser.add_argument("--summary-window", default="200", help="telemetry rows summarised (>= 1)")
    parser.add_argument("--pretty", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not args.repo:
        raise ContractError("--repo is required")
    if not args.loop:
        raise ContractError("--loop is required")
    window = coerce_non_negative_int(args.summary_window)
    if window is None or window < 1:
        raise ContractError("--summary-window must be an integer >= 1")
    repo = Path(args.repo).absolute()
    if not repo.is_dir():
        raise ContractError(f"repository not found: {args.repo}")
    overrides: dict[str, Path | None] = {
        name: Path(getattr(args, name)) if getattr(args, name) else None for name in _PATH_FLAGS
    }
    paths = status_read.StatusPaths.build(repo, args.loop, overrides)
    document = status_read.fetch_status(
        repo,
        args.loop,
        now=clock.SystemClock().now(),
        paths=paths,
        summary_window=window,
        summarize=SUMMARY_FN or status_read.build_summary_fn(clock.SystemClock().now),
    )
    print_document(document, pretty=bool(args.pretty))
    return 0
