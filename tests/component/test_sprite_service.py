"""The sprite HTTP service on 127.0.0.1 with a real httpx client (ports of ops-manager-service.bats).

The service runs in-process on a free port; control runs the local path through
``engine.loop.control_run`` with the simulator's runtime CLI as the configured cancel command.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _loop_reconcile_helpers import SIM_RUNTIME, RunningService

from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import control_run, reconcile_pass
from superloop_ops.service import server as service_server
from superloop_ops.transports.service import ServiceClient, ServiceError

TOKEN = "test-token"
LOOP = "demo-loop"


def write_runtime_artifacts(repo: Path, loop_id: str = LOOP) -> None:
    loop_dir = repo / ".superloop" / "loops" / loop_id
    loop_dir.mkdir(parents=True, exist_ok=True)
    (repo / ".superloop" / "state.json").write_text(
        json.dumps(
            {
                "active": True,
                "loop_index": 0,
                "iteration": 2,
                "current_loop_id": loop_id,
                "updated_at": "2026-02-22T11:00:00Z",
            }
        )
    )
    (loop_dir / "run-summary.json").write_text(
        json.dumps(
            {
                "version": 1,
                "loop_id": loop_id,
                "updated_at": "2026-02-22T11:00:00Z",
                "entries": [
                    {
                        "run_id": "run-123",
                        "iteration": 1,
                        "gates": {
                            "tests": "ok",
                            "validation": "ok",
                            "prerequisites": "ok",
                            "checklist": "ok",
                            "evidence": "skipped",
                            "approval": "none",
                        },
                        "stuck": {"streak": 0, "threshold": 3},
                        "completion_ok": False,
                        "ended_at": "2026-02-22T10:59:59Z",
                    }
                ],
            }
        )
    )
    events = [
        {
            "timestamp": "2026-02-22T11:00:00Z",
            "event": "loop_start",
            "loop_id": loop_id,
            "run_id": "run-123",
            "iteration": 1,
            "data": {"max_iterations": 5},
        },
        {
            "timestamp": "2026-02-22T11:00:05Z",
            "event": "iteration_start",
            "loop_id": loop_id,
            "run_id": "run-123",
            "iteration": 2,
            "data": {"started_at": "2026-02-22T11:00:05Z"},
        },
    ]
    (loop_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def write_heartbeat(repo: Path, timestamp: str, loop_id: str = LOOP) -> None:
    (repo / ".superloop" / "loops" / loop_id / "heartbeat.v1.json").write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "timestamp": timestamp,
                "source": "runtime",
                "status": "running",
                "stage": "iteration",
            }
        )
    )


StartService = Callable[..., RunningService]


@pytest.fixture
def start_service() -> Iterator[StartService]:
    running: list[RunningService] = []

    def start(
        repo: Path,
        token: str = TOKEN,
        runtime: tuple[str, ...] = SIM_RUNTIME,
        config_override: Callable[[service_server.ServiceConfig], service_server.ServiceConfig] | None = None,
    ) -> RunningService:
        config = sprite_cli.build_config(repo.resolve(), token=token, runtime_command=runtime)
        if config_override is not None:
            config = config_override(config)
        service = RunningService(service_server.build_server(config, "127.0.0.1", 0))
        running.append(service)
        response = httpx.get(f"{service.url}/healthz", headers={"X-Ops-Token": token}, timeout=5)
        assert response.status_code == 200
        return service

    yield start
    for service in running:
        service.stop()


def _client(service: RunningService, token: str | None = TOKEN, **kwargs: object) -> ServiceClient:
    return ServiceClient(service.url, token=token, sleep=lambda _s: None, **kwargs)  # type: ignore[arg-type]


# --- bats 1: auth ------------------------------------------------------------------------------


def test_rejects_unauthorized_snapshot_requests(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    response = httpx.get(f"{service.url}/ops/snapshot", params={"loopId": LOOP})
    assert response.status_code == 401
    assert response.json() == {
        "ok": False,
        "error": {"code": "unauthorized", "message": "missing or invalid token"},
    }


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bEaReR   {TOKEN}"}, 200),
        ({"X-Ops-Token": TOKEN}, 200),
        ({"X-Ops-Token": f"{TOKEN}x"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({}, 401),
    ],
)
def test_auth_header_forms(
    tmp_path: Path, start_service: StartService, headers: dict[str, str], status: int
) -> None:
    service = start_service(tmp_path)
    assert httpx.get(f"{service.url}/healthz", headers=headers).status_code == status


def test_auth_runs_before_routing(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(tmp_path)
    assert httpx.get(f"{service.url}/nope").status_code == 401
    assert httpx.post(f"{service.url}/nope", content=b"{}").status_code == 401
    assert httpx.post(f"{service.url}/ops/control", content=b"not json").status_code == 401


def test_empty_token_allows_everything(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(tmp_path, token="")
    assert httpx.get(f"{service.url}/healthz").json() == {"ok": True}


# --- bats 2: shapes ----------------------------------------------------------------------------


def test_snapshot_and_events_return_expected_shapes(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    write_heartbeat(tmp_path, "2026-02-22T11:00:04Z")
    service = start_service(tmp_path)
    with _client(service) as client:
        snapshot = client.fetch_snapshot(LOOP, trace_id="trace-service-snapshot-1")
        events = client.fetch_events(LOOP, cursor=0, max_events=2, trace_id="trace-service-events-1")
    assert snapshot["envelopeType"] == "loop_run_snapshot"
    assert snapshot["runtime"]["heartbeat"]["timestamp"] == "2026-02-22T11:00:04Z"
    assert snapshot["sequence"] == {"source": "cursor_event_line_offset", "value": 2}
    assert snapshot["traceId"] == "trace-service-snapshot-1"
    assert snapshot["artifacts"]["heartbeat"]["exists"] is True
    assert events["ok"] is True
    assert events["schemaVersion"] == "v1"
    assert len(events["events"]) == 2
    assert events["events"][0]["sequence"] == {"source": "cursor_event_line_offset", "value": 1}
    assert events["traceId"] == "trace-service-events-1"
    assert events["events"][0]["traceId"] == "trace-service-events-1"
    assert events["source"] == {"repoPath": str(tmp_path.resolve()), "loopId": LOOP}
    assert events["cursor"]["eventLineOffset"] == 2
    assert events["cursor"]["eventLineCount"] == 2


def test_events_without_trace_omit_trace_and_respect_cursor(
    tmp_path: Path, start_service: StartService
) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    with _client(service) as client:
        events = client.fetch_events(LOOP, cursor=1, max_events=0, trace_id=None)
    assert "traceId" not in events
    assert [e["sequence"]["value"] for e in events["events"]] == [2]
    assert events["cursor"]["eventLineOffset"] == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "loopId is required"),
        ("loopId=", "loopId is required"),
        ("loopId=demo-loop&cursor=abc", "query parameter 'cursor' must be an integer"),
        ("loopId=demo-loop&cursor=-1", "query parameter 'cursor' must be >= 0"),
        ("loopId=demo-loop&maxEvents=1.5", "query parameter 'maxEvents' must be an integer"),
        ("loopId=demo-loop&maxEvents=-2", "query parameter 'maxEvents' must be >= 0"),
        ("loopId=..%2Fescape", "loopId is invalid"),
    ],
)
def test_events_query_validation(
    tmp_path: Path, start_service: StartService, query: str, message: str
) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    response = httpx.get(f"{service.url}/ops/events?{query}", headers={"X-Ops-Token": TOKEN})
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_request", "message": message}


def test_runtime_errors_are_502(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    headers = {"X-Ops-Token": TOKEN}
    missing = httpx.get(f"{service.url}/ops/snapshot", params={"loopId": "other-loop"}, headers=headers)
    assert missing.status_code == 502
    assert missing.json()["error"]["code"] == "runtime_error"
    assert "required artifact root missing" in missing.json()["error"]["message"]
    ahead = httpx.get(f"{service.url}/ops/events", params={"loopId": LOOP, "cursor": "9"}, headers=headers)
    assert ahead.status_code == 502
    assert "exceeds available events" in ahead.json()["error"]["message"]


def test_unknown_paths_and_methods(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(tmp_path)
    headers = {"X-Ops-Token": TOKEN}
    get = httpx.get(f"{service.url}/ops/unknown", headers=headers)
    post = httpx.post(f"{service.url}/ops/snapshot", headers=headers, content=b"{}")
    assert get.status_code == post.status_code == 404
    assert get.json()["error"] == {"code": "not_found", "message": "endpoint not found"}
    assert httpx.put(f"{service.url}/ops/control", headers=headers, content=b"{}").status_code == 501


# --- POST /ops/control validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{nope", "invalid_json", "request body must be valid JSON"),
        (b"[1,2]", "invalid_request", "request body must be an object"),
        (b"", "invalid_request", "loopId is required"),
        (b'{"loopId":"  ","intent":"cancel"}', "invalid_request", "loopId is required"),
        (
            b'{"loopId":"demo-loop","intent":"restart"}',
            "invalid_request",
            "intent must be cancel, approve, or reject",
        ),
        (b'{"loopId":"a/b","intent":"cancel"}', "invalid_request", "loopId is invalid"),
        (
            b'{"loopId":"demo-loop","intent":"cancel","timeoutSeconds":-1}',
            "invalid_request",
            "timeoutSeconds must be a non-negative integer",
        ),
    ],
)
def test_control_request_validation(
    tmp_path: Path, start_service: StartService, body: bytes, code: str, message: str
) -> None:
    service = start_service(tmp_path)
    response = httpx.post(f"{service.url}/ops/control", headers={"X-Ops-Token": TOKEN}, content=body)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": {"code": code, "message": message}}


def test_control_body_is_bounded(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(
        tmp_path,
        config_override=lambda config: service_server.ServiceConfig(
            **{**config.__dict__, "max_body_bytes": 64}
        ),
    )
    big = json.dumps({"loopId": LOOP, "intent": "cancel", "note": "x" * 200}).encode()
    response = httpx.post(f"{service.url}/ops/control", headers={"X-Ops-Token": TOKEN}, content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


# --- bats 4 / 5: control through the service ---------------------------------------------------


def _control_request(repo: Path, url: str, **overrides: object) -> control_run.ControlRequest:
    fields: dict[str, object] = {
        "repo": repo,
        "loop_id": LOOP,
        "intent": "cancel",
        "transport": "sprite_service",
        "trace_id": "trace-service-control-1",
        "idempotency_key": "idem-1",
        "service_base_url": url,
        "service_token": TOKEN,
        "timeout_seconds": 5,
        "interval_seconds": 1,
        "retry_backoff_seconds": 0,
    }
    fields.update(overrides)
    return control_run.ControlRequest(**fields)  # type: ignore[arg-type]


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_control_sprite_service_with_idempotency(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    first = control_run.execute_control(_control_request(tmp_path, service.url))
    assert first.exit_code == 0
    assert first.status == "confirmed"
    assert first.replayed is False
    second = control_run.execute_control(_control_request(tmp_path, service.url))
    assert second.exit_code == 0
    ops = tmp_path / ".superloop" / "ops-manager" / LOOP
    last_intent = _rows(ops / "intents.jsonl")[-1]
    assert json.loads(str(last_intent["commandOutput"]))["replayed"] is True
    store = {row["key"]: row["response"] for row in _rows(ops / "service-idempotency.jsonl")}
    assert "idem-1" in store
    assert store["idem-1"]["replayed"] is False  # type: ignore[index]
    invocations = _rows(ops / "telemetry" / "control-invocations.jsonl")
    # inner local row + outer sprite_service row for the first call, one outer row for the replay
    assert [row["transport"] for row in invocations] == ["local", "sprite_service", "sprite_service"]
    last = invocations[-1]
    assert last["idempotencyKey"] == "idem-1"
    assert last["execution"]["replayed"] is True  # type: ignore[index]
    assert last["traceId"] == "trace-service-control-1"
    assert last["outcome"]["status"] == "confirmed"  # type: ignore[index]


def test_control_fails_closed_with_wrong_token(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    outcome = control_run.execute_control(
        _control_request(tmp_path, service.url, service_token="wrong-token", idempotency_key="idem-bad")
    )
    assert outcome.exit_code == 1
    assert outcome.status == "failed_command"
    assert "service request failed" in outcome.error_message
    assert "code=401" in outcome.error_message
    assert "wrong-token" not in outcome.error_message
    assert outcome.intent_row["commandOutput"] == "{}"
    # nothing ran on the service side
    assert (tmp_path / ".superloop" / "state.json").is_file()


def test_control_failure_is_retried_into_a_replay(tmp_path: Path, start_service: StartService) -> None:
    """§10.6: a failing command answers 500, the client retries and gets a 200 replay."""
    write_runtime_artifacts(tmp_path)
    service = start_service(
        tmp_path, runtime=(sys.executable, "-c", "import sys; print('boom'); sys.exit(7)")
    )
    outcome = control_run.execute_control(
        _control_request(tmp_path, service.url, idempotency_key="idem-fail")
    )
    assert outcome.status == "failed_command"
    assert outcome.replayed is True
    assert outcome.record.exit_code == 1  # the service-side control exit, not the runtime's 7
    inner = [
        row
        for row in _rows(tmp_path / ".superloop/ops-manager" / LOOP / "intents.jsonl")
        if row["transport"] == "local"
    ]
    assert len(inner) == 1  # executed once despite the retry
    assert inner[0]["exitCode"] == 7


def test_control_statuses_map_to_http(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path, runtime=(sys.executable, "-c", "print('noop')"))
    headers = {"X-Ops-Token": TOKEN, "X-Trace-Id": "hdr-trace"}
    body = {"loopId": LOOP, "intent": "approve", "idempotencyKey": "k-approve"}
    # approve with no pending approval request: the runtime command fails -> 500
    failed = httpx.post(f"{service.url}/ops/control", headers=headers, json=body, timeout=30)
    assert failed.status_code == 500
    assert failed.json()["ok"] is False
    assert failed.json()["result"]["status"] == "failed_command"
    assert failed.json()["traceId"] == "hdr-trace"
    # cancel whose effect never shows (the noop runtime leaves state.json active) -> ambiguous, 409
    body = {"loopId": LOOP, "intent": "cancel", "timeoutSeconds": 0, "X": 1}
    ambiguous = httpx.post(f"{service.url}/ops/control", headers=headers, json=body, timeout=30)
    assert ambiguous.status_code == 409
    assert ambiguous.json()["exitCode"] == 2
    assert ambiguous.json()["result"]["status"] == "ambiguous"
    # replay of a stored failure is 200 regardless of the original code
    replay = httpx.post(
        f"{service.url}/ops/control",
        headers={**headers, "X-Idempotency-Key": "k-approve"},
        json={"loopId": LOOP, "intent": "approve"},
        timeout=30,
    )
    assert replay.status_code == 200
    assert replay.json()["replayed"] is True
    assert replay.json()["exitCode"] == 1


def test_idempotency_store_survives_restart(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    first = start_service(tmp_path)
    body = {"loopId": LOOP, "intent": "cancel", "idempotencyKey": "restart-key", "noConfirm": True}
    headers = {"X-Ops-Token": TOKEN}
    assert httpx.post(f"{first.url}/ops/control", headers=headers, json=body, timeout=30).status_code == 200
    first.stop()
    write_runtime_artifacts(tmp_path)  # the loop runs again; a re-execution would cancel it
    second = start_service(tmp_path)
    replay = httpx.post(f"{second.url}/ops/control", headers=headers, json=body, timeout=30)
    assert replay.status_code == 200
    assert replay.json()["replayed"] is True
    assert replay.json()["result"]["status"] == "executed_unconfirmed"
    assert (tmp_path / ".superloop" / "state.json").is_file()


def test_concurrent_requests_with_one_key_execute_once(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    body = {"loopId": LOOP, "intent": "cancel", "idempotencyKey": "same", "noConfirm": True}

    def post() -> dict[str, object]:
        return httpx.post(
            f"{service.url}/ops/control", headers={"X-Ops-Token": TOKEN}, json=body, timeout=30
        ).json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _i: post(), range(4)))
    assert sorted(bool(r["replayed"]) for r in results) == [False, True, True, True]
    inner = _rows(tmp_path / ".superloop/ops-manager" / LOOP / "intents.jsonl")
    assert len(inner) == 1
    assert len(service.server.key_locks) == 0  # per-key locks do not accumulate


# --- bats 3 / 6: reconcile through the service -------------------------------------------------


def _thresholds() -> threshold_profiles.Thresholds:
    return threshold_profiles.Thresholds(
        profile=None,
        degraded_ingest_lag_seconds=999999999,
        critical_ingest_lag_seconds=999999999,
        degraded_heartbeat_lag_seconds=999999999,
        critical_heartbeat_lag_seconds=999999999,
        degraded_transport_failure_streak=1,
        critical_transport_failure_streak=3,
    )


def _reconcile(
    repo: Path, transport: str, url: str = "", trace: str | None = None
) -> reconcile_pass.ReconcileResult:
    options = reconcile_pass.ReconcileOptions(
        repo=repo,
        loop_id=LOOP,
        thresholds=_thresholds(),
        transport=transport,  # type: ignore[arg-type]
        service=reconcile_pass.ServiceSettings(base_url=url or None, token=TOKEN, retry_backoff_seconds=0),
        trace_id=trace,
        alerts=reconcile_pass.AlertSettings(enabled=False),
    )
    return reconcile_pass.run_reconcile(options)


def test_reconcile_supports_sprite_service_transport(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    result = _reconcile(tmp_path, "sprite_service", service.url)
    assert result.exit_code == 0
    ops = tmp_path / ".superloop" / "ops-manager" / LOOP
    assert json.loads((ops / "cursor.json").read_text())["eventLineOffset"] == 2
    assert json.loads((ops / "state.json").read_text())["transition"]["currentState"] == "running"


def test_reconcile_failure_reason_parity(tmp_path: Path, start_service: StartService) -> None:
    local_repo = tmp_path / "local"
    service_repo = tmp_path / "service"
    local_repo.mkdir()
    service_repo.mkdir()
    service = start_service(service_repo)
    trace = "trace-service-failure-parity-1"
    local = _reconcile(local_repo, "local", trace=trace)
    remote = _reconcile(service_repo, "sprite_service", service.url, trace=trace)
    assert local.exit_code != 0
    assert remote.exit_code != 0
    assert local.health["status"] == remote.health["status"] == "degraded"
    assert sorted(local.health["reasonCodes"]) == sorted(remote.health["reasonCodes"])
    assert "transport_unreachable" in local.health["reasonCodes"]
    assert local.failure_code == "snapshot_unavailable"
    assert remote.failure_code == "service_request_failed"


def test_client_error_for_missing_loop_is_502(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(tmp_path)
    with _client(service, retry_attempts=2) as client, pytest.raises(ServiceError) as caught:
        client.fetch_snapshot("absent", trace_id=None)
    assert caught.value.code == "502"
    assert "runtime_error" in caught.value.message


# --- the sprite-service command as a process ---------------------------------------------------


def test_cli_prints_listening_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_runtime_artifacts(tmp_path)
    env = {**os.environ, "OPS_MANAGER_SERVICE_TOKEN": "env-token"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "superloop_ops.cli.main",
            "sprite-service",
            "--repo",
            str(tmp_path),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "ops-manager sprite service listening on http://127.0.0.1:"
        assert line.startswith(prefix)
        url = line.removeprefix("ops-manager sprite service listening on ")
        assert httpx.get(f"{url}/healthz").status_code == 401
        snapshot = httpx.get(
            f"{url}/ops/snapshot", params={"loopId": LOOP}, headers={"Authorization": "Bearer env-token"}
        )
        assert snapshot.status_code == 200
        assert snapshot.json()["source"]["repoPath"] == str(tmp_path.resolve())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_refuses_missing_repo(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: repo path not found: {tmp_path / 'nope'}"


def test_invalid_content_length_is_refused(tmp_path: Path, start_service: StartService) -> None:
    service = start_service(tmp_path)
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /ops/control HTTP/1.1\r\nHost: x\r\nX-Ops-Token: test-token\r\n"
            b"Content-Length: abc\r\n\r\n{}"
        )
        chunks = []
        while chunk := conn.recv(65536):  # the server closes this connection after answering
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    assert reply.split(" ", 2)[1] == "400"
    assert '"invalid_request"' in reply


def test_control_no_confirm_through_the_service(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    outcome = control_run.execute_control(
        _control_request(tmp_path, service.url, do_confirm=False, idempotency_key="vis-autonomous-cancel-1")
    )
    assert outcome.status == "executed_unconfirmed"
    assert outcome.exit_code == 0
    invocations = _rows(
        tmp_path / ".superloop/ops-manager" / LOOP / "telemetry" / "control-invocations.jsonl"
    )
    inner, outer = invocations
    assert inner["confirmation"]["status"] == "skipped"  # type: ignore[index]
    assert outer["outcome"]["status"] == "executed_unconfirmed"  # type: ignore[index]
    assert outer["confirmation"]["status"] == "skipped"  # type: ignore[index]
    assert outer["traceId"] == inner["traceId"] == "trace-service-control-1"


def test_unconfirmed_control_is_ambiguous_not_a_client_timeout(
    tmp_path: Path, start_service: StartService
) -> None:
    """The confirmation window is forwarded, so the service answers 409 before the client gives up."""
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path, runtime=(sys.executable, "-c", "print('pretend')"))
    outcome = control_run.execute_control(
        _control_request(
            tmp_path, service.url, timeout_seconds=1, interval_seconds=1, idempotency_key="amb-1"
        )
    )
    # 409 is transient for the client: the retry is answered from the store as a replay
    assert outcome.status == "ambiguous"
    assert outcome.exit_code == 2
    assert outcome.replayed is True
    assert outcome.record.confirmation_status == "ambiguous"
    assert outcome.record.confirm["reason"] == "timeout"
    assert outcome.record.confirm["timeoutSeconds"] == 1


def test_control_without_trace_gets_the_inner_generated_trace(
    tmp_path: Path, start_service: StartService
) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    body = {"loopId": LOOP, "intent": "cancel", "noConfirm": True, "by": "  svc-user "}
    response = httpx.post(f"{service.url}/ops/control", headers={"X-Ops-Token": TOKEN}, json=body, timeout=30)
    assert response.status_code == 200
    payload = response.json()
    assert payload["traceId"] == payload["result"]["traceId"]
    assert len(payload["traceId"]) == 36
    assert payload["result"]["requestedBy"] == "svc-user"
    assert payload["result"]["transport"] == "local"
    assert "idempotencyKey" in payload["result"]
    assert not (tmp_path / ".superloop/ops-manager" / LOOP / "service-idempotency.jsonl").exists()


def test_sigterm_lets_an_in_flight_control_finish(tmp_path: Path) -> None:
    write_runtime_artifacts(tmp_path)
    slow = f"{sys.executable} -c 'import time; time.sleep(1.5); print(\"cancelled slowly\")'"
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(tmp_path)]
    argv += ["--port", "0", "--token", "", "--runtime-command", slow]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("ops-manager sprite service listening on ")
        body = {"loopId": LOOP, "intent": "cancel", "noConfirm": True, "idempotencyKey": "slow-1"}
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(httpx.post, f"{url}/ops/control", json=body, timeout=30)
            intents = tmp_path / ".superloop/ops-manager" / LOOP / "control-claims.jsonl"
            for _ in range(100):  # wait until the control run has started
                if intents.exists():
                    break
                threading.Event().wait(0.05)
            proc.send_signal(signal.SIGTERM)
            response = pending.result(timeout=30)
        assert response.status_code == 200
        assert response.json()["result"]["commandOutput"] == "cancelled slowly"
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _control_cli(repo: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "control", "--repo", str(repo), "--loop", LOOP]
    argv += ["--intent", "cancel", "--transport", "sprite_service", "--service-base-url", url, *extra]
    env = {key: value for key, value in os.environ.items() if key != "OPS_MANAGER_SERVICE_TOKEN"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=120)


def test_control_cli_over_the_service(tmp_path: Path, start_service: StartService) -> None:
    """bats "control supports sprite_service transport with idempotency", through the CLI."""
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    args = ("--trace-id", "trace-service-control-1", "--service-token", TOKEN, "--idempotency-key", "idem-1")
    first = _control_cli(tmp_path, service.url, *args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "confirmed"
    second = _control_cli(tmp_path, service.url, *args)
    assert second.returncode == 0, second.stderr
    row = json.loads(second.stdout)
    assert json.loads(row["commandOutput"])["replayed"] is True
    assert row["command"] == f"POST {service.url}/ops/control"


def test_control_cli_wrong_token(tmp_path: Path, start_service: StartService) -> None:
    write_runtime_artifacts(tmp_path)
    service = start_service(tmp_path)
    done = _control_cli(
        tmp_path, service.url, "--service-token", "wrong-token", "--idempotency-key", "idem-bad"
    )
    assert done.returncode == 1
    assert "error: service request failed (method=POST" in done.stderr
    assert "wrong-token" not in done.stderr + done.stdout
    assert json.loads(done.stdout)["status"] == "failed_command"
