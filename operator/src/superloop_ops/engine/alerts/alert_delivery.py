"""Alert shell: load the sink catalog, and dispatch new escalations to HTTP sinks with httpx.

The decisions live in ``core.alerts.sink_catalog`` and ``core.alerts.dispatch_plan``; this module reads the
escalations file, performs the requests (per-sink timeout, bounded retries with back-off),
and checkpoints every sink outcome into ``alert-dispatch-state.json`` *before* it moves the cursor,
so a crash or restart re-sends only to sinks that have not accepted an escalation yet (each
request carries a stable dedupe key, so a receiver can drop the rare duplicate of a crash between
its answer and our checkpoint). Secrets come from a mapping (env in local mode, Secret values
in the operator) and are never logged or written.

Time is bounded twice. A sink's ``timeoutSeconds`` is the *total* time of one request: httpx's
timeouts apply per read, so a sink trickling a byte every few seconds would never trip them; a
timer shuts the request's socket down at the deadline. And a dispatch run has a budget
(``run_budget_seconds``): once it is spent, the remaining deliveries are deferred (pending, retried
by a later run), so a Loop pass is never held up by its sinks beyond that budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from superloop_ops.core.alerts import dispatch_plan, sink_catalog
from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact
from superloop_ops.engine.loop.tuning_pass import shipped_config_path
from superloop_ops.errors import ContractError
from superloop_ops.journal import files, layout

__all__ = [
    "ALERT_SINKS_CATALOG_NAME",
    "AlertDispatcher",
    "DispatchPaths",
    "DispatchSettings",
    "describe_dispatch_failure",
    "fetch_sink_catalog",
    "resolve_alert_sinks_path",
    "resolve_trace_id",
    "run_alert_dispatch_step",
]

ALERT_SINKS_CATALOG_NAME = "ops-manager-alert-sinks.v1.json"

_log = logging.getLogger(__name__)
_DEADLINE_GRACE_SECONDS = 0.25


def resolve_alert_sinks_path(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--config-file`` > ``OPS_MANAGER_ALERT_SINKS_FILE`` > the shipped catalog."""
    environ = os.environ if env is None else env
    return (
        explicit
        or environ.get("OPS_MANAGER_ALERT_SINKS_FILE")
        or str(shipped_config_path(ALERT_SINKS_CATALOG_NAME))
    )


def describe_dispatch_failure(exc: BaseException, secret_values: Iterable[str]) -> str:
    """The text recorded for a dispatch run that failed: a contract error as the CLI prints it,
    anything else by its type; every non-empty secret value is masked."""
    message = f"error: {exc}" if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
    return dispatch_plan.redact_secrets(message, list(secret_values))


def resolve_trace_id(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--trace-id`` > ``OPS_MANAGER_TRACE_ID`` > a fresh lower-case uuid4."""
    environ = os.environ if env is None else env
    return explicit or environ.get("OPS_MANAGER_TRACE_ID") or str(uuid.uuid4())


def fetch_sink_catalog(path: str) -> sink_catalog.SinkCatalog:
    """Stages 1-5 of catalog validation (missing file, bad JSON, then the core's stages)."""
    source = Path(path)
    if not source.is_file():
        raise ContractError(f"alert sink config file not found: {path}")
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ContractError(f"invalid alert sink config JSON: {path}") from None
    return sink_catalog.build_sink_catalog(raw)


@dataclass(frozen=True)
class DispatchSettings:
    """Delivery tuning: in-run retries per sink, and back-off between runs for pending rows."""

    retries: int = 2
    backoff_seconds: float = 0.5
    backoff_factor: float = 2.0
    retry_interval_seconds: float = 30.0
    max_retry_interval_seconds: float = 900.0
    max_escalations: int = 0
    pagerduty_url: str = dispatch_plan.DEFAULT_PAGERDUTY_URL
    run_budget_seconds: float = 20.0
    """Wall time one dispatch run may spend on requests and back-off; the rest waits for the next run."""


@dataclass(frozen=True)
class DispatchPaths:
    repo: Path
    escalations_file: Path
    state_file: Path
    telemetry_file: Path

    @classmethod
    def for_loop(cls, repo: Path, loop_id: str) -> DispatchPaths:
        ops_dir = layout.loop_ops_dir(repo, loop_id)
        return cls(
            repo=repo,
            escalations_file=ops_dir / "escalations.jsonl",
            state_file=ops_dir / "alert-dispatch-state.json",
            telemetry_file=ops_dir / "telemetry" / "alerts.jsonl",
        )


# The operator dispatches on every reconcile pass while escalations.jsonl only grows; a
# per-process memo of where the cursor's line ends lets a pass read just the new tail.
_VERIFY_WINDOW = 4096
_MEMO_LIMIT = 1024


@dataclass(frozen=True)
class _LogPosition:
    """Complete line ``line`` of a log ends at ``byte``; the file is recognised by its identity
    and by the digest of the bytes just before ``byte`` (a rewrite falls back to a full read)."""

    line: int
    byte: int
    file_id: tuple[int, int]
    before_sha256: str


class _PositionMemo:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, _LogPosition] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> _LogPosition | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, entry: _LogPosition) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > _MEMO_LIMIT:
                self._entries.popitem(last=False)


