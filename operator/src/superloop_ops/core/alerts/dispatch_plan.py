"""Alert dispatch planning: escalation cursor, per-row decisions, sink payloads, run summary.

Pure: the shell (``engine.alerts.alert_delivery``) reads the escalations file, asks this module
what to do with each row, performs the HTTP requests it describes, and writes the documents built here.

Delivery is at-least-once with a per-sink ledger. ``escalationsLineOffset`` is a low-water mark:
every row before it is *complete* (each routed sink delivered or permanently failed). Rows after
it that were already tried live in ``deliveryLedger`` with each sink's outcome, so a retry (next
run, or a restarted process) sends only to the sinks that have not accepted the alert yet, and a
sink outage never holds back other sinks or later rows. The reference moved its cursor past
every row whatever the outcome; see docs/divergences.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from superloop_ops.core.alerts.sink_catalog import (
    DEFAULT_RESOLVE_AFTER_SECONDS,
    SEVERITY_RANKS,
    SinkCatalog,
    build_route_resolution,
    is_secret_set,
)
from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact, format_ts, parse_ts, prune_nulls
from superloop_ops.errors import ContractError

__all__ = [
    "DEFAULT_PAGERDUTY_URL",
    "DispatchCounters",
    "DispatchCursor",
    "EscalationContext",
    "LedgerEntry",
    "RowDelivery",
    "RowTerminal",
    "SinkRequest",
    "build_delivery_telemetry",
    "build_dispatch_state",
    "build_failed_command_row",
    "build_interim_state",
    "build_pagerduty_payload",
    "build_sink_request",
    "build_slack_payload",
    "build_webhook_payload",
    "classify_request_error",
    "classify_response",
    "compute_advanced_cursor",
    "compute_escalation_key",
    "compute_fingerprint",
    "compute_next_attempt_at",
    "compute_row_outcome",
    "compute_run_status",
    "compute_secret_fragments",
    "compute_sink_disposition",
    "is_due",
    "parse_dispatch_state",
    "plan_row",
    "redact_secrets",
]

DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
MESSAGE_LIMIT = 300
_RETRYABLE_HTTP = frozenset({408, 425, 429})

SinkDisposition = Literal["delivered", "failed", "pending"]


# ---------------------------------------------------------------- cursor and ledger


@dataclass(frozen=True)
class LedgerEntry:
    """Progress of one escalation row past the cursor (``line`` is 1-based)."""

    line: int
    fingerprint: str
    escalation_key: str
    complete: bool = False
    attempts: int = 0
    next_attempt_at: str | None = None
    sinks: Mapping[str, SinkDisposition] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return prune_nulls(
            {
                "line": self.line,
                "fingerprint": self.fingerprint,
                "escalationKey": self.escalation_key,
                "complete": self.complete,
                "attempts": self.attempts,
                "nextAttemptAt": self.next_attempt_at,
                "sinks": dict(self.sinks),
            }
        )


@dataclass(frozen=True)
class DispatchCursor:
    offset: int
    ledger: Mapping[int, LedgerEntry]

    def ledger_json(self) -> list[JsonObject]:
        return [self.ledger[line].to_json() for line in sorted(self.ledger)]

    @property
    def pending_count(self) -> int:
        return sum(1 for entry in self.ledger.values() if not entry.complete)


def _non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_dispatch_state(previous: object) -> DispatchCursor:
    """Cursor and ledger from the previous state; malformed parts count as absent."""
    if not isinstance(previous, dict):
        return DispatchCursor(offset=0, ledger={})
    offset = _non_negative_int(previous.get("escalationsLineOffset")) or 0
    ledger: dict[int, LedgerEntry] = {}
    raw_ledger = previous.get("deliveryLedger")
    for item in raw_ledger if isinstance(raw_ledger, list) else []:
        if not isinstance(item, dict):
            continue
        line = _non_negative_int(item.get("line"))
        fingerprint = item.get("fingerprint")
        key = item.get("escalationKey")
        sinks = item.get("sinks")
        if line is None or line <= offset or not isinstance(fingerprint, str) or not isinstance(key, str):
            continue
        clean_sinks: dict[str, SinkDisposition] = {}
        for sink_id, disposition in (sinks if isinstance(sinks, dict) else {}).items():
            if disposition in ("delivered", "failed", "pending"):
                clean_sinks[sink_id] = disposition
        next_at = item.get("nextAttemptAt")
        ledger[line] = LedgerEntry(
            line=line,
            fingerprint=fingerprint,
            escalation_key=key,
            complete=item.get("complete") is True,
            attempts=_non_negative_int(item.get("attempts")) or 0,
            next_attempt_at=next_at if isinstance(next_at, str) else None,
            sinks=clean_sinks,
        )
    return DispatchCursor(offset=offset, ledger=ledger)


def compute_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def compute_escalation_key(loop_id: str, line: int, text: str) -> str:
    """Stable per escalation row: same row, same key, across runs and restarts."""
    digest = hashlib.sha256(f"{loop_id}\n{line}\n{text}".encode()).hexdigest()
    return digest[:32]


def compute_advanced_cursor(cursor: DispatchCursor) -> DispatchCursor:
    """Move the low-water mark over the contiguous run of complete rows and forget them."""
    offset = cursor.offset
    ledger = dict(cursor.ledger)
    while (offset + 1) in ledger and ledger[offset + 1].complete:
        offset += 1
        del ledger[offset]
    return DispatchCursor(offset=offset, ledger=ledger)


def compute_next_attempt_at(
    attempts: int, now: dt.datetime, *, base_seconds: float, cap_seconds: float
) -> str:
    """Exponential back-off between runs for a row some sink has not accepted yet."""
    delay = min(cap_seconds, base_seconds * (2 ** max(0, attempts - 1)))
    return format_ts(now + dt.timedelta(seconds=delay))


def is_due(entry: LedgerEntry | None, now: dt.datetime) -> bool:
    if entry is None or entry.next_attempt_at is None:
        return True
    due = parse_ts(entry.next_attempt_at)
    return due is None or due <= now


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class EscalationContext:
    """What every payload and telemetry row needs to know about one escalation."""

    escalation: JsonObject
    category: str
    timestamp: str
    loop_id: str
    trace_id: str
    dispatcher_loop_id: str
    dispatcher_trace_id: str
    escalation_key: str


@dataclass(frozen=True)
class RowTerminal:
    """A row decided without any HTTP: counted as ``skipped`` or ``failed``."""

    counter: Literal["skipped", "failed"]
    reason_code: str | None
    telemetry: JsonObject | None


@dataclass(frozen=True)
class RowDelivery:
    """A row to deliver to ``sinks`` (resolver ``dispatchableSinks`` entries)."""

    context: EscalationContext
    event_severity: str
    route: JsonObject
    sinks: tuple[JsonObject, ...]


def _head(ts: str, loop_id: str, trace_id: str) -> JsonObject:
    return {"timestamp": ts, "loopId": loop_id, "traceId": trace_id or None, "category": "alert_dispatch"}


def _excerpt(text: str) -> str | None:
    flat = text.replace("\r\n", " ").replace("\n", " ")[:MESSAGE_LIMIT]
    return flat or None


def _text(value: object) -> str:
    """A coalesced string field: missing/null/false -> ""."""
    if value is None or value is False:
        return ""
    return value if isinstance(value, str) else str(value)


def plan_row(
    text: str,
    line: int,
    *,
    loop_id: str,
    trace_id: str,
    catalog: SinkCatalog,
    source_file: str,
    env: Mapping[str, str],
    now: dt.datetime,
) -> RowTerminal | RowDelivery:
    """Classify one escalation line (§5.3), routing with the per-sink secret rule."""
    ts = format_ts(now)
    if not text.strip():
        return RowTerminal(counter="skipped", reason_code=None, telemetry=None)
    try:
        escalation = json.loads(text)
    except ValueError:
        row = {**_head(ts, loop_id, trace_id), "status": "failed", "reasonCode": "invalid_escalation_json"}
        return RowTerminal(
            counter="failed", reason_code="invalid_escalation_json", telemetry={**row, "rawLine": text}
        )
    category = _text(escalation.get("category")) if isinstance(escalation, dict) else ""
    if not category:
        row = {
            **_head(ts, loop_id, trace_id),
            "status": "failed",
            "reasonCode": "missing_escalation_category",
            "escalation": escalation,
        }
        return RowTerminal(counter="failed", reason_code="missing_escalation_category", telemetry=row)
    context = EscalationContext(
        escalation=escalation,
        category=category,
        timestamp=_text(escalation.get("timestamp")),
        loop_id=_text(escalation.get("loopId")) or loop_id,
        trace_id=_text(escalation.get("traceId")) or trace_id,
        dispatcher_loop_id=loop_id,
        dispatcher_trace_id=trace_id,
        escalation_key=compute_escalation_key(loop_id, line, text),
    )
    severity = _text(escalation.get("severity")) or None
    try:
        route = build_route_resolution(
            catalog, category, severity, source_file=source_file, env=env, env_check=False
        )
    except ContractError as exc:
        row = prune_nulls(
            {
                **_head(ts, loop_id, trace_id),
                "escalationTraceId": context.trace_id or None,
                "escalationCategory": category,
                "escalationTimestamp": context.timestamp or None,
                "status": "failed",
                "reasonCode": "route_resolution_failed",
                "message": _excerpt(f"error: {exc}"),
                "escalation": escalation,
            }
        )
        return RowTerminal(counter="failed", reason_code="route_resolution_failed", telemetry=row)
    event_severity = route.get("eventSeverity")
    if event_severity not in SEVERITY_RANKS:
        event_severity = "warning"
    sinks = tuple(route.get("dispatchableSinks") or ())
    skip_reason = None
    if route.get("shouldDispatch") is not True:
        skip_reason = "severity_below_min"
    elif not sinks:
        skip_reason = "no_dispatchable_sinks"
    if skip_reason is not None:
        row = prune_nulls(
            {
                **_head(ts, loop_id, trace_id),
                "escalationTraceId": context.trace_id or None,
                "escalationCategory": category,
                "escalationTimestamp": context.timestamp or None,
                "eventSeverity": event_severity,
                "status": "skipped",
                "reasonCode": skip_reason,
                "escalation": escalation,
                "route": route,
                "sinkCount": 0,
                "dispatchedSinkCount": 0,
                "failedSinkCount": 0,
            }
        )
        return RowTerminal(counter="skipped", reason_code=skip_reason, telemetry=row)
    return RowDelivery(context=context, event_severity=str(event_severity), route=route, sinks=sinks)


# ---------------------------------------------------------------- payloads


@dataclass(frozen=True)
class SinkRequest:
    """One HTTP POST to perform; ``secrets`` lists the values to redact from any message."""

    url: str
    headers: tuple[tuple[str, str], ...]
    body: JsonObject | list[JsonObject]
    timeout_seconds: float
    secrets: tuple[str, ...] = ()


def build_webhook_payload(
    context: EscalationContext, event_severity: str, sink_id: str, *, repo_path: str, now: dt.datetime
) -> JsonObject:
    return {
        "schemaVersion": "v1",
        "emittedAt": format_ts(now),
        "source": {
            "repoPath": repo_path,
            "loopId": context.loop_id,
            "channel": "ops_manager_alert_dispatch",
            "traceId": context.trace_id or None,
        },
        "event": {"category": context.category, "severity": event_severity},
        "sink": {"id": sink_id, "type": "webhook"},
        "escalation": context.escalation,
    }


def build_slack_payload(
    context: EscalationContext, event_severity: str, config: Mapping[str, Any]
) -> JsonObject:
    """Slack incoming-webhook body; keeps the reference's literal ``\\n`` and repeated line."""
    text = (
        f"[ops-manager][{event_severity}] {context.category} loop={context.loop_id} trace={context.trace_id}"
    )
    stamp = (
        f"Escalation timestamp: `{context.timestamp}`"
        if context.timestamp
        else "Escalation timestamp unavailable"
    )
    return prune_nulls(
        {
            "text": text,
            "channel": config.get("channel") or None,
            "username": config.get("username") or None,
            "icon_emoji": config.get("iconEmoji") or None,
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*Ops Manager Alert*\\nCategory: `{text}`"},
                },
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": stamp},
                        {"type": "mrkdwn", "text": f"Trace: `{context.trace_id}`"},
                    ],
                },
            ],
        }
    )


