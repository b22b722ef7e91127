"""Objects of the five kinds with the statuses the operator's real status builders write.

Scenario name -> a complete object (kind, metadata with generation, spec, status), for the
tests that judge statuses as outside tools do (kstatus, Argo CD's health.lua, Flux's CEL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from superloop_ops.core.fleet import fleet_policy_resource, fleet_resource
from superloop_ops.core.handoff import handoff_intent_resource as intent_resource
from superloop_ops.core.loop import loop_resource
from superloop_ops.core.promotion import promotion_apply_resource as apply_resource

__all__ = ["NOW", "SCENARIOS", "build_loop_status", "build_object"]

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)


def _surface(health: str = "healthy", codes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "lifecycle": {"state": "running"},
        "health": {"status": health, "reasonCodes": list(codes)},
        "reconcile": {"lastTraceId": "t1"},
    }


def build_loop_status(
    outcome: str, *, generation: int = 1, health: str = "healthy", **kw: Any
) -> dict[str, Any]:
    codes = ("ingest_stale", "runtime_heartbeat_stale") if health != "healthy" else ()
    kw.setdefault("surface", _surface(health, codes))
    view = loop_resource.LoopPassView(outcome=outcome, **kw)
    return loop_resource.build_loop_status(previous=None, view=view, generation=generation, now=NOW)


def _fleet(**kw: Any) -> dict[str, Any]:
    return fleet_resource.build_fleet_status(previous=None, generation=1, now=NOW, **kw)


def _policy() -> dict[str, Any]:
    return fleet_policy_resource.build_fleet_policy_status(
        previous=None, generation=1, now=NOW, mode="advisory", canary_percent=100, manual_pause=False,
        governance_posture=None,
    )  # fmt: skip


def _intent(outcome: str | None) -> dict[str, Any]:
    pending = intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    if outcome is None:
        return pending
    return intent_resource.build_outcome_status(
        previous=pending, outcome=outcome, execution=None, message="control outcome", generation=1, now=NOW
    )


def _apply(phase: str) -> dict[str, Any]:
    codes = ("promotion_gate_hold",) if phase == "rejected" else ()
    return apply_resource.build_promotion_status(
        previous=None,
        generation=1,
        now=NOW,
        phase=phase,
        decision="hold",
        reason_codes=codes,
        message="gates",
    )


SCENARIOS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "loop-converged": ("Loop", lambda: build_loop_status("success")),
    "loop-degraded": ("Loop", lambda: build_loop_status("success", health="degraded")),
    "loop-critical": ("Loop", lambda: build_loop_status("success", health="critical")),
    "loop-failing": ("Loop", lambda: build_loop_status("failed", failure_code="transport_unreachable")),
    "loop-waiting": ("Loop", lambda: build_loop_status("blocked", blocked_reason="source_not_found")),
    "loop-suspended": ("Loop", lambda: build_loop_status("suspended")),
    "loop-new-generation": ("Loop", lambda: build_loop_status("success", generation=1)),
    "fleet-reconciled": ("Fleet", lambda: _fleet(fleet_state={"status": "success", "reasonCodes": []})),
    "fleet-all-failed": ("Fleet", lambda: _fleet(fleet_state={"status": "failed", "reasonCodes": ["x"]})),
    "fleet-invalid": (
        "Fleet",
        lambda: _fleet(fleet_state=None, blocked_reason="invalid_registry", blocked_message="bad"),
    ),
    "policy-awaiting": ("FleetPolicy", _policy),
    "intent-pending": ("HandoffIntent", lambda: _intent(None)),
    "intent-executed": ("HandoffIntent", lambda: _intent("executed")),
    "intent-failed": ("HandoffIntent", lambda: _intent("execution_failed")),
    "apply-applied": ("PromotionApply", lambda: _apply("applied")),
    "apply-dry-run": ("PromotionApply", lambda: _apply("dry_run")),
    "apply-pending": ("PromotionApply", lambda: _apply("pending")),
    "apply-rejected": ("PromotionApply", lambda: _apply("rejected")),
}


def build_object(scenario: str) -> dict[str, Any]:
    kind, build = SCENARIOS[scenario]
    generation = 2 if scenario == "loop-new-generation" else 1
    spec: dict[str, Any] = {"suspend": True} if scenario == "loop-suspended" else {}
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": scenario, "namespace": "team-a", "generation": generation},
        "spec": spec,
        "status": build(),
    }
