"""``superloop-ops health``: compute health from documents on disk (loop-core §6.7).

A test and debugging surface: it runs the same rules reconcile runs in step 9, but the inputs
are explicit file paths and ``--now``. Unlike reconcile, a present but unparseable input file
is an error here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from superloop_ops import clock
from superloop_ops.cli.reconcile import print_document
from superloop_ops.core.common.jsonutil import JsonObject, parse_ts
from superloop_ops.core.loop import health, threshold_profiles
from superloop_ops.errors import ContractError
from superloop_ops.journal import tail

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--state-file", default="")
    add("--heartbeat-state-file", default="")
    add("--sequence-state-file", default="")
    add("--transport-health-file", default="")
    add("--intents-file", default="")
    add("--trace-id", default="")
    add("--transport", default="local", help="local | sprite_service")
    add("--threshold-profile", default="", help="profile name recorded in thresholds.profile")
    add("--ingest-status", default="success", help="success | failed")
    add("--failure-code", default="")
    for _, flag in threshold_profiles.THRESHOLD_FIELDS:
        add(f"--{flag}", default=None)
    add("--now", default="", help="evaluation instant, YYYY-MM-DDTHH:MM:SSZ (default: now)")
    add("--pretty", action="store_true")


def _load(path_text: str, label: str) -> JsonObject:
    if not path_text:
        return {}
    path = Path(path_text)
    if not path.is_file():
        return {}
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"invalid {label} JSON: {path_text}") from exc
    return document if isinstance(document, dict) else {}


def run(args: argparse.Namespace) -> int:
    if args.transport not in ("local", "sprite_service"):
        raise ContractError("--transport must be local or sprite_service")
    if args.ingest_status not in ("success", "failed"):
        raise ContractError("--ingest-status must be success or failed")
    explicit = {
        key: getattr(args, flag.replace("-", "_")) for key, flag in threshold_profiles.THRESHOLD_FIELDS
    }
    resolved = dataclasses.replace(
        threshold_profiles.compute_thresholds(None, explicit), profile=args.threshold_profile or None
    )
    if args.now:
        now = parse_ts(args.now)
        if now is None:
            raise ContractError("--now must be an ISO-8601 UTC timestamp")
    else:
        now = clock.SystemClock().now()
    state = _load(args.state_file, "state")
    heartbeat_state = _load(args.heartbeat_state_file, "heartbeat state")
    sequence_state = _load(args.sequence_state_file, "sequence state")
    transport_health = _load(args.transport_health_file, "transport health")
    last_intent = tail.fetch_last_jsonl_row(Path(args.intents_file)) if args.intents_file else None
    document = health.compute_health(
        health.HealthInputs(
            state=state,
            heartbeat_state=heartbeat_state,
            sequence_state=sequence_state,
            transport_health=transport_health,
            last_intent=last_intent if isinstance(last_intent, dict) else None,
            trace_id=args.trace_id or None,
            transport=args.transport,
            thresholds=resolved,
            ingest_ok=args.ingest_status == "success",
            failure_code=args.failure_code or None,
        ),
        now,
    )
    print_document(document, pretty=bool(args.pretty))
    return 0