def build_pagerduty_payload(
    context: EscalationContext, event_severity: str, config: Mapping[str, Any], routing_key: str
) -> JsonObject:
    """PagerDuty Events API v2 ``trigger``; ``dedup_key`` groups retries into one incident."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"{context.loop_id}:{context.category}:{context.timestamp}",
        "payload": {
            "summary": f"ops-manager {context.category} ({event_severity}) loop={context.loop_id}",
            "severity": event_severity,
            "source": config.get("source") or "superloop-ops-manager",
            "component": config.get("component") or "ops-manager",
            "group": config.get("group") or "loop-run",
            "class": config.get("class") or "escalation",
            "custom_details": {"escalation": context.escalation, "traceId": context.trace_id or None},
        },
    }


def build_alertmanager_payload(
    context: EscalationContext, event_severity: str, sink_id: str, config: Mapping[str, Any], now: dt.datetime
) -> list[JsonObject]:
    """Alertmanager API v2 ``postableAlerts``: one alert per escalation, firing from the
    escalation's time and resolving on its own ``resolveAfterSeconds`` later (``endsAt``): an
    escalation is sent once, and Alertmanager resolves an alert nobody re-sends at its endsAt.
    Labels identify it (a re-send of the same escalation is the same alert); the catalog's
    ``labels`` join them, for the routing tree."""
    starts = parse_ts(context.timestamp) or now
    resolve = config.get("resolveAfterSeconds")
    seconds = float(resolve) if isinstance(resolve, int | float) else float(DEFAULT_RESOLVE_AFTER_SECONDS)
    extra = config.get("labels") if isinstance(config.get("labels"), dict) else {}
    assert isinstance(extra, dict)
    labels = {str(k): str(v) for k, v in extra.items()}
    labels.update(
        {
            "alertname": "SuperloopLoopEscalation",
            "category": context.category,
            "severity": event_severity,
            "loop_id": context.loop_id,
            "sink": sink_id,
        }
    )
    alert: JsonObject = {
        "labels": labels,
        "annotations": {
            "summary": f"superloop-ops {context.category} ({event_severity}) loop={context.loop_id}",
            "trace_id": context.trace_id or "",
            "escalation_key": context.escalation_key,
            "escalation": dumps_compact(context.escalation),
        },
        "startsAt": format_ts(starts),
        "endsAt": format_ts(max(starts, now) + dt.timedelta(seconds=seconds)),
    }
    if isinstance(config.get("generatorUrl"), str) and config["generatorUrl"]:
        alert["generatorURL"] = config["generatorUrl"]
    return [alert]


def _missing_secret(message: str) -> JsonObject:
    return {"status": "failed", "reasonCode": "missing_secret", "httpStatus": None, "message": message}


def build_sink_request(
    sink: Mapping[str, Any],
    delivery: RowDelivery,
    secrets: Mapping[str, str],
    *,
    repo_path: str,
    now: dt.datetime,
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL,
) -> SinkRequest | JsonObject:
    """The request for one sink, or the sink result when it cannot be sent (§5.4)."""
    sink_id = str(sink.get("id") or "unknown")
    kind = sink.get("type")
    refs = sink.get("secretRefs") if isinstance(sink.get("secretRefs"), dict) else {}
    config = sink.get("config") if isinstance(sink.get("config"), dict) else {}
    assert isinstance(refs, dict)
    assert isinstance(config, dict)
    timeout = sink.get("timeoutSeconds") or 5
    timeout_seconds = float(timeout) if isinstance(timeout, int | float) else 5.0
    json_header = ("Content-Type", "application/json")
    context = delivery.context

    def secret(name: object) -> str:
        return secrets.get(name, "") if isinstance(name, str) and is_secret_set(secrets, name) else ""

    if kind == "webhook":
        url = secret(refs.get("urlEnv"))
        if not url:
            return _missing_secret("webhook url env is unset")
        headers = [json_header]
        token = secret(refs.get("authTokenEnv"))
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        configured = config.get("headers") if isinstance(config.get("headers"), dict) else {}
        assert isinstance(configured, dict)
        for name, value in configured.items():
            if name.lower() != "content-type" and isinstance(value, str):
                headers.append((name, value))
        headers.append(("Idempotency-Key", f"{context.escalation_key}:{sink_id}"))
        body = build_webhook_payload(context, delivery.event_severity, sink_id, repo_path=repo_path, now=now)
        return SinkRequest(url, tuple(headers), body, timeout_seconds, tuple(s for s in (url, token) if s))
    if kind == "slack":
        url = secret(refs.get("webhookUrlEnv"))
        if not url:
            return _missing_secret("slack webhook env is unset")
        body = build_slack_payload(context, delivery.event_severity, config)
        return SinkRequest(url, (json_header,), body, timeout_seconds, (url,))
    if kind == "alertmanager":
        base = secret(refs.get("urlEnv"))
        if not base:
            return _missing_secret("alertmanager url env is unset")
        headers = [json_header]
        token = secret(refs.get("authTokenEnv"))
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        body_alerts = build_alertmanager_payload(context, delivery.event_severity, sink_id, config, now)
        url = base.rstrip("/") + "/api/v2/alerts"
        return SinkRequest(
            url, tuple(headers), body_alerts, timeout_seconds, tuple(x for x in (base, token) if x)
        )
    if kind == "pagerduty_events":
        key = secret(refs.get("routingKeyEnv"))
        if not key:
            return _missing_secret("pagerduty routing key env is unset")
        body = build_pagerduty_payload(context, delivery.event_severity, config, key)
        return SinkRequest(pagerduty_url, (json_header,), body, timeout_seconds, (key,))
    return {
        "status": "failed",
        "reasonCode": "unsupported_sink_type",
        "httpStatus": None,
        "message": f"unsupported sink type: {kind}",
    }


_MIN_TOKEN_LENGTH = 6


def compute_secret_fragments(value: str) -> tuple[str, ...]:
    """Every piece of a secret that an error text or a receiver's answer could echo.

    A plain value is itself. A URL also yields its userinfo (with the password, the user and
    the Base64 form a Basic ``Authorization`` header carries), its path and query, and each path
    segment and query value long enough to be a token (Slack webhook paths, signed query
    strings), raw and percent-decoded. Longest first, so a whole URL is masked before its parts.
    """
    if not value:
        return ()
    fragments = {value}
    parts = urlsplit(value) if "://" in value else None
    if parts is not None and parts.netloc:
        userinfo, _, _ = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        fragments.update((userinfo, password, user if password else ""))
        if userinfo:
            fragments.add(base64.b64encode(unquote(userinfo).encode("utf-8")).decode("ascii"))
        fragments.update(piece for piece in (parts.path, parts.query, parts.fragment) if len(piece) > 1)
        tokens = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query, keep_blank_values=True))]
        fragments.update(token for token in tokens if len(token) >= _MIN_TOKEN_LENGTH)
    fragments.update([unquote(fragment) for fragment in fragments])
    return tuple(sorted((f for f in fragments if f), key=len, reverse=True))


def redact_secrets(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every fragment of every secret replaced by ``***``."""
    fragments = {fragment for value in secrets for fragment in compute_secret_fragments(value)}
    for fragment in sorted(fragments, key=len, reverse=True):
        text = text.replace(fragment, "***")
    return text


