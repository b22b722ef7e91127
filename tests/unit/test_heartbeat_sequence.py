"""Heartbeat freshness (§7.1) and envelope sequence diagnostics (§7.2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.loop import heartbeat, sequence

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def observe(beat: Any, degraded: int = 120, critical: int = 300) -> heartbeat.HeartbeatObservation:
    return heartbeat.compute_heartbeat_observation(
        {"runtime": {"heartbeat": beat}},
        loop_id="demo-loop",
        trace_id="t1",
        transport="local",
        degraded_seconds=degraded,
        critical_seconds=critical,
        now=NOW,
    )


@pytest.mark.parametrize("beat", [None, False])
def test_no_heartbeat_changes_nothing(beat: Any) -> None:
    assert observe(beat) == heartbeat.HeartbeatObservation(state=None, row=None)


def test_missing_timestamp_records_failed_row_only() -> None:
    result = observe({"status": "running"})
    assert result.state is None
    assert result.row == {
        "timestamp": "2026-03-01T12:00:00Z",
        "loopId": "demo-loop",
        "traceId": "t1",
        "transport": "local",
        "category": "runtime_heartbeat",
        "status": "failed",
        "reasonCode": "missing_heartbeat_timestamp",
        "heartbeat": {"status": "running"},
    }


def test_invalid_timestamp_records_failed_row_with_value() -> None:
    result = observe({"timestamp": "2026-03-01T11:00:00+00:00"})
    assert result.state is None
    assert result.row is not None
    assert result.row["reasonCode"] == "invalid_heartbeat_timestamp"
    assert result.row["heartbeatAt"] == "2026-03-01T11:00:00+00:00"


def test_stale_heartbeat_state_matches_contract_shape() -> None:
    beat = {"schemaVersion": "v1", "timestamp": "2020-01-01T00:00:00Z", "source": "runtime"}
    result = observe(beat, degraded=1, critical=999_999_999)
    lag = int((NOW - dt.datetime(2020, 1, 1, tzinfo=dt.UTC)).total_seconds())
    assert result.state == {
        "schemaVersion": "v1",
        "updatedAt": "2026-03-01T12:00:00Z",
        "loopId": "demo-loop",
        "traceId": "t1",
        "transport": "local",
        "lastHeartbeatAt": "2020-01-01T00:00:00Z",
        "heartbeatLagSeconds": lag,
        "freshnessStatus": "degraded",
        "reasonCode": "runtime_heartbeat_stale",
        "thresholds": {"degradedHeartbeatLagSeconds": 1, "criticalHeartbeatLagSeconds": 999_999_999},
        "heartbeat": beat,
    }
    assert result.row is not None
    assert (result.row["status"], result.row["heartbeatLagSeconds"]) == ("degraded", lag)


@pytest.mark.parametrize(
    ("age", "freshness"), [(0, "fresh"), (119, "fresh"), (120, "degraded"), (300, "critical")]
)
def test_freshness_boundaries_and_updated_at_fallback(age: int, freshness: str) -> None:
    stamp = (NOW - dt.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = observe({"updatedAt": stamp})
    assert result.state is not None
    assert result.state["freshnessStatus"] == freshness
    assert ("reasonCode" in result.state) is (freshness != "fresh")


def envelope(value: object) -> dict[str, Any]:
    return {"sequence": {"source": "cursor_event_line_offset", "value": value}}


def diagnose(
    previous: dict[str, Any] | None, snapshot_value: object, values: list[object]
) -> sequence.SequenceDiagnostics:
    return sequence.compute_sequence_diagnostics(
        previous,
        envelope(snapshot_value),
        [envelope(value) for value in values],
        loop_id="demo-loop",
        trace_id="t",
        transport="local",
        now=NOW,
    )


def test_first_pass_is_ok() -> None:
    result = diagnose(None, 2, [1, 2])
    assert result.status == "ok"
    assert "reasonCode" not in result.state
    assert result.state["events"] == {
        "ingestedCount": 2,
        "previousLast": None,
        "first": 1,
        "last": 2,
        "monotonicWithinBatch": True,
        "monotonicAcrossBatches": True,
        "regressed": False,
        "missing": False,
    }
    assert result.state["snapshot"]["previous"] is None


def test_replay_after_truncation_matches_contract_example() -> None:
    baseline = diagnose(None, 2, [1, 2]).state
    result = diagnose(baseline, 1, [1])
    assert result.state["violations"] == ["event_sequence_regression", "snapshot_sequence_regression"]
    assert result.state["snapshot"] == {
        "previous": 2,
        "current": 1,
        "monotonic": False,
        "regressed": True,
        "missing": False,
    }
    assert result.state["events"]["monotonicAcrossBatches"] is False
    assert result.state["transition"] == {
        "previousDriftActive": False,
        "transitionedToDrift": True,
        "recoveredFromDrift": False,
    }
    assert result.transitioned_to_drift
    assert result.row["category"] == "envelope_sequence"
    assert result.row["violations"] == result.state["violations"]


def test_drift_persists_then_recovers() -> None:
    drifted = diagnose(diagnose(None, 2, [1, 2]).state, 1, [1]).state
    still = diagnose(drifted, 0, [])
    assert still.state["violations"] == ["snapshot_sequence_regression"]
    assert not still.transitioned_to_drift
    recovered = diagnose(still.state, 5, [])
    assert recovered.state["transition"]["recoveredFromDrift"] is True
    assert recovered.status == "ok"


def test_equal_values_are_not_regressions() -> None:
    result = diagnose({"snapshot": {"current": 3}, "events": {"last": 3}}, 3, [3, 3])
    assert result.state["violations"] == []


def test_within_batch_decrease_and_missing_values() -> None:
    result = diagnose(None, "x", [2, 1, None, "3"])
    assert result.state["violations"] == [
        "event_sequence_missing",
        "event_sequence_non_monotonic",
        "snapshot_sequence_missing",
    ]
    assert result.state["events"]["first"] == 2
    assert result.state["events"]["last"] == 3
    assert result.state["snapshot"]["current"] is None
    assert result.reason_code == "ordering_drift_detected"


def test_non_object_event_counts_as_missing() -> None:
    result = sequence.compute_sequence_diagnostics(
        {}, envelope(1), ["garbage"], loop_id="l", trace_id=None, transport="local", now=NOW
    )
    assert result.state["violations"] == ["event_sequence_missing"]
    assert "traceId" not in result.state


def test_empty_batch_carries_nothing_forward() -> None:
    empty = diagnose({"snapshot": {"current": 2}, "events": {"last": 2}}, 2, [])
    assert empty.state["events"]["last"] is None
    after = diagnose(empty.state, 3, [1])
    assert after.state["violations"] == []


def test_previous_drift_flag_must_be_literal_true() -> None:
    result = diagnose({"driftActive": "true"}, 1, [])
    assert result.state["transition"]["previousDriftActive"] is False
