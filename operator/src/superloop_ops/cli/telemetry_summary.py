"""``superloop-ops telemetry-summary``: summarise recent reconcile/control telemetry into a profile hint."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from superloop_ops.clock import SystemClock
from superloop_ops.core.jsonutil import JsonObject, dumps_compact
from superloop_ops.engine import tuning
from superloop_ops.errors import ContractError

__all__ = ["add_arguments", "emit", "require_repo", "require_repo_and_loop", "require_window", "run"]

_DIGITS = re.compile(r"\A[0-9]+\Z")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="", help="repository root")
    parser.add_argument("--loop", default="", help="loop id")
    parser.add_argument("--reconcile-telemetry-file", default="", help="reconcile telemetry JSONL path")
    parser.add_argument("--control-telemetry-file", default="", help="control telemetry JSONL path")
    parser.add_argument("--window", default="200", help="number of most recent lines to summarise")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def require_window(value: str, flag: str) -> int:
    """Digits only and >= 1, else the contract's message naming ``flag``."""
    if not _DIGITS.match(value) or int(value) < 1:
        raise ContractError(f"{flag} must be an integer >= 1")
    return int(value)


def require_repo_and_loop(repo: str, loop: str) -> None:
    """Both flags given; checked first, so their errors come before any other flag's."""
    if not repo:
        raise ContractError("--repo is required")
    if not loop:
        raise ContractError("--loop is required")


def require_repo(repo: str, loop: str) -> Path:
    require_repo_and_loop(repo, loop)
    path = Path(repo)
    if not path.is_dir():
        raise ContractError(f"repo directory not found: {repo}")
    return path.resolve()


def emit(document: JsonObject, pretty: bool) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False) if pretty else dumps_compact(document))


def run(args: argparse.Namespace) -> int:
    require_repo_and_loop(args.repo, args.loop)
    window = require_window(args.window, "--window")
    repo = require_repo(args.repo, args.loop)
    summary = tuning.compute_summary(
        repo,
        args.loop,
        window=window,
        now=SystemClock().now(),
        reconcile_file=args.reconcile_telemetry_file or None,
        control_file=args.control_telemetry_file or None,
    )
    emit(summary, args.pretty)
    return 0
