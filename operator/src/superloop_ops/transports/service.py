"""Sprite-service HTTP client (manager side, §9.6), synchronous httpx.

Retry policy (documented divergence from the reference, see docs/divergences.md):

* statuses 408, 409, 425, 429, 500, 502, 503, 504 are transient, as in the reference;
* connection failures and timeouts (reported as code ``"000"``) are transient too; the
  reference curl client failed on them at once;
* a transient failure with attempts left sleeps ``backoff x attempt`` seconds (linear) and retries;
* ``POST /ops/control`` is retried **only** when it carries an idempotency key: without one a
  retry could run the runtime command twice;
* 401 and every other status fail at once.

The token goes into ``Authorization: Bearer`` and ``X-Ops-Token`` headers only; it never
appears in an exception message or a log line. Nor do credentials in the base URL: messages
and recorded commands name ``display_url`` (no userinfo, no query).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact

__all__ = [
    "TRANSIENT_STATUSES",
    "ServiceClient",
    "ServiceError",
    "ServiceResponseInvalidError",
]

TRANSIENT_STATUSES: Final = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
CONNECTION_FAILURE: Final = "000"
# Slack added to the service's confirmation window so the client never gives up first (§8.4).
_CONTROL_TIMEOUT_MARGIN: Final = 15.0


class ServiceError(Exception):
    """A request that did not yield a 2xx JSON object; ``code`` is the HTTP status or ``"000"``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServiceResponseInvalidError(ServiceError):
    """A 2xx answer whose body is not a JSON object (reconcile maps it to ``service_response_invalid``)."""


def _excerpt(text: str, limit: int = 40) -> str:
    lines = [line.rstrip("\r") for line in text.splitlines()]
    return "\n".join(lines[-limit:])


class ServiceClient:
    """One sprite service; safe to share between threads (httpx.Client is thread-safe)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        retry_attempts: int = 3,
        retry_backoff_seconds: float = 1.0,
        connect_timeout: float = 5.0,
        max_time: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url:
            raise ValueError("service base URL is required")
        if retry_attempts < 1:
            raise ValueError("retry attempts must be >= 1")
        if retry_backoff_seconds < 0 or connect_timeout < 0 or max_time < 0:
            raise ValueError("timeout/backoff values must be non-negative")
        self.base_url = base_url[:-1] if base_url.endswith("/") else base_url
        parts = urlsplit(self.base_url)
        host = parts.netloc.rpartition("@")[2]
        self.display_url = urlunsplit((parts.scheme, host, parts.path, "", ""))
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.connect_timeout = connect_timeout
        self.max_time = max_time
        self._token = token or None
        self._sleep = sleep
        self._client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)

    def __repr__(self) -> str:  # never show the token
        return f"ServiceClient(base_url={self.display_url!r}, token={'***' if self._token else None})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------

    def fetch_snapshot(self, loop_id: str, *, trace_id: str | None) -> JsonObject:
        _, body = self._request("GET", "/ops/snapshot", params={"loopId": loop_id}, trace_id=trace_id)
        return body

    def fetch_events(self, loop_id: str, *, cursor: int, max_events: int, trace_id: str | None) -> JsonObject:
        params = {"loopId": loop_id, "cursor": str(cursor), "maxEvents": str(max_events)}
        _, body = self._request("GET", "/ops/events", params=params, trace_id=trace_id)
        return body

    def post_control(
        self, body: JsonObject, *, trace_id: str | None, idempotency_key: str | None
    ) -> tuple[int, JsonObject]:
        """POST /ops/control; retried only with an idempotency key (the service replays it)."""
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["X-Idempotency-Key"] = idempotency_key
        confirm_window = body.get("timeoutSeconds")
        read_timeout = self.max_time
        if isinstance(confirm_window, int) and not isinstance(confirm_window, bool):
            read_timeout = max(read_timeout, confirm_window + _CONTROL_TIMEOUT_MARGIN)
        return self._request(
            "POST",
            "/ops/control",
            content=dumps_compact(body).encode("utf-8"),
            extra_headers=headers,
            trace_id=trace_id,
            retry=bool(idempotency_key),
            read_timeout=read_timeout,
        )

    # -- internals ------------------------------------------------------------------------

    def _headers(self, trace_id: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
            headers["X-Ops-Token"] = self._token
        if trace_id:
            headers["X-Trace-Id"] = trace_id
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        extra_headers: dict[str, str] | None = None,
        trace_id: str | None,
        retry: bool = True,
        read_timeout: float | None = None,
    ) -> tuple[int, JsonObject]:
        url = self.base_url + path
        shown = self.display_url + path
        headers = self._headers(trace_id)
        headers.update(extra_headers or {})
        total = read_timeout if read_timeout is not None else self.max_time
        timeout = httpx.Timeout(total, connect=self.connect_timeout)
        attempts = self.retry_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            code, text = self._attempt(method, url, params, content, headers, timeout)
            if code.startswith("2") and len(code) == 3:
                return int(code), self._parse(method, shown, code, text)
            transient = code == CONNECTION_FAILURE or int(code) in TRANSIENT_STATUSES
            if attempt < attempts and transient:
                delay = self.retry_backoff_seconds * attempt
                if delay > 0:
                    self._sleep(delay)
                continue
            raise ServiceError(
                code, f"service request failed (method={method} url={shown} code={code}): {_excerpt(text)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> tuple[str, str]:
        try:
            response = self._client.request(
                method, url, params=params, content=content, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException:
            return CONNECTION_FAILURE, "request timed out"
        except httpx.TransportError as exc:
            # The exception text names the host and the OS error, never request headers.
            return CONNECTION_FAILURE, f"connection failed: {type(exc).__name__}"
        return str(response.status_code), response.text

    @staticmethod
    def _parse(method: str, url: str, code: str, text: str) -> JsonObject:
        try:
            parsed: Any = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ServiceResponseInvalidError(
                code, f"service response was not a JSON object (method={method} url={url} code={code})"
            )
        return parsed
