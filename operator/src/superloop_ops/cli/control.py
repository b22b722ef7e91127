"""``superloop-ops control``: send a cancel / approve / reject intent to one loop (§8).

Prints the ``intents.jsonl`` row on stdout and exits 0 (confirmed / executed_unconfirmed),
2 (ambiguous) or 1 (anything else). Validation errors exit 1 before any row is written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from superloop_ops.core.common.jsonutil import dumps_compact
from superloop_ops.core.loop import control_rules
from superloop_ops.engine.loop import control_run
from superloop_ops.errors import ContractError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="")
    parser.add_argument("--loop", default="")
    parser.add_argument("--intent", default="", help="cancel | approve | reject")
    parser.add_argument("--transport", default="local", help="local | sprite_service")
    parser.add_argument("--service-base-url", default="")
    parser.add_argument("--service-token", default=None, help="default: env OPS_MANAGER_SERVICE_TOKEN")
    parser.add_argument("--idempotency-key", default="")
    parser.add_argument("--trace-id", default="")
    parser.add_argument("--retry-attempts", default="3")
    parser.add_argument("--retry-backoff-seconds", default="1")
    parser.add_argument("--by", default=None, help="actor (default: env USER, else unknown)")
    parser.add_argument("--note", default="")
    parser.add_argument("--timeout-seconds", default="30")
    parser.add_argument("--interval-seconds", default="2")
    parser.add_argument("--no-confirm", action="store_true")
    parser.add_argument(
        "--runtime-command",
        default=None,
        help="runtime CLI for cancel (default: env SUPERLOOP_RUNTIME_COMMAND / SUPERLOOP_BIN)",
    )


def _digits(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def build_request(
    args: argparse.Namespace, pid: int | None = None, epoch: int | None = None
) -> control_run.ControlRequest:
    """Validate the flags in the reference's order and build the engine request."""
    if not args.repo:
        raise ContractError("--repo is required")
    if not args.loop:
        raise ContractError("--loop is required")
    intent = control_rules.validate_intent(args.intent)
    if args.transport not in control_rules.TRANSPORTS:
        raise ContractError("--transport must be local or sprite_service")
    timeout = _digits(args.timeout_seconds)
    interval = _digits(args.interval_seconds)
    if timeout is None or interval is None:
        raise ContractError("timeout and interval must be non-negative integers")
    attempts = _digits(args.retry_attempts)
    if attempts is None or attempts < 1:
        raise ContractError("--retry-attempts must be an integer >= 1")
    backoff = _digits(args.retry_backoff_seconds)
    if backoff is None:
        raise ContractError("--retry-backoff-seconds must be a non-negative integer")
    if args.transport == "sprite_service" and not args.service_base_url:
        raise ContractError("--service-base-url is required when --transport sprite_service")
    repo = Path(args.repo)
    if not repo.is_dir():
        raise ContractError(f"repo path not found: {args.repo}")
    token = args.service_token if args.service_token else os.environ.get("OPS_MANAGER_SERVICE_TOKEN", "")
    trace_id = args.trace_id or os.environ.get("OPS_MANAGER_TRACE_ID", "") or str(uuid.uuid4())
    by = args.by if args.by is not None else (os.environ.get("USER") or "unknown")
    key = args.idempotency_key
    if not key:
        key = control_rules.build_default_idempotency_key(
            intent, int(time.time()) if epoch is None else epoch, os.getpid() if pid is None else pid
        )
    runtime = (
        tuple(shlex.split(args.runtime_command))
        if args.runtime_command
        else control_run.resolve_runtime_command()
    )
    return control_run.ControlRequest(
        repo=Path(os.path.abspath(repo)),
        loop_id=args.loop,
        intent=intent,
        transport=args.transport,
        by=by,
        note=args.note,
        idempotency_key=key,
        trace_id=trace_id,
        do_confirm=not args.no_confirm,
        timeout_seconds=timeout,
        interval_seconds=interval,
        retry_attempts=attempts,
        retry_backoff_seconds=backoff,
        runtime_command=runtime,
        service_base_url=args.service_base_url,
        service_token=token,
    )


def run(args: argparse.Namespace) -> int:
    request = build_request(args)
    outcome = control_run.execute_control(request)
    if outcome.error_message:
        print(f"error: {outcome.error_message}", file=sys.stderr)
    print(dumps_compact(outcome.intent_row), flush=True)
    return outcome.exit_code
