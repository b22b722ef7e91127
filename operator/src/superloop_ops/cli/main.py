"""``superloop-ops``: the runbook's commands on a plain repository directory (no cluster needed).

Each subcommand lives in its own module under ``superloop_ops.cli`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily so that
``superloop-ops status`` does not pay for the HTTP server or the simulator.
Contract errors print ``error: <message>`` on stderr and exit 1, as the reference scripts do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from superloop_ops.errors import ContractError, JournalWriteError

__all__ = ["COMMANDS", "main"]

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "reconcile": ("superloop_ops.cli.reconcile", "run one reconcile pass for a loop"),
    "status": ("superloop_ops.cli.status", "print the operator status snapshot of a loop"),
    "health": ("superloop_ops.cli.health", "compute health from a projected state file"),
    "snapshot": ("superloop_ops.cli.snapshot", "print the loop_run_snapshot envelope"),
    "poll-events": ("superloop_ops.cli.poll_events", "print new loop_run_event envelopes after the cursor"),
    "project-state": ("superloop_ops.cli.project_state", "project lifecycle state from a snapshot"),
    "control": ("superloop_ops.cli.control", "send a cancel / approve / reject control intent"),
    "threshold-profile": ("superloop_ops.cli.threshold_profile", "resolve or list threshold profiles"),
    "sprite-service": ("superloop_ops.cli.sprite_service", "serve a repository over the sprite HTTP API"),
    "simulate": ("superloop_ops.cli.simulate", "write simulated loop runtime artifacts"),
    "fleet": ("superloop_ops.cli.fleet", "registry/reconcile/policy/status/handoff/suppressions/shadow"),
    "import-registry": ("superloop_ops.cli.import_registry", "registry as Fleet/FleetPolicy/Loop YAML"),
    "telemetry-summary": ("superloop_ops.cli.telemetry_summary", "summarise telemetry, recommend a profile"),
    "profile-drift": ("superloop_ops.cli.profile_drift", "evaluate threshold profile drift (advisory)"),
    "alert-sink-config": ("superloop_ops.cli.alert_sink_config", "validate alert sinks, resolve routes"),
    "alert-dispatch": ("superloop_ops.cli.alert_dispatch", "deliver new escalations to alert sinks"),
    "promotion": ("superloop_ops.cli.promotion", "promotion gates / ci / apply / orchestrate"),
}


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="superloop-ops",
        description="The runbook's commands on a plain repository directory (no cluster needed).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _load(name).add_arguments(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((arg for arg in args_list if not arg.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(args_list)
    try:
        return _load(args.command).run(args)
    except (ContractError, JournalWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
