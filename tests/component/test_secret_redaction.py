"""Sink URLs carry credentials; none of them is ever recorded (issue 10 item 8).

A real receiver on 127.0.0.1 refuses every delivery and echoes what it was sent (the request
line and the Authorization header), as misconfigured endpoints do. The reconcile CLI dispatches
pending escalations to a webhook whose URL holds userinfo and a signed query string and to a
Slack webhook whose path is the token; afterwards no journal file (alerts.jsonl, reconcile.jsonl,
state documents) and no output holds any credential, in clear or Base64.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import isolate_cli_env, now_ts, write_heartbeat, write_runtime_artifacts

from superloop_ops.cli.main import main

LOOP = "demo-loop"
PASSWORD = "pa55w0rd-in-userinfo"
SIGNATURE = "SIGNATURE0123456789"
SLACK_TOKEN = "XXSLACKPATHTOKEN42"
LEAKS = (
    PASSWORD,
    SIGNATURE,
    SLACK_TOKEN,
    base64.b64encode(f"svc:{PASSWORD}".encode()).decode(),
)


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = f"no such hook: {self.requestline} auth={self.headers.get('Authorization')}".encode()
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _catalog(path: Path) -> Path:
    sinks = {
        "hook": {"enabled": True, "type": "webhook", "urlEnv": "T_HOOK_URL", "timeoutSeconds": 2},
        "chat": {"enabled": True, "type": "slack", "webhookUrlEnv": "T_SLACK_URL", "timeoutSeconds": 2},
    }
    routing = {"defaultSinks": ["hook", "chat"], "categorySeverity": {"health_critical": "critical"}}
    path.write_text(
        json.dumps({"schemaVersion": "v1", "defaultMinSeverity": "info", "sinks": sinks, "routing": routing})
    )
    return path


def test_sink_url_credentials_are_never_recorded(
    tmp_path: Path, echo_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_cli_env(monkeypatch)
    base = f"http://127.0.0.1:{echo_port}"
    monkeypatch.setenv("T_HOOK_URL", f"http://svc:{PASSWORD}@127.0.0.1:{echo_port}/in?sig={SIGNATURE}&x=1")
    monkeypatch.setenv("T_SLACK_URL", f"{base}/services/T000/B000/{SLACK_TOKEN}")
    write_runtime_artifacts(tmp_path, now_ts(), LOOP)
    write_heartbeat(tmp_path, "2020-01-01T00:00:00Z", LOOP)  # stale: the pass escalates
    code = main(
        [
            "reconcile",
            "--repo",
            str(tmp_path),
            "--loop",
            LOOP,
            "--alerts-enabled",
            "true",
            "--alert-config-file",
            str(_catalog(tmp_path / "sinks.json")),
        ]
    )
    output = capsys.readouterr()
    assert code in (0, 1)
    ops = tmp_path / ".superloop" / "ops-manager" / LOOP
    alerts = (ops / "telemetry" / "alerts.jsonl").read_text()
    assert "no such hook" in alerts  # the receivers' answers are recorded (redacted)
    recorded = {str(p.relative_to(ops)): p.read_text() for p in ops.rglob("*") if p.is_file()}
    recorded["stdout"], recorded["stderr"] = output.out, output.err
    leaks = sorted({(name, leak) for name, text in recorded.items() for leak in LEAKS if leak in text})
    assert leaks == []


def test_service_base_url_credentials_stay_out_of_messages(tmp_path: Path, echo_port: int) -> None:
    from superloop_ops.transports.service import ServiceClient, ServiceError

    url = f"http://svc:{PASSWORD}@127.0.0.1:{echo_port}/base?sig={SIGNATURE}"
    client = ServiceClient(url, retry_attempts=1)
    with pytest.raises(ServiceError) as failure:
        client.fetch_snapshot(LOOP, trace_id=None)  # the echo server does not answer GET: 501
    assert failure.value.code == "501"
    assert [leak for leak in LEAKS if leak in failure.value.message or leak in repr(client)] == []
    assert f"url=http://127.0.0.1:{echo_port}/base/ops/snapshot" in failure.value.message


def test_sprite_service_reads_its_token_from_a_file_not_argv(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import httpx

    write_runtime_artifacts(tmp_path, now_ts(), LOOP)
    token_file = tmp_path / "token"
    token_file.write_text("file-token-77\n")
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "OPS_MANAGER_SERVICE_TOKEN"}
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(tmp_path)]
    argv += ["--port", "0", "--token-file", str(token_file)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("ops-manager sprite service listening on ")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"file-token-77" not in cmdline
        assert httpx.get(f"{url}/healthz").status_code == 401
        assert httpx.get(f"{url}/healthz", headers={"X-Ops-Token": "file-token-77"}).status_code == 200
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
