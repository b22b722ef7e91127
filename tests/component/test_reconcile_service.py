"""Reconcile over the sprite_service transport against real HTTP servers on 127.0.0.1.

The project's own sprite service serves a second repository; parity tests run the same
scenario locally and through the service and compare the reason surfaces. A small
``http.server`` double covers malformed service answers the real server never produces.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import (
    HUGE_INGEST,
    LOOP,
    STALE,
    Cli,
    StartService,
    isolate_cli_env,
    last_row,
    now_ts,
    ops_dir,
    read_json,
    service_fixture,
    trim_events_to_first_line,
    write_heartbeat,
    write_runtime_artifacts,
)

STALE_HEARTBEAT = ("--degraded-heartbeat-lag-seconds", "1", "--critical-heartbeat-lag-seconds", "999999999")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def start_service() -> Iterator[StartService]:
    yield from service_fixture()


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    local, remote = tmp_path / "local", tmp_path / "service"
    local.mkdir()
    remote.mkdir()
    return local, remote


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def sorted_codes(document: dict[str, Any]) -> list[str]:
    return sorted(document["reasonCodes"])


def test_reconcile_supports_sprite_service_transport(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    _, remote = repos
    write_runtime_artifacts(remote, now_ts())
    service = start_service(remote)
    result = cli.reconcile(remote, *service.reconcile_args(), "--trace-id", "svc-1")
    assert result.code == 0, result.stderr
    assert result.json["transition"]["currentState"] == "running"
    cursor = read_json(ops_dir(remote) / "cursor.json")
    assert cursor["eventLineOffset"] == 2
    assert cursor["eventsFile"] == f".superloop/loops/{LOOP}/events.jsonl"
    assert (ops_dir(remote) / "state.json").is_file()
    assert result.json["evidence"]["lastEventEnvelope"]["traceId"] == "svc-1"
    row = last_row(ops_dir(remote) / "telemetry" / "reconcile.jsonl")
    assert (row["transport"], row["eventsIngested"], row["cursorOffsetAfter"]) == ("sprite_service", 2, 2)


def test_local_vs_service_equivalent_health(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    write_runtime_artifacts(local, stamp)
    write_runtime_artifacts(remote, stamp)
    service = start_service(remote)
    a = cli.reconcile(local, *HUGE_INGEST).json["health"]
    b = cli.reconcile(remote, *service.reconcile_args(), *HUGE_INGEST).json["health"]
    assert (a["status"], sorted_codes(a)) == (b["status"], sorted_codes(b))


def test_local_vs_service_equivalent_profile_drift(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    write_runtime_artifacts(local, stamp)
    write_runtime_artifacts(remote, stamp)
    service = start_service(remote)
    drift_args = (
        "--threshold-profile",
        "balanced",
        "--drift-min-confidence",
        "low",
        "--drift-required-streak",
        "1",
    )
    a = cli.reconcile(local, *drift_args).json["drift"]
    b = cli.reconcile(remote, *service.reconcile_args(), *drift_args).json["drift"]
    keys = ("status", "recommendedProfile", "driftActive")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def _drift_pair(cli: Cli, repo: Path, extra: tuple[str, ...], trace: str) -> dict[str, Any]:
    assert cli.reconcile(repo, *extra, "--from-start", "--trace-id", "baseline", *HUGE_INGEST).code == 0
    trim_events_to_first_line(repo)
    result = cli.reconcile(repo, *extra, "--from-start", "--trace-id", trace, *HUGE_INGEST, *STALE_HEARTBEAT)
    assert result.code == 0, result.stderr
    health: dict[str, Any] = result.json["health"]
    return health


def test_local_vs_service_equivalent_ordering_drift(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    write_runtime_artifacts(local, stamp)
    write_runtime_artifacts(remote, stamp)
    service = start_service(remote)
    a = _drift_pair(cli, local, (), "trace-seq-drift-1")
    b = _drift_pair(cli, remote, service.reconcile_args(), "trace-seq-drift-1")
    assert (a["status"], sorted_codes(a)) == (b["status"], sorted_codes(b))
    assert "ordering_drift_detected" in a["reasonCodes"]

    def summary(repo: Path) -> tuple[Any, ...]:
        state = read_json(ops_dir(repo) / "sequence-state.json")
        return state["status"], state["driftActive"], sorted(state["violations"])

    assert summary(local) == summary(remote)


def test_transport_failure_streak_escalates_to_critical(cli: Cli, repos: tuple[Path, Path]) -> None:
    local, _ = repos
    args = (
        "--transport",
        "sprite_service",
        "--service-base-url",
        "http://127.0.0.1:9",
        "--retry-attempts",
        "1",
        "--degraded-transport-failure-streak",
        "1",
        "--critical-transport-failure-streak",
        "2",
    )
    first = cli.reconcile(local, *args)
    second = cli.reconcile(local, *args)
    assert (first.code, second.code) == (1, 1)
    assert first.json["status"] == "degraded"
    health = read_json(ops_dir(local) / "health.json")
    assert health["status"] == "critical"
    assert health["reasonCodes"] == ["transport_unreachable"]
    assert health["transport"]["failureCode"] == "service_request_failed"
    row = last_row(ops_dir(local) / "telemetry" / "reconcile.jsonl")
    assert row["status"] == "failed"
    # The client's stderr line, kept as is (spec §5.11).
    assert row["failureMessage"].startswith("error: service request failed (method=GET url=")
    escalation_rows = (ops_dir(local) / "escalations.jsonl").read_text().splitlines()
    assert [json.loads(line)["category"] for line in escalation_rows] == [
        "health_degraded",
        "health_critical",
    ]
    assert read_json(ops_dir(local) / "telemetry" / "transport-health.json")["failureStreak"] == 2


def test_local_vs_service_heartbeat_stale_parity(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    for repo in repos:
        write_runtime_artifacts(repo, stamp)
        write_heartbeat(repo, STALE)
    service = start_service(remote)
    a = cli.reconcile(local, *HUGE_INGEST, *STALE_HEARTBEAT).json["health"]
    b = cli.reconcile(remote, *service.reconcile_args(), *HUGE_INGEST, *STALE_HEARTBEAT).json["health"]
    assert (
        (a["status"], sorted_codes(a))
        == (b["status"], sorted_codes(b))
        == ("degraded", ["runtime_heartbeat_stale"])
    )

    def beat(repo: Path) -> tuple[str, str]:
        state = read_json(ops_dir(repo) / "heartbeat.json")
        return state["freshnessStatus"], state["reasonCode"]

    assert beat(local) == beat(remote) == ("degraded", "runtime_heartbeat_stale")


def test_reconcile_failure_reason_parity(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    service = start_service(remote)
    trace = ("--trace-id", "trace-vis-failure-parity-1")
    a = cli.reconcile(local, *trace)
    b = cli.reconcile(remote, *service.reconcile_args(), *trace, "--retry-backoff-seconds", "0")
    assert (a.code, b.code) == (1, 1)
    assert a.json["status"] == b.json["status"] == "degraded"
    assert sorted_codes(a.json) == sorted_codes(b.json)
    assert "transport_unreachable" in a.json["reasonCodes"]
    assert a.json["transport"]["failureCode"] == "snapshot_unavailable"
    assert b.json["transport"]["failureCode"] == "service_request_failed"
    for repo in repos:
        status = cli.status(repo).json
        assert status["health"]["status"] == "degraded"
        assert status["reconcile"]["lastStatus"] == "failed"
        assert status["visibility"]["trace"]["reconcileTraceId"] == "trace-vis-failure-parity-1"


def _control(cli: Cli, repo: Path, *extra: str) -> None:
    result = cli(
        "control",
        "--repo",
        str(repo),
        "--loop",
        LOOP,
        "--intent",
        "cancel",
        "--timeout-seconds",
        "10",
        "--interval-seconds",
        "1",
        *extra,
    )
    assert result.code == 0, result.stderr


def test_visibility_parity_for_reason_surfaces(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    for repo in repos:
        write_runtime_artifacts(repo, stamp)
        write_heartbeat(repo, STALE)
    service = start_service(remote)
    trace = "trace-vis-parity-1"
    _drift_pair(cli, local, (), trace)
    _drift_pair(cli, remote, service.reconcile_args(), trace)
    _control(cli, local, "--trace-id", trace)
    _control(
        cli,
        remote,
        "--trace-id",
        trace,
        "--transport",
        "sprite_service",
        "--service-base-url",
        service.url,
        "--service-token",
        "test-token",
        "--idempotency-key",
        "vis-parity-cancel-1",
    )
    views = [cli.status(repo).json for repo in repos]

    def project(status: dict[str, Any]) -> dict[str, Any]:
        vis = status["visibility"]
        return {
            "codes": sorted(status["health"]["reasonCodes"]),
            "heartbeat": {k: vis["heartbeat"].get(k) for k in ("freshnessStatus", "reasonCode")},
            "sequence": {
                "status": vis["sequence"]["status"],
                "reasonCode": vis["sequence"].get("reasonCode"),
                "driftActive": vis["sequence"].get("driftActive"),
                "violations": sorted(vis["sequence"]["violations"]),
            },
            "audit": {
                k: vis["invocationAudit"].get(k)
                for k in ("intent", "executionStatus", "confirmationStatus", "outcomeStatus")
            },
            "trace": {
                k: vis["trace"].get(k)
                for k in (
                    "controlTraceId",
                    "controlInvocationTraceId",
                    "reconcileTraceId",
                    "heartbeatTraceId",
                    "sequenceTraceId",
                    "sharedTraceId",
                )
            },
        }

    local_view, remote_view = (project(view) for view in views)
    assert local_view == remote_view
    assert local_view["trace"]["sharedTraceId"] == trace
    assert local_view["sequence"]["driftActive"] is True


def test_autonomous_no_confirm_parity(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    local, remote = repos
    stamp = now_ts()
    for repo in repos:
        write_runtime_artifacts(repo, stamp)
    service = start_service(remote)
    trace = "trace-vis-autonomous-1"
    assert cli.reconcile(local, "--trace-id", trace, *HUGE_INGEST).code == 0
    assert cli.reconcile(remote, *service.reconcile_args(), "--trace-id", trace, *HUGE_INGEST).code == 0
    _control(cli, local, "--trace-id", trace, "--no-confirm")
    _control(
        cli,
        remote,
        "--trace-id",
        trace,
        "--no-confirm",
        "--transport",
        "sprite_service",
        "--service-base-url",
        service.url,
        "--service-token",
        "test-token",
        "--idempotency-key",
        "vis-autonomous-cancel-1",
    )
    local_vis, remote_vis = (cli.status(repo).json["visibility"] for repo in repos)
    assert local_vis["invocationAudit"]["confirmationStatus"] == "skipped"
    assert remote_vis["invocationAudit"]["outcomeStatus"] == "executed_unconfirmed"
    assert remote_vis["trace"]["controlInvocationTraceId"] == trace
    for key in ("controlInvocationTraceId", "sharedTraceId"):
        assert local_vis["trace"].get(key) == remote_vis["trace"].get(key)


# --------------------------------------------------------------------- malformed service answers


class _Double(BaseHTTPRequestHandler):
    """Speaks just enough of the sprite API (§9) to return chosen bodies."""

    snapshot: Callable[[], tuple[int, bytes]]
    events: Callable[[], tuple[int, bytes]]

    def do_GET(self) -> None:
        status, body = (self.snapshot if self.path.startswith("/ops/snapshot") else self.events)()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def double(tmp_path: Path) -> Iterator[Callable[[bytes, bytes], str]]:
    servers: list[ThreadingHTTPServer] = []
    snapshot_repo = tmp_path / "snap"
    snapshot_repo.mkdir()
    write_runtime_artifacts(snapshot_repo, now_ts())

    def start(events_body: bytes, snapshot_body: bytes | None = None) -> str:
        from superloop_ops.core.common.jsonutil import dumps_compact, parse_ts
        from superloop_ops.transports import local as local_transport

        now = parse_ts(now_ts())
        assert now is not None
        real_snapshot = dumps_compact(
            local_transport.fetch_snapshot(snapshot_repo, LOOP, trace_id=None, now=now)
        ).encode()
        handler = type(
            "Handler",
            (_Double,),
            {
                "snapshot": staticmethod(
                    lambda: (200, snapshot_body if snapshot_body is not None else real_snapshot)
                ),
                "events": staticmethod(lambda: (200, events_body)),
            },
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("events_body", "message"),
    [
        (b'{"ok":true,"events":{},"cursor":{}}', "service /ops/events response shape invalid"),
        (b'{"ok":false,"events":[],"cursor":{}}', "service /ops/events response shape invalid"),
        (
            b'{"ok":true,"events":[{"a":1}],"cursor":{"eventLineOffset":-1,"eventLineCount":1}}',
            "service cursor values are invalid",
        ),
    ],
)
def test_invalid_events_response_is_service_response_invalid(
    cli: Cli, tmp_path: Path, double: Callable[..., str], events_body: bytes, message: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    url = double(events_body)
    result = cli.reconcile(repo, "--transport", "sprite_service", "--service-base-url", url)
    assert result.code == 1
    assert result.json["reasonCodes"] == ["invalid_transport_payload"]
    assert result.json["transport"]["failureCode"] == "service_response_invalid"
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert row["failureMessage"] == message
    assert not (ops_dir(repo) / "cursor.json").exists()


def test_non_json_snapshot_maps_to_service_response_invalid(
    cli: Cli, tmp_path: Path, double: Callable[..., str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    url = double(b"{}", b"<html>not json</html>")
    result = cli.reconcile(repo, "--transport", "sprite_service", "--service-base-url", url)
    assert result.code == 1
    assert result.json["transport"]["failureCode"] == "service_response_invalid"


def test_null_cursor_values_count_as_zero(cli: Cli, tmp_path: Path, double: Callable[..., str]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    url = double(b'{"ok":true,"events":[],"cursor":{"eventLineOffset":null,"eventLineCount":false}}')
    result = cli.reconcile(repo, "--transport", "sprite_service", "--service-base-url", url, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    cursor = read_json(ops_dir(repo) / "cursor.json")
    assert (cursor["eventLineOffset"], cursor["eventLineCount"]) == (0, 0)


def test_invalid_local_cursor_silently_restarts_at_zero(
    cli: Cli, repos: tuple[Path, Path], start_service: StartService
) -> None:
    _, remote = repos
    write_runtime_artifacts(remote, now_ts())
    service = start_service(remote)
    ops_dir(remote).mkdir(parents=True)
    (ops_dir(remote) / "cursor.json").write_text("{garbage")
    result = cli.reconcile(remote, *service.reconcile_args(), *HUGE_INGEST)
    assert result.code == 0, result.stderr
    row = last_row(ops_dir(remote) / "telemetry" / "reconcile.jsonl")
    assert (row["cursorOffsetBefore"], row["eventsIngested"], row["cursorOffsetAfter"]) == (0, 2, 2)
