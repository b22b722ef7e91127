"""HandoffIntent pacing (issue 12): at most ``maxIntentsPerPass`` proposals a pass, the rest deferred
in a stable priority order, neither lost nor proposed twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.fleet import fleet_resource
from superloop_ops.core.handoff import intent_pacing
from superloop_ops.core.handoff.handoff_plan import PENDING
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.fleet import FleetSpec, build_registry_document
from superloop_ops.models.fleet_policy import DEFAULT_MAX_INTENTS_PER_PASS, FleetPolicy


def _intent(loop_id: str, category: str = "reconcile_failed", severity: str = "critical") -> dict[str, Any]:
    return {
        "intentId": f"{loop_id}:{category}:cancel",
        "loopId": loop_id,
        "category": category,
        "severity": severity,
        "intent": "cancel",
        "status": PENDING,
    }


def _ids(intents: tuple[dict[str, Any], ...]) -> list[str]:
    return [str(i["loopId"]) for i in intents]


def test_a_pass_proposes_at_most_the_cap_most_severe_first_then_by_loop() -> None:
    planned = [
        _intent("l-3", "health_degraded", "warning"),
        _intent("l-2"),
        _intent("l-9", "health_critical"),
        _intent("l-1"),
    ]
    pacing = intent_pacing.pace_intents(planned, [], existing=set(), live=set(), cap=2)
    assert _ids(pacing.propose) == ["l-1", "l-2"]  # critical reconcile_failed first, by loop
    assert _ids(pacing.deferred) == ["l-9", "l-3"]
    reordered = intent_pacing.pace_intents(list(reversed(planned)), [], existing=set(), live=set(), cap=2)
    assert reordered == pacing  # the order does not depend on the plan's


def test_thirty_planned_intents_with_cap_five_are_all_proposed_once_over_six_passes() -> None:
    """The dedupe window keeps the candidates out of later plans: the deferred ones carry them."""
    planned = [_intent(f"l-{i:02d}") for i in range(30)]
    live = {str(i["intentId"]) for i in planned}
    existing: set[str] = set()
    carried: tuple[dict[str, Any], ...] = ()
    proposed: list[str] = []
    for number in range(8):
        plan = planned if number == 0 else []  # later plans hold the candidates back (dedupe window)
        pacing = intent_pacing.pace_intents(plan, carried, existing=existing, live=live, cap=5)
        assert len(pacing.propose) <= 5
        proposed += [str(i["intentId"]) for i in pacing.propose]
        existing |= {str(i["intentId"]) for i in pacing.propose}
        carried = pacing.deferred
    assert len(proposed) == 30
    assert len(set(proposed)) == 30
    assert carried == ()


def test_an_intent_with_an_object_or_a_gone_candidate_is_not_queued() -> None:
    kept, has_object, gone = _intent("l-1"), _intent("l-2"), _intent("l-3")
    pacing = intent_pacing.pace_intents(
        [has_object],
        [kept, has_object, gone],
        existing={has_object["intentId"]},
        live={kept["intentId"], has_object["intentId"]},
        cap=5,
    )
    assert _ids(pacing.propose) == ["l-1"]
    assert pacing.deferred == ()


def test_the_plans_version_of_a_carried_intent_replaces_it() -> None:
    old = {**_intent("l-1"), "fleetTraceId": "old"}
    new = {**_intent("l-1"), "fleetTraceId": "new"}
    pacing = intent_pacing.pace_intents([new], [old], existing=set(), live={old["intentId"]}, cap=5)
    assert [i["fleetTraceId"] for i in pacing.propose] == ["new"]


def test_pacing_status_counts_and_reason_code() -> None:
    pacing = intent_pacing.pace_intents([_intent("a"), _intent("b")], [], existing=set(), live=set(), cap=1)
    assert pacing.build_status(1) == {
        "maxIntentsPerPass": 1,
        "proposedThisPass": 1,
        "deferredCount": 1,
        "reasonCode": "fleet_handoff_intents_deferred",
    }
    done = intent_pacing.pace_intents([], [], existing=set(), live=set(), cap=1)
    assert "reasonCode" not in done.build_status(0)


def _status(deferred: int) -> dict[str, Any]:
    handoff = {"traceId": "t", "intents": [], "summary": {}, "reasonCodes": ["fleet_handoff_action_required"]}
    pacing = {"maxIntentsPerPass": 5, "proposedThisPass": 5, "deferredCount": deferred}
    if deferred:
        pacing["reasonCode"] = intent_pacing.DEFERRED_REASON
    return fleet_resource.build_fleet_status(
        previous=None,
        generation=1,
        now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        fleet_state={"status": "failed", "results": []},
        handoff_state=handoff,
        handoff_pacing=pacing,
    )


def _reasons(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [event.reason for event in fleet_resource.compute_fleet_events(old, new)]


def test_fleet_status_and_events_say_when_intents_are_deferred_and_when_none_are() -> None:
    waiting, done = _status(25), _status(0)
    assert waiting["handoff"]["pacing"]["deferredCount"] == 25
    assert intent_pacing.DEFERRED_REASON in waiting["handoff"]["reasonCodes"]
    assert intent_pacing.DEFERRED_REASON not in done["handoff"]["reasonCodes"]
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert "25 planned HandoffIntents deferred" in ready["message"]
    assert "maxIntentsPerPass 5" in ready["message"]
    assert "IntentsDeferred" in _reasons(done, waiting)
    assert "IntentsDeferred" not in _reasons(waiting, _status(20))  # transitions only
    assert "IntentsDeferralCleared" in _reasons(waiting, done)


def test_the_cap_is_an_operator_only_policy_field_with_its_default_in_one_place() -> None:
    def policy(spec: dict[str, Any]) -> FleetPolicy:
        return FleetPolicy.from_body({"apiVersion": "ops.superloop.dev/v1alpha1", "kind": "FleetPolicy",
                                      "metadata": {"name": "p"}, "spec": spec})  # fmt: skip

    assert policy({}).spec.handoff.max_intents_per_pass == DEFAULT_MAX_INTENTS_PER_PASS == 10
    assert policy({"handoff": {"maxIntentsPerPass": 5}}).spec.handoff.max_intents_per_pass == 5
    for bad in (0, 1001):
        with pytest.raises(InvalidSpecError):
            policy({"handoff": {"maxIntentsPerPass": bad}})
    document = build_registry_document(
        FleetSpec.model_validate({"selector": {"matchLabels": {"team": "a"}}}),
        fleet_name="f",
        policy=policy({}).spec,
    )
    assert "handoff" not in document["policy"]  # not a registry field