_POSITIONS = _PositionMemo()


def _window_digest(data: bytes, data_start: int, end: int) -> str:
    start = max(0, end - _VERIFY_WINDOW)
    return hashlib.sha256(data[start - data_start : end - data_start]).hexdigest()


@dataclass(frozen=True)
class _EscalationLog:
    """The complete lines of a log after line ``base_line`` (a half-written last row waits)."""

    key: str
    file_id: tuple[int, int]
    data: bytes
    data_start: int
    base_line: int
    base_byte: int
    lines: tuple[str, ...]
    ends: tuple[int, ...]

    @property
    def line_count(self) -> int:
        return self.base_line + len(self.lines)

    def line(self, number: int) -> str:
        return self.lines[number - self.base_line - 1]

    def remember(self, line: int) -> None:
        """Let the next run in this process start after ``line``."""
        if not self.base_line <= line <= self.line_count:
            return
        byte = self.base_byte if line == self.base_line else self.ends[line - self.base_line - 1]
        digest = _window_digest(self.data, self.data_start, byte)
        _POSITIONS.put(self.key, _LogPosition(line, byte, self.file_id, digest))


def _read_escalation_log(path: Path, offset: int) -> _EscalationLog:
    """Read the log whole, or only past ``offset`` when this process saw the file there."""
    key = str(path)
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        file_id = (stat.st_dev, stat.st_ino)
        known = _POSITIONS.get(key)
        base_line = base_byte = data_start = 0
        data: bytes | None = None
        if (
            known is not None
            and known.line == offset
            and known.file_id == file_id
            and stat.st_size >= known.byte
        ):
            data_start = max(0, known.byte - _VERIFY_WINDOW)
            handle.seek(data_start)
            data = handle.read()
            if _window_digest(data, data_start, known.byte) == known.before_sha256:
                base_line, base_byte = known.line, known.byte
            else:
                data = None
        if data is None:
            handle.seek(0)
            data_start = 0
            data = handle.read()
    body = data[base_byte - data_start :]
    end = body.rfind(b"\n")
    raw_lines = body[:end].split(b"\n") if end >= 0 else []
    ends: list[int] = []
    position = base_byte
    for raw in raw_lines:
        position += len(raw) + 1
        ends.append(position)
    return _EscalationLog(
        key=key,
        file_id=file_id,
        data=data,
        data_start=data_start,
        base_line=base_line,
        base_byte=base_byte,
        lines=tuple(raw.decode("utf-8", errors="replace") for raw in raw_lines),
        ends=tuple(ends),
    )


