"""The per-loop operator status surface (tuning spec §6): one read-only view of the ops dir.

The engine reads the JSON documents and the physical last row of each JSONL log; this module
turns them into the status document. Defaults follow the contract's "first present" rule, in
which ``null`` and ``false`` both count as absent: this is why ``driftActive`` and ``replayed``
only appear when true. Two shared-trace rules coexist on purpose (``visibility.trace`` and the
legacy ``traceLinkage``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, prune_nulls
from superloop_ops.core.loop.artifacts import jq_get as _get

__all__ = ["STATUS_FILE_KEYS", "StatusDocuments", "TraceIds", "compute_status", "compute_trace_ids"]

STATUS_FILE_KEYS: tuple[str, ...] = (
    "stateFile",
    "cursorFile",
    "healthFile",
    "intentsFile",
    "heartbeatStateFile",
    "heartbeatTelemetryFile",
    "sequenceStateFile",
    "sequenceTelemetryFile",
    "controlInvocationsFile",
    "driftStateFile",
    "driftHistoryFile",
    "alertDispatchStateFile",
    "alertDispatchTelemetryFile",
    "reconcileTelemetryFile",
    "controlTelemetryFile",
)


@dataclass(frozen=True)
class StatusDocuments:
    """Everything the status surface reads. JSON documents default as the contract says.

    ``state``, ``cursor`` and ``health`` are ``{}`` when missing; the rest are None when missing.
    ``last_*`` fields are the parsed physical last line of each log (None when empty/invalid).
    """

    repo_path: str
    loop_id: str
    summary_window: int
    files: Mapping[str, str]
    state: Mapping[str, Any] = field(default_factory=dict)
    cursor: Mapping[str, Any] = field(default_factory=dict)
    health: Mapping[str, Any] = field(default_factory=dict)
    last_intent: Any = None
    last_reconcile: Any = None
    last_control: Any = None
    heartbeat_state: Any = None
    last_heartbeat: Any = None
    sequence_state: Any = None
    last_sequence: Any = None
    last_invocation: Any = None
    telemetry_summary: Any = None
    drift_state: Any = None
    dispatch_state: Any = None
    last_alert: Any = None


def _first(*values: object) -> Any:
    """First value that is neither null nor false (jq's ``//``), else None."""
    for value in values:
        if value is not None and value is not False:
            return value
    return None


@dataclass(frozen=True)
class TraceIds:
    """Trace ids derived from the latest records of each surface."""

    control: Any
    invocation: Any
    reconcile: Any
    heartbeat: Any
    sequence: Any
    alert: Any

    @property
    def shared(self) -> Any:
        """Visibility rule: exactly one distinct value among the non-null control, reconcile,
        alert, heartbeat and sequence traces (the invocation trace does not take part)."""
        present = [
            value
            for value in (self.control, self.reconcile, self.alert, self.heartbeat, self.sequence)
            if value is not None
        ]
        distinct: list[Any] = []
        for value in present:
            if value not in distinct:
                distinct.append(value)
        return distinct[0] if len(distinct) == 1 else None

    @property
    def linkage_shared(self) -> Any:
        """Legacy rule: reconcile and alert present and equal, control absent or equal."""
        if self.reconcile is None or self.alert is None or self.reconcile != self.alert:
            return None
        if self.control is not None and self.control != self.reconcile:
            return None
        return self.reconcile


def compute_trace_ids(docs: StatusDocuments) -> TraceIds:
    return TraceIds(
        control=_first(_get(docs.last_intent, "traceId"), _get(docs.last_control, "traceId")),
        invocation=_first(_get(docs.last_invocation, "traceId")),
        reconcile=_first(_get(docs.last_reconcile, "traceId")),
        heartbeat=_first(_get(docs.heartbeat_state, "traceId"), _get(docs.last_heartbeat, "traceId")),
        sequence=_first(_get(docs.sequence_state, "traceId"), _get(docs.last_sequence, "traceId")),
        alert=_first(_get(docs.last_alert, "traceId"), _get(docs.dispatch_state, "traceId")),
    )


def _heartbeat_view(docs: StatusDocuments, traces: TraceIds) -> JsonObject | None:
    hb, hbt, details = docs.heartbeat_state, docs.last_heartbeat, _get(docs.health, "details")
    if (
        hb is None
        and hbt is None
        and _first(_get(details, "lastHeartbeatAt")) is None
        and _first(_get(details, "heartbeatLagSeconds")) is None
        and _first(_get(details, "heartbeatFreshnessStatus")) is None
    ):
        return None
    return prune_nulls(
        {
            "freshnessStatus": _first(_get(hb, "freshnessStatus"), _get(details, "heartbeatFreshnessStatus")),
            "reasonCode": _first(_get(hb, "reasonCode"), _get(hbt, "reasonCode")),
            "lastHeartbeatAt": _first(
                _get(hb, "lastHeartbeatAt"), _get(details, "lastHeartbeatAt"), _get(hbt, "heartbeatAt")
            ),
            "heartbeatLagSeconds": _first(
                _get(hb, "heartbeatLagSeconds"),
                _get(details, "heartbeatLagSeconds"),
                _get(hbt, "heartbeatLagSeconds"),
            ),
            "updatedAt": _first(_get(hb, "updatedAt"), _get(hbt, "timestamp")),
            "transport": _first(_get(hb, "transport"), _get(hbt, "transport")),
            "traceId": traces.heartbeat,
        }
    )


def _sequence_view(docs: StatusDocuments, traces: TraceIds) -> JsonObject | None:
    sq, sqt, details = docs.sequence_state, docs.last_sequence, _get(docs.health, "details")
    if sq is None and sqt is None and _first(_get(details, "sequenceStatus")) is None:
        return None
    return prune_nulls(
        {
            "status": _first(_get(sq, "status"), _get(details, "sequenceStatus"), _get(sqt, "status")),
            "reasonCode": _first(_get(sq, "reasonCode"), _get(sqt, "reasonCode")),
            "driftActive": _first(_get(sq, "driftActive"), _get(sqt, "driftActive")),
            "violations": _first(_get(sq, "violations"), _get(sqt, "violations")),
            "snapshotCurrent": _first(_get(sq, "snapshot", "current"), _get(sqt, "snapshot", "current")),
            "eventsLast": _first(_get(sq, "events", "last"), _get(sqt, "events", "last")),
            "updatedAt": _first(
                _get(sq, "updatedAt"), _get(details, "sequenceUpdatedAt"), _get(sqt, "timestamp")
            ),
            "transport": _first(_get(sq, "transport"), _get(sqt, "transport")),
            "traceId": traces.sequence,
        }
    )


def _invocation_view(docs: StatusDocuments) -> JsonObject | None:
    ci = docs.last_invocation
    if ci is None:
        return None
    return prune_nulls(
        {
            "timestamp": _first(_get(ci, "timestamp")),
            "intent": _first(_get(ci, "intent")),
            "transport": _first(_get(ci, "transport")),
            "idempotencyKey": _first(_get(ci, "idempotencyKey")),
            "executionStatus": _first(_get(ci, "execution", "status")),
            "confirmationStatus": _first(_get(ci, "confirmation", "status")),
            "outcomeStatus": _first(_get(ci, "outcome", "status")),
            "replayed": _first(_get(ci, "execution", "replayed")),
            "traceId": _first(_get(ci, "traceId")),
        }
    )


def _alerts_view(docs: StatusDocuments) -> JsonObject | None:
    ad, al = docs.dispatch_state, docs.last_alert
    if ad is None and al is None:
        return None
    dispatch = None
    if ad is not None:
        dispatch = prune_nulls(
            {
                "status": _first(_get(ad, "status")),
                "updatedAt": _first(_get(ad, "updatedAt")),
                "processedCount": _first(_get(ad, "processedCount"), 0),
                "dispatchedCount": _first(_get(ad, "dispatchedCount"), 0),
                "skippedCount": _first(_get(ad, "skippedCount"), 0),
                "failedCount": _first(_get(ad, "failedCount"), 0),
                "failureReasonCodes": _first(_get(ad, "failureReasonCodes"), []),
                "escalationsLineOffset": _first(_get(ad, "escalationsLineOffset"), 0),
                "escalationsLineCount": _first(_get(ad, "escalationsLineCount"), 0),
                "lastTraceId": _first(_get(ad, "traceId")),
            }
        )
    delivery = None
    if al is not None:
        delivery = prune_nulls(
            {
                key: _first(_get(al, key))
                for key in (
                    "timestamp",
                    "status",
                    "reasonCode",
                    "escalationCategory",
                    "eventSeverity",
                    "sinkCount",
                    "dispatchedSinkCount",
                    "failedSinkCount",
                    "traceId",
                    "escalationTraceId",
                )
            }
        )
    return prune_nulls({"dispatch": dispatch, "lastDelivery": delivery})


def compute_status(docs: StatusDocuments, now: dt.datetime) -> JsonObject:
    """The status document; top-level nulls are dropped (``drift`` and ``alerts`` may vanish)."""
    state, health, cursor = docs.state, docs.health, docs.cursor
    traces = compute_trace_ids(docs)
    visibility = prune_nulls(
        {
            "heartbeat": _heartbeat_view(docs, traces),
            "sequence": _sequence_view(docs, traces),
            "invocationAudit": _invocation_view(docs),
            "trace": prune_nulls(
                {
                    "controlTraceId": traces.control,
                    "controlInvocationTraceId": traces.invocation,
                    "reconcileTraceId": traces.reconcile,
                    "heartbeatTraceId": traces.heartbeat,
                    "sequenceTraceId": traces.sequence,
                    "alertTraceId": traces.alert,
                    "sharedTraceId": traces.shared,
                }
            ),
        }
    )
    summary = docs.telemetry_summary
    state_health = _first(state.get("health"))
    drift = docs.drift_state if docs.drift_state is not None else _first(state.get("drift"))
    document: JsonObject = {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {"repoPath": docs.repo_path, "loopId": docs.loop_id},
        "lifecycle": {
            "state": _first(
                _get(state, "transition", "currentState"), _get(state, "projection", "status"), "unknown"
            ),
            "confidence": _first(_get(state, "transition", "confidence")),
            "runId": _first(_get(state, "run", "runId")),
            "iteration": _first(_get(state, "run", "iteration")),
        },
        "health": state_health if state_health is not None else dict(health),
        "cursor": {
            "eventLineOffset": _first(
                cursor.get("eventLineOffset"), _get(state, "cursor", "eventLineOffset"), 0
            ),
            "eventLineCount": _first(
                cursor.get("eventLineCount"), _get(state, "cursor", "eventLineCount"), 0
            ),
        },
        "control": {
            "lastIntent": _first(_get(docs.last_intent, "intent")),
            "lastStatus": _first(_get(docs.last_intent, "status")),
            "lastRequestedBy": _first(_get(docs.last_intent, "requestedBy")),
            "lastTimestamp": _first(_get(docs.last_intent, "timestamp")),
            "lastTraceId": traces.control,
        },
        "reconcile": {
            "lastStatus": _first(_get(docs.last_reconcile, "status")),
            "lastTimestamp": _first(_get(docs.last_reconcile, "timestamp")),
            "lastTransport": _first(_get(docs.last_reconcile, "transport")),
            "lastFailureCode": _first(_get(docs.last_reconcile, "failureCode")),
            "lastDurationSeconds": _first(_get(docs.last_reconcile, "durationSeconds")),
            "lastTraceId": traces.reconcile,
        },
        "visibility": visibility or None,
        "tuning": {
            "summaryWindow": docs.summary_window,
            "appliedProfile": _first(
                _get(state, "health", "thresholds", "profile"), _get(health, "thresholds", "profile")
            ),
            "recommendedProfile": _first(_get(summary, "recommendedProfile")),
            "confidence": _first(_get(summary, "confidence")),
            "rationale": _first(_get(summary, "rationale")),
            "telemetrySummary": None
            if summary is None
            else {
                "observed": _first(_get(summary, "observed")) or {},
                "source": _first(_get(summary, "source")) or {},
            },
        },
        "drift": drift,
        "alerts": _alerts_view(docs),
        "traceLinkage": {
            "controlTraceId": traces.control,
            "controlInvocationTraceId": traces.invocation,
            "reconcileTraceId": traces.reconcile,
            "heartbeatTraceId": traces.heartbeat,
            "sequenceTraceId": traces.sequence,
            "alertTraceId": traces.alert,
            "sharedTraceId": traces.linkage_shared,
        },
        "files": {key: docs.files[key] for key in STATUS_FILE_KEYS if key in docs.files},
    }
    return prune_nulls(document)
