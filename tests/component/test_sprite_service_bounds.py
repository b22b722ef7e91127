"""The sprite service's bounds (issue 10, item 13): connections, deadlines, auth first, shutdown.

Every peer is a real socket on 127.0.0.1: raw sockets play the idle, trickling and lying
clients, because httpx cannot send a request slowly or lie about Content-Length.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _loop_reconcile_helpers import SIM_RUNTIME, RunningService

from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.errors import ContractError
from superloop_ops.service import server as service_server

TOKEN = "bounds-token"
LOOP = "demo-loop"

Start = Callable[..., RunningService]


@pytest.fixture
def start() -> Iterator[Start]:
    running: list[RunningService] = []

    def _start(repo: Path, **overrides: object) -> RunningService:
        config = sprite_cli.build_config(repo.resolve(), token=TOKEN, runtime_command=SIM_RUNTIME)
        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
        service = RunningService(service_server.build_server(config, "127.0.0.1", 0))
        running.append(service)
        return service

    yield _start
    for service in running:
        service.stop()


def _address(service: RunningService) -> tuple[str, int]:
    return ("127.0.0.1", service.server.port)


def _read_reply(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def test_connections_beyond_the_cap_are_refused_with_503(tmp_path: Path, start: Start) -> None:
    service = start(tmp_path, max_connections=2)
    idle = [socket.create_connection(_address(service), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)  # both idle connections now hold a handler thread
        response = httpx.get(f"{service.url}/healthz", headers={"X-Ops-Token": TOKEN}, timeout=3)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "too_many_connections"
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the slots are released once the idle clients leave
        response = httpx.get(f"{service.url}/healthz", headers={"X-Ops-Token": TOKEN}, timeout=3)
        if response.status_code == 200:
            break
        time.sleep(0.05)
    assert response.status_code == 200


def test_a_trickling_client_is_cut_off_at_the_request_deadline(tmp_path: Path, start: Start) -> None:
    service = start(tmp_path, request_read_seconds=1.0)
    began = time.monotonic()
    with socket.create_connection(_address(service), timeout=10) as conn:
        request = b"GET /healthz HTTP/1.0\r\nX-Ops-Token: " + TOKEN.encode() + b"\r\nX-Pad: "
        closed = False
        for byte in request + b"a" * 40:  # one byte every 0.2 s: each recv is quick, the total is not
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - began > 4:
                break
        if not closed:
            conn.settimeout(3)
            try:
                reply = conn.recv(65536)
            except OSError:
                reply = b""
            closed = reply == b"" or _status(reply) == 408
    assert closed
    assert time.monotonic() - began < 4


def test_unauthenticated_body_is_never_read(tmp_path: Path, start: Start) -> None:
    """A client announcing a large body without a token is answered 401 at once, without waiting for it."""
    service = start(tmp_path)
    with socket.create_connection(_address(service), timeout=3) as conn:
        conn.sendall(b"POST /ops/control HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n{")
        reply = _read_reply(conn)  # raises TimeoutError if the server waits for the body
    assert _status(reply) == 401


def test_timeout_seconds_is_bounded(tmp_path: Path, start: Start) -> None:
    service = start(tmp_path, max_timeout_seconds=60)
    body = {"loopId": LOOP, "intent": "cancel", "timeoutSeconds": 86400, "idempotencyKey": "k-1"}
    response = httpx.post(f"{service.url}/ops/control", headers={"X-Ops-Token": TOKEN}, json=body, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "timeoutSeconds" in error["message"]
    assert not (tmp_path / ".superloop" / "ops-manager" / LOOP / "intents.jsonl").exists()


def test_no_token_refuses_a_non_loopback_bind(tmp_path: Path) -> None:
    config = sprite_cli.build_config(tmp_path.resolve(), token="", runtime_command=SIM_RUNTIME)
    with pytest.raises(ContractError, match="non-loopback"):
        service_server.build_server(config, "0.0.0.0", 0)
    service_server.build_server(config, "127.0.0.1", 0).server_close()
    tokened = dataclasses.replace(config, token=TOKEN)
    service_server.build_server(tokened, "0.0.0.0", 0).server_close()


def test_cli_refuses_a_non_loopback_bind_without_token(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(tmp_path)]
    env = {key: value for key, value in os.environ.items() if key != "OPS_MANAGER_SERVICE_TOKEN"}
    done = subprocess.run(
        [*argv, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 1
    assert "non-loopback" in done.stderr


def test_sigterm_does_not_wait_for_idle_or_trickling_clients(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(tmp_path)]
    argv += ["--port", "0", "--token", ""]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("ops-manager sprite service listening on ")
        port = int(url.rsplit(":", 1)[1])
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickler = socket.create_connection(("127.0.0.1", port), timeout=5)

        def trickle() -> None:
            for byte in b"GET /healthz HTTP/1.0\r\nX-Pad: " + b"a" * 1000:
                if stop.wait(0.2):
                    return
                try:
                    trickler.sendall(bytes([byte]))
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(0.5)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - began < 3
        idle.close()
        trickler.close()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_json_reply_survives_the_bounds(tmp_path: Path, start: Start) -> None:
    """The bounded reader still serves ordinary requests, body included."""
    service = start(tmp_path, request_read_seconds=5.0)
    body = json.dumps({"loopId": LOOP, "intent": "bogus"}).encode()
    with socket.create_connection(_address(service), timeout=5) as conn:
        conn.sendall(
            b"POST /ops/control HTTP/1.0\r\nX-Ops-Token: " + TOKEN.encode()
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reply = _read_reply(conn)
    assert _status(reply) == 400
    assert b"intent must be cancel" in reply