@dataclass
class AlertDispatcher:
    """One dispatch run over a loop's escalations (a new instance per run, or after a restart)."""

    paths: DispatchPaths
    loop_id: str
    trace_id: str
    catalog_path: str
    secrets: Mapping[str, str]
    transport: httpx.BaseTransport | None = None
    settings: DispatchSettings = field(default_factory=DispatchSettings)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC).replace(microsecond=0)
    sleep: Callable[[float], None] = time.sleep
    catalog: sink_catalog.SinkCatalog | None = None
    """An already-validated catalog (operator: from the Loop spec); else ``catalog_path`` is read."""
    _unavailable: dict[str, JsonObject] = field(default_factory=dict, init=False, repr=False)
    _run_deadline: float = field(default=0.0, init=False, repr=False)

    def run(self) -> JsonObject:
        """Dispatch what is new or still pending; returns (and writes) the dispatch state."""
        paths = self.paths
        paths.state_file.parent.mkdir(parents=True, exist_ok=True)
        paths.telemetry_file.parent.mkdir(parents=True, exist_ok=True)
        previous = self._read_previous_state()
        cursor = dispatch_plan.parse_dispatch_state(previous)
        if not paths.escalations_file.is_file():
            return self._finish(
                "no_source",
                dispatch_plan.DispatchCounters(),
                dispatch_plan.DispatchCursor(cursor.offset, {}),
                cursor.offset,
            )
        log = _read_escalation_log(paths.escalations_file, cursor.offset)
        if cursor.offset > log.line_count:
            raise ContractError(
                f"dispatch state offset is ahead of escalation file: {cursor.offset} > {log.line_count}"
            )
        if cursor.offset == log.line_count:
            log.remember(cursor.offset)
            return self._finish(
                "no_new_escalations", dispatch_plan.DispatchCounters(), cursor, log.line_count
            )
        catalog = self.catalog or fetch_sink_catalog(self.catalog_path)
        self._unavailable = {}
        self._run_deadline = time.monotonic() + self.settings.run_budget_seconds
        counters = dispatch_plan.DispatchCounters()
        ledger = dict(cursor.ledger)
        now = self.now()
        # No keep-alive: every request opens its own connection, whose socket the deadline can close.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(transport=self.transport, follow_redirects=False, limits=limits) as client:
            for number in range(cursor.offset + 1, log.line_count + 1):
                if 0 < self.settings.max_escalations <= counters.processed:
                    break
                text = log.line(number)
                fingerprint = dispatch_plan.compute_fingerprint(text)
                entry = ledger.get(number)
                if entry is not None and entry.fingerprint != fingerprint:
                    entry = None  # the file was rewritten under us: treat the row as new
                if entry is not None and (entry.complete or not dispatch_plan.is_due(entry, now)):
                    continue
                decision = dispatch_plan.plan_row(
                    text,
                    number,
                    loop_id=self.loop_id,
                    trace_id=self.trace_id,
                    catalog=catalog,
                    source_file=self.catalog_path,
                    env=self.secrets,
                    now=self.now(),
                )
                key = dispatch_plan.compute_escalation_key(self.loop_id, number, text)
                if isinstance(decision, dispatch_plan.RowTerminal):
                    if decision.telemetry is not None:
                        files.append_jsonl(paths.telemetry_file, [decision.telemetry])
                    counters = (
                        counters.add_skipped()
                        if decision.counter == "skipped"
                        else counters.add_failed(decision.reason_code)
                    )
                    ledger[number] = dispatch_plan.LedgerEntry(number, fingerprint, key, complete=True)
                    continue
                entry = entry or dispatch_plan.LedgerEntry(number, fingerprint, key)
                entry, counters = self._deliver_row(client, decision, entry, ledger, previous, counters)
                ledger[number] = entry
        final = dispatch_plan.compute_advanced_cursor(dispatch_plan.DispatchCursor(cursor.offset, ledger))
        state = self._finish(dispatch_plan.compute_run_status(counters), counters, final, log.line_count)
        log.remember(final.offset)
        return state

    # -- internals

    def _read_previous_state(self) -> Any:
        path = self.paths.state_file
        if not path.is_file():
            return {}
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise ContractError(f"invalid dispatch state JSON: {path}") from None

    def _finish(
        self,
        status: str,
        counters: dispatch_plan.DispatchCounters,
        cursor: dispatch_plan.DispatchCursor,
        line_count: int,
    ) -> JsonObject:
        state = dispatch_plan.build_dispatch_state(
            status=status,
            counters=counters,
            cursor=cursor,
            line_count=line_count,
            loop_id=self.loop_id,
            trace_id=self.trace_id,
            escalations_file=str(self.paths.escalations_file),
            telemetry_file=str(self.paths.telemetry_file),
            now=self.now(),
        )
        files.write_json_if_changed(self.paths.state_file, state)
        return state

    def _checkpoint(
        self, previous: Any, ledger: Mapping[int, dispatch_plan.LedgerEntry], offset: int
    ) -> None:
        interim = dispatch_plan.build_interim_state(
            previous, dispatch_plan.DispatchCursor(offset, ledger), loop_id=self.loop_id, now=self.now()
        )
        files.write_json_atomic(self.paths.state_file, interim)

    def _deliver_row(
        self,
        client: httpx.Client,
        delivery: dispatch_plan.RowDelivery,
        entry: dispatch_plan.LedgerEntry,
        ledger: dict[int, dispatch_plan.LedgerEntry],
        previous: Any,
        counters: dispatch_plan.DispatchCounters,
    ) -> tuple[dispatch_plan.LedgerEntry, dispatch_plan.DispatchCounters]:
        offset = dispatch_plan.parse_dispatch_state(previous).offset
        dispositions: dict[str, dispatch_plan.SinkDisposition] = dict(entry.sinks)
        routed_ids = [str(sink.get("id")) for sink in delivery.sinks]
        results: list[JsonObject] = []
        for sink in delivery.sinks:
            sink_id = str(sink.get("id") or "unknown")
            if dispositions.get(sink_id) in ("delivered", "failed"):
                continue  # already accepted (or refused for good) in an earlier run
            earlier = self._unavailable.get(sink_id)
            if earlier is not None:
                # One outage costs one round of timeouts per run, not one per backlog row.
                result = {**earlier, "message": "deferred: sink unavailable earlier in this run"}
            else:
                result = self._send(client, sink, delivery)
            dispositions[sink_id] = dispatch_plan.compute_sink_disposition(result)
            if dispositions[sink_id] == "pending" and result.get("reasonCode") != "missing_secret":
                self._unavailable.setdefault(sink_id, result)
            results.append({"id": sink_id, "type": sink.get("type") or "unknown", **result})
            entry = replace(entry, sinks=dict(dispositions))
            ledger[entry.line] = entry
            self._checkpoint(previous, ledger, offset)
        pending = [sink_id for sink_id in routed_ids if dispositions.get(sink_id) == "pending"]
        attempts = entry.attempts + 1
        now = self.now()
        entry = replace(
            entry,
            sinks={sink_id: dispositions[sink_id] for sink_id in routed_ids if sink_id in dispositions},
            complete=not pending,
            attempts=attempts,
            next_attempt_at=dispatch_plan.compute_next_attempt_at(
                attempts,
                now,
                base_seconds=self.settings.retry_interval_seconds,
                cap_seconds=self.settings.max_retry_interval_seconds,
            )
            if pending
            else None,
        )
        if not results:
            return entry, counters
        row = dispatch_plan.build_delivery_telemetry(delivery, results, pending_sink_ids=pending, now=now)
        files.append_jsonl(self.paths.telemetry_file, [row])
        status, _ = dispatch_plan.compute_row_outcome(results)
        return entry, counters.add_delivery(status, results)

    def _send(
        self, client: httpx.Client, sink: Mapping[str, Any], delivery: dispatch_plan.RowDelivery
    ) -> JsonObject:
        request = dispatch_plan.build_sink_request(
            sink,
            delivery,
            self.secrets,
            repo_path=str(self.paths.repo),
            now=self.now(),
            pagerduty_url=self.settings.pagerduty_url,
        )
        if not isinstance(request, dispatch_plan.SinkRequest):
            return request
        delay = self.settings.backoff_seconds
        result: JsonObject = {}
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.sleep(min(delay, max(0.0, self._budget_left())))
                delay *= self.settings.backoff_factor
            if self._budget_left() <= 0:
                spent = f"deferred: dispatch run budget ({self.settings.run_budget_seconds}s) spent"
                return dispatch_plan.classify_request_error(spent)
            result = self._post(client, request)
            if dispatch_plan.compute_sink_disposition(result) != "pending":
                break
        return result

    def _budget_left(self) -> float:
        return self._run_deadline - time.monotonic()

    def _post(self, client: httpx.Client, request: dispatch_plan.SinkRequest) -> JsonObject:
        total = max(0.001, min(float(request.timeout_seconds), self._budget_left()))
        deadline = _RequestDeadline(total)
        try:
            with deadline:
                response = client.post(
                    request.url,
                    content=dumps_compact(request.body).encode("utf-8"),
                    headers=list(request.headers),
                    timeout=httpx.Timeout(total),
                    extensions={"trace": deadline.trace},
                )
        except httpx.HTTPError as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if deadline.expired:
                text = f"deadline of {total:g}s exceeded ({text})"
            _log.info("alert sink request failed: %s", type(exc).__name__)
            return dispatch_plan.classify_request_error(text, request.secrets)
        return dispatch_plan.classify_response(response.status_code, response.text, request.secrets)


