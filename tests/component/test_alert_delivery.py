"""Alert delivery against real HTTP receivers on 127.0.0.1: payloads, failures, recovery, restarts.

Each receiver records every request it *accepted* (answered 2xx) and every request it saw, so
"delivered exactly once per sink" is counted at the receiver, not inferred from our own state.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from superloop_ops.cli.main import main
from superloop_ops.clock import FrozenClock
from superloop_ops.engine.alerts import alert_delivery

LOOP = "demo-loop"
START = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@dataclass
class Receiver:
    """A tiny HTTP sink. ``mode``: ok | error500 | bad_request | slow."""

    port: int
    mode: str = "ok"
    slow_seconds: float = 1.5
    seen: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                record = {
                    "path": self.path,
                    "headers": [(k.lower(), v) for k, v in self.headers.items()],
                    "body": json.loads(self.rfile.read(length)),
                }
                receiver.seen.append(record)
                if receiver.mode == "slow":
                    time.sleep(receiver.slow_seconds)
                code = {"ok": 202, "error500": 503, "bad_request": 400, "slow": 200}[receiver.mode]
                if code < 300:
                    receiver.accepted.append(record)
                payload = b'{"ok":true}' if code < 300 else b"upstream\nbroken"
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self) -> list[dict[str, Any]]:
        return [record["body"] for record in self.accepted]

    def header(self, index: int, name: str) -> list[str]:
        return [v for k, v in self.accepted[index]["headers"] if k == name.lower()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.stop()


def new_receiver(receivers: list[Receiver], *, mode: str = "ok", start: bool = True) -> Receiver:
    receiver = Receiver(port=free_port(), mode=mode)
    if start:
        receiver.start()
    receivers.append(receiver)
    return receiver


def write_catalog(path: Path, *, timeout: float = 2, slack: bool = True, pagerduty: bool = True) -> Path:
    sinks: dict[str, Any] = {
        "hook": {
            "enabled": True,
            "type": "webhook",
            "urlEnv": "T_HOOK_URL",
            "authTokenEnv": "T_HOOK_TOKEN",
            "timeoutSeconds": timeout,
            "headers": {"X-Team": "ops", "Content-Type": "application/json"},
        },
        "chat": {
            "enabled": slack,
            "type": "slack",
            "webhookUrlEnv": "T_SLACK_URL",
            "channel": "#ops-alerts",
            "username": "ops-manager",
            "iconEmoji": ":rotating_light:",
            "timeoutSeconds": timeout,
        },
        "pager": {
            "enabled": pagerduty,
            "type": "pagerduty_events",
            "routingKeyEnv": "T_PD_KEY",
            "timeoutSeconds": timeout,
        },
    }
    path.write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "defaultMinSeverity": "warning",
                "sinks": sinks,
                "routing": {
                    "defaultSinks": ["hook"],
                    "categorySeverity": {"health_critical": "critical", "health_degraded": "warning"},
                    "routes": [
                        {
                            "category": "health_critical",
                            "sinks": ["pager", "chat", "hook"],
                            "minSeverity": "critical",
                        },
                        {"category": "health_degraded", "sinks": ["chat", "hook"], "minSeverity": "warning"},
                    ],
                },
            }
        )
    )
    return path


def escalation(n: int, category: str = "health_critical") -> dict[str, Any]:
    return {
        "timestamp": f"2026-11-26T11:{n:02d}:00Z",
        "loopId": LOOP,
        "traceId": f"trace-esc-{n}",
        "category": category,
        "reasonCodes": ["transport_unreachable"],
    }


def ops(repo: Path) -> Path:
    return repo / ".superloop" / "ops-manager" / LOOP


def append_escalations(repo: Path, rows: list[dict[str, Any]]) -> None:
    path = ops(repo) / "escalations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


@dataclass
class Harness:
    repo: Path
    catalog: Path
    secrets: dict[str, str]
    clock: FrozenClock
    sleeps: list[float] = field(default_factory=list)
    transport: httpx.BaseTransport | None = None
    retries: int = 1

    def dispatcher(self) -> alert_delivery.AlertDispatcher:
        """A fresh engine instance: what a restarted process would build."""
        return alert_delivery.AlertDispatcher(
            paths=alert_delivery.DispatchPaths.for_loop(self.repo, LOOP),
            loop_id=LOOP,
            trace_id="trace-run",
            catalog_path=str(self.catalog),
            secrets=self.secrets,
            transport=self.transport,
            settings=alert_delivery.DispatchSettings(
                retries=self.retries, backoff_seconds=0.25, pagerduty_url=self.secrets.get("PD_URL", "")
            ),
            now=self.clock.now,
            sleep=self.sleeps.append,
        )

    def run(self) -> dict[str, Any]:
        return self.dispatcher().run()

    def telemetry(self) -> list[dict[str, Any]]:
        path = ops(self.repo) / "telemetry" / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


def harness(tmp_path: Path, hook: Receiver, chat: Receiver, pager: Receiver, **catalog_kw: Any) -> Harness:
    secrets = {
        "T_HOOK_URL": hook.url,
        "T_HOOK_TOKEN": "hook-token-123",
        "T_SLACK_URL": chat.url,
        "T_PD_KEY": "pd-routing-key-1",
        "PD_URL": pager.url,
    }
    return Harness(
        tmp_path, write_catalog(tmp_path / "sinks.json", **catalog_kw), secrets, FrozenClock(START)
    )


def test_each_sink_type_receives_its_payload_and_auth(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook, chat, pager = (new_receiver(receivers) for _ in range(3))
    h = harness(tmp_path, hook, chat, pager)
    append_escalations(tmp_path, [escalation(1)])
    state = h.run()
    assert (state["status"], state["dispatchedCount"], state["escalationsLineOffset"]) == ("success", 1, 1)
    assert state["pendingCount"] == 0

    assert len(hook.accepted) == 1
    assert hook.header(0, "Authorization") == ["Bearer hook-token-123"]
    assert hook.header(0, "Content-Type") == ["application/json"]
    assert hook.header(0, "X-Team") == ["ops"]
    key = hook.header(0, "Idempotency-Key")
    assert len(key) == 1
    assert key[0].endswith(":hook")
    body = hook.bodies()[0]
    assert body["source"] == {
        "repoPath": str(tmp_path),
        "loopId": LOOP,
        "channel": "ops_manager_alert_dispatch",
        "traceId": "trace-esc-1",
    }
    assert body["event"] == {"category": "health_critical", "severity": "critical"}
    assert body["sink"] == {"id": "hook", "type": "webhook"}
    assert body["escalation"] == escalation(1)
    assert body["emittedAt"] == "2026-11-26T12:00:00Z"

    slack = chat.bodies()[0]
    assert slack["text"] == "[ops-manager][critical] health_critical loop=demo-loop trace=trace-esc-1"
    assert (slack["channel"], slack["username"], slack["icon_emoji"]) == (
        "#ops-alerts",
        "ops-manager",
        ":rotating_light:",
    )
    assert slack["blocks"][1]["elements"][1]["text"] == "Trace: `trace-esc-1`"
    assert chat.header(0, "Authorization") == []

    event = pager.bodies()[0]
    assert event["routing_key"] == "pd-routing-key-1"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "demo-loop:health_critical:2026-11-26T11:01:00Z"
    assert event["payload"]["summary"] == "ops-manager health_critical (critical) loop=demo-loop"
    assert (event["payload"]["severity"], event["payload"]["source"]) == ("critical", "superloop-ops-manager")
    assert event["payload"]["custom_details"]["traceId"] == "trace-esc-1"

    [row] = h.telemetry()
    assert (row["status"], row["sinkCount"], row["dispatchedSinkCount"]) == ("dispatched", 3, 3)
    assert [sink["id"] for sink in row["sinks"]] == ["pager", "chat", "hook"]
    assert {sink["httpStatus"] for sink in row["sinks"]} == {202}
    dumped = json.dumps(h.telemetry()) + (ops(tmp_path) / "alert-dispatch-state.json").read_text()
    for secret in ("hook-token-123", "pd-routing-key-1", hook.url):
        assert secret not in dumped
    assert h.run()["status"] == "no_new_escalations"
    assert (len(hook.seen), len(chat.seen), len(pager.seen)) == (1, 1, 1)


def test_receiver_down_then_back_delivers_backlog_exactly_once(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook, pager = new_receiver(receivers), new_receiver(receivers)
    chat = new_receiver(receivers, start=False)  # nothing listens: connection refused
    h = harness(tmp_path, hook, chat, pager)
    append_escalations(tmp_path, [escalation(1), escalation(2, "health_degraded")])
    state = h.run()
    assert state["status"] == "partial"
    assert state["failureReasonCodes"] == ["request_failed"]
    assert (state["escalationsLineOffset"], state["pendingCount"]) == (0, 2)
    assert h.sleeps == [0.25]  # one in-run retry; row 2 is deferred, not timed out again
    rows = h.telemetry()
    assert [row["status"] for row in rows] == ["partial", "partial"]
    assert all(row["retryPending"] and row["pendingSinkIds"] == ["chat"] for row in rows)
    assert rows[0]["sinks"][1]["reasonCode"] == "request_failed"
    assert rows[0]["sinks"][1]["httpStatus"] is None
    assert rows[1]["sinks"][0]["message"] == "deferred: sink unavailable earlier in this run"

    append_escalations(tmp_path, [escalation(3)])
    h.clock.advance(5)
    state = h.run()  # outage continues; the new row still reaches the healthy sinks at once
    assert (len(hook.accepted), len(pager.accepted)) == (3, 2)
    assert state["pendingCount"] == 3
    assert state["processedCount"] == 1  # rows 1-2 are backing off, not retried yet

    chat.start()
    h.clock.advance(60)
    state = h.run()
    assert state["status"] == "success"
    assert (state["escalationsLineOffset"], state["escalationsLineCount"], state["pendingCount"]) == (3, 3, 0)
    assert state["deliveryLedger"] == []
    assert [body["text"].split()[1] for body in chat.bodies()] == [
        "health_critical",
        "health_degraded",
        "health_critical",
    ]
    assert (len(hook.seen), len(pager.seen)) == (3, 2)
    h.clock.advance(3600)
    assert h.run()["status"] == "no_new_escalations"
    assert (len(chat.seen), len(hook.seen), len(pager.seen)) == (3, 3, 2)


def test_5xx_is_retried_and_recovers_without_duplicates(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook = new_receiver(receivers, mode="error500")
    chat, pager = new_receiver(receivers), new_receiver(receivers)
    h = harness(tmp_path, hook, chat, pager, slack=False, pagerduty=False)
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    state = h.run()
    assert state["status"] == "failed"
    assert state["failureReasonCodes"] == ["http_error"]
    assert len(hook.seen) == 2  # first try + one retry
    [row] = h.telemetry()
    assert (row["status"], row["reasonCode"]) == ("failed", "dispatch_failed")
    assert row["sinks"][0]["httpStatus"] == 503
    assert row["sinks"][0]["message"] == "upstream broken"
    hook.mode = "ok"
    h.clock.advance(30)
    state = h.run()
    assert (state["status"], state["dispatchedCount"], state["escalationsLineOffset"]) == ("success", 1, 1)
    assert len(hook.accepted) == 1
    keys = {value for record in hook.seen for key, value in record["headers"] if key == "idempotency-key"}
    assert len(keys) == 1  # every attempt for this escalation carried the same dedupe key


def test_4xx_is_a_permanent_failure(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook = new_receiver(receivers, mode="bad_request")
    chat, pager = new_receiver(receivers), new_receiver(receivers)
    h = harness(tmp_path, hook, chat, pager, pagerduty=False)
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    state = h.run()
    assert state["status"] == "partial"
    assert (state["escalationsLineOffset"], state["pendingCount"]) == (1, 0)
    assert len(hook.seen) == 1
    assert h.sleeps == []
    [row] = h.telemetry()
    assert (row["status"], row["reasonCode"]) == ("partial", "partial_dispatch_failure")
    assert "retryPending" not in row


def test_slow_receiver_times_out_as_request_failed(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook = new_receiver(receivers, mode="slow")
    chat, pager = new_receiver(receivers), new_receiver(receivers)
    h = harness(tmp_path, hook, chat, pager, timeout=1, slack=False, pagerduty=False)
    h.retries = 0
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    state = h.run()
    assert state["failureReasonCodes"] == ["request_failed"]
    [row] = h.telemetry()
    assert row["sinks"][0]["reasonCode"] == "request_failed"
    assert "Timeout" in row["sinks"][0]["message"]
    assert state["pendingCount"] == 1


def test_missing_secret_blocks_only_its_own_sink(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook, chat, pager = (new_receiver(receivers) for _ in range(3))
    h = harness(tmp_path, hook, chat, pager)
    del h.secrets["T_SLACK_URL"]
    append_escalations(tmp_path, [escalation(1)])
    state = h.run()
    assert state["status"] == "partial"
    assert state["failureReasonCodes"] == ["missing_secret"]
    assert (len(hook.accepted), len(pager.accepted), len(chat.seen)) == (1, 1, 0)
    [row] = h.telemetry()
    assert row["sinks"][1] == {
        "id": "chat",
        "type": "slack",
        "status": "failed",
        "reasonCode": "missing_secret",
        "httpStatus": None,
        "message": "slack webhook env is unset",
    }
    h.secrets["T_SLACK_URL"] = chat.url
    h.clock.advance(60)
    assert h.run()["status"] == "success"
    assert (len(hook.seen), len(pager.seen), len(chat.accepted)) == (1, 1, 1)


class CrashAfter(httpx.BaseTransport):
    """Forwards to a real transport, then 'kills the process' before the Nth request is sent."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.allowed <= 0:
            raise KeyboardInterrupt("simulated crash")
        self.allowed -= 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_restart_mid_dispatch_neither_loses_nor_duplicates(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook, chat, pager = (new_receiver(receivers) for _ in range(3))
    h = harness(tmp_path, hook, chat, pager)
    append_escalations(tmp_path, [escalation(1), escalation(2)])
    h.transport = CrashAfter(allowed=4)  # row 1: pager, chat, hook; row 2: pager, then crash
    with pytest.raises(KeyboardInterrupt):
        h.run()
    checkpoint = json.loads((ops(tmp_path) / "alert-dispatch-state.json").read_text())
    assert checkpoint["escalationsLineOffset"] == 0
    assert [entry["sinks"] for entry in checkpoint["deliveryLedger"]] == [
        {"pager": "delivered", "chat": "delivered", "hook": "delivered"},
        {"pager": "delivered"},
    ]
    h.transport = None  # the restarted process, a new engine instance on the same ops dir
    state = h.run()
    assert (state["status"], state["escalationsLineOffset"], state["pendingCount"]) == ("success", 2, 0)
    assert (len(pager.seen), len(chat.seen), len(hook.seen)) == (2, 2, 2)
    assert [body["custom_details"]["traceId"] for body in (b["payload"] for b in pager.bodies())] == [
        "trace-esc-1",
        "trace-esc-2",
    ]
    assert [body["escalation"]["traceId"] for body in hook.bodies()] == ["trace-esc-1", "trace-esc-2"]


def test_reconcile_hook_never_raises(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook, chat, pager = (new_receiver(receivers) for _ in range(3))
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    state_file = ops(tmp_path) / "alert-dispatch-state.json"
    state_file.write_text('{"escalationsLineOffset": 9}')
    result = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path),
        LOOP,
        sinks_config=write_catalog(tmp_path / "c.json"),
        secrets={},
        now=START,
        trace_id="trace-rec-1",
    )
    assert (result["status"], result["reasonCode"]) == ("failed_command", "alert_dispatch_failed")
    assert state_file.read_text() == '{"escalationsLineOffset": 9}'
    [row] = [
        json.loads(line) for line in (ops(tmp_path) / "telemetry" / "alerts.jsonl").read_text().splitlines()
    ]
    assert row["status"] == "failed_command"
    assert row["traceId"] == "trace-rec-1"
    assert "offset is ahead" in row["message"]

    state_file.unlink()
    secrets = {"T_HOOK_URL": hook.url, "T_HOOK_TOKEN": "tok", "T_SLACK_URL": chat.url, "T_PD_KEY": "k"}
    first = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path),
        LOOP,
        sinks_config=tmp_path / "c.json",
        secrets=secrets,
        now=START,
        trace_id="trace-rec-1",
    )
    assert (first["status"], first["processedCount"], first["traceId"]) == ("success", 1, "trace-rec-1")
    second = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path),
        LOOP,
        sinks_config=tmp_path / "c.json",
        secrets=secrets,
        now=START,
        trace_id="trace-rec-1",
    )
    assert (second["status"], second["processedCount"]) == ("no_new_escalations", 0)
    assert (len(hook.seen), len(chat.seen), len(pager.seen)) == (1, 1, 0)


