"""``superloop-ops sprite-service``: serve one repository over the sprite HTTP API (§9).

Wires the HTTP server to the in-process readers (``transports.local``) and to
``engine.loop.control_run`` on the local path. SIGTERM and SIGINT shut the server down cleanly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.loop import control_rules
from superloop_ops.engine.loop import control_run
from superloop_ops.errors import ContractError
from superloop_ops.journal.service_idempotency import FileIdempotencyStore
from superloop_ops.service import server as service_server

__all__ = ["add_arguments", "build_config", "resolve_token", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="repository holding .superloop/")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="bind port (default 8787; 0 picks one)")
    parser.add_argument(
        "--token-file",
        default=None,
        help="file holding the auth token (trailing newline ignored); preferred: argv is visible to "
        "every user of the host (default: env OPS_MANAGER_SERVICE_TOKEN_FILE)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="auth token; visible in the process list, prefer --token-file or env "
        "OPS_MANAGER_SERVICE_TOKEN (default: that env; empty disables auth)",
    )
    parser.add_argument(
        "--runtime-command",
        default=None,
        help="runtime CLI used for cancel (default: env SUPERLOOP_RUNTIME_COMMAND / SUPERLOOP_BIN)",
    )


def build_config(
    repo: Path,
    *,
    token: str = "",
    runtime_command: tuple[str, ...] | None = None,
    clock: SystemClock | None = None,
) -> service_server.ServiceConfig:
    """Production wiring: local readers, local control, file idempotency store."""
    from superloop_ops.transports import local as local_transport

    clock = clock or SystemClock()
    runtime = runtime_command or control_run.resolve_runtime_command()

    def run_control(request: control_rules.ServiceControlRequest) -> service_server.ControlRun:
        control_request = control_run.ControlRequest(
            repo=repo,
            loop_id=request.loop_id,
            intent=request.intent,
            transport="local",
            by=request.by,
            note=request.note,
            # The client's key is forwarded so the inner row links to the outer one.
            idempotency_key=request.idempotency_key,
            # As the reference's inner control run: a trace is generated when none was sent.
            trace_id=request.trace_id or str(uuid.uuid4()),
            do_confirm=not request.no_confirm,
            timeout_seconds=30 if request.timeout_seconds is None else request.timeout_seconds,
            interval_seconds=2 if request.interval_seconds is None else request.interval_seconds,
            runtime_command=runtime,
        )
        try:
            outcome = control_run.execute_control(control_request, now_fn=clock.now, sleep=clock.sleep)
        except ContractError as exc:
            return service_server.ControlRun(exit_code=1, result=None, stderr=f"error: {exc}")
        return service_server.ControlRun(
            exit_code=outcome.exit_code, result=outcome.intent_row, stderr=outcome.error_message
        )

    return service_server.ServiceConfig(
        repo=repo,
        token=token,
        fetch_snapshot=local_transport.fetch_snapshot,
        fetch_events=local_transport.fetch_events,
        run_control=run_control,
        store=FileIdempotencyStore(repo),
        now_fn=clock.now,
        default_by=os.environ.get("USER") or "ops-service",
    )


def resolve_token(token_file: str | None, token: str | None, env: Mapping[str, str]) -> str:
    """``--token-file`` > ``--token`` > ``OPS_MANAGER_SERVICE_TOKEN_FILE`` > ``OPS_MANAGER_SERVICE_TOKEN``."""
    path = token_file or (None if token is not None else env.get("OPS_MANAGER_SERVICE_TOKEN_FILE") or None)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ContractError(f"cannot read the token file {path}: {exc.__class__.__name__}") from None
    return token if token is not None else env.get("OPS_MANAGER_SERVICE_TOKEN", "")


def run(args: argparse.Namespace) -> int:
    repo = Path(args.repo).resolve()
    if not repo.is_dir():
        raise ContractError(f"repo path not found: {repo}")
    token = resolve_token(args.token_file, args.token, os.environ)
    runtime = tuple(shlex.split(args.runtime_command)) if args.runtime_command else None
    config = build_config(repo, token=token, runtime_command=runtime)
    server = service_server.build_server(config, args.host, args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ops-manager sprite service listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print(
        f"ops-manager sprite service stopped at {format_ts(SystemClock().now())}", file=sys.stderr, flush=True
    )
    return 0
