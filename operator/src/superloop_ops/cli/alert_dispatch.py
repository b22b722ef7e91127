"""``superloop-ops alert-dispatch``: deliver new (and still pending) escalations to alert sinks.

Secrets are read from the environment variables the catalog names. Exits 0 whatever the
per-row outcomes; non-zero only for bad arguments, an unreadable dispatch state, a cursor ahead of
the escalations file, or an invalid catalog (the cursor then stays put, so nothing is lost).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from superloop_ops.cli._common import emit, require_repo, require_repo_and_loop
from superloop_ops.core.alerts.dispatch_plan import DEFAULT_PAGERDUTY_URL
from superloop_ops.engine.alerts import alert_delivery
from superloop_ops.errors import ContractError

__all__ = ["add_arguments", "run"]

_DIGITS = re.compile(r"\A[0-9]+\Z")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="", help="repository root")
    parser.add_argument("--loop", default="", help="loop id")
    parser.add_argument("--escalations-file", default="", help="escalations JSONL path")
    parser.add_argument("--dispatch-state-file", default="", help="alert-dispatch-state.json path")
    parser.add_argument("--dispatch-telemetry-file", default="", help="alerts.jsonl path")
    parser.add_argument(
        "--trace-id", default="", help="trace id (else $OPS_MANAGER_TRACE_ID, else generated)"
    )
    parser.add_argument("--alert-config-file", default="", help="alert sink catalog")
    parser.add_argument("--max-escalations", default="0", help="rows to process at most (0 = no limit)")
    parser.add_argument(
        "--pagerduty-url",
        default="",
        help=f"PagerDuty Events API v2 endpoint (default {DEFAULT_PAGERDUTY_URL}; for tests and proxies)",
    )
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def run(args: argparse.Namespace) -> int:
    require_repo_and_loop(args.repo, args.loop)
    if not _DIGITS.match(args.max_escalations):
        raise ContractError("--max-escalations must be a non-negative integer")
    repo = require_repo(args.repo, args.loop)
    defaults = alert_delivery.DispatchPaths.for_loop(repo, args.loop)
    paths = alert_delivery.DispatchPaths(
        repo=repo,
        escalations_file=Path(args.escalations_file) if args.escalations_file else defaults.escalations_file,
        state_file=Path(args.dispatch_state_file) if args.dispatch_state_file else defaults.state_file,
        telemetry_file=Path(args.dispatch_telemetry_file)
        if args.dispatch_telemetry_file
        else defaults.telemetry_file,
    )
    settings = alert_delivery.DispatchSettings(
        max_escalations=int(args.max_escalations),
        pagerduty_url=args.pagerduty_url or alert_delivery.DispatchSettings().pagerduty_url,
    )
    dispatcher = alert_delivery.AlertDispatcher(
        paths=paths,
        loop_id=args.loop,
        trace_id=alert_delivery.resolve_trace_id(args.trace_id or None),
        catalog_path=alert_delivery.resolve_alert_sinks_path(args.alert_config_file or None),
        secrets=dict(os.environ),
        settings=settings,
    )
    emit(dispatcher.run(), args.pretty)
    return 0
