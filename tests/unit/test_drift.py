"""Profile drift rules (§3): confidence gating, streak, states, transitions, escalation edge."""

from __future__ import annotations

import datetime as dt

import pytest

from superloop_ops.core.tuning import drift
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 2, 22, 10, 5, tzinfo=dt.UTC)
CATALOG = ("strict", "balanced", "relaxed")


def inputs(**overrides: object) -> drift.DriftInputs:
    values: dict[str, object] = {"loop_id": "demo-loop"}
    values.update(overrides)
    return drift.DriftInputs(**values)  # type: ignore[arg-type]


def evaluate(previous: object, **overrides: object) -> dict[str, object]:
    checked = drift.validate_drift_profiles(inputs(**overrides), CATALOG)
    return drift.compute_drift_state(previous, checked, now=NOW)


def test_activates_after_required_streak() -> None:
    """Port of bats: profile drift activates after required mismatch streak."""
    args = {
        "applied_profile": "balanced",
        "recommended_profile": "relaxed",
        "recommendation_confidence": "high",
        "required_streak": 2,
        "summary_window": 40,
    }
    first = evaluate({}, **args)
    assert first["status"] == "mismatch_pending"
    assert first["mismatchStreak"] == 1
    assert first["driftActive"] is False
    assert first["action"] == "monitor_additional_windows"
    assert "reasonCode" not in first
    second = evaluate(first, **args)
    assert second["status"] == "drift_active"
    assert second["driftActive"] is True
    assert second["reasonCode"] == "profile_drift_detected"
    assert second["action"] == "review_threshold_profile"
    assert second["transitioned"] == {"toActive": True, "toResolved": False}
    third = evaluate(second, **args)
    assert third["mismatchStreak"] == 3
    assert third["transitioned"] == {"toActive": False, "toResolved": False}


def test_resolves_when_profiles_realign() -> None:
    """Port of bats: profile drift resolves when profiles realign."""
    active = evaluate(
        {},
        applied_profile="balanced",
        recommended_profile="strict",
        recommendation_confidence="high",
        required_streak=1,
    )
    assert active["status"] == "drift_active"
    resolved = evaluate(
        active,
        applied_profile="balanced",
        recommended_profile="balanced",
        recommendation_confidence="high",
        required_streak=1,
    )
    assert resolved["status"] == "aligned"
    assert resolved["driftActive"] is False
    assert resolved["mismatchStreak"] == 0
    assert resolved["transitioned"] == {"toActive": False, "toResolved": True}
    assert "action" not in resolved


def test_gated_when_confidence_below_minimum() -> None:
    """Port of bats: mismatch is gated when confidence is below minimum."""
    state = evaluate(
        {},
        applied_profile="balanced",
        recommended_profile="strict",
        recommendation_confidence="low",
        min_confidence="high",
        required_streak=1,
    )
    assert state["status"] == "insufficient_confidence"
    assert state["eligibleMismatch"] is False
    assert state["mismatchStreak"] == 0
    assert state["action"] == "collect_more_confident_telemetry"
    assert state["recommendationRank"] == 1
    assert state["minimumRank"] == 3


def test_fails_closed_on_unknown_applied_profile() -> None:
    """Port of bats: profile drift fails closed on unknown threshold profile names."""
    with pytest.raises(ContractError, match="unknown applied profile: unknown-profile"):
        drift.validate_drift_profiles(
            inputs(applied_profile="unknown-profile", recommended_profile="balanced"), CATALOG
        )


def test_unknown_recommendation_fails_for_people_and_is_ignored_for_reconcile() -> None:
    custom = ("balanced",)
    given = inputs(applied_profile="balanced", recommended_profile="strict", recommendation_confidence="high")
    with pytest.raises(ContractError, match="unknown recommended profile: strict"):
        drift.validate_drift_profiles(given, custom)
    lenient = drift.validate_drift_profiles(given, custom, unknown_recommendation="ignore")
    state = drift.compute_drift_state({}, lenient, now=NOW)
    assert state["status"] == "no_recommendation"
    assert "recommendedProfile" not in state


def test_low_confidence_window_resets_streak_and_resolves_active_drift() -> None:
    active = evaluate(
        {"mismatchStreak": 4, "driftActive": True},
        applied_profile="balanced",
        recommended_profile="strict",
        recommendation_confidence="low",
        min_confidence="medium",
        required_streak=2,
    )
    assert active["mismatchStreak"] == 0
    assert active["transitioned"] == {"toActive": False, "toResolved": True}