def classify_response(status_code: int, body: str, secrets: Sequence[str] = ()) -> JsonObject:
    message = _excerpt(redact_secrets(body, secrets))
    if 200 <= status_code <= 299:
        return {"status": "success", "httpStatus": status_code, "reasonCode": None, "message": message}
    return {"status": "failed", "reasonCode": "http_error", "httpStatus": status_code, "message": message}


def classify_request_error(error_text: str, secrets: Sequence[str] = ()) -> JsonObject:
    return {
        "status": "failed",
        "reasonCode": "request_failed",
        "httpStatus": None,
        "message": _excerpt(redact_secrets(error_text, secrets)),
    }


def compute_sink_disposition(result: Mapping[str, Any]) -> SinkDisposition:
    """Delivered, permanently failed, or worth retrying (outage, throttling, missing secret)."""
    if result.get("status") == "success":
        return "delivered"
    reason = result.get("reasonCode")
    if reason in ("request_failed", "missing_secret"):
        return "pending"
    if reason == "http_error":
        code = result.get("httpStatus")
        if isinstance(code, int) and (code >= 500 or code in _RETRYABLE_HTTP):
            return "pending"
    return "failed"


def compute_row_outcome(results: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    ok = sum(1 for result in results if result.get("status") == "success")
    bad = len(results) - ok
    if bad == 0 and ok > 0:
        return "dispatched", None
    if ok > 0:
        return "partial", "partial_dispatch_failure"
    return "failed", "dispatch_failed"


def build_delivery_telemetry(
    delivery: RowDelivery,
    sink_results: Sequence[JsonObject],
    *,
    pending_sink_ids: Sequence[str],
    now: dt.datetime,
) -> JsonObject:
    """R6: one row per delivery attempt of an escalation (``retryPending`` when sinks remain)."""
    status, reason = compute_row_outcome(sink_results)
    context = delivery.context
    ok = sum(1 for result in sink_results if result.get("status") == "success")
    return prune_nulls(
        {
            **_head(format_ts(now), context.loop_id, context.dispatcher_trace_id),
            "escalationTraceId": context.trace_id or None,
            "escalationCategory": context.category,
            "escalationTimestamp": context.timestamp or None,
            "eventSeverity": delivery.event_severity,
            "status": status,
            "reasonCode": reason,
            "escalation": context.escalation,
            "route": delivery.route,
            "sinks": list(sink_results),
            "sinkCount": len(sink_results),
            "dispatchedSinkCount": ok,
            "failedSinkCount": len(sink_results) - ok,
            "escalationKey": context.escalation_key,
            "retryPending": True if pending_sink_ids else None,
            "pendingSinkIds": list(pending_sink_ids) or None,
        }
    )


# ---------------------------------------------------------------- run summary


@dataclass(frozen=True)
class DispatchCounters:
    processed: int = 0
    dispatched: int = 0
    skipped: int = 0
    failed: int = 0
    failure_codes: frozenset[str] = frozenset()

    def add_skipped(self) -> DispatchCounters:
        return replace(self, processed=self.processed + 1, skipped=self.skipped + 1)

    def add_failed(self, code: str | None) -> DispatchCounters:
        codes = self.failure_codes | ({code} if code else set())
        return replace(self, processed=self.processed + 1, failed=self.failed + 1, failure_codes=codes)

    def add_delivery(self, status: str, sink_results: Sequence[Mapping[str, Any]]) -> DispatchCounters:
        codes = set(self.failure_codes)
        for result in sink_results:
            if result.get("status") != "success":
                codes.add(str(result.get("reasonCode") or "sink_dispatch_failed"))
        return replace(
            self,
            processed=self.processed + 1,
            dispatched=self.dispatched + (1 if status in ("dispatched", "partial") else 0),
            failed=self.failed + (1 if status in ("partial", "failed") else 0),
            failure_codes=frozenset(codes),
        )


def compute_run_status(counters: DispatchCounters) -> str:
    if counters.processed == 0:
        return "no_new_escalations"
    if counters.failed > 0 and counters.dispatched == 0:
        return "failed"
    if counters.failed > 0:
        return "partial"
    return "success"


def build_dispatch_state(
    *,
    status: str,
    counters: DispatchCounters,
    cursor: DispatchCursor,
    line_count: int,
    loop_id: str,
    trace_id: str,
    escalations_file: str,
    telemetry_file: str,
    now: dt.datetime,
) -> JsonObject:
    """``alert-dispatch-state.json`` (§5.7) plus the ledger fields this port adds."""
    return {
        "schemaVersion": "v1",
        "updatedAt": format_ts(now),
        "loopId": loop_id,
        "traceId": trace_id or None,
        "escalationsFile": escalations_file,
        "dispatchTelemetryFile": telemetry_file,
        "status": status,
        "processedCount": counters.processed,
        "dispatchedCount": counters.dispatched,
        "skippedCount": counters.skipped,
        "failedCount": counters.failed,
        "failureReasonCodes": sorted(counters.failure_codes),
        "escalationsLineOffset": cursor.offset,
        "escalationsLineCount": line_count,
        "pendingCount": cursor.pending_count,
        "deliveryLedger": cursor.ledger_json(),
    }


def build_interim_state(
    previous: object, cursor: DispatchCursor, *, loop_id: str, now: dt.datetime
) -> JsonObject:
    """Checkpoint written after each sink outcome: the last run's summary plus the new ledger."""
    base: JsonObject = (
        dict(previous)
        if isinstance(previous, dict)
        else {
            "schemaVersion": "v1",
            "loopId": loop_id,
            "status": "in_progress",
        }
    )
    base.update(
        {
            "updatedAt": format_ts(now),
            "escalationsLineOffset": cursor.offset,
            "pendingCount": cursor.pending_count,
            "deliveryLedger": cursor.ledger_json(),
        }
    )
    return base


def build_failed_command_row(*, loop_id: str, trace_id: str, message: str, now: dt.datetime) -> JsonObject:
    """The reconcile wrapper row written when a whole dispatch run could not complete."""
    return prune_nulls(
        {
            **_head(format_ts(now), loop_id, trace_id),
            "status": "failed_command",
            "reasonCode": "alert_dispatch_failed",
            "message": message.replace("\r", "") or None,
        }
    )