def test_reconcile_hook_with_shipped_catalog_skips(tmp_path: Path) -> None:
    """Port of bats 'reconcile invokes alert dispatch' at the hook: shipped catalog, nothing enabled."""
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    first = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path), LOOP, sinks_config=None, secrets={}, now=START, trace_id="trace-alert-status-1"
    )
    assert (first["status"], first["processedCount"], first["skippedCount"]) == ("success", 1, 1)
    last = json.loads((ops(tmp_path) / "telemetry" / "alerts.jsonl").read_text().splitlines()[-1])
    assert (last["status"], last["reasonCode"], last["traceId"]) == (
        "skipped",
        "no_dispatchable_sinks",
        "trace-alert-status-1",
    )
    again = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path), LOOP, sinks_config=None, secrets={}, now=START, trace_id="trace-alert-status-1"
    )
    assert (again["status"], again["processedCount"]) == ("no_new_escalations", 0)


def test_reconcile_hook_accepts_inline_catalog(tmp_path: Path, receivers: list[Receiver]) -> None:
    """The operator passes the catalog from the Loop spec and Secret data, with no env involved."""
    hook = new_receiver(receivers)
    catalog = json.loads(write_catalog(tmp_path / "c.json", slack=False, pagerduty=False).read_text())
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    broken = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path), LOOP, sinks_config={"schemaVersion": "v1"}, secrets={}, now=START, trace_id="t"
    )
    assert broken["status"] == "failed_command"
    assert "invalid top-level shape" in broken["message"]
    state = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path),
        LOOP,
        sinks_config=catalog,
        secrets={"T_HOOK_URL": hook.url, "T_HOOK_TOKEN": "secret-token"},
        now=START,
        trace_id="t",
    )
    assert (state["status"], state["dispatchedCount"]) == ("success", 1)
    assert hook.header(0, "Authorization") == ["Bearer secret-token"]


