"""Health rules, de-duplication and document shape (loop-core §6), plus the §5.7 failure mapping."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.loop import health, pass_rules
from superloop_ops.core.loop.threshold_profiles import Thresholds, compute_thresholds

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(seconds: int) -> str:
    return format_ts(NOW - dt.timedelta(seconds=seconds))


def make_thresholds(**overrides: int) -> Thresholds:
    return dataclasses.replace(compute_thresholds(None), profile="balanced", **overrides)


def inputs(**overrides: Any) -> health.HealthInputs:
    base: dict[str, Any] = {
        "state": {},
        "heartbeat_state": {},
        "sequence_state": {},
        "transport_health": {},
        "last_intent": None,
        "trace_id": "t1",
        "transport": "local",
        "thresholds": make_thresholds(),
        "ingest_ok": True,
        "failure_code": None,
    }
    base.update(overrides)
    return health.HealthInputs(**base)


def test_empty_inputs_are_healthy_with_full_shape() -> None:
    document = health.compute_health(inputs(trace_id=None), NOW)
    assert document == {
        "schemaVersion": "v1",
        "updatedAt": "2026-03-01T12:00:00Z",
        "traceId": None,
        "status": "healthy",
        "reasonCodes": [],
        "reasons": [],
        "metrics": {
            "ingestLagSeconds": None,
            "heartbeatLagSeconds": None,
            "transportFailureStreak": 0,
            "lastControlStatus": None,
            "sequenceStatus": None,
            "lifecycleState": "unknown",
            "runOutcome": "unknown",
            "livenessLagSeconds": None,
            "livenessSource": None,
        },
        "thresholds": {
            "profile": "balanced",
            "degradedIngestLagSeconds": 300,
            "criticalIngestLagSeconds": 900,
            "degradedHeartbeatLagSeconds": 120,
            "criticalHeartbeatLagSeconds": 300,
            "degradedTransportFailureStreak": 2,
            "criticalTransportFailureStreak": 4,
        },
        "transport": {
            "mode": "local",
            "ingestStatus": "success",
            "failureCode": None,
            "lastFailureCode": None,
        },
        "evidence": {"lastEventAt": None, "lastHeartbeatAt": None, "sequenceUpdatedAt": None},
    }


def test_failed_ingest_without_history_matches_contract_example() -> None:
    document = health.compute_health(
        inputs(
            ingest_ok=False,
            failure_code="snapshot_unavailable",
            transport_health={"failureStreak": 1, "lastFailureCode": "snapshot_unavailable"},
        ),
        NOW,
    )
    assert document["status"] == "degraded"
    assert document["reasons"] == [
        {
            "code": "transport_unreachable",
            "severity": "degraded",
            "metric": "ingestStatus",
            "observed": "failed",
            "threshold": "success",
        }
    ]
    assert document["transport"] == {
        "mode": "local",
        "ingestStatus": "failed",
        "failureCode": "snapshot_unavailable",
        "lastFailureCode": "snapshot_unavailable",
    }


@pytest.mark.parametrize(
    ("lag", "expected"),
    [(299, None), (300, ("degraded", "300")), (899, ("degraded", "300")), (900, ("critical", "900"))],
)
def test_ingest_lag_boundaries(lag: int, expected: tuple[str, str] | None) -> None:
    document = health.compute_health(inputs(state={"projection": {"lastEventAt": ago(lag)}}), NOW)
    assert document["metrics"]["ingestLagSeconds"] == lag
    if expected is None:
        assert document["reasons"] == []
    else:
        (reason,) = document["reasons"]
        assert (reason["severity"], reason["threshold"], reason["observed"]) == (*expected, str(lag))


def test_ingest_lag_ignores_non_canonical_and_future_timestamps() -> None:
    bad = health.compute_health(inputs(state={"projection": {"lastEventAt": "2026-03-01T11:00:00.5Z"}}), NOW)
    assert bad["metrics"]["ingestLagSeconds"] is None
    future = health.compute_health(inputs(state={"projection": {"lastEventAt": ago(-60)}}), NOW)
    assert future["metrics"]["ingestLagSeconds"] == 0


def test_heartbeat_prefers_stored_lag_which_does_not_age() -> None:
    document = health.compute_health(
        inputs(heartbeat_state={"heartbeatLagSeconds": "5", "lastHeartbeatAt": ago(10_000)}), NOW
    )
    assert document["metrics"]["heartbeatLagSeconds"] == 5
    assert document["status"] == "healthy"
    assert document["evidence"]["lastHeartbeatAt"] == ago(10_000)


def test_heartbeat_lag_falls_back_to_timestamps() -> None:
    document = health.compute_health(inputs(heartbeat_state={"heartbeat": {"timestamp": ago(300)}}), NOW)
    assert document["metrics"]["heartbeatLagSeconds"] == 300
    (reason,) = document["reasons"]
    assert (reason["code"], reason["severity"]) == ("runtime_heartbeat_stale", "critical")


def test_zero_streak_threshold_always_fires() -> None:
    document = health.compute_health(
        inputs(thresholds=make_thresholds(degraded_transport_failure_streak=0)), NOW
    )
    assert document["reasonCodes"] == ["transport_unreachable"]
    assert document["reasons"][0]["observed"] == "0"


@pytest.mark.parametrize(
    ("status", "code"),
    [("ambiguous", "control_ambiguous"), ("failed_command", "control_failed_command")],
)
def test_control_status_reasons(status: str, code: str) -> None:
    document = health.compute_health(inputs(last_intent={"status": status}), NOW)
    assert document["reasonCodes"] == [code]
    assert document["metrics"]["lastControlStatus"] == status
    assert document["reasons"][0]["threshold"] == "confirmed"


@pytest.mark.parametrize("status", ["confirmed", "executed_unconfirmed", None])
def test_other_control_statuses_add_nothing(status: str | None) -> None:
    assert health.compute_health(inputs(last_intent={"status": status}), NOW)["reasons"] == []


def test_sequence_drift_uses_sequence_reason_and_status() -> None:
    document = health.compute_health(
        inputs(sequence_state={"driftActive": True, "status": "custom_status", "reasonCode": "custom_code"}),
        NOW,
    )
    assert document["reasons"] == [
        {
            "code": "custom_code",
            "severity": "degraded",
            "metric": "sequence.status",
            "observed": "custom_status",
            "threshold": "ok",
        }
    ]
    only_flag = health.compute_health(inputs(sequence_state={"driftActive": "true"}), NOW)
    assert only_flag["reasons"] == []


def test_seven_reason_example_orders_and_dedupes() -> None:
    document = health.compute_health(
        inputs(
            state={"divergence": {"any": True}, "projection": {"lastEventAt": ago(400), "status": "running"}},
            last_intent={"status": "failed_command"},
            sequence_state={"driftActive": True, "status": "ordering_drift_detected"},
            heartbeat_state={"heartbeatLagSeconds": 200},
            transport_health={"failureStreak": 4},
            ingest_ok=False,
            failure_code="events_unavailable",
        ),
        NOW,
    )
    assert document["reasonCodes"] == [
        "control_failed_command",
        "divergence_detected",
        "ingest_stale",
        "ordering_drift_detected",
        "runtime_heartbeat_stale",
        "transport_unreachable",
    ]
    pairs = [(reason["code"], reason["severity"]) for reason in document["reasons"]]
    assert pairs[-2:] == [("transport_unreachable", "critical"), ("transport_unreachable", "degraded")]
    assert document["status"] == "critical"
    assert document["metrics"]["lifecycleState"] == "running"


def test_duplicate_composite_key_keeps_first_added() -> None:
    document = health.compute_health(
        inputs(transport_health={"failureStreak": 2}, ingest_ok=False, failure_code="snapshot_unavailable"),
        NOW,
    )
    (reason,) = document["reasons"]
    assert reason["metric"] == "transportFailureStreak"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("snapshot_unavailable", "transport_unreachable"),
        ("events_unavailable", "transport_unreachable"),
        ("service_request_failed", "transport_unreachable"),
        ("service_response_invalid", "invalid_transport_payload"),
        ("projection_failed", "projection_failed"),
        (None, "reconcile_failed"),
        ("", "reconcile_failed"),
        ("something_new", "something_new"),
    ],
)
def test_failure_code_mapping(code: str | None, reason: str) -> None:
    assert pass_rules.compute_failure_reason_code(code) == reason
    document = health.compute_health(inputs(ingest_ok=False, failure_code=code), NOW)
    assert document["reasonCodes"] == [reason]


def test_lifecycle_state_fallbacks() -> None:
    assert health.compute_lifecycle_state({"transition": {"currentState": "stopped"}}) == "stopped"
    assert health.compute_lifecycle_state({"projection": {"status": "idle"}}) == "idle"
    assert health.compute_lifecycle_state({"transition": {"currentState": False}}) == "unknown"


def test_streak_must_be_a_non_negative_integer() -> None:
    for bad in (-1, "x", 1.5, None):
        assert pass_rules.compute_failure_streak({"failureStreak": bad}) == 0
    assert pass_rules.compute_failure_streak({"failureStreak": "3"}) == 3


@settings(max_examples=200, deadline=None)
@given(
    divergent=st.booleans(),
    control=st.sampled_from([None, "ambiguous", "failed_command", "confirmed"]),
    ingest_lag=st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
    heartbeat_lag=st.one_of(st.none(), st.integers(min_value=0, max_value=600)),
    streak=st.integers(min_value=0, max_value=6),
    drift=st.booleans(),
    failure=st.sampled_from([None, "snapshot_unavailable", "projection_failed", "service_response_invalid"]),
)
def test_reason_invariants(
    divergent: bool,
    control: str | None,
    ingest_lag: int | None,
    heartbeat_lag: int | None,
    streak: int,
    drift: bool,
    failure: str | None,
) -> None:
    state: dict[str, Any] = {"divergence": {"any": divergent}}
    if ingest_lag is not None:
        state["projection"] = {"lastEventAt": ago(ingest_lag)}
    document = health.compute_health(
        inputs(
            state=state,
            last_intent={"status": control},
            heartbeat_state={} if heartbeat_lag is None else {"heartbeatLagSeconds": heartbeat_lag},
            transport_health={"failureStreak": streak},
            sequence_state={"driftActive": drift},
            ingest_ok=failure is None,
            failure_code=failure,
        ),
        NOW,
    )
    keys = [f"{reason['code']}:{reason['severity']}" for reason in document["reasons"]]
    assert keys == sorted(set(keys), key=lambda key: key.encode())
    assert document["reasonCodes"] == sorted({reason["code"] for reason in document["reasons"]})
    severities = {reason["severity"] for reason in document["reasons"]}
    expected = "critical" if "critical" in severities else ("degraded" if severities else "healthy")
    assert document["status"] == expected
    if failure is not None:
        assert document["status"] != "healthy"
    assert all(isinstance(reason["observed"], str) for reason in document["reasons"])
