"""Issue 15: an approval that was never acted on lapses; it is not executed and needs a fresh one.

The HandoffIntent handler runs against an in-memory API server (``FakeEdge``) and the simulator
as the loop runtime. The age limit comes from the FleetPolicy of the intent's Fleet
(``spec.approvals.maxAgeSeconds``), or the model's default when the intent has no Fleet.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from helpers.operator_fakes import FakeEdge, build_context, build_frozen_clock
from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.journal import files
from superloop_ops.models.fleet_policy import DEFAULT_APPROVAL_MAX_AGE_SECONDS
from superloop_ops.sim.simulator import Simulator

NS = "team-a"
LOOP_ID = "awaiting_approval-1"


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


@pytest.fixture
def ctx(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> OperatorContext:
    sim = Simulator(
        tmp_path / "sim", clock, loops=1, scenarios=["awaiting_approval"], loop_prefix="awaiting_approval"
    )
    sim.run(20)
    context = build_context(
        tmp_path, edge, clock, {"claim-a": sim.repo_of(LOOP_ID)}, control_confirm_timeout_seconds=20
    )

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        sim.step()

    context.sleep = sleep
    edge.add(
        "loops",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "la"},
            "spec": {"loopId": LOOP_ID, "transport": "local", "source": {"pvc": {"claimName": "claim-a"}}},
        },
    )
    return context


def _fleet_with_policy(edge: FakeEdge, max_age: int) -> None:
    edge.add(
        "fleetpolicies",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "FleetPolicy",
            "metadata": {"name": "pol"},
            "spec": {"mode": "advisory", "approvals": {"maxAgeSeconds": max_age}},
        },
    )
    edge.add(
        "fleets",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Fleet",
            "metadata": {"name": "fl"},
            "spec": {"policyRef": {"name": "pol"}, "loops": [{"loopId": LOOP_ID}]},
        },
    )


def _intent(edge: FakeEdge, name: str, *, fleet: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"loopRef": {"name": "la"}, "intent": "approve", "traceId": f"trace-{name}"}
    if fleet:
        spec["fleetRef"] = {"name": "fl"}
    return edge.add(
        "handoffintents",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "HandoffIntent",
            "metadata": {"name": name, "annotations": {}},
            "spec": spec,
        },
    )


def _approve(body: dict[str, Any], by: str, at: dt.datetime) -> None:
    body["metadata"]["annotations"] = {
        "ops.superloop.dev/approved": "true",
        "ops.superloop.dev/approved-by": by,
        "ops.superloop.dev/approved-at": format_ts(at),
    }


def _condition(body: dict[str, Any], cond_type: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == cond_type)


def _handoff_rows(tmp_path: Path) -> list[Any]:
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / LOOP_ID
    return files.read_jsonl(ops / "telemetry" / "handoff-intents.jsonl")


def _control_rows(tmp_path: Path) -> list[Any]:
    return files.read_jsonl(
        tmp_path / "state" / NS / ".superloop" / "ops-manager" / LOOP_ID / "intents.jsonl"
    )


def test_an_approval_older_than_the_policy_age_is_not_executed_and_needs_a_fresh_one(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, ctx: OperatorContext
) -> None:
    _fleet_with_policy(edge, max_age=120)
    body = _intent(edge, "hi-stale", fleet=True)
    # approved ten minutes ago, never acted on (the operator was down): lapsed under a 120 s policy
    _approve(body, "alice", clock.now() - dt.timedelta(minutes=10))
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-stale"), ctx)
    assert not report.executed
    status = edge.get("handoffintents", "hi-stale")["status"]
    assert status["phase"] == "pending_operator_confirmation"
    assert status["reasonCodes"] == ["approval_lapsed"]
    approved = _condition(edge.get("handoffintents", "hi-stale"), "Approved")
    assert (approved["status"], approved["reason"]) == ("False", "ApprovalLapsed")
    stamp = format_ts(clock.now() - dt.timedelta(minutes=10))
    assert f"approval by alice at {stamp} lapsed: older than 120s" in approved["message"]
    assert status["result"]["lapsedApproval"]["by"] == "alice"
    assert _control_rows(tmp_path) == []
    assert [(r["phase"], r["approvedBy"], r["traceId"]) for r in _handoff_rows(tmp_path)] == [
        ("approval_lapsed", "alice", "trace-hi-stale")
    ]
    lapsed_events = [e for e in edge.events if e[0] == "hi-stale" and e[2] == "ApprovalLapsed"]
    assert len(lapsed_events) == 1
    assert lapsed_events[0][1] == "Warning"
    assert lapsed_events[0][3].endswith("[trace trace-hi-stale]")
    # the same stale annotations again: still nothing, and no second Event
    assert not intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-stale"), ctx).executed
    assert edge.reasons("hi-stale").count("ApprovalLapsed") == 1
    lapsed_series = 'superloop_ops_approvals_lapsed_total{loop="la",namespace="team-a"} 1.0'
    assert lapsed_series in ctx.metrics.render().decode()
    # a fresh approval executes, once
    _approve(body, "bob", clock.now() - dt.timedelta(seconds=30))
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-stale"), ctx)
    assert report.executed
    status = edge.get("handoffintents", "hi-stale")["status"]
    assert (status["phase"], status["approvedBy"]) == ("executed", "bob")
    assert status["reasonCodes"] == []
    assert [r["requestedBy"] for r in _control_rows(tmp_path)] == ["bob"]
    assert [r["phase"] for r in _handoff_rows(tmp_path)] == ["approval_lapsed", "executing", "executed"]


def test_an_intent_without_a_fleet_uses_the_default_age(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, ctx: OperatorContext
) -> None:
    body = _intent(edge, "hi-adhoc", fleet=False)
    _approve(body, "alice", clock.now() - dt.timedelta(seconds=DEFAULT_APPROVAL_MAX_AGE_SECONDS + 1))
    assert not intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-adhoc"), ctx).executed
    assert _condition(edge.get("handoffintents", "hi-adhoc"), "Approved")["reason"] == "ApprovalLapsed"
    _approve(body, "alice", clock.now() - dt.timedelta(seconds=DEFAULT_APPROVAL_MAX_AGE_SECONDS - 5))
    assert intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-adhoc"), ctx).executed
    assert edge.get("handoffintents", "hi-adhoc")["status"]["result"]["approval"]["by"] == "alice"
