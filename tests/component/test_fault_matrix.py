"""The fault matrix's component rows (issue 10, docs/reliability.md): one pass per fault.

Local artifacts are broken on disk; the sprite service is a real HTTP server on 127.0.0.1 that
misbehaves in one way per case. For every fault: the pass ends with exit 1 and a reason code
(no traceback), the cursor does not move, and once the fault is gone the next pass succeeds and
ingests every event (nothing skipped).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _loop_reconcile_helpers import (
    HUGE_INGEST,
    LOOP,
    Cli,
    event_line,
    isolate_cli_env,
    last_row,
    now_ts,
    ops_dir,
    read_json,
    write_runtime_artifacts,
)

from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import reconcile_pass
from superloop_ops.transports.service import ServiceClient


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def _loop_dir(repo: Path) -> Path:
    return repo / ".superloop" / "loops" / LOOP


def _events(repo: Path) -> Path:
    return _loop_dir(repo) / "events.jsonl"


Fault = Callable[[Path], Callable[[], None]]
"""Breaks the repository; returns how to repair it."""


def _torn_middle(repo: Path) -> Callable[[], None]:
    good = _events(repo).read_text()
    _events(repo).write_text(good + '{"event": "torn", "timesta\n' + event_line("role_end", now_ts(), 2))
    return lambda: _events(repo).write_text(good + event_line("role_end", now_ts(), 2))


def _truncated(repo: Path) -> Callable[[], None]:
    lines = _events(repo).read_text().splitlines(keepends=True)
    _events(repo).write_text(lines[0])
    return lambda: None  # the operator replays from the start (--from-start), see the test


def _rotated_smaller(repo: Path) -> Callable[[], None]:
    _events(repo).write_text(event_line("loop_start", now_ts(), 1))
    return lambda: None


def _rotated_larger(repo: Path) -> Callable[[], None]:
    _events(repo).write_text("".join(event_line(f"new_{n}", now_ts(), n) for n in range(5)))
    return lambda: None


def _events_a_directory(repo: Path) -> Callable[[], None]:
    saved = _events(repo).read_bytes()
    _events(repo).unlink()
    _events(repo).mkdir()

    def repair() -> None:
        shutil.rmtree(_events(repo))
        _events(repo).write_bytes(saved)

    return repair


def _summary_invalid(repo: Path) -> Callable[[], None]:
    path = _loop_dir(repo) / "run-summary.json"
    saved = path.read_bytes()
    path.write_text('{"entries": [1, 2')
    return lambda: path.write_bytes(saved)


def _cursor_corrupt(repo: Path) -> Callable[[], None]:
    path = ops_dir(repo) / "cursor.json"
    saved = path.read_bytes()
    path.write_text("{corrupt")
    return lambda: path.write_bytes(saved)


# (fault, failure code, health reason, recover with --from-start)
LOCAL_FAULTS: list[tuple[Fault, str, str, bool]] = [
    (_torn_middle, "artifact_invalid", "invalid_artifact", False),
    (_truncated, "events_unavailable", "transport_unreachable", True),
    (_rotated_smaller, "events_unavailable", "transport_unreachable", True),
    (_rotated_larger, "events_unavailable", "transport_unreachable", True),
    (_events_a_directory, "snapshot_unavailable", "transport_unreachable", False),
    (_summary_invalid, "artifact_invalid", "invalid_artifact", False),
    (_cursor_corrupt, "cursor_invalid", "cursor_invalid", False),
]


@pytest.mark.parametrize(
    ("fault", "failure_code", "reason", "replay"), LOCAL_FAULTS, ids=[f[0].__name__[1:] for f in LOCAL_FAULTS]
)
def test_local_artifact_faults(
    cli: Cli, tmp_path: Path, fault: Fault, failure_code: str, reason: str, replay: bool
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_runtime_artifacts(repo, now_ts())
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    cursor_before = read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"]
    repair = fault(repo)
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert row["failureCode"] == failure_code, row
    assert reason in row["healthReasonCodes"]
    if failure_code != "cursor_invalid":
        assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == cursor_before
    repair()
    recovered = cli.reconcile(repo, *(("--from-start",) if replay else ()), *HUGE_INGEST)
    assert recovered.code == 0, recovered.stderr
    lines = _events(repo).read_text().count("\n")
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == lines


# --------------------------------------------------------------------- the sprite service


class _Misbehaving(BaseHTTPRequestHandler):
    mode = "ok"
    protocol_version = "HTTP/1.0"

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.mode == "slow":
            time.sleep(3)
        status, body = {
            "5xx": (503, b'{"ok":false}'),
            "401": (401, b'{"ok":false,"error":{"code":"unauthorized"}}'),
            "garbage": (200, b"<html>not json"),
            "partial": (200, b'{"ok": true, "schemaV'),
            "slow": (200, b"{}"),
        }[self.mode]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        length = len(body) * 4 if self.mode == "partial" else len(body)  # the body ends early
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def misbehaving() -> Iterator[Callable[[str], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(mode: str) -> str:
        if mode == "down":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                return f"http://127.0.0.1:{sock.getsockname()[1]}"
        handler = type("Handler", (_Misbehaving,), {"mode": mode})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


SERVICE_FAULTS = [
    ("down", "service_request_failed", "transport_unreachable"),
    ("slow", "service_request_failed", "transport_unreachable"),
    ("5xx", "service_request_failed", "transport_unreachable"),
    ("401", "service_request_failed", "transport_unreachable"),
    ("garbage", "service_response_invalid", "invalid_transport_payload"),
    ("partial", "service_request_failed", "transport_unreachable"),
]


@pytest.mark.parametrize(
    ("mode", "failure_code", "reason"), SERVICE_FAULTS, ids=[f[0] for f in SERVICE_FAULTS]
)
def test_sprite_service_faults(
    tmp_path: Path, misbehaving: Callable[[str], str], mode: str, failure_code: str, reason: str
) -> None:
    url = misbehaving(mode)
    thresholds = threshold_profiles.compute_thresholds(
        threshold_profiles.compute_profile(
            json.loads(
                (
                    Path(__file__).resolve().parents[2] / "config" / "ops-manager-threshold-profiles.v1.json"
                ).read_text()
            ),
            source_file="catalog.json",
        ),
        {},
    )
    options = reconcile_pass.ReconcileOptions(
        repo=tmp_path, loop_id=LOOP, thresholds=thresholds, transport="sprite_service",
        service=reconcile_pass.ServiceSettings(base_url=url, retry_attempts=2, retry_backoff_seconds=0),
    )  # fmt: skip
    client = ServiceClient(url, retry_attempts=2, retry_backoff_seconds=0, max_time=1, sleep=lambda _s: None)
    began = time.monotonic()
    with client:
        result = reconcile_pass.run_reconcile(options, service_client=client)
    assert time.monotonic() - began < 10
    assert result.exit_code == 1
    assert result.failure_code == failure_code
    assert reason in result.health["reasonCodes"]
    assert not (ops_dir(tmp_path) / "cursor.json").exists()
