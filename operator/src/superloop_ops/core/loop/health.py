"""Reason-coded health of one loop (§6): seven rules, de-duplicated, then a status.

Every rule reads documents the pass has already written (state, heartbeat, sequence, transport
health) plus the last intent row. On a failed pass those documents still hold earlier values, so
old lag, divergence and drift keep contributing reasons: health describes the loop as last seen,
and the ingest failure adds its own reason on top.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.loop import run_outcome
from superloop_ops.core.loop.artifacts import jq_get as _get
from superloop_ops.core.loop.pass_rules import compute_failure_reason_code, compute_failure_streak
from superloop_ops.core.loop.threshold_profiles import Thresholds, coerce_non_negative_int

__all__ = [
    "HealthInputs",
    "compute_health",
    "compute_heartbeat_lag",
    "compute_ingest_lag",
    "compute_lifecycle_state",
    "compute_reasons",
]


@dataclass(frozen=True)
class HealthInputs:
    """The documents health reads; absent documents are empty mappings."""

    state: Mapping[str, Any]
    heartbeat_state: Mapping[str, Any]
    sequence_state: Mapping[str, Any]
    transport_health: Mapping[str, Any]
    last_intent: Mapping[str, Any] | None
    trace_id: str | None
    transport: str
    thresholds: Thresholds
    ingest_ok: bool
    failure_code: str | None


def _present(value: object) -> bool:
    """jq's alternative-operator test: null and false are absent, everything else present."""
    return value is not None and value is not False


compute_lifecycle_state = run_outcome.compute_projected_lifecycle


def _lag_since(moment: object, now: dt.datetime) -> int | None:
    parsed = parse_ts(moment)
    if parsed is None:
        return None
    return max(int((now - parsed).total_seconds()), 0)


def compute_ingest_lag(state: Mapping[str, Any], now: dt.datetime) -> int | None:
    """Seconds since the last runtime event (not since the last ingest)."""
    return _lag_since(_get(state, "projection", "lastEventAt"), now)


def compute_liveness_lag(state: Mapping[str, Any], now: dt.datetime) -> int | None:
    """Seconds since the freshest sign of life the runtime left (``signals.liveness``)."""
    return _lag_since(_get(state, "signals", "liveness", "at"), now)


def _staleness_lag(state: Mapping[str, Any], outcome: str, now: dt.datetime) -> tuple[str, int | None]:
    """The lag the staleness rule judges: since the last sign of life for a run known to be
    running (the runtime writes no heartbeat and can be silent for a whole role), else since the
    last event (the reference's rule)."""
    liveness = compute_liveness_lag(state, now)
    if outcome == "running" and liveness is not None:
        return "livenessLagSeconds", liveness
    return "ingestLagSeconds", compute_ingest_lag(state, now)


def _heartbeat_at(heartbeat_state: Mapping[str, Any]) -> Any:
    value = heartbeat_state.get("lastHeartbeatAt")
    return value if _present(value) else _get(heartbeat_state, "heartbeat", "timestamp")


def compute_heartbeat_lag(heartbeat_state: Mapping[str, Any], now: dt.datetime) -> int | None:
    """The stored lag when valid (it does not age, see divergences), else now - last heartbeat."""
    stored = coerce_non_negative_int(heartbeat_state.get("heartbeatLagSeconds"))
    if stored is not None:
        return stored
    return _lag_since(_heartbeat_at(heartbeat_state), now)


def _last_control_status(last_intent: Mapping[str, Any] | None) -> Any:
    if not isinstance(last_intent, Mapping):
        return None
    status = last_intent.get("status")
    return status if _present(status) else None


_reason = run_outcome.build_reason


def _tiered(code: str, metric: str, value: int | None, degraded: int, critical: int) -> JsonObject | None:
    if value is None:
        return None
    if value >= critical:
        return _reason(code, "critical", metric, value, critical)
    if value >= degraded:
        return _reason(code, "degraded", metric, value, degraded)
    return None