@pytest.mark.parametrize(
    ("applied", "recommended", "status"),
    [("", "strict", "aligned"), ("balanced", "", "no_recommendation"), ("", "", "no_recommendation")],
)
def test_empty_profiles_never_count_as_mismatch(applied: str, recommended: str, status: str) -> None:
    state = evaluate(
        {}, applied_profile=applied, recommended_profile=recommended, recommendation_confidence="high"
    )
    assert state["status"] == status
    assert state["mismatch"] is False


@pytest.mark.parametrize(
    "previous", [None, [], "x", {"mismatchStreak": -1}, {"mismatchStreak": "3"}, {"mismatchStreak": True}]
)
def test_malformed_previous_state_starts_fresh(previous: object) -> None:
    assert drift.compute_previous_drift(previous)[0] == 0


def test_string_true_does_not_count_as_previously_active() -> None:
    assert drift.compute_previous_drift({"driftActive": "true"}) == (0, False)


def test_state_document_field_order_and_null_stripping() -> None:
    state = evaluate(
        {},
        applied_profile="balanced",
        recommended_profile="strict",
        recommendation_confidence="medium",
        required_streak=1,
        rationale="because",
    )
    assert list(state) == [
        "schemaVersion",
        "updatedAt",
        "loopId",
        "status",
        "reasonCode",
        "appliedProfile",
        "recommendedProfile",
        "recommendationConfidence",
        "minimumConfidence",
        "recommendationRank",
        "minimumRank",
        "requiredStreak",
        "summaryWindow",
        "mismatch",
        "confidenceOk",
        "eligibleMismatch",
        "mismatchStreak",
        "driftActive",
        "transitioned",
        "rationale",
        "action",
    ]
    assert state["updatedAt"] == "2026-02-22T10:05:00Z"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("required_streak", 0, "--required-streak must be an integer >= 1"),
        ("summary_window", 0, "--summary-window must be an integer >= 1"),
        (
            "recommendation_confidence",
            "huge",
            "--recommendation-confidence must be one of: low, medium, high",
        ),
        ("min_confidence", "", "--min-confidence must be one of: low, medium, high"),
    ],
)
def test_inputs_fail_closed(field: str, value: object, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        inputs(**{field: value})


def test_escalation_only_on_activation_edge() -> None:
    first = evaluate(
        {},
        applied_profile="relaxed",
        recommended_profile="strict",
        recommendation_confidence="low",
        min_confidence="low",
        required_streak=1,
        rationale="Observed stable healthy runs; tighten thresholds for faster detection",
    )
    row = drift.build_drift_escalation(
        first,
        loop_id="demo-loop",
        trace_id="trace-1",
        transport="local",
        state_file="/r/state.json",
        drift_state_file="/r/profile-drift.json",
        drift_history_file="/r/telemetry/profile-drift.jsonl",
        now=NOW,
    )
    assert row is not None
    assert row["category"] == "profile_drift_detected"
    assert row["reasonCode"] == "profile_drift_detected"
    assert row["traceId"] == "trace-1"
    assert row["drift"] == {
        "status": "drift_active",
        "appliedProfile": "relaxed",
        "recommendedProfile": "strict",
        "recommendationConfidence": "low",
        "mismatchStreak": 1,
        "requiredStreak": 1,
        "action": "review_threshold_profile",
        "rationale": "Observed stable healthy runs; tighten thresholds for faster detection",
    }
    second = evaluate(
        first,
        applied_profile="relaxed",
        recommended_profile="strict",
        min_confidence="low",
        required_streak=1,
    )
    assert second["driftActive"] is True
    assert (
        drift.build_drift_escalation(
            second,
            loop_id="demo-loop",
            trace_id=None,
            transport="local",
            state_file="s",
            drift_state_file="d",
            drift_history_file="h",
            now=NOW,
        )
        is None
    )


def test_history_row_and_tuning_block() -> None:
    state = evaluate({}, applied_profile="balanced", recommended_profile="balanced")
    row = drift.build_drift_history_row(state, now=NOW)
    assert row == {
        "timestamp": "2026-02-22T10:05:00Z",
        "loopId": "demo-loop",
        "category": "profile_drift_evaluation",
        "drift": state,
    }
    assert drift.build_tuning_block(None, "balanced") is None
    summary = {
        "recommendedProfile": "strict",
        "confidence": "low",
        "rationale": "r",
        "source": {"window": 25},
        "observed": {"reconcileAttempts": 1},
    }
    assert drift.build_tuning_block(summary, "balanced") == {
        "appliedProfile": "balanced",
        "recommendedProfile": "strict",
        "confidence": "low",
        "rationale": "r",
        "summaryWindow": 25,
        "telemetrySummary": {"observed": {"reconcileAttempts": 1}, "source": {"window": 25}},
    }
