"""``superloop-ops fleet <registry|reconcile|policy|status|handoff|suppressions|shadow>``: fleet commands.

Flags, defaults, messages and stdout documents follow the reference scripts; every command
works on a plain repository directory (no cluster). Contract errors exit 1 with ``error: ...``.
``shadow`` is beyond the reference: the shadow autonomy figures of a fleet journal
(docs/divergences.md).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from superloop_ops import clock as clock_mod
from superloop_ops.cli.kubectl_get import format_rows
from superloop_ops.core.fleet import rollup, suppressions
from superloop_ops.engine.fleet import fleet_commands, shadow_ledger, suppression_commands
from superloop_ops.errors import ContractError

__all__ = ["add_arguments", "run"]

_PATH_FLAGS: dict[str, tuple[str, ...]] = {
    "registry": ("registry-file",),
    "reconcile": ("registry-file", "fleet-state-file", "fleet-telemetry-file"),
    "policy": (
        "registry-file",
        "fleet-state-file",
        "policy-state-file",
        "governance-audit-file",
        "handoff-telemetry-file",
        "policy-telemetry-file",
        "policy-history-file",
    ),
    "status": (
        "registry-file",
        "fleet-state-file",
        "policy-state-file",
        "fleet-telemetry-file",
        "handoff-state-file",
        "handoff-telemetry-file",
    ),
    "handoff": ("registry-file", "policy-state-file", "handoff-state-file", "handoff-telemetry-file"),
    "suppressions": ("registry-file", "policy-state-file"),
    "shadow": ("registry-file", "policy-state-file"),
}
_HELP = {
    "registry": "validate and normalise the fleet registry",
    "reconcile": "reconcile every registry loop (bounded fan-out) and roll up fleet status",
    "policy": "derive reason-coded candidates, suppression and autonomous eligibility",
    "status": "print the read-only fleet status surface",
    "handoff": "plan control intents from policy; execute them with explicit confirmation",
    "suppressions": "list suppressions: owner, reason, expires in, and what each hid",
    "shadow": "show shadow autonomy's decisions agreement with people and the shadow_agreement gate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="FLEET_COMMAND", required=True)
    for name, path_flags in _PATH_FLAGS.items():
        child = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        child.add_argument("--repo", default=None, help="repository root (required)")
        for flag in path_flags:
            child.add_argument(f"--{flag}", default=None, metavar="PATH")
        child.add_argument("--pretty", action="store_true", help="indent the stdout document")
        if name == "registry":
            child.add_argument("--loop", default=None, help="show only this loop")
        if name == "reconcile":
            child.add_argument("--max-parallel", default="2")
            child.add_argument("--deterministic-order", action="store_true")
            child.add_argument("--max-events", default=None)
            child.add_argument("--from-start", action="store_true")
            child.add_argument("--trace-id", default=None)
            child.add_argument("--thresholds-file", default=None, help="threshold profile catalog for loops")
        if name == "policy":
            child.add_argument("--dedupe-window-seconds", default=None)
            child.add_argument("--trace-id", default=None)
        if name == "suppressions":
            child.add_argument("--table", action="store_true", help="print a text table instead of JSON")
        if name == "handoff":
            child.add_argument("--trace-id", default=None)
            child.add_argument("--idempotency-prefix", default="fleet-handoff")
            child.add_argument("--execute", action="store_true")
            child.add_argument("--autonomous-execute", action="store_true")
            child.add_argument("--confirm", action="store_true")
            child.add_argument("--loop", action="append", default=[], dest="loops")
            child.add_argument("--intent-id", action="append", default=[], dest="intent_ids")
            child.add_argument("--by", default=None)
            child.add_argument("--note", default=None)
            child.add_argument("--timeout-seconds", default="30")
            child.add_argument("--interval-seconds", default="2")
            child.add_argument("--no-runtime-confirm", action="store_true")


def _print(document: Any, pretty: bool) -> None:
    if pretty:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(json.dumps(document, separators=(",", ":"), ensure_ascii=False))


def _paths(args: argparse.Namespace) -> fleet_commands.FleetPaths:
    if not args.repo:
        raise ContractError("--repo is required")
    repo = Path(args.repo)
    if not repo.is_dir():
        raise ContractError(f"repo path not found: {args.repo}")
    overrides = {
        flag.replace("-", "_"): getattr(args, flag.replace("-", "_"), None)
        for flag in _PATH_FLAGS[args.fleet_command]
    }
    return fleet_commands.FleetPaths.for_repo(repo.resolve(), **overrides)


def _digits(value: str | None, message: str) -> int:
    if value is None or not value.isdigit():
        raise ContractError(message)
    return int(value)


def _default_user() -> str:
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def run(args: argparse.Namespace) -> int:
    command = args.fleet_command
    if command == "handoff":
        # Option checks come before path checks, in the reference's order (after --repo).
        if not args.repo:
            raise ContractError("--repo is required")
        _digits(args.timeout_seconds, "timeout and interval must be non-negative integers")
        _digits(args.interval_seconds, "timeout and interval must be non-negative integers")
    if command == "reconcile":
        max_parallel = _digits(args.max_parallel, "--max-parallel must be an integer >= 1")
        if max_parallel < 1:
            raise ContractError("--max-parallel must be an integer >= 1")
        max_events = None
        if args.max_events is not None:
            max_events = _digits(args.max_events, "--max-events must be a non-negative integer")
    paths = _paths(args)
    clock = clock_mod.SystemClock()
    document: Any
    if command == "registry":
        document = fleet_commands.fetch_registry(paths.registry_file, clock.now(), loop_id=args.loop)
    elif command == "reconcile":
        document = fleet_commands.run_fleet_reconcile(
            paths,
            settings=rollup.FanOutSettings(
                max_parallel=max_parallel,
                deterministic_order=args.deterministic_order,
                from_start=args.from_start,
                max_events=max_events,
            ),
            trace_id=args.trace_id,
            reconciler=fleet_commands.build_default_reconciler(args.thresholds_file),
            clock=clock,
        )
    elif command == "policy":
        window = None
        if args.dedupe_window_seconds is not None:
            window = _digits(
                args.dedupe_window_seconds, "--dedupe-window-seconds must be a non-negative integer"
            )
        document = fleet_commands.run_fleet_policy(
            paths, trace_id=args.trace_id, dedupe_window_seconds=window, clock=clock
        )
    elif command == "status":
        document = fleet_commands.run_fleet_status(paths, clock=clock)
    elif command == "suppressions":
        document = suppression_commands.run_fleet_suppressions(paths, clock=clock)
        if args.table:
            rows = document["suppressions"]
            print(
                format_rows(suppressions.build_suppression_table(rows, clock.now()))
                if rows
                else "no suppressions"
            )
            return 0
    elif command == "shadow":
        document = shadow_ledger.run_fleet_shadow(paths, clock.now())
    else:
        options = fleet_commands.HandoffOptions(
            trace_id=args.trace_id,
            idempotency_prefix=args.idempotency_prefix,
            execute=args.execute,
            autonomous_execute=args.autonomous_execute,
            confirm=args.confirm,
            loops=tuple(args.loops),
            intent_ids=tuple(args.intent_ids),
            by=args.by or _default_user(),
            note=args.note or None,
            timeout_seconds=int(args.timeout_seconds),
            interval_seconds=int(args.interval_seconds),
            runtime_confirm=not args.no_runtime_confirm,
        )
        document = fleet_commands.run_fleet_handoff(paths, options, clock=clock)
    _print(document, args.pretty)
    sys.stdout.flush()
    return 0
