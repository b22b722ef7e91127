"""The sprite HTTP service (§9): one repository's loops over HTTP, next to the runtime.

Design:

* ``http.server.ThreadingHTTPServer``: one thread per request, stdlib only. Requests are short
  (snapshot, poll) except ``/ops/control``, which holds its thread for the confirmation window.
* Everything that touches artifacts is injected (:class:`ServiceConfig`): the snapshot and event
  readers (``transports.local`` in production) and the control runner (``engine.loop.control_run`` on the
  local path). That keeps this module below the engine in the layering and makes it testable.
* Authentication runs before routing for every GET and POST, including ``/healthz``; tokens are
  compared with :func:`hmac.compare_digest`. Unsupported methods get the stdlib's 501.
* ``POST /ops/control`` is idempotent per (loop, key): concurrent requests with one key are
  serialised, so the second one is answered from the store instead of running again. A key is
  bound to its request (loop, intent, by, note): the same key with another request is a 409
  ``idempotency_key_conflict``, never a replay of the first.
* Request bodies are bounded (``max_body_bytes``); loop ids that could escape the repository
  (``/``, ``..``) are refused.
* Time and concurrency are bounded too: at most ``max_connections`` connections are served at
  once (the next one gets a 503 without a thread); reading a request (line, headers and body)
  has one total deadline (``request_read_seconds``), however slowly the client trickles; a 401
  or a 404 is answered without reading the body; ``timeoutSeconds`` above
  ``max_timeout_seconds`` is refused. On shutdown, connections still sending their request are
  cut off; only requests being processed (a control run) are waited for.
* Without a token the service binds only loopback addresses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact, format_ts, prune_nulls
from superloop_ops.core.loop import control_rules
from superloop_ops.errors import ArtifactOutsideRepoError, ContractError
from superloop_ops.journal.locks import KeyedLocks

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_TIMEOUT_SECONDS",
    "DEFAULT_REQUEST_READ_SECONDS",
    "ControlRun",
    "ServiceConfig",
    "SpriteServiceServer",
    "build_server",
    "is_loopback_host",
    "is_safe_loop_id",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_REQUEST_READ_SECONDS = 10.0
"""Total time a client has to send its request line, headers and body."""
DEFAULT_MAX_TIMEOUT_SECONDS = 600
"""The longest confirmation window (``timeoutSeconds``) a control request may ask for."""
_WRITE_TIMEOUT_SECONDS = 30.0


class SnapshotFetcher(Protocol):
    def __call__(self, repo: Path, loop_id: str, *, trace_id: str | None, now: dt.datetime) -> JsonObject: ...


class EventBatchLike(Protocol):
    @property
    def events(self) -> Sequence[Any]: ...

    @property
    def offset_after(self) -> int: ...

    @property
    def line_count(self) -> int: ...


class EventsFetcher(Protocol):
    def __call__(
        self,
        repo: Path,
        loop_id: str,
        *,
        offset: int,
        max_events: int = 0,
        trace_id: str | None,
        now: dt.datetime,
    ) -> EventBatchLike: ...


@dataclasses.dataclass(frozen=True)
class ControlRun:
    """The outcome of one in-process control run: exit code, intents row, diagnostics."""

    exit_code: int
    result: JsonObject | None
    stderr: str = ""


class ControlRunner(Protocol):
    def __call__(self, request: control_rules.ServiceControlRequest) -> ControlRun: ...


class IdempotencyStore(Protocol):
    def get(self, loop_id: str, key: str) -> JsonObject | None: ...

    def put(self, loop_id: str, key: str, response: JsonObject) -> None: ...


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    repo: Path
    fetch_snapshot: SnapshotFetcher
    fetch_events: EventsFetcher
    run_control: ControlRunner
    store: IdempotencyStore
    now_fn: Callable[[], dt.datetime]
    token: str = dataclasses.field(default="", repr=False)
    default_by: str = "ops-service"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    request_read_seconds: float = DEFAULT_REQUEST_READ_SECONDS
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS


def is_safe_loop_id(loop_id: str) -> bool:
    """Re-exported from the core so callers of the server need not reach into it."""
    return control_rules.is_safe_loop_id(loop_id)


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _DeadlineSocketReader(io.RawIOBase):
    """A socket's receive side with one deadline for all reads (the request's total read time)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request read deadline exceeded")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


def _runtime_error(exc: ContractError, fallback: str) -> _HttpError:
    """A 502 for a runtime-side failure; a link out of the repository keeps its own reason code."""
    code = exc.reason_code if isinstance(exc, ArtifactOutsideRepoError) else "runtime_error"
    return _HttpError(502, code, str(exc) or fallback)


