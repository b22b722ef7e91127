"""Suppressions through the operator's Fleet pass (issue 15 part 2): real journal files, the real
simulator, the real Fleet and FleetPolicy controllers, an in-memory API server, a frozen clock.

An advisory policy suppresses a failing loop until ``expiresAt``. While it holds, no HandoffIntent
is proposed and the FleetPolicy reports what it hides; once the clock passes the expiry, the next
pass proposes the intent, the status says ``expired``, one Event is posted, and the metrics
count what was hidden.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from helpers.metric_samples import Labels, collect_samples
from helpers.operator_fakes import FakeEdge, WatchedMembers, build_context, build_frozen_clock
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import fleet_controller, fleet_objects
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names
from superloop_ops.handlers import fleet_policy as policy_handlers
from superloop_ops.handlers.context import OperatorContext, build_fleet_deps
from superloop_ops.sim.simulator import Simulator

NS = "supp-ns"
GV = "ops.superloop.dev/v1alpha1"
INTENT = owned_names.compute_intent_name("drill", "red0-1:reconcile_failed:cancel")


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


def _policy(clock: FrozenClock, expires_in: int) -> dict[str, Any]:
    now = clock.now()
    spec = {
        "mode": "advisory",
        "noiseControls": {"dedupeWindowSeconds": 0},
        "suppressions": {"red0-1": ["reconcile_failed"], "*": ["health_degraded"]},
        "suppressionTerms": {
            "red0-1": {
                "owner": "alice",
                "reason": "INC-9 red0 is being rebuilt",
                "startsAt": format_ts(now - dt.timedelta(minutes=5)),
                "expiresAt": format_ts(now + dt.timedelta(seconds=expires_in)),
            },
        },
        "suppressionLimits": {"maxDurationSeconds": 3600, "expiringWithinSeconds": 60},
    }
    return {
        "apiVersion": GV,
        "kind": "FleetPolicy",
        "metadata": {"name": "pol", "generation": 1},
        "spec": spec,
    }


def _setup(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, policy: dict[str, Any]
) -> tuple[OperatorContext, Any]:
    sim = Simulator(tmp_path / "sims", clock, loops=1, scenarios=["running"], loop_prefix="red0")
    sim.run(4)
    ctx = build_context(
        tmp_path, edge, clock, {"claim-0": sim.repo_of("red0-1")},
        control_confirm_timeout_seconds=4, sleep=clock.sleep,
    )  # fmt: skip
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    edge.add("fleetpolicies", policy)
    loop = {"loopId": "red0-1", "transport": "local", "source": {"pvc": {"claimName": "claim-0"}}}
    edge.add(
        "fleets",
        {
            "apiVersion": GV,
            "kind": "Fleet",
            "metadata": {"name": "drill"},
            "spec": {"loops": [loop], "policyRef": {"name": "pol"}, "reconcileIntervalSeconds": 2},
        },
    )
    _pass(edge, deps)  # materialise the Loop
    edge.get("loops", "drill-red0-1")["status"] = {
        "healthStatus": "critical",
        "reasonCodes": ["transport_unreachable"],
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ServiceRequestFailed", "message": "down",
             "observedGeneration": 1, "lastTransitionTime": format_ts(clock.now())},
        ],
    }  # fmt: skip
    return ctx, deps


def _pass(edge: FakeEdge, deps: fleet_objects.FleetPassDeps) -> fleet_controller.FleetPassReport:
    return fleet_controller.reconcile_fleet(edge.get("fleets", "drill"), deps)


def _cond(status: Mapping[str, Any], cond_type: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c["type"] == cond_type]
    assert len(found) == 1, status.get("conditions")
    return dict(found[0])


def _samples(ctx: OperatorContext, name: str) -> dict[Labels, float]:
    return collect_samples(ctx.metrics.registry, name)


def test_a_suppression_expires_on_the_next_pass_with_status_condition_event_and_metrics(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx, deps = _setup(tmp_path, edge, clock, _policy(clock, expires_in=90))
    first = _pass(edge, deps)
    assert first.ran
    assert INTENT not in edge.names("handoffintents")  # hidden by the suppression
    status = edge.get("fleetpolicies", "pol")["status"]
    rows = {row["key"]: row for row in status["suppressions"]}
    assert rows["red0-1"]["state"] == "active"
    assert rows["red0-1"]["owner"] == "alice"
    assert rows["red0-1"]["hidingNow"] == {"reconcile_failed": 1}
    assert rows["*"]["state"] == "unowned"  # a pre-terms entry keeps applying, reported as such
    assert _cond(status, "SuppressionsExpiring")["status"] == "False"

    clock.advance(31)  # 59 s left: within expiringWithinSeconds
    _pass(edge, deps)
    status = edge.get("fleetpolicies", "pol")["status"]
    expiring = _cond(status, "SuppressionsExpiring")
    assert (expiring["status"], expiring["reason"], expiring["observedGeneration"]) == (
        "True", "SuppressionsExpiring", 1,
    )  # fmt: skip
    assert "SuppressionExpiring" in edge.reasons("pol")
    assert INTENT not in edge.names("handoffintents")

    clock.advance(59)  # exactly expiresAt: no longer applies
    report = _pass(edge, deps)
    assert INTENT in edge.names("handoffintents")
    assert INTENT in report.created_intents
    status = edge.get("fleetpolicies", "pol")["status"]
    row = {r["key"]: r for r in status["suppressions"]}["red0-1"]
    assert (row["state"], row["applies"], row["hiddenSignals"]) == ("expired", False, {"reconcile_failed": 2})
    cond = _cond(status, "SuppressionsExpiring")
    assert (cond["status"], cond["reason"]) == ("False", "SuppressionsExpired")
    assert "fleet_suppressions_expired" in status["reasonCodes"]
    expired_events = [e for e in edge.events if e[2] == "SuppressionExpired"]
    assert len(expired_events) == 1
    assert expired_events[0][:2] == ("pol", "Warning")
    assert "suppression red0-1 [reconcile_failed] expired" in expired_events[0][3]
    assert "owner alice" in expired_events[0][3]

    clock.advance(2)  # later passes: still expired, no second Event
    _pass(edge, deps)
    _pass(edge, deps)
    assert len([e for e in edge.events if e[2] == "SuppressionExpired"]) == 1

    states = {dict(k)["state"]: v for k, v in _samples(ctx, "superloop_ops_fleet_suppressions").items()}
    assert states == {"pending": 0, "active": 0, "expiring": 0, "expired": 1, "unowned": 1}
    hidden = _samples(ctx, "superloop_ops_fleet_suppressed_signals_total")
    assert hidden == {
        (("category", "reconcile_failed"), ("fleet", "drill"), ("namespace", NS), ("scope", "loop")): 2.0
    }


def test_the_policy_handler_alone_reports_expiry_and_keeps_the_counts(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    _ctx, deps = _setup(tmp_path, edge, clock, _policy(clock, expires_in=600))
    _pass(edge, deps)
    clock.advance(600)
    policy_handlers.reconcile_policy(edge.get("fleetpolicies", "pol"), deps)
    status = edge.get("fleetpolicies", "pol")["status"]
    row = {r["key"]: r for r in status["suppressions"]}["red0-1"]
    assert (row["state"], row["hiddenSignalCount"]) == ("expired", 1)
    assert len([e for e in edge.events if e[2] == "SuppressionExpired"]) == 1
