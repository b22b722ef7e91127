"""Pure pieces of the reconcile pass: transport health, state enrichment, telemetry and escalations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from superloop_ops.core.alerts import escalations
from superloop_ops.core.loop import pass_rules

NOW = dt.datetime(2026, 3, 1, 12, 10, 0, tzinfo=dt.UTC)
CTX = escalations.EscalationContext("demo-loop", "t", "local", NOW)


def test_transport_health_failure_then_success() -> None:
    prior = {"failureStreak": 1, "lastSuccessAt": "2026-03-01T12:00:00Z", "lastFailureAt": "x"}
    failed = pass_rules.compute_transport_health(
        prior,
        success=False,
        failure_code="service_request_failed",
        trace_id="tr",
        transport="sprite_service",
        now=NOW,
    )
    assert failed == {
        "schemaVersion": "v1",
        "updatedAt": "2026-03-01T12:10:00Z",
        "traceId": "tr",
        "transport": "sprite_service",
        "lastResult": "failed",
        "failureStreak": 2,
        "lastFailureCode": "service_request_failed",
        "lastSuccessAt": "2026-03-01T12:00:00Z",
        "lastFailureAt": "2026-03-01T12:10:00Z",
    }
    ok = pass_rules.compute_transport_health(
        failed, success=True, failure_code=None, trace_id="tr", transport="local", now=NOW
    )
    assert ok["failureStreak"] == 0
    assert "lastFailureCode" not in ok
    assert ok["lastFailureAt"] == "2026-03-01T12:10:00Z"
    assert ok["lastSuccessAt"] == "2026-03-01T12:10:00Z"


def test_transport_health_bad_previous_streak_restarts() -> None:
    document = pass_rules.compute_transport_health(
        {"failureStreak": "-3"}, success=False, failure_code="x", trace_id="t", transport="local", now=NOW
    )
    assert document["failureStreak"] == 1
    assert "lastSuccessAt" not in document


def test_success_state_key_order_and_trace() -> None:
    projected = {
        "schemaVersion": "v1",
        "generatedAt": "g",
        "source": {},
        "run": {},
        "transition": {},
        "projection": {},
        "cursor": {},
        "divergence": {},
        "evidence": {},
    }
    state = pass_rules.build_success_state(
        projected, health={"status": "healthy"}, sequence={"s": 1}, trace_id="t"
    )
    assert list(state)[-3:] == ["health", "trace", "sequence"]
    assert state["trace"] == {"reconcileTraceId": "t"}
    merged = pass_rules.build_drift_merged_state(
        state,
        drift={"status": "aligned"},
        summary={"recommendedProfile": "strict", "source": {"window": 25}},
        trace_id="t",
    )
    assert list(merged)[-2:] == ["drift", "tuning"]
    assert merged["drift"] == {"status": "aligned", "traceId": "t"}
    assert merged["tuning"]["summaryWindow"] == 25
    assert merged["tuning"]["telemetrySummary"] == {"observed": {}, "source": {"window": 25}}


def test_failed_state_keeps_projection_and_merges_trace() -> None:
    previous = {"projection": {"status": "running"}, "trace": {"other": "x", "reconcileTraceId": "old"}}
    state = pass_rules.build_failed_state(previous, health={"status": "degraded"}, trace_id="new")
    assert state["projection"] == {"status": "running"}
    assert state["trace"] == {"other": "x", "reconcileTraceId": "new"}
    assert state["health"] == {"status": "degraded"}


def test_telemetry_row_success_and_failure() -> None:
    base: dict[str, Any] = {
        "loop_id": "demo-loop",
        "trace_id": "t1",
        "transport": "local",
        "started_at": NOW,
        "completed_at": NOW + dt.timedelta(seconds=7),
        "ingest_ok": True,
        "failure_code": None,
        "failure_message": None,
        "cursor_offset_before": 0,
        "cursor_offset_after": 2,
        "events_ingested": 2,
        "max_events": 0,
        "from_start": False,
        "retry_attempts": 3,
        "retry_backoff_seconds": 1,
        "threshold_profile": "balanced",
        "transport_failure_streak": 0,
        "sequence_status": "ok",
        "sequence_reason_code": None,
        "health_status": "healthy",
        "health_reason_codes": [],
    }
    row = pass_rules.build_telemetry_row(pass_rules.TelemetryInputs(**base))
    assert list(row) == [
        "timestamp",
        "startedAt",
        "loopId",
        "traceId",
        "transport",
        "status",
        "cursorOffsetBefore",
        "cursorOffsetAfter",
        "eventsIngested",
        "maxEvents",
        "fromStart",
        "retryAttempts",
        "retryBackoffSeconds",
        "thresholdProfile",
        "durationSeconds",
        "transportFailureStreak",
        "sequenceStatus",
        "healthStatus",
        "healthReasonCodes",
    ]
    assert row["durationSeconds"] == 7
    base.update(
        ingest_ok=False,
        failure_code="events_unavailable",
        failure_message="boom",
        sequence_status="skipped_ingest_failed",
        completed_at=NOW - dt.timedelta(seconds=5),
    )
    failed = pass_rules.build_telemetry_row(pass_rules.TelemetryInputs(**base))
    assert (failed["status"], failed["failureCode"], failed["failureMessage"]) == (
        "failed",
        "events_unavailable",
        "boom",
    )
    assert failed["durationSeconds"] == 0


def test_tail_lines_keeps_last_forty_and_strips_cr() -> None:
    text = "\r\n".join(f"line {n}" for n in range(50))
    tailed = pass_rules.tail_lines(text)
    assert tailed.splitlines()[0] == "line 10"
    assert "\r" not in tailed


def test_divergence_escalation_every_divergent_pass() -> None:
    state = {
        "divergence": {"any": True, "flags": {"activeMismatch": True}},
        "transition": {"currentState": "running"},
        "projection": {},
    }
    row = escalations.build_divergence_escalation(CTX, state, state_file="/s", cursor_file="/c")
    assert row is not None
    assert row["category"] == "divergence_detected"
    assert row["divergenceFlags"] == {"activeMismatch": True}
    assert row["state"]["cursor"] == {}
    assert (
        escalations.build_divergence_escalation(
            CTX, {"divergence": {"any": False}}, state_file="", cursor_file=""
        )
        is None
    )


def test_ordering_drift_escalation_only_on_transition() -> None:
    sequence = {
        "status": "ordering_drift_detected",
        "reasonCode": "ordering_drift_detected",
        "driftActive": True,
        "violations": ["snapshot_sequence_regression"],
        "snapshot": {},
        "events": {},
        "transition": {"transitionedToDrift": True},
    }
    row = escalations.build_ordering_drift_escalation(
        CTX, sequence, state_file="/s", sequence_state_file="/q", sequence_telemetry_file="/qt"
    )
    assert row is not None
    assert row["sequence"]["violations"] == ["snapshot_sequence_regression"]
    sequence["transition"] = {"transitionedToDrift": False}
    assert (
        escalations.build_ordering_drift_escalation(
            CTX, sequence, state_file="/s", sequence_state_file="/q", sequence_telemetry_file="/qt"
        )
        is None
    )


def _health_row(health: dict[str, Any], previous: escalations.PreviousHealth, ok: bool = True) -> Any:
    return escalations.build_health_escalation(
        CTX,
        health,
        previous,
        ingest_ok=ok,
        failure_code=None if ok else "snapshot_unavailable",
        state_file="/s",
        cursor_file="/c",
        health_file="/h",
    )


def test_health_escalation_dedupes_against_previous_verdict() -> None:
    degraded = {"status": "degraded", "reasonCodes": ["ingest_stale"], "reasons": []}
    first = _health_row(degraded, escalations.compute_previous_health(None))
    assert first is not None
    assert first["category"] == "health_degraded"
    assert "failureCode" not in first
    same = escalations.compute_previous_health({"status": "degraded", "reasonCodes": ["ingest_stale"]})
    assert _health_row(degraded, same) is None
    more = {"status": "degraded", "reasonCodes": ["ingest_stale", "x"], "reasons": []}
    assert _health_row(more, same) is not None
    critical = _health_row({"status": "critical", "reasonCodes": ["ingest_stale"]}, same, ok=False)
    assert critical["category"] == "health_critical"
    assert critical["failureCode"] == "snapshot_unavailable"
    assert _health_row({"status": "healthy", "reasonCodes": []}, same) is None


def test_previous_health_defaults() -> None:
    assert escalations.compute_previous_health([1]) == escalations.PreviousHealth()
    assert escalations.compute_previous_health({"status": ""}).status == "healthy"


def test_profile_drift_escalation_defaults_and_nested_nulls() -> None:
    row = escalations.build_profile_drift_escalation(
        CTX,
        {"transitioned": {"toActive": True}, "appliedProfile": "balanced"},
        state_file="/s",
        drift_state_file="/d",
        drift_history_file="/dh",
    )
    assert row is not None
    assert row["reasonCode"] == "profile_drift_detected"
    assert row["drift"] == {
        "status": "unknown",
        "appliedProfile": "balanced",
        "recommendedProfile": None,
        "recommendationConfidence": None,
        "mismatchStreak": 0,
        "requiredStreak": 0,
        "action": None,
        "rationale": None,
    }
    assert (
        escalations.build_profile_drift_escalation(
            CTX,
            {"transitioned": {"toActive": False}},
            state_file="",
            drift_state_file="",
            drift_history_file="",
        )
        is None
    )
