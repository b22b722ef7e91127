"""The PromotionApply controller's pure rules: verdict codes, posture in force, status, Events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.promotion import apply_rules, promotion_apply_resource

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)  # fixed past instant; every date is relative to it


def _request(intent: str = "expand", **overrides: Any) -> promotion_apply_resource.OperatorRequest:
    args: dict[str, Any] = {
        "intent": intent,
        "expand_step": 25,
        "by": "ops-user",
        "approval_ref": "CAB-1",
        "rationale": "widen",
        "review_by": format_ts(NOW + dt.timedelta(days=7)),
        "review_within_days": None,
        "idempotency_key": "key-1",
        "dry_run": False,
        "now": NOW,
    }
    args.update(overrides)
    return promotion_apply_resource.build_operator_request(**args)


def test_review_within_days_resolves_relative_to_the_evaluation() -> None:
    request = _request(review_by=None, review_within_days=30, now=NOW.replace(microsecond=123))
    assert request.apply.review_by == "2026-03-31T12:00:00Z"
    assert _request(idempotency_key="").apply.idempotency_key is None


@pytest.mark.parametrize(
    ("intent", "decision", "code", "message"),
    [
        (
            "expand",
            None,
            promotion_apply_resource.CODE_DECISION_MISSING,
            "promotion state missing summary.decision",
        ),
        (
            "resume",
            "",
            promotion_apply_resource.CODE_DECISION_MISSING,
            "promotion state missing summary.decision",
        ),
        (
            "expand",
            "hold",
            promotion_apply_resource.CODE_DECISION_NOT_PROMOTE,
            "intent expand requires promotion decision promote (found: hold)",
        ),
        (
            "resume",
            "skipped",
            promotion_apply_resource.CODE_DECISION_NOT_PROMOTE,
            "intent resume requires promotion decision promote (found: skipped)",
        ),
    ],
)
def test_expand_and_resume_need_a_promote_decision(
    intent: str, decision: str | None, code: str, message: str
) -> None:
    verdict = promotion_apply_resource.decide_apply(_request(intent).apply, decision=decision, now=NOW)
    assert (verdict.action, verdict.reason_code, verdict.message) == ("reject", code, message)


@pytest.mark.parametrize("decision", [None, "hold", "skipped", "promote"])
def test_rollback_is_allowed_with_any_decision_or_none(decision: str | None) -> None:
    verdict = promotion_apply_resource.decide_apply(_request("rollback").apply, decision=decision, now=NOW)
    assert verdict.action == "proceed"


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (dt.timedelta(0), promotion_apply_resource.CODE_REVIEW_EXPIRED),
        (dt.timedelta(seconds=-1), promotion_apply_resource.CODE_REVIEW_EXPIRED),
    ],
)
def test_an_expired_review_date_is_refused_even_for_rollback(offset: dt.timedelta, code: str) -> None:
    request = _request("rollback", review_by=format_ts(NOW + offset)).apply
    verdict = promotion_apply_resource.decide_apply(request, decision="hold", now=NOW)
    assert (verdict.action, verdict.reason_code) == ("reject", code)
    assert verdict.message.startswith("--review-by must be in the future")
    assert (
        promotion_apply_resource.decide_apply(
            _request("rollback", review_by=format_ts(NOW + dt.timedelta(seconds=1))).apply,
            decision=None,
            now=NOW,
        ).action
        == "proceed"
    )


def test_a_malformed_review_date_has_its_own_code() -> None:
    verdict = promotion_apply_resource.decide_apply(
        _request(review_by="2026-03-02T00:00:00.000Z").apply, decision="promote", now=NOW
    )
    assert verdict.reason_code == promotion_apply_resource.CODE_REVIEW_BY_INVALID


def test_decision_gating_comes_before_the_review_date() -> None:
    request = _request("expand", review_by=format_ts(NOW - dt.timedelta(days=1))).apply
    assert (
        promotion_apply_resource.decide_apply(request, decision="hold", now=NOW).reason_code
        == promotion_apply_resource.CODE_DECISION_NOT_PROMOTE
    )


def test_posture_in_force_is_the_effective_one_only_for_its_generation() -> None:
    effective = {"canaryPercent": 50, "manualPause": True, "basedOnGeneration": 3}
    current = promotion_apply_resource.compute_current_posture(
        spec_canary_percent=25, spec_manual_pause=False, effective=effective, generation=3
    )
    assert current == apply_rules.RolloutPosture(50, True)
    rebased = promotion_apply_resource.compute_current_posture(
        spec_canary_percent=25, spec_manual_pause=False, effective=effective, generation=4
    )
    assert rebased == apply_rules.RolloutPosture(25, False)
    assert promotion_apply_resource.compute_current_posture(
        spec_canary_percent=10, spec_manual_pause=True, effective=None, generation=1
    ) == apply_rules.RolloutPosture(10, True)
    # a partial effective block falls back to spec per field
    partial = promotion_apply_resource.compute_current_posture(
        spec_canary_percent=10, spec_manual_pause=True, effective={"basedOnGeneration": 1}, generation=1
    )
    assert partial == apply_rules.RolloutPosture(10, True)


def _record(intent: str = "expand", before: tuple[int, bool] = (25, True), key: str | None = "key-1") -> Any:
    outcome = apply_rules.compute_promotion_apply(
        request=_request(intent, idempotency_key=key).apply,
        decision="promote",
        posture=apply_rules.RolloutPosture(*before),
        fleet_id="fleet-a",
        trace_id="uid-1",
        now=NOW,
        files={"applyStateFile": "/j/promotion-apply-state.json"},
    )
    return outcome.record


def test_effective_rollout_carries_the_after_posture_governance_and_the_apply_id() -> None:
    record = _record()
    effective = promotion_apply_resource.build_effective_rollout(
        record, generation=2, apply_id=promotion_apply_resource.compute_apply_id("p1", "uid-1")
    )
    assert effective == {
        "canaryPercent": 50,
        "manualPause": False,
        "basedOnGeneration": 2,
        "lastApply": "p1/uid-1",
        "changedAt": "2026-03-01T12:00:00Z",
        "governance": {
            "actor": "ops-user",
            "approvalRef": "CAB-1",
            "rationale": "widen",
            "changedAt": "2026-03-01T12:00:00Z",
            "reviewBy": "2026-03-08T12:00:00Z",
        },
    }
    assert (
        promotion_apply_resource.describe_record(record)
        == "expand: canaryPercent 25 -> 50, manualPause true -> false"
    )


def test_find_record_takes_the_last_match_by_key_or_trace_id() -> None:
    rows = [
        {"category": "promotion_apply", "idempotencyKey": "k", "traceId": "t1", "n": 1},
        "not a record",
        {"category": "promotion_apply", "idempotencyKey": "k", "traceId": "t2", "n": 2},
        {"category": "other", "idempotencyKey": "k", "traceId": "t3", "n": 3},
    ]
    assert promotion_apply_resource.find_record(rows, key="k") == rows[2]
    assert promotion_apply_resource.find_record(rows, trace_id="t1") == rows[0]
    assert promotion_apply_resource.find_record(rows, trace_id="t3") is None
    assert promotion_apply_resource.find_record(rows, key="missing") is None


def _cond(status: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "Applied"]
    return dict(cond)


def test_applied_status_holds_the_record_and_applied_at_together() -> None:
    record = _record()
    status = promotion_apply_resource.build_promotion_status(
        previous=None, generation=1, now=NOW, phase=promotion_apply_resource.APPLIED, decision="promote",
        review_by=record["governance"]["reviewBy"], record=record,
    )  # fmt: skip
    assert status["phase"] == "applied"
    assert status["record"] == record
    assert status["appliedAt"] == record["timestamp"] == "2026-03-01T12:00:00Z"
    assert status["reasonCodes"] == []
    assert status["message"] == "expand: canaryPercent 25 -> 50, manualPause true -> false"
    cond = _cond(status)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "Applied", 1)


def test_an_existing_record_is_never_replaced() -> None:
    first = promotion_apply_resource.build_promotion_status(
        previous=None,
        generation=1,
        now=NOW,
        phase=promotion_apply_resource.APPLIED,
        decision="promote",
        record=_record(),
    )
    other = _record("rollback")
    again = promotion_apply_resource.build_promotion_status(
        previous=first, generation=1, now=NOW + dt.timedelta(seconds=5),
        phase=promotion_apply_resource.APPLIED, decision="promote", record=other,
    )  # fmt: skip
    assert again["record"] == first["record"]
    assert again["appliedAt"] == first["appliedAt"]
    assert _cond(again)["lastTransitionTime"] == _cond(first)["lastTransitionTime"]


@pytest.mark.parametrize(
    ("phase", "codes", "cond_status", "reason"),
    [
        (promotion_apply_resource.REJECTED,
         [promotion_apply_resource.CODE_DECISION_NOT_PROMOTE, "promotion_drill_state_missing"], "False",
         "PromotionApplyDecisionNotPromote"),
        (promotion_apply_resource.REJECTED, [promotion_apply_resource.CODE_REVIEW_EXPIRED], "False",
         "PromotionApplyReviewExpired"),
        (promotion_apply_resource.PENDING, [promotion_apply_resource.CODE_FLEET_NOT_FOUND], "Unknown",
         "PromotionApplyFleetNotFound"),
        (promotion_apply_resource.DRY_RUN, [promotion_apply_resource.CODE_DRY_RUN], "False", "DryRun"),
    ],
)  # fmt: skip
def test_not_applied_phases_say_why_on_the_condition(
    phase: str, codes: list[str], cond_status: str, reason: str
) -> None:
    status = promotion_apply_resource.build_promotion_status(
        previous=None, generation=2, now=NOW, phase=phase, decision="hold", reason_codes=codes, message="why"
    )
    assert status["reasonCodes"] == codes
    assert "record" not in status
    assert "appliedAt" not in status
    cond = _cond(status)
    assert (cond["status"], cond["reason"], cond["message"], cond["observedGeneration"]) == (
        cond_status,
        reason,
        "why",
        2,
    )


def test_replayed_status_is_applied_true_with_the_replayed_record() -> None:
    replay = apply_rules.build_replay_record(_record())
    status = promotion_apply_resource.build_promotion_status(
        previous=None, generation=1, now=NOW, phase=promotion_apply_resource.REPLAYED, decision="promote",
        reason_codes=[promotion_apply_resource.CODE_REPLAYED], message="replayed", record=replay,
    )  # fmt: skip
    assert status["record"]["replayed"] is True
    assert list(status["record"])[-1] == "replayed"
    assert (_cond(status)["status"], _cond(status)["reason"]) == ("True", "Replayed")


def test_events_only_on_transitions() -> None:
    pending = promotion_apply_resource.build_promotion_status(
        previous=None, generation=1, now=NOW, phase=promotion_apply_resource.PENDING, decision=None,
        reason_codes=[promotion_apply_resource.CODE_FLEET_NOT_FOUND], message="Fleet f not found",
    )  # fmt: skip
    events = promotion_apply_resource.compute_promotion_events(None, pending)
    assert [(e.type, e.reason) for e in events] == [("Warning", "PromotionApplyFleetNotFound")]
    assert promotion_apply_resource.compute_promotion_events(pending, pending) == []
    applied = promotion_apply_resource.build_promotion_status(
        previous=pending,
        generation=1,
        now=NOW,
        phase=promotion_apply_resource.APPLIED,
        decision="promote",
        record=_record(),
    )
    events = promotion_apply_resource.compute_promotion_events(pending, applied)
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Normal", "PromotionApplied", "expand: canaryPercent 25 -> 50, manualPause true -> false")
    ]
    rejected = promotion_apply_resource.build_promotion_status(
        previous=None, generation=1, now=NOW, phase=promotion_apply_resource.REJECTED, decision="hold",
        reason_codes=[promotion_apply_resource.CODE_DECISION_NOT_PROMOTE], message="no",
    )  # fmt: skip
    assert [
        (e.type, e.reason) for e in promotion_apply_resource.compute_promotion_events(None, rejected)
    ] == [("Warning", "PromotionRejected")]
