"""Pure pieces of one reconcile pass: transport health, failure codes, state enrichment, telemetry.

The engine (``superloop_ops.engine.loop.reconcile_pass``) reads the previous documents, calls these
builders in the contract's step order and writes what they return. Nothing here touches a file
or the clock: every builder takes ``now`` (or the timestamps it needs) as an argument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, prune_nulls
from superloop_ops.core.loop.threshold_profiles import coerce_non_negative_int

__all__ = [
    "FAILURE_CODES",
    "TelemetryInputs",
    "build_alert_failure_row",
    "build_cursor_document",
    "build_drift_merged_state",
    "build_failed_state",
    "build_success_state",
    "build_telemetry_row",
    "compute_failure_reason_code",
    "compute_failure_streak",
    "compute_transport_health",
    "stderr_tail",
    "tail_lines",
]

FAILURE_CODES: tuple[str, ...] = (
    "snapshot_unavailable",
    "events_unavailable",
    "service_request_failed",
    "service_response_invalid",
    "projection_failed",
    "artifact_invalid",
    "cursor_invalid",
)

_REASON_FOR_FAILURE: Mapping[str, str] = {
    "snapshot_unavailable": "transport_unreachable",
    "events_unavailable": "transport_unreachable",
    "service_request_failed": "transport_unreachable",
    "service_response_invalid": "invalid_transport_payload",
    "projection_failed": "projection_failed",
    "artifact_invalid": "invalid_artifact",
    "cursor_invalid": "cursor_invalid",
}
#: Failures of content the transport did deliver: they leave the transport failure streak alone.
_CONTENT_FAILURES = frozenset({"artifact_invalid", "cursor_invalid"})


def compute_failure_reason_code(failure_code: str | None) -> str:
    """The health reason code an ingest failure adds (§5.7); unknown codes pass through."""
    if not failure_code:
        return "reconcile_failed"
    return _REASON_FOR_FAILURE.get(failure_code, failure_code)


def tail_lines(message: str, limit: int = 40) -> str:
    """The last ``limit`` lines of a failure message, with CR line endings stripped."""
    lines = [line.rstrip("\r") for line in message.splitlines()]
    return "\n".join(lines[-limit:])


def stderr_tail(message: str, limit: int = 40) -> str:
    """``tail_lines`` of what a failing step prints on stderr: ``error: <message>``, kept as is."""
    return tail_lines(f"error: {message}", limit)


def compute_failure_streak(transport_health: Mapping[str, Any] | None) -> int:
    """The stored streak when it is a non-negative integer, else 0."""
    if not transport_health:
        return 0
    streak = coerce_non_negative_int(transport_health.get("failureStreak"))
    return 0 if streak is None else streak


def compute_transport_health(
    previous: Mapping[str, Any] | None,
    *,
    success: bool,
    failure_code: str | None,
    trace_id: str,
    transport: str,
    now: dt.datetime,
) -> JsonObject:
    """The new transport-health.json (pruned); the streak survives a change of transport."""
    prior = previous or {}
    stamp = format_ts(now)
    streak = 0 if success else compute_failure_streak(prior) + 1
    if failure_code in _CONTENT_FAILURES:
        streak -= 1
    document: JsonObject = {
        "schemaVersion": "v1",
        "updatedAt": stamp,
        "traceId": trace_id,
        "transport": transport,
        "lastResult": "success" if success else "failed",
        "failureStreak": streak,
        "lastFailureCode": None if success else (failure_code or None),
        "lastSuccessAt": stamp if success else prior.get("lastSuccessAt"),
        "lastFailureAt": prior.get("lastFailureAt") if success else stamp,
    }
    return prune_nulls(document)


def build_cursor_document(
    *, repo_path: str, loop_id: str, offset: int, line_count: int, now: dt.datetime
) -> JsonObject:
    """The local cursor file written after a valid sprite-service events response (§5.6 step 7)."""
    return {
        "schemaVersion": "v1",
        "repoPath": repo_path,
        "loopId": loop_id,
        "eventsFile": f".superloop/loops/{loop_id}/events.jsonl",
        "eventLineOffset": offset,
        "eventLineCount": line_count,
        "updatedAt": format_ts(now),
    }


def _merged_trace(previous_trace: object, trace_id: str) -> JsonObject:
    base = dict(previous_trace) if isinstance(previous_trace, Mapping) else {}
    base["reconcileTraceId"] = trace_id
    return base


def build_success_state(
    projection: Mapping[str, Any],
    *,
    health: JsonObject,
    sequence: JsonObject | None,
    trace_id: str,
) -> JsonObject:
    """Projection output enriched with ``health``, ``trace`` and ``sequence`` (§5.9).

    The trace starts from the projection's own (normally absent) ``trace``: a fresh projection
    records only this pass's reconcile trace.

    Keys that reconcile owns are placed after the projection's own keys, so that the file keeps
    the contract's key order; stale enrichment keys carried by the projection are replaced.
    """
    owned = ("health", "trace", "sequence", "drift", "tuning")
    state: JsonObject = {key: value for key, value in projection.items() if key not in owned}
    state["health"] = health
    state["trace"] = _merged_trace(projection.get("trace"), trace_id)
    if sequence is not None:
        state["sequence"] = sequence
    return state


def build_failed_state(previous_state: Mapping[str, Any], *, health: JsonObject, trace_id: str) -> JsonObject:
    """An existing state after a failed pass: new health and trace, everything else untouched."""
    state: JsonObject = dict(previous_state)
    state["health"] = health
    state["trace"] = _merged_trace(state.get("trace"), trace_id)
    return state


def build_drift_merged_state(
    state: Mapping[str, Any],
    *,
    drift: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
    trace_id: str,
) -> JsonObject:
    """The state after step 13: ``drift`` (plus trace) and, with a summary, ``tuning``."""
    merged: JsonObject = dict(state)
    merged["drift"] = {**drift, "traceId": trace_id}
    if summary is not None:
        health = state.get("health")
        thresholds = health.get("thresholds") if isinstance(health, Mapping) else None
        applied = thresholds.get("profile") if isinstance(thresholds, Mapping) else None
        source = summary.get("source")
        observed = summary.get("observed")
        merged["tuning"] = {
            "appliedProfile": applied or None,
            "recommendedProfile": summary.get("recommendedProfile"),
            "confidence": summary.get("confidence"),
            "rationale": summary.get("rationale"),
            "summaryWindow": source.get("window") if isinstance(source, Mapping) else None,
            "telemetrySummary": {
                "observed": observed if observed else {},
                "source": source if source else {},
            },
        }
    return merged


@dataclass(frozen=True)
class TelemetryInputs:
    """Everything a reconcile telemetry row reports about one pass."""

    loop_id: str
    trace_id: str
    transport: str
    started_at: dt.datetime
    completed_at: dt.datetime
    ingest_ok: bool
    failure_code: str | None
    failure_message: str | None
    cursor_offset_before: int
    cursor_offset_after: int
    events_ingested: int
    max_events: int
    from_start: bool
    retry_attempts: int
    retry_backoff_seconds: int
    threshold_profile: str | None
    transport_failure_streak: int
    sequence_status: str
    sequence_reason_code: str | None
    health_status: str
    health_reason_codes: Sequence[str]


def build_telemetry_row(inputs: TelemetryInputs) -> JsonObject:
    """The pruned ``telemetry/reconcile.jsonl`` row (§5.11)."""
    duration = int((inputs.completed_at - inputs.started_at).total_seconds())
    row: JsonObject = {
        "timestamp": format_ts(inputs.completed_at),
        "startedAt": format_ts(inputs.started_at),
        "loopId": inputs.loop_id,
        "traceId": inputs.trace_id,
        "transport": inputs.transport,
        "status": "success" if inputs.ingest_ok else "failed",
        "failureCode": None if inputs.ingest_ok else (inputs.failure_code or None),
        "failureMessage": None if inputs.ingest_ok else (inputs.failure_message or None),
        "cursorOffsetBefore": inputs.cursor_offset_before,
        "cursorOffsetAfter": inputs.cursor_offset_after,
        "eventsIngested": inputs.events_ingested,
        "maxEvents": inputs.max_events,
        "fromStart": inputs.from_start,
        "retryAttempts": inputs.retry_attempts,
        "retryBackoffSeconds": inputs.retry_backoff_seconds,
        "thresholdProfile": inputs.threshold_profile,
        "durationSeconds": max(duration, 0),
        "transportFailureStreak": inputs.transport_failure_streak,
        "sequenceStatus": inputs.sequence_status,
        "sequenceReasonCode": inputs.sequence_reason_code,
        "healthStatus": inputs.health_status,
        "healthReasonCodes": list(inputs.health_reason_codes),
    }
    return prune_nulls(row)


def build_alert_failure_row(
    *, loop_id: str, trace_id: str | None, message: str, now: dt.datetime
) -> JsonObject:
    """The pruned ``alerts.jsonl`` row recording that the dispatcher itself failed (§5.13)."""
    return prune_nulls(
        {
            "timestamp": format_ts(now),
            "loopId": loop_id,
            "traceId": trace_id or None,
            "category": "alert_dispatch",
            "status": "failed_command",
            "reasonCode": "alert_dispatch_failed",
            "message": message or None,
        }
    )
