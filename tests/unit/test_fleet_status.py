"""Fleet status surface (fleet §4): rollups, exception buckets, autonomy posture, drill-down pointers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_surface

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
FILES = {
    "registryFile": "/r/registry.v1.json",
    "fleetStateFile": "/r/state.json",
    "policyStateFile": "/r/policy-state.json",
    "fleetTelemetryFile": "/r/reconcile.jsonl",
    "handoffStateFile": "/r/handoff-state.json",
    "handoffTelemetryFile": "/r/handoff.jsonl",
}


def ago(minutes: int) -> str:
    return format_ts(NOW - dt.timedelta(minutes=minutes))


def result(loop_id: str, status: str, health: str, transport: str = "local") -> dict[str, Any]:
    return {
        "timestamp": ago(10),
        "loopId": loop_id,
        "transport": transport,
        "enabled": True,
        "status": status,
        **({"reasonCode": "reconcile_failed"} if status == "failed" else {}),
        "reconcileStatus": status,
        "healthStatus": health,
        "healthReasonCodes": ["transport_unreachable"] if health == "critical" else [],
        "durationSeconds": 4,
        "traceId": f"trace-fleet-1-{loop_id}",
        "files": {
            "stateFile": f"/repo/{loop_id}/state.json",
            "healthFile": f"/repo/{loop_id}/health.json",
            "cursorFile": f"/repo/{loop_id}/cursor.json",
            "reconcileTelemetryFile": f"/repo/{loop_id}/reconcile.jsonl",
        },
    }


def fleet_state(*results: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    failed = sum(1 for r in results if r["status"] == "failed")
    state = {
        "schemaVersion": "v1",
        "updatedAt": ago(10),
        "startedAt": ago(11),
        "fleetId": "fleet-x",
        "traceId": "trace-fleet-1",
        "status": "partial_failure" if failed else "success",
        "reasonCodes": ["fleet_partial_failure"] if failed else [],
        "loopCount": len(results),
        "successCount": len(results) - failed,
        "failedCount": failed,
        "skippedCount": 0,
        "durationSeconds": 20,
        "results": list(results),
    }
    state.update(overrides)
    return state


def status(
    state: dict[str, Any],
    policy: dict[str, Any] | None = None,
    handoff: dict[str, Any] | None = None,
    *,
    fleet_row: dict[str, Any] | None = None,
    handoff_row: dict[str, Any] | None = None,
    now: dt.datetime = NOW,
) -> dict[str, Any]:
    inputs = fleet_surface.StatusInputs(
        repo_path="/repo",
        registry={"fleetId": "fleet-x"},
        fleet_state=state,
        policy_state=policy,
        handoff_state=handoff,
        latest_fleet_telemetry=fleet_row,
        latest_handoff_telemetry=handoff_row,
        files=FILES,
    )
    return fleet_surface.build_fleet_status(inputs, now)


def governance(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "actor": "ops-user",
        "approvalRef": "CAB-501",
        "rationale": "guarded rollout expansion",
        "changedAt": format_ts(NOW - dt.timedelta(days=30)),
        "reviewBy": format_ts(NOW + dt.timedelta(days=200)),
        "reviewWindowDays": 230,
    }
    base.update(overrides)
    return base


def candidate(
    loop_id: str, category: str, eligible: bool, reasons: list[str], severity: str = "critical"
) -> dict[str, Any]:
    return {
        "candidateId": f"{loop_id}:{category}",
        "loopId": loop_id,
        "category": category,
        "severity": severity,
        "suppressed": False,
        "autonomous": {"eligible": eligible, "manualOnly": not eligible, "reasons": reasons},
    }


def intent(
    loop_id: str, category: str, status: str, eligible: bool, reasons: list[str], transport: str = "local"
) -> dict[str, Any]:
    return {
        "intentId": f"{loop_id}:{category}:cancel",
        "loopId": loop_id,
        "intent": "cancel",
        "status": status,
        "transport": transport,
        "autonomous": {"eligible": eligible, "manualOnly": not eligible, "reasons": reasons},
    }


# --- scenarios ---------------------------------------------------------------------------------


# fleet.bats #16: status: exception buckets and drill-down pointers (status half)
def test_advisory_policy_and_exception_buckets_with_drill_down_pointers() -> None:
    state = fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", "success", "degraded"))
    policy = {
        "mode": "advisory",
        "candidateCount": 3,
        "unsuppressedCount": 1,
        "suppressedCount": 2,
        "candidates": [],
    }
    out = status(state, policy)
    assert out["policy"]["unsuppressedCount"] == 1
    assert out["exceptions"] == {
        "reconcileFailures": ["loop-red"],
        "criticalLoops": ["loop-red"],
        "degradedLoops": ["loop-blue"],
        "skippedLoops": [],
    }
    assert out["fleet"]["partialFailure"] is True
    assert out["fleet"]["reasonCodes"] == ["fleet_health_critical", "fleet_partial_failure"]
    red = next(loop for loop in out["loops"] if loop["loopId"] == "loop-red")
    assert red["artifacts"]["stateFile"] == "/repo/loop-red/state.json"
    assert out["healthRollup"] == {"healthy": 0, "degraded": 1, "critical": 1, "unknown": 0}
    assert out["handoff"] is None
    assert list(out) == [
        "schemaVersion", "generatedAt", "source", "fleet", "healthRollup", "exceptions", "policy", "handoff",
        "autonomous", "loops", "traceLinkage", "latestTelemetry", "latestHandoffTelemetry", "files",
    ]  # fmt: skip


# fleet.bats #17: status: safety-gate decisions and autonomous handoff outcomes
def test_autonomous_safety_gates_and_handoff_outcomes() -> None:
    state = fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", "success", "critical"))
    policy = {
        "mode": "guarded_auto",
        "traceId": "trace-policy-1",
        "candidateCount": 2,
        "unsuppressedCount": 2,
        "suppressedCount": 0,
        "autoEligibleCount": 1,
        "manualOnlyCount": 1,
        "summary": {
            "byAutonomyReason": {"category_not_allowlisted": 1, "autonomous_max_actions_per_run_exceeded": 1}
        },
        "autonomous": {"governance": governance(), "controls": {"safety": {"killSwitch": False}}},
        "candidates": [
            candidate("loop-red", "reconcile_failed", True, []),
            candidate("loop-blue", "health_critical", False, ["category_not_allowlisted"]),
        ],
        "reasonCodes": ["fleet_action_required", "fleet_auto_candidates_safety_blocked"],
    }
    handoff = {
        "mode": "guarded_auto",
        "summary": {"intentCount": 2, "autoEligibleIntentCount": 1, "manualOnlyIntentCount": 1},
        "reasonCodes": ["fleet_handoff_executed"],
        "intents": [
            intent("loop-red", "reconcile_failed", "executed", True, []),
            intent(
                "loop-blue",
                "health_critical",
                "pending_operator_confirmation",
                False,
                ["category_not_allowlisted"],
            ),
        ],
        "execution": {
            "mode": "autonomous",
            "requestedIntentCount": 1,
            "executedIntentCount": 1,
            "executedCount": 1,
            "ambiguousCount": 0,
            "failedCount": 0,
            "results": [
                {
                    "intentId": "loop-red:reconcile_failed:cancel",
                    "status": "executed",
                    "reasonCode": "control_confirmed",
                }
            ],
        },
    }
    row = {
        "timestamp": ago(1),
        "category": "fleet_handoff_execute",
        "execution": {"mode": "autonomous", "requestedIntentCount": 1, "executedCount": 1},
        "summary": {"reasonCodes": ["fleet_handoff_action_required", "fleet_handoff_executed"]},
    }
    out = status(state, policy, handoff, handoff_row=row)
    auto = out["autonomous"]
    assert auto["enabled"] is True
    assert auto["eligibleCandidateCount"] == 1
    assert auto["manualOnlyCandidateCount"] == 1
    assert auto["safetyGateDecisions"]["byReason"]["autonomous_max_actions_per_run_exceeded"] == 1
    assert out["handoff"]["execution"]["mode"] == "autonomous"
    assert out["handoff"]["execution"]["byReasonCode"] == {"control_confirmed": 1}
    assert out["handoff"]["pendingManualOnlyCount"] == 1
    assert auto["handoff"]["pendingManualOnlyCount"] == 1
    assert auto["handoff"]["outcomeReasonCodes"] == {"control_confirmed": 1}
    assert out["latestHandoffTelemetry"]["execution"]["mode"] == "autonomous"
    assert "fleet_handoff_executed" in out["latestHandoffTelemetry"]["reasonCodes"]
    assert auto["governance"]["posture"] == "active"
    assert auto["governance"]["blocksAutonomous"] is False
    assert out["traceLinkage"]["policyTraceId"] == "trace-policy-1"
    assert out["traceLinkage"]["sharedTraceId"] is None


# fleet.bats #18: status: governance posture, outcome rollups, suppression paths
def test_governance_posture_rollups_and_suppression_paths() -> None:
    state = fleet_state(
        result("loop-red", "failed", "critical"),
        result("loop-blue", "success", "degraded", "sprite_service"),
        result("loop-green", "success", "critical", "sprite_service"),
    )
    pause = {
        "active": True,
        "reasons": ["autonomous_rollout_paused_auto"],
        "manual": False,
        "auto": {
            "enabled": True,
            "active": True,
            "reasons": ["autonomous_autopause_failure_spike"],
            "lookbackExecutions": 3,
            "minSampleSize": 2,
            "ambiguityRateThreshold": 0.4,
            "failureRateThreshold": 0.5,
            "metrics": {"attemptedCount": 2, "failedCount": 1, "failureRate": 0.5},
        },
    }
    policy = {
        "mode": "guarded_auto",
        "candidateCount": 3,
        "unsuppressedCount": 3,
        "suppressedCount": 0,
        "autoEligibleCount": 1,
        "manualOnlyCount": 2,
        "summary": {
            "byAutonomyReason": {
                "category_not_allowlisted": 1,
                "autonomous_max_actions_per_run_exceeded": 1,
                "autonomous_rollout_canary_excluded": 1,
                "autonomous_rollout_paused_auto": 1,
                "autonomous_autopause_failure_spike": 1,
            }
        },
        "autonomous": {
            "governance": governance(authorityContextPresent=False),
            "controls": {"safety": {"killSwitch": False}},
            "rollout": {
                "canaryPercent": 50,
                "scopeLoopIds": [],
                "candidateBuckets": {"inScopeCount": 3},
                "pause": pause,
            },
        },
        "candidates": [],
    }
    handoff = {
        "mode": "guarded_auto",
        "summary": {"intentCount": 3},
        "intents": [
            intent("loop-red", "reconcile_failed", "executed", True, []),
            intent(
                "loop-blue",
                "health_critical",
                "pending_operator_confirmation",
                False,
                ["x"],
                "sprite_service",
            ),
            intent("loop-green", "health_critical", "execution_failed", True, [], "sprite_service"),
        ],
        "execution": {
            "mode": "autonomous",
            "requestedIntentCount": 2,
            "executedCount": 1,
            "ambiguousCount": 0,
            "failedCount": 1,
            "results": [
                {
                    "intentId": "loop-red:reconcile_failed:cancel",
                    "status": "executed",
                    "reasonCode": "control_confirmed",
                },
                {
                    "intentId": "loop-green:health_critical:cancel",
                    "status": "failed",
                    "reasonCode": "control_failed_command",
                },
            ],
        },
    }
    row = {
        "timestamp": ago(1),
        "category": "fleet_handoff_execute",
        "execution": {"mode": "autonomous", "requestedIntentCount": 2, "executedCount": 1, "failedCount": 1},
        "summary": {
            "summary": {"pendingManualOnlyCount": 1},
            "reasonCodes": ["fleet_handoff_execution_failed"],
        },
    }
    auto = status(state, policy, handoff, handoff_row=row)["autonomous"]
    gov = auto["governance"]
    assert gov["changedBy"] == "ops-user"
    assert gov["why"] == "guarded rollout expansion"
    assert gov["until"] == format_ts(NOW + dt.timedelta(days=200))
    assert gov["posture"] == "authority_missing"
    assert gov["reasonCodes"] == ["autonomous_governance_authority_missing"]
    assert auto["rollout"]["state"]["autoPauseActive"] is True
    assert auto["rollout"]["autopause"]["active"] is True
    assert auto["outcomeRollup"] == {
        "attempted": 2,
        "executed": 1,
        "ambiguous": 0,
        "failed": 1,
        "manual_backlog": 1,
    }
    out = status(state, policy, handoff, handoff_row=row)
    assert out["handoff"]["summary"]["autonomousOutcomeRollup"]["manual_backlog"] == 1
    assert out["latestHandoffTelemetry"]["autonomousOutcomeRollup"]["failed"] == 1
    paths = auto["safetyGateDecisions"]["byPath"]
    assert paths["policyGated"]["blockedCount"] == 2
    assert paths["rolloutGated"]["blockedCount"] == 3
    assert paths["governanceGated"]["blockedCount"] == 3
    assert paths["transportGated"] == {"blockedCount": 1, "byReason": {"control_failed_command": 1}}
    assert auto["safetyGateDecisions"]["suppressionReasonCodes"] == [
        "autonomous_suppression_governance_gated",
        "autonomous_suppression_policy_gated",
        "autonomous_suppression_rollout_gated",
        "autonomous_suppression_transport_gated",
    ]
    assert auto["safetyGateDecisions"]["blockedCount"] == 4


@pytest.mark.parametrize(
    ("review_in", "posture", "blocks"),
    [
        (dt.timedelta(days=100), "active", False),
        (dt.timedelta(days=3), "review_due_soon", False),
        (dt.timedelta(days=-1), "review_expired", True),
    ],
)
def test_governance_posture_over_time(review_in: dt.timedelta, posture: str, blocks: bool) -> None:
    gov = governance(reviewBy=format_ts(NOW + review_in))
    out = fleet_surface.compute_governance_posture(gov, "guarded_auto", True, NOW)
    assert out["posture"] == posture
    assert out["blocksAutonomous"] is blocks


def test_regression_expired_review_is_reported_not_fatal() -> None:
    policy = {
        "mode": "guarded_auto",
        "unsuppressedCount": 2,
        "autonomous": {"governance": governance(reviewBy=format_ts(NOW - dt.timedelta(hours=1)))},
    }
    out = status(fleet_state(result("a", "failed", "critical")), policy)
    gov = out["autonomous"]["governance"]
    assert gov["posture"] == "review_expired"
    assert gov["reasonCodes"] == ["autonomous_governance_review_expired"]
    assert out["autonomous"]["safetyGateDecisions"]["byPath"]["governanceGated"]["blockedCount"] == 2


def test_advisory_governance_is_not_required() -> None:
    out = fleet_surface.compute_governance_posture({}, "advisory", True, NOW)
    assert out["posture"] == "not_required"
    assert out["reasonCodes"] == []
    assert out["blocksAutonomous"] is False


def test_counts_fall_back_to_results_and_partial_failure_uses_one_source() -> None:
    state = {"results": [result("a", "failed", "healthy"), result("b", "success", "healthy")]}
    fleet = status(state)["fleet"]
    assert fleet["loopCount"] == 2
    assert fleet["failedCount"] == 1
    assert fleet["status"] == "unknown"
    assert fleet["partialFailure"] is True
    assert "fleet_partial_failure" in fleet["reasonCodes"]
    assert fleet["traceId"] is None


def test_skipped_loops_bucket_and_shared_trace() -> None:
    skipped = result("off", "skipped", "unknown")
    skipped["traceId"] = "shared"
    state = fleet_state(skipped, traceId=None)
    out = status(state)
    assert out["exceptions"]["skippedLoops"] == ["off"]
    assert out["traceLinkage"]["sharedTraceId"] == "shared"
    assert out["autonomous"] is None


def test_top_candidates_are_ordered_by_severity_and_capped() -> None:
    cands = [candidate(f"l{i}", "health_degraded", False, [], severity="warning") for i in range(4)]
    cands += [candidate(f"c{i}", "health_critical", False, []) for i in range(3)]
    out = status(fleet_state(), {"mode": "advisory", "candidates": cands})
    top = out["policy"]["topCandidates"]
    assert [c["loopId"] for c in top] == ["c0", "c1", "c2", "l0", "l1"]


def test_latest_rows_and_null_documents() -> None:
    row = {"timestamp": ago(2), "status": "success"}
    out = status(fleet_state(), fleet_row=row, handoff_row={"category": "fleet_handoff_plan", "traceId": "t"})
    assert out["latestTelemetry"] == {"timestamp": row["timestamp"], "status": "success", "reasonCodes": []}
    latest = out["latestHandoffTelemetry"]
    assert latest["execution"] == {}
    assert latest["autonomousOutcomeRollup"]["attempted"] == 0
    assert out["files"] == FILES
    assert out["policy"] is None
