"""Every kind's status speaks kstatus: Ready, Reconciling and Stalled with observedGeneration.

The statuses are the real builders' output (``core.*`` status builders); ``helpers.kstatus``
applies the kstatus library's rules for custom resources. Before the Reconciling/Stalled pair,
kstatus called a failing Loop Current (it never looks at Ready).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from helpers.kind_statuses import NOW, build_loop_status
from helpers.kstatus import compute
from superloop_ops.core.common.status_conditions import find_condition
from superloop_ops.core.fleet import fleet_policy_resource, fleet_resource
from superloop_ops.core.handoff import handoff_intent_resource as intent_resource
from superloop_ops.core.loop import loop_resource
from superloop_ops.core.promotion import promotion_apply_resource as apply_resource

LATER = NOW + dt.timedelta(minutes=5)


def _obj(kind: str, status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "generation": generation}, "status": status}


def _surface(health: str = "healthy", codes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"lifecycle": {"state": "running"}, "health": {"status": health, "reasonCodes": list(codes)}}


def _loop(outcome: str, generation: int = 1, **kw: Any) -> dict[str, Any]:
    return build_loop_status(outcome, generation=generation, **kw)


def _cond(status: dict[str, Any], cond_type: str) -> dict[str, Any]:
    cond = find_condition(status["conditions"], cond_type)
    assert cond is not None, f"no {cond_type} in {[c['type'] for c in status['conditions']]}"
    return dict(cond)


def test_a_failing_loop_is_not_current() -> None:
    status = _loop("failed", failure_code="transport_unreachable", failure_message="connection refused")
    assert _cond(status, "Ready")["status"] == "False"
    stalled = _cond(status, "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["observedGeneration"]) == (
        "True",
        "TransportUnreachable",
        1,
    )
    assert compute(_obj("Loop", status))[0] == "Failed"


def test_a_converged_loop_is_current_even_when_degraded() -> None:
    status = _loop("success", surface=_surface("degraded", ("ingest_stale", "runtime_heartbeat_stale")))
    assert _cond(status, "Ready")["status"] == "True"
    assert _cond(status, "Reconciling")["status"] == "False"
    assert _cond(status, "Stalled")["status"] == "False"
    assert compute(_obj("Loop", status)) == ("Current", "Resource is current")
    assert status["reasonSummary"] == "ingest_stale, runtime_heartbeat_stale"


def test_a_loop_waiting_for_its_volume_is_in_progress_and_a_new_spec_is_not_current_yet() -> None:
    waiting = _loop("blocked", blocked_reason="source_not_found", blocked_message="claim not mounted")
    assert _cond(waiting, "Reconciling")["status"] == "True"
    assert compute(_obj("Loop", waiting))[0] == "InProgress"
    converged = _loop("success")
    assert compute(_obj("Loop", converged, generation=2))[0] == "InProgress"  # generation 2 not observed
    assert compute(_obj("Loop", _loop("success", generation=2), generation=2))[0] == "Current"


def test_a_suspended_loop_is_current() -> None:
    status = _loop("suspended")
    assert (_cond(status, "Ready")["status"], _cond(status, "Ready")["reason"]) == ("False", "Suspended")
    assert compute(_obj("Loop", status))[0] == "Current"


def test_transition_times_move_only_when_the_kstatus_conditions_flip() -> None:
    failed = _loop("failed", failure_code="reconcile_failed")
    again = loop_resource.build_loop_status(
        previous=failed,
        view=loop_resource.LoopPassView(
            outcome="failed", failure_code="reconcile_failed", surface=_surface()
        ),
        generation=1,
        now=LATER,
    )
    assert _cond(again, "Stalled")["lastTransitionTime"] == _cond(failed, "Stalled")["lastTransitionTime"]
    recovered = loop_resource.build_loop_status(
        previous=failed,
        view=loop_resource.LoopPassView(outcome="success", surface=_surface()),
        generation=1,
        now=LATER,
    )
    assert _cond(recovered, "Stalled")["status"] == "False"
    assert _cond(recovered, "Stalled")["lastTransitionTime"] == "2026-02-22T10:05:00Z"
    assert [c["type"] for c in recovered["conditions"]].count("Stalled") == 1


def test_fleet_and_policy() -> None:
    fleet_ok = fleet_resource.build_fleet_status(
        previous=None, generation=1, now=NOW, fleet_state={"status": "success", "reasonCodes": []}
    )
    assert compute(_obj("Fleet", fleet_ok))[0] == "Current"
    fleet_bad = fleet_resource.build_fleet_status(
        previous=None,
        generation=1,
        now=NOW,
        fleet_state=None,
        blocked_reason="invalid_registry",
        blocked_message="bad",
    )
    assert compute(_obj("Fleet", fleet_bad)) == ("Failed", "bad")
    policy = fleet_policy_resource.build_fleet_policy_status(
        previous=None, generation=1, now=NOW, mode="advisory", canary_percent=100, manual_pause=False,
        governance_posture=None,
    )  # fmt: skip
    assert _cond(policy, "Ready")["reason"] == "AwaitingFleetPass"
    assert compute(_obj("FleetPolicy", policy))[0] == "InProgress"


def test_handoff_intent_ready_follows_execution() -> None:
    pending = intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    ready = _cond(pending, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AwaitingApproval")
    assert compute(_obj("HandoffIntent", pending))[0] == "InProgress"
    for outcome, expected in (("executed", "Current"), ("execution_failed", "Failed")):
        done = intent_resource.build_outcome_status(
            previous=pending, outcome=outcome, execution=None, message="m", generation=1, now=LATER
        )
        assert compute(_obj("HandoffIntent", done))[0] == expected, outcome
        assert _cond(done, "Ready")["status"] == ("True" if outcome == "executed" else "False")
        assert [c["type"] for c in done["conditions"]].count("Ready") == 1


@pytest.mark.parametrize(
    ("phase", "expected"),
    [("applied", "Current"), ("dry_run", "Current"), ("pending", "InProgress"), ("rejected", "Failed")],
)
def test_promotion_apply_ready_follows_applied(phase: str, expected: str) -> None:
    codes = ("promotion_gate_hold",) if phase == "rejected" else ()
    status = apply_resource.build_promotion_status(
        previous=None, generation=1, now=NOW, phase=phase, decision="hold", reason_codes=codes, message="m"
    )
    assert compute(_obj("PromotionApply", status))[0] == expected
    if phase == "rejected":
        assert status["reasonSummary"] == "promotion_gate_hold"
