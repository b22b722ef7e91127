"""ServiceClient against scripted HTTP servers on 127.0.0.1: retries, backoff, timeouts, headers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from superloop_ops.transports.service import ServiceClient, ServiceError, ServiceResponseInvalidError

# Each scripted answer: (status, body) or "drop" (close the socket without answering) or
# ("sleep", seconds) (answer 200 too late).
Answer = tuple[int, str] | str | tuple[str, float]


class ScriptedServer:
    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, object]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                script.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                answer = script.answers.pop(0) if script.answers else (200, "{}")
                if answer == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if isinstance(answer, tuple) and answer[0] == "sleep":
                    threading.Event().wait(float(answer[1]))
                    answer = (200, "{}")
                status, text = answer  # type: ignore[misc]
                data = str(text).encode()
                try:
                    self.send_response(int(status))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout test)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Answer]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(answers: list[Answer]) -> ScriptedServer:
        server = ScriptedServer(answers)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_retries_503_then_succeeds_with_linear_backoff(
    scripted: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = scripted([(503, "busy"), (503, "busy"), (200, '{"ok":true}')])
    sleeps = Sleeps()
    with ServiceClient(server.url, retry_attempts=3, retry_backoff_seconds=1.0, sleep=sleeps) as client:
        assert client.fetch_snapshot("demo-loop", trace_id=None) == {"ok": True}
    assert sleeps.calls == [1.0, 2.0]
    assert len(server.requests) == 3


def test_gives_up_after_attempts_with_last_status(scripted: Callable[[list[Answer]], ScriptedServer]) -> None:
    server = scripted([(502, "a"), (502, "b"), (502, "c\r\nlast")])
    with (
        ServiceClient(server.url, retry_attempts=3, retry_backoff_seconds=0, sleep=Sleeps()) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.fetch_events("demo-loop", cursor=0, max_events=0, trace_id=None)
    assert caught.value.code == "502"
    assert caught.value.message.startswith("service request failed (method=GET url=")
    assert caught.value.message.endswith("code=502): c\nlast")


@pytest.mark.parametrize("status", [400, 401, 404])
def test_non_transient_statuses_are_not_retried(
    scripted: Callable[[list[Answer]], ScriptedServer], status: int
) -> None:
    server = scripted([(status, '{"ok":false}'), (200, "{}")])
    with (
        ServiceClient(server.url, retry_attempts=3, sleep=Sleeps()) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.fetch_snapshot("demo-loop", trace_id=None)
    assert caught.value.code == str(status)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(
    scripted: Callable[[list[Answer]], ScriptedServer], status: int
) -> None:
    server = scripted([(status, "{}"), (200, '{"n":2}')])
    with ServiceClient(server.url, retry_attempts=2, retry_backoff_seconds=0, sleep=Sleeps()) as client:
        assert client.fetch_snapshot("demo-loop", trace_id=None) == {"n": 2}


def test_dropped_connection_is_retried(scripted: Callable[[list[Answer]], ScriptedServer]) -> None:
    server = scripted(["drop", (200, '{"ok":true}')])
    sleeps = Sleeps()
    with ServiceClient(server.url, retry_attempts=2, retry_backoff_seconds=0.5, sleep=sleeps) as client:
        assert client.fetch_snapshot("demo-loop", trace_id=None) == {"ok": True}
    assert sleeps.calls == [0.5]


def test_connection_refused_reports_000() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    with (
        ServiceClient(f"http://127.0.0.1:{port}", retry_attempts=2, sleep=sleeps) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.fetch_snapshot("demo-loop", trace_id=None)
    assert caught.value.code == "000"
    assert sleeps.calls == [1.0]  # retried once (divergence: the reference did not retry)


def test_timeout_reports_000(scripted: Callable[[list[Answer]], ScriptedServer]) -> None:
    server = scripted([("sleep", 1.5)])
    with (
        ServiceClient(server.url, retry_attempts=1, max_time=0.3, sleep=Sleeps()) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.fetch_snapshot("demo-loop", trace_id=None)
    assert caught.value.code == "000"
    assert "timed out" in caught.value.message


def test_control_post_without_key_is_never_retried(
    scripted: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = scripted([(503, "{}"), (200, "{}")])
    with ServiceClient(server.url, retry_attempts=3, sleep=Sleeps()) as client, pytest.raises(ServiceError):
        client.post_control({"loopId": "l", "intent": "cancel"}, trace_id=None, idempotency_key=None)
    assert len(server.requests) == 1


def test_control_post_with_key_is_retried_and_sends_headers(
    scripted: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = scripted(["drop", (500, '{"ok":false}'), (200, '{"ok":true,"replayed":true}')])
    with ServiceClient(server.url, token="s3cret", retry_attempts=3, sleep=Sleeps()) as client:
        status, body = client.post_control(
            {"loopId": "l", "intent": "cancel", "idempotencyKey": "k1"}, trace_id="t-1", idempotency_key="k1"
        )
    assert (status, body) == (200, {"ok": True, "replayed": True})
    assert len(server.requests) == 3
    last = server.requests[-1]
    headers = {k.lower(): v for k, v in last["headers"].items()}  # type: ignore[union-attr]
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-ops-token"] == "s3cret"
    assert headers["x-trace-id"] == "t-1"
    assert headers["x-idempotency-key"] == "k1"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert json.loads(last["body"]) == {"loopId": "l", "intent": "cancel", "idempotencyKey": "k1"}  # type: ignore[arg-type]


def test_query_is_url_encoded_and_base_trailing_slash_dropped(
    scripted: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = scripted([(200, "{}")])
    with ServiceClient(server.url + "/", sleep=Sleeps()) as client:
        client.fetch_events("a b&c", cursor=3, max_events=2, trace_id=None)
    assert server.requests[0]["path"] == "/ops/events?loopId=a+b%26c&cursor=3&maxEvents=2"


def test_non_object_2xx_body_is_invalid(scripted: Callable[[list[Answer]], ScriptedServer]) -> None:
    server = scripted([(200, "not json"), (200, "[1]")])
    with ServiceClient(server.url, sleep=Sleeps()) as client:
        with pytest.raises(ServiceResponseInvalidError):
            client.fetch_snapshot("demo-loop", trace_id=None)
        with pytest.raises(ServiceResponseInvalidError):
            client.fetch_snapshot("demo-loop", trace_id=None)


def test_token_never_appears_in_errors_or_repr(scripted: Callable[[list[Answer]], ScriptedServer]) -> None:
    server = scripted([(401, '{"ok":false}')])
    client = ServiceClient(server.url, token="top-secret-token", sleep=Sleeps())
    with client, pytest.raises(ServiceError) as caught:
        client.fetch_snapshot("demo-loop", trace_id=None)
    assert "top-secret-token" not in str(caught.value)
    assert "top-secret-token" not in repr(client)


@pytest.mark.parametrize(
    "kwargs", [{"retry_attempts": 0}, {"retry_backoff_seconds": -1.0}, {"max_time": -1.0}]
)
def test_invalid_settings_fail_closed(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ServiceClient("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]