class SpriteServiceServer(ThreadingHTTPServer):
    """Bounded connections; ``server_close`` waits for requests in process, not for slow senders."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: ServiceConfig) -> None:
        self.config = config
        self.key_locks: KeyedLocks[tuple[str, str]] = KeyedLocks()
        self._slots = threading.BoundedSemaphore(max(1, config.max_connections))
        self._reading: set[socket.socket] = set()
        self._reading_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def begin_reading(self, sock: socket.socket) -> bool:
        """Register a connection that is sending its request; False once the server is closing."""
        with self._reading_lock:
            if self._closing:
                return False
            self._reading.add(sock)
            return True

    def end_reading(self, sock: socket.socket) -> None:
        with self._reading_lock:
            self._reading.discard(sock)

    def server_close(self) -> None:
        with self._reading_lock:
            self._closing = True
            reading = list(self._reading)
        for sock in reading:  # their handlers see end-of-stream and finish at once
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().server_close()


def _refuse_busy(sock: socket.socket) -> None:
    body = dumps_compact(
        {"ok": False, "error": {"code": "too_many_connections", "message": "server busy, retry later"}}
    ).encode("utf-8")
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode("ascii") + body)
    except OSError:
        pass


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_server(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8787) -> SpriteServiceServer:
    """Bind (port 0 picks a free port); the caller runs ``serve_forever`` and ``shutdown``.

    ``ContractError`` when there is no token and ``host`` is not a loopback address.
    """
    if not config.token and not is_loopback_host(host):
        raise ContractError(f"refusing to bind non-loopback address {host} without a token")
    return SpriteServiceServer((host, port), config)


class _Handler(BaseHTTPRequestHandler):
    server: SpriteServiceServer
    server_version = "SuperloopOpsSpriteService/1"
    # One request per connection (as the reference): no idle keep-alive threads to wait for.
    protocol_version = "HTTP/1.0"
    _reader: _DeadlineSocketReader

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + self.server.config.request_read_seconds
        self._reader = _DeadlineSocketReader(self.connection, deadline)
        self.rfile = io.BufferedReader(self._reader)
        if not self.server.begin_reading(self.connection):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self.server.end_reading(self.connection)
        super().finish()

    def _request_read(self) -> None:
        """The whole request has been read: processing must not be cut off by shutdown."""
        self.server.end_reading(self.connection)
        self.connection.settimeout(_WRITE_TIMEOUT_SECONDS)

    @property
    def cfg(self) -> ServiceConfig:
        return self.server.config

    # -- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: Any) -> None:
        body = dumps_compact(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error_body(self, status: int, code: str, message: str) -> None:
        self._send(status, {"ok": False, "error": {"code": code, "message": message}})

    def _authorized(self) -> bool:
        token = self.cfg.token
        if not token:
            return True
        expected = token.encode("utf-8")
        auth = self.headers.get("Authorization", "") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        x_token = self.headers.get("X-Ops-Token", "") or ""
        bearer_ok = hmac.compare_digest(bearer.encode("utf-8"), expected)
        header_ok = hmac.compare_digest(x_token.encode("utf-8"), expected)
        return bearer_ok or header_ok

    def _trace_id(self) -> str:
        return (self.headers.get("X-Trace-Id", "") or "").strip()

    def _dispatch(self, route: Callable[[], None]) -> None:
        if not self._authorized():
            # The body of an unauthenticated request is never read (one request per connection).
            self.close_connection = True
            self._request_read()
            self._send_error_body(401, "unauthorized", "missing or invalid token")
            return
        try:
            route()
        except _HttpError as exc:
            self._request_read()
            self._send_error_body(exc.status, exc.code, exc.message)
        except TimeoutError:
            self.close_connection = True
            self._request_read()
            self._send_error_body(408, "request_timeout", "request not received within the deadline")
        except Exception:
            logger.exception("sprite service request failed: %s %s", self.command, urlsplit(self.path).path)
            self._send_error_body(500, "internal_error", "internal server error")

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None or raw.strip() == "":
            return 0
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            # The body's extent is unknown: this connection cannot carry another request.
            self.close_connection = True
            raise _HttpError(400, "invalid_request", "invalid Content-Length")
        return value

    # -- methods --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(self._route_get)

    def do_POST(self) -> None:
        self._dispatch(self._route_post)

    def _route_get(self) -> None:
        self._request_read()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path == "/healthz":
            self._send(200, {"ok": True})
        elif parts.path == "/ops/snapshot":
            self._snapshot(query)
        elif parts.path == "/ops/events":
            self._events(query)
        else:
            raise _HttpError(404, "not_found", "endpoint not found")

    def _route_post(self) -> None:
        if urlsplit(self.path).path != "/ops/control":
            self.close_connection = True  # the body is not read
            raise _HttpError(404, "not_found", "endpoint not found")
        self._control()

    # -- endpoints ------------------------------------------------------------------------

    @staticmethod
    def _loop_id(query: dict[str, list[str]]) -> str:
        values = query.get("loopId", [])
        loop_id = values[0] if values else ""
        if not loop_id:
            raise _HttpError(400, "invalid_request", "loopId is required")
        if not is_safe_loop_id(loop_id):
            raise _HttpError(400, "invalid_request", "loopId is invalid")
        return loop_id

    @staticmethod
    def _query_int(query: dict[str, list[str]], key: str) -> int:
        values = query.get(key, [])
        if not values:
            return 0
        try:
            value = int(values[0])
        except ValueError:
            raise _HttpError(400, "invalid_request", f"query parameter '{key}' must be an integer") from None
        if value < 0:
            raise _HttpError(400, "invalid_request", f"query parameter '{key}' must be >= 0")
        return value

    def _snapshot(self, query: dict[str, list[str]]) -> None:
        loop_id = self._loop_id(query)
        trace_id = self._trace_id()
        try:
            snapshot = self.cfg.fetch_snapshot(
                self.cfg.repo, loop_id, trace_id=trace_id or None, now=self.cfg.now_fn()
            )
        except ContractError as exc:
            raise _runtime_error(exc, "snapshot command failed") from None
        if trace_id and "traceId" not in snapshot:
            snapshot = {**snapshot, "traceId": trace_id}
        self._send(200, snapshot)

    def _events(self, query: dict[str, list[str]]) -> None:
        loop_id = self._loop_id(query)
        trace_id = self._trace_id()
        cursor = self._query_int(query, "cursor")
        max_events = self._query_int(query, "maxEvents")
        now = self.cfg.now_fn()
        try:
            batch = self.cfg.fetch_events(
                self.cfg.repo,
                loop_id,
                offset=cursor,
                max_events=max_events,
                trace_id=trace_id or None,
                now=now,
            )
        except ContractError as exc:
            raise _runtime_error(exc, "event poll command failed") from None
        response = prune_nulls(
            {
                "ok": True,
                "schemaVersion": "v1",
                "traceId": trace_id or None,
                "source": {"repoPath": str(self.cfg.repo), "loopId": loop_id},
                "events": [event for event in batch.events if isinstance(event, dict)],
                "cursor": {
                    "eventLineOffset": batch.offset_after,
                    "eventLineCount": batch.line_count,
                    "updatedAt": format_ts(now),
                },
            }
        )
        self._send(200, response)

    def _read_json_body(self) -> Any:
        length = self._content_length()
        if length > self.cfg.max_body_bytes:
            self.close_connection = True
            raise _HttpError(413, "payload_too_large", "request body too large")
        raw = self.rfile.read(length) if length > 0 else b"{}"
        if len(raw) < length:
            raise _HttpError(400, "invalid_request", "request body shorter than Content-Length")
        self._request_read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _HttpError(400, "invalid_json", "request body must be valid JSON") from None

    def _control(self) -> None:
        payload = self._read_json_body()
        try:
            request = control_rules.parse_service_control_request(
                payload,
                header_idempotency_key=self.headers.get("X-Idempotency-Key", "") or "",
                header_trace_id=self._trace_id(),
                default_by=self.cfg.default_by,
            )
        except control_rules.ServiceRequestError as exc:
            raise _HttpError(400, exc.code, exc.message) from None
        if not is_safe_loop_id(request.loop_id):
            raise _HttpError(400, "invalid_request", "loopId is invalid")
        limit = self.cfg.max_timeout_seconds
        if request.timeout_seconds is not None and request.timeout_seconds > limit:
            raise _HttpError(400, "invalid_request", f"timeoutSeconds must be at most {limit}")
        key = request.idempotency_key
        if not key:
            status, response = self._run(request)
            self._send(status, response)
            return
        fingerprint = control_rules.build_request_fingerprint(
            loop_id=request.loop_id, intent=request.intent, by=request.by, note=request.note
        )
        with self.server.key_locks.hold((request.loop_id, key)):
            stored = self.cfg.store.get(request.loop_id, key)
            if stored is not None:
                conflict = control_rules.compute_key_conflict(key, stored, fingerprint)
                if conflict:
                    raise _HttpError(409, "idempotency_key_conflict", conflict)
                replay = control_rules.build_service_replay_response(stored, trace_id=request.trace_id)
                self._send(200, replay)
                return
            status, response = self._run(request)
            self.cfg.store.put(
                request.loop_id,
                key,
                control_rules.build_service_store_entry(response, fingerprint=fingerprint),
            )
        self._send(status, response)

    def _run(self, request: control_rules.ServiceControlRequest) -> tuple[int, JsonObject]:
        run = self.cfg.run_control(request)
        response = control_rules.build_service_control_response(
            exit_code=run.exit_code,
            result=run.result,
            stderr=control_rules.tail_lines(run.stderr, skip_blank=True),
            trace_id=request.trace_id,
        )
        return control_rules.compute_service_http_status(run.exit_code), response