def test_cli_dispatch_reads_secrets_from_env(
    tmp_path: Path,
    receivers: list[Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pager, chat, hook = (new_receiver(receivers) for _ in range(3))
    catalog = write_catalog(tmp_path / "c.json")
    for name, value in {
        "T_HOOK_URL": hook.url,
        "T_HOOK_TOKEN": "env-token",
        "T_SLACK_URL": chat.url,
        "T_PD_KEY": "env-routing-key",
    }.items():
        monkeypatch.setenv(name, value)
    append_escalations(tmp_path, [escalation(1)])
    code = main(
        [
            "alert-dispatch",
            "--repo",
            str(tmp_path),
            "--loop",
            LOOP,
            "--alert-config-file",
            str(catalog),
            "--pagerduty-url",
            pager.url,
            "--trace-id",
            "trace-cli-1",
        ]
    )
    state = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (state["status"], state["dispatchedCount"], state["traceId"]) == ("success", 1, "trace-cli-1")
    assert pager.bodies()[0]["routing_key"] == "env-routing-key"
    assert hook.header(0, "Authorization") == ["Bearer env-token"]
    assert len(chat.accepted) == 1


def test_reconcile_hook_honours_file_overrides(tmp_path: Path) -> None:
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    state_file, telemetry_file = tmp_path / "custom" / "state.json", tmp_path / "custom" / "alerts.jsonl"
    result = alert_delivery.run_alert_dispatch_step(
        ops(tmp_path),
        LOOP,
        sinks_config=None,
        secrets={},
        now=START,
        trace_id="t",
        state_file=state_file,
        telemetry_file=telemetry_file,
    )
    assert result["dispatchTelemetryFile"] == str(telemetry_file)
    assert json.loads(state_file.read_text())["escalationsLineOffset"] == 1
    assert len(telemetry_file.read_text().splitlines()) == 1
    assert not (ops(tmp_path) / "alert-dispatch-state.json").exists()


def _count_bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on ``Path.open``: the sizes of what every read returned."""
    sizes: list[int] = []
    original_open = Path.open

    def spying_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = original_open(self, *args, **kwargs)
        original_read = handle.read

        def read(size: int = -1) -> Any:
            data = original_read(size)
            sizes.append(len(data))
            return data

        handle.read = read
        return handle

    monkeypatch.setattr(Path, "open", spying_open)
    return sizes


def test_repeated_dispatch_reads_only_the_new_tail_of_a_long_escalations_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator dispatches every pass: a long escalations log must not be read whole each time."""
    old_rows = 20_000
    append_escalations(tmp_path, [escalation(1, "health_degraded")] * old_rows)
    state_file = ops(tmp_path) / "alert-dispatch-state.json"
    state_file.write_text(json.dumps({"escalationsLineOffset": old_rows}))

    def dispatch() -> dict[str, Any]:
        return alert_delivery.run_alert_dispatch_step(
            ops(tmp_path), LOOP, sinks_config=None, secrets={}, now=START, trace_id="trace-tail-1"
        )

    first = dispatch()  # a fresh process reads the log once
    assert (first["status"], first["escalationsLineOffset"]) == ("no_new_escalations", old_rows)
    append_escalations(tmp_path, [escalation(2, "health_degraded")])
    sizes = _count_bytes_read(monkeypatch)
    second = dispatch()
    assert (second["status"], second["processedCount"], second["skippedCount"]) == ("success", 1, 1)
    assert second["escalationsLineOffset"] == old_rows + 1
    log_size = (ops(tmp_path) / "escalations.jsonl").stat().st_size
    escalation_reads = sum(sizes)
    sizes.clear()
    third = dispatch()
    assert (third["status"], third["escalationsLineOffset"]) == ("no_new_escalations", old_rows + 1)
    assert escalation_reads < log_size // 10
    assert sum(sizes) < log_size // 10


def test_dispatch_rereads_a_log_rewritten_under_the_cursor(tmp_path: Path) -> None:
    """A log replaced by a shorter one is seen as such, not through a remembered position."""
    append_escalations(tmp_path, [escalation(1, "health_degraded")] * 5)
    state_file = ops(tmp_path) / "alert-dispatch-state.json"
    state_file.write_text(json.dumps({"escalationsLineOffset": 5}))

    def dispatch() -> dict[str, Any]:
        return alert_delivery.run_alert_dispatch_step(
            ops(tmp_path), LOOP, sinks_config=None, secrets={}, now=START, trace_id="trace-tail-2"
        )

    assert dispatch()["status"] == "no_new_escalations"
    log = ops(tmp_path) / "escalations.jsonl"
    log.write_text("".join(json.dumps(escalation(n, "health_degraded")) + "\n" for n in (1, 2, 3)))
    failed = dispatch()
    assert failed["status"] == "failed_command"
    assert "offset is ahead of escalation file: 5 > 3" in failed["message"]
    log.write_text("".join(json.dumps(escalation(n, "health_degraded")) + "\n" for n in range(1, 8)))
    resumed = dispatch()
    assert (resumed["status"], resumed["processedCount"]) == ("success", 2)
    assert resumed["escalationsLineOffset"] == 7


# --- issue 10 item 14: a total deadline per delivery, a budget per dispatch run -----------------


class TrickleSink:
    """A sink that accepts the connection and then answers one byte every ``interval`` seconds."""

    def __init__(self, interval: float = 0.3) -> None:
        self.interval = interval
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000:
                if self.stopped.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def tricklers() -> Iterator[list[TrickleSink]]:
    made: list[TrickleSink] = []
    yield made
    for sink in made:
        sink.stop()


def test_a_trickling_sink_is_cut_off_at_its_timeout(tmp_path: Path, tricklers: list[TrickleSink]) -> None:
    """httpx's timeouts are per read: a byte every 0.3 s never trips a 1 s read timeout, the deadline does."""
    sink = TrickleSink()
    tricklers.append(sink)
    secrets = {"T_HOOK_URL": sink.url, "T_HOOK_TOKEN": "t", "T_SLACK_URL": sink.url, "T_PD_KEY": "k"}
    catalog = write_catalog(tmp_path / "sinks.json", timeout=1, slack=False, pagerduty=False)
    h = Harness(tmp_path, catalog, secrets, FrozenClock(START), retries=0)
    append_escalations(tmp_path, [escalation(1, "health_degraded")])
    began = time.monotonic()
    state = h.run()
    assert time.monotonic() - began < 3
    assert state["failureReasonCodes"] == ["request_failed"]
    assert state["pendingCount"] == 1
    [row] = h.telemetry()
    assert "deadline" in row["sinks"][0]["message"]


def test_a_dispatch_run_stops_at_its_budget(tmp_path: Path, tricklers: list[TrickleSink]) -> None:
    """Three trickling sinks, two attempts each, 1 s apiece: 6 s unbounded, the run's budget is 2 s."""
    sinks = [TrickleSink() for _ in range(3)]
    tricklers.extend(sinks)
    secrets = {
        "T_HOOK_URL": sinks[0].url,
        "T_HOOK_TOKEN": "t",
        "T_SLACK_URL": sinks[1].url,
        "T_PD_KEY": "k",
    }
    catalog = write_catalog(tmp_path / "sinks.json", timeout=1)
    dispatcher = alert_delivery.AlertDispatcher(
        paths=alert_delivery.DispatchPaths.for_loop(tmp_path, LOOP),
        loop_id=LOOP,
        trace_id="trace-run",
        catalog_path=str(catalog),
        secrets=secrets,
        settings=alert_delivery.DispatchSettings(
            retries=1, backoff_seconds=0, pagerduty_url=sinks[2].url, run_budget_seconds=2
        ),
        now=FrozenClock(START).now,
        sleep=lambda _s: None,
    )
    append_escalations(tmp_path, [escalation(1, "health_critical")])
    began = time.monotonic()
    state = dispatcher.run()
    assert time.monotonic() - began < 3.5
    assert state["pendingCount"] == 1  # nothing lost: the row is retried by a later run
