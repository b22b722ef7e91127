"""Escalation rows of a reconcile pass (§5.10), each pruned at the top level.

The rules differ on purpose: divergence is reported on every divergent pass, ordering drift
and profile drift only on the transition into drift, and health only when the new non-healthy
verdict (status or ordered reason codes) differs from the previous health.json, so that a
steady degraded loop does not page again on every pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, prune_nulls

__all__ = [
    "EscalationContext",
    "PreviousHealth",
    "build_divergence_escalation",
    "build_health_escalation",
    "build_ordering_drift_escalation",
    "build_profile_drift_escalation",
    "compute_previous_health",
]


@dataclass(frozen=True)
class EscalationContext:
    """Fields every row of one pass shares."""

    loop_id: str
    trace_id: str | None
    transport: str
    now: dt.datetime

    def head(self, category: str) -> JsonObject:
        return {
            "timestamp": format_ts(self.now),
            "loopId": self.loop_id,
            "traceId": self.trace_id or None,
            "category": category,
            "transport": self.transport,
        }


@dataclass(frozen=True)
class PreviousHealth:
    """Status and reason codes of the previous health.json (step 2 of the pass)."""

    status: str = "healthy"
    reason_codes: tuple[object, ...] = ()


def compute_previous_health(document: object) -> PreviousHealth:
    """Defaults (healthy, no codes) for a missing or unusable document."""
    if not isinstance(document, Mapping):
        return PreviousHealth()
    status = document.get("status")
    codes = document.get("reasonCodes")
    return PreviousHealth(
        status=status if isinstance(status, str) and status else "healthy",
        reason_codes=tuple(codes) if isinstance(codes, list) else (),
    )


def _or_empty(value: object) -> object:
    return {} if value is None or value is False else value


def build_divergence_escalation(
    context: EscalationContext, state: Mapping[str, Any], *, state_file: str, cursor_file: str
) -> JsonObject | None:
    """A row for every successful pass whose projection is divergent."""
    divergence = state.get("divergence")
    if not isinstance(divergence, Mapping) or divergence.get("any") is not True:
        return None
    row = {
        **context.head("divergence_detected"),
        "stateFile": state_file,
        "cursorFile": cursor_file,
        "divergenceFlags": _or_empty(divergence.get("flags")),
        "state": {
            "transition": _or_empty(state.get("transition")),
            "projection": _or_empty(state.get("projection")),
            "cursor": _or_empty(state.get("cursor")),
        },
    }
    return prune_nulls(row)


def build_ordering_drift_escalation(
    context: EscalationContext,
    sequence: Mapping[str, Any],
    *,
    state_file: str,
    sequence_state_file: str,
    sequence_telemetry_file: str,
) -> JsonObject | None:
    """A row only when this pass moved the sequence diagnostics into drift."""
    transition = sequence.get("transition")
    if not isinstance(transition, Mapping) or transition.get("transitionedToDrift") is not True:
        return None
    row = {
        **context.head("ordering_drift_detected"),
        "reasonCode": sequence.get("reasonCode") or "ordering_drift_detected",
        "stateFile": state_file,
        "sequenceStateFile": sequence_state_file,
        "sequenceTelemetryFile": sequence_telemetry_file,
        "sequence": {
            "status": sequence.get("status"),
            "driftActive": sequence.get("driftActive"),
            "violations": sequence.get("violations"),
            "snapshot": sequence.get("snapshot"),
            "events": sequence.get("events"),
        },
    }
    return prune_nulls(row)


def build_health_escalation(
    context: EscalationContext,
    health: Mapping[str, Any],
    previous: PreviousHealth,
    *,
    ingest_ok: bool,
    failure_code: str | None,
    state_file: str,
    cursor_file: str,
    health_file: str,
) -> JsonObject | None:
    """``health_<status>`` when not healthy and the verdict changed since the previous pass."""
    status = health.get("status")
    codes = health.get("reasonCodes")
    code_list: Sequence[object] = codes if isinstance(codes, list) else []
    if status == "healthy" or not isinstance(status, str):
        return None
    if status == previous.status and tuple(code_list) == previous.reason_codes:
        return None
    row = {
        **context.head(f"health_{status}"),
        "ingestStatus": "success" if ingest_ok else "failed",
        "failureCode": None if ingest_ok else (failure_code or None),
        "stateFile": state_file,
        "cursorFile": cursor_file,
        "healthFile": health_file,
        "healthStatus": status,
        "reasonCodes": list(code_list),
        "reasons": health.get("reasons"),
    }
    return prune_nulls(row)


def build_profile_drift_escalation(
    context: EscalationContext,
    drift: Mapping[str, Any],
    *,
    state_file: str,
    drift_state_file: str,
    drift_history_file: str,
) -> JsonObject | None:
    """A row when the drift evaluator reports ``transitioned.toActive``; inner nulls are kept."""
    transitioned = drift.get("transitioned")
    if not isinstance(transitioned, Mapping) or transitioned.get("toActive") is not True:
        return None

    def _or(key: str, default: object) -> object:
        value = drift.get(key)
        return default if value is None or value is False else value

    row = {
        **context.head("profile_drift_detected"),
        "stateFile": state_file,
        "driftStateFile": drift_state_file,
        "driftHistoryFile": drift_history_file,
        "reasonCode": _or("reasonCode", "profile_drift_detected"),
        "drift": {
            "status": _or("status", "unknown"),
            "appliedProfile": _or("appliedProfile", None),
            "recommendedProfile": _or("recommendedProfile", None),
            "recommendationConfidence": _or("recommendationConfidence", None),
            "mismatchStreak": _or("mismatchStreak", 0),
            "requiredStreak": _or("requiredStreak", 0),
            "action": _or("action", None),
            "rationale": _or("rationale", None),
        },
    }
    return prune_nulls(row)