class _RequestDeadline:
    """Shuts a request's socket down when its total time is up (httpx only bounds each read)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self.expired = False

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self.expired:
                self._cut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._cut()

    def _cut(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _RequestDeadline:
        # A little after httpx's own timeout, which names the phase (connect, read) when it fires.
        self._timer = threading.Timer(self._seconds + _DEADLINE_GRACE_SECONDS, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


def run_alert_dispatch_step(
    ops_dir: Path,
    loop_id: str,
    *,
    sinks_config: str | Path | Mapping[str, Any] | None,
    secrets: Mapping[str, str],
    now: dt.datetime,
    trace_id: str,
    transport: httpx.BaseTransport | None = None,
    settings: DispatchSettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    repo: Path | None = None,
    state_file: Path | None = None,
    telemetry_file: Path | None = None,
    escalations_file: Path | None = None,
) -> JsonObject:
    """Reconcile step 14. Never raises: a run that cannot complete returns a ``failed_command``
    summary and appends the ``alert_dispatch_failed`` row; the dispatch state keeps its content.

    ``sinks_config`` is a catalog path, an inline catalog mapping, or None (then
    ``OPS_MANAGER_ALERT_SINKS_FILE``, else the shipped catalog). ``secrets`` maps the catalog's
    env names to values (``os.environ`` in local mode, Secret data in the operator). The file
    arguments override the default paths (``--alert-dispatch-state-file``...).
    """
    repo_path = repo or ops_dir.parents[2]
    paths = DispatchPaths(
        repo=repo_path,
        escalations_file=escalations_file or ops_dir / "escalations.jsonl",
        state_file=state_file or ops_dir / "alert-dispatch-state.json",
        telemetry_file=telemetry_file or ops_dir / "telemetry" / "alerts.jsonl",
    )
    inline = sinks_config if isinstance(sinks_config, Mapping) else None
    if inline is not None:
        catalog_path = "<inline>"
    else:
        catalog_path = str(sinks_config) if sinks_config else resolve_alert_sinks_path(None)
    dispatcher = AlertDispatcher(
        paths=paths,
        loop_id=loop_id,
        trace_id=trace_id,
        catalog_path=catalog_path,
        secrets=secrets,
        transport=transport,
        settings=settings or DispatchSettings(),
        now=lambda: now,
        sleep=sleep,
    )
    try:
        if inline is not None:
            dispatcher.catalog = sink_catalog.build_sink_catalog(dict(inline))
        return dispatcher.run()
    except Exception as exc:  # alerting must never change reconcile's outcome
        message = describe_dispatch_failure(exc, secrets.values())
        row = dispatch_plan.build_failed_command_row(
            loop_id=loop_id, trace_id=trace_id, message=message, now=now
        )
        try:
            files.append_jsonl(paths.telemetry_file, [row])
        except OSError:
            _log.warning("could not record alert dispatch failure for loop %s", loop_id)
        return {"status": "failed_command", "reasonCode": "alert_dispatch_failed", "message": message}