def compute_reasons(inputs: HealthInputs, now: dt.datetime) -> list[JsonObject]:
    """The de-duplicated, sorted reason list (§6.3, §6.4)."""
    t = inputs.thresholds
    added: list[JsonObject | None] = []
    if _get(inputs.state, "divergence", "any") is True:
        added.append(_reason("divergence_detected", "degraded", "divergence.any", "true", "false"))
    control = _last_control_status(inputs.last_intent)
    if control == "ambiguous":
        added.append(_reason("control_ambiguous", "degraded", "control.status", "ambiguous", "confirmed"))
    elif control == "failed_command":
        added.append(
            _reason("control_failed_command", "degraded", "control.status", "failed_command", "confirmed")
        )
    outcome = run_outcome.compute_outcome(inputs.state)
    if outcome in run_outcome.PRODUCING:
        metric, lag = _staleness_lag(inputs.state, outcome, now)
        added.append(
            _tiered("ingest_stale", metric, lag, t.degraded_ingest_lag_seconds, t.critical_ingest_lag_seconds)
        )
        added.append(
            _tiered(
                "runtime_heartbeat_stale",
                "heartbeatLagSeconds",
                compute_heartbeat_lag(inputs.heartbeat_state, now),
                t.degraded_heartbeat_lag_seconds,
                t.critical_heartbeat_lag_seconds,
            )
        )
    added.extend(run_outcome.compute_outcome_reasons(outcome, inputs.state, t.lifecycle, now))
    added.append(
        _tiered(
            "transport_unreachable",
            "transportFailureStreak",
            compute_failure_streak(inputs.transport_health),
            t.degraded_transport_failure_streak,
            t.critical_transport_failure_streak,
        )
    )
    if inputs.sequence_state.get("driftActive") is True:
        code = inputs.sequence_state.get("reasonCode")
        status = inputs.sequence_state.get("status")
        added.append(
            _reason(
                str(code) if _present(code) else "ordering_drift_detected",
                "degraded",
                "sequence.status",
                status if _present(status) else "ordering_drift_detected",
                "ok",
            )
        )
    if not inputs.ingest_ok:
        added.append(
            _reason(
                compute_failure_reason_code(inputs.failure_code),
                "degraded",
                "ingestStatus",
                "failed",
                "success",
            )
        )
    kept: dict[str, JsonObject] = {}
    for reason in added:
        if reason is None:
            continue
        kept.setdefault(f"{reason['code']}:{reason['severity']}", reason)
    return [kept[key] for key in sorted(kept, key=lambda key: key.encode("utf-8"))]


def compute_health(inputs: HealthInputs, now: dt.datetime) -> JsonObject:
    """The health.json document (§6.6); explicit nulls are kept."""
    reasons = compute_reasons(inputs, now)
    codes = sorted({reason["code"] for reason in reasons}, key=lambda code: code.encode("utf-8"))
    severities = {reason["severity"] for reason in reasons}
    if "critical" in severities:
        status = "critical"
    elif severities - {"info"}:
        status = "degraded"
    else:
        status = "healthy"  # info reasons (a cancel, an approval not yet overdue) are shown only
    sequence_status = inputs.sequence_state.get("status")
    last_failure = inputs.transport_health.get("lastFailureCode")
    return {
        "schemaVersion": "v1",
        "updatedAt": format_ts(now),
        "traceId": inputs.trace_id or None,
        "status": status,
        "reasonCodes": codes,
        "reasons": reasons,
        "metrics": {
            "ingestLagSeconds": compute_ingest_lag(inputs.state, now),
            "heartbeatLagSeconds": compute_heartbeat_lag(inputs.heartbeat_state, now),
            "transportFailureStreak": compute_failure_streak(inputs.transport_health),
            "lastControlStatus": _last_control_status(inputs.last_intent),
            "sequenceStatus": sequence_status if _present(sequence_status) else None,
            "lifecycleState": compute_lifecycle_state(inputs.state),
            "runOutcome": run_outcome.compute_outcome(inputs.state),
            "livenessLagSeconds": compute_liveness_lag(inputs.state, now),
            "livenessSource": _or_none(_get(inputs.state, "signals", "liveness", "source")),
        },
        "thresholds": inputs.thresholds.to_document(),
        "transport": {
            "mode": inputs.transport,
            "ingestStatus": "success" if inputs.ingest_ok else "failed",
            "failureCode": inputs.failure_code or None,
            "lastFailureCode": last_failure if _present(last_failure) else None,
        },
        "evidence": {
            "lastEventAt": _or_none(_get(inputs.state, "projection", "lastEventAt")),
            "lastHeartbeatAt": _or_none(_heartbeat_at(inputs.heartbeat_state)),
            "sequenceUpdatedAt": _or_none(inputs.sequence_state.get("updatedAt")),
        },
    }


def _or_none(value: object) -> object:
    return value if _present(value) else None
