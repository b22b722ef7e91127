"""``core.common.status_conditions``: the one set of condition helpers every kind's status uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    find_condition,
)
from superloop_ops.models import common, conditions

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("health_degraded", "HealthDegraded"),
        ("promotion_drill_not_passed_ambiguous_retry_guard", "PromotionDrillNotPassedAmbiguousRetryGuard"),
        ("reconcile_failed", "ReconcileFailed"),
        ("transport_unreachable", "TransportUnreachable"),
        ("source_not_found", "SourceNotFound"),
        ("already-Camel", "AlreadyCamel"),
        ("404_missing", "R404Missing"),
        ("", "Unknown"),
    ],
)
def test_camel_reason(code: str, reason: str) -> None:
    assert camel_reason(code) == reason


def test_build_conditions_appends_then_keeps_transition_time_while_status_holds() -> None:
    first = build_conditions(
        None,
        [ConditionSpec(conditions.READY, "Unknown", camel_reason("reconcile_pending"))],
        generation=1,
        now=NOW,
    )
    assert first[0]["reason"] == "ReconcilePending"
    assert first[0]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    later = NOW + timedelta(minutes=5)
    same = build_conditions(
        first, [ConditionSpec(conditions.READY, "Unknown", "StillPending", "m")], generation=2, now=later
    )
    assert same[0]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    assert (same[0]["reason"], same[0]["message"], same[0]["observedGeneration"]) == ("StillPending", "m", 2)
    flipped = build_conditions(
        same, [ConditionSpec(conditions.READY, "True", "ReconcileSucceeded")], generation=2, now=later
    )
    assert flipped[0]["lastTransitionTime"] == "2026-03-01T12:05:00Z"
    assert first[0]["status"] == "Unknown"  # inputs are not mutated


def test_build_conditions_keeps_other_types() -> None:
    conds = build_conditions(None, [ConditionSpec(conditions.READY, "True", "Ok")], generation=1, now=NOW)
    conds = build_conditions(
        conds,
        [ConditionSpec(conditions.HEALTHY, "False", camel_reason("health_critical"))],
        generation=1,
        now=NOW,
    )
    conds = build_conditions(
        conds, [ConditionSpec(conditions.READY, "False", "ReconcileFailed", "x")], generation=1, now=NOW
    )
    assert [c["type"] for c in conds] == ["Ready", "Healthy", "Reconciling", "Stalled"]  # kstatus last
    assert find_condition(conds, "Healthy") is not None
    assert find_condition(conds, "Diverged") is None


def test_condition_serialises_in_metav1_shape() -> None:
    conds = build_conditions(
        [],
        [ConditionSpec(conditions.APPLIED, "True", camel_reason("promotion_apply_applied"))],
        generation=4,
        now=NOW,
    )
    assert conds[0] == {
        "type": "Applied",
        "status": "True",
        "observedGeneration": 4,
        "lastTransitionTime": "2026-03-01T12:00:00Z",
        "reason": "PromotionApplyApplied",
        "message": "",
    }
    assert common.Condition.model_validate(conds[0]).to_body() == conds[0]  # the CRD's schema
