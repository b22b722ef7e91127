"""Pure rules of the Fleet controller: names, manifests, Loop-status reading, statuses, Events."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superloop_ops.core.fleet import fleet_policy_resource, fleet_resource, owned_names, rollup
from superloop_ops.core.handoff import handoff_intent_resource
from superloop_ops.k8s.fleet_edge import build_status_json_patch
from superloop_ops.models.fleet import FleetLoopEntry

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _ready(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("prod-loop-a", "prod-loop-a"),
        ("prod-loop-red:reconcile_failed:cancel", "prod-loop-red-reconcile-failed-cancel"),
        ("fleet-a.b", "fleet-a-b"),
    ],
)
def test_readable_ids_keep_readable_names(raw: str, expected: str) -> None:
    assert owned_names.compute_dns_name(raw) == expected


def test_lossy_or_long_ids_get_a_hash_suffix_and_stay_distinct() -> None:
    upper = owned_names.compute_dns_name("prod-Loop-A")
    lower = owned_names.compute_dns_name("prod-loop-a")
    assert upper != lower
    assert re.fullmatch(r"prod-loop-a-[0-9a-f]{8}", upper)
    long_id = "fleet-" + "x" * 80 + ":health_critical:cancel"
    name = owned_names.compute_dns_name(long_id)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert name != owned_names.compute_dns_name(long_id.replace("health_critical", "reconcile_failed"))
    assert owned_names.compute_dns_name(long_id) == name  # deterministic


@given(st.text(min_size=1, max_size=120))
def test_every_id_maps_to_a_dns_label(raw: str) -> None:
    name = owned_names.compute_dns_name(raw)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name


def test_owned_loop_manifest_is_owned_labelled_and_hashed() -> None:
    entry = FleetLoopEntry.model_validate(
        {"loopId": "loop-a", "transport": "local", "source": {"pvc": {"claimName": "c"}}}
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest = fleet_resource.build_owned_loop_manifest(
        fleet_name="prod", fleet_uid="uid-1", entry=entry, reconcile_interval_seconds=5, max_events=10
    )
    meta = manifest["metadata"]
    assert meta["name"] == "prod-loop-a"
    assert meta["labels"][owned_names.FLEET_LABEL] == "prod"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Fleet",
            "name": "prod",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert manifest["spec"]["source"] == {"pvc": {"claimName": "c", "subPath": ""}}
    assert manifest["spec"]["reconcileIntervalSeconds"] == 5
    assert meta["annotations"][owned_names.SPEC_HASH_ANNOTATION] == owned_names.compute_spec_hash(
        manifest["spec"]
    )
    other = fleet_resource.build_owned_loop_manifest(
        fleet_name="prod", fleet_uid="uid-1", entry=entry, reconcile_interval_seconds=6, max_events=10
    )
    assert (
        other["metadata"]["annotations"][owned_names.SPEC_HASH_ANNOTATION]
        != meta["annotations"][owned_names.SPEC_HASH_ANNOTATION]
    )


def test_loop_outcome_waits_for_a_first_pass() -> None:
    assert fleet_resource.compute_loop_outcome(None) is None
    assert fleet_resource.compute_loop_outcome({"healthStatus": "healthy"}) is None


def test_successful_pass_carries_health_and_transition() -> None:
    outcome = fleet_resource.compute_loop_outcome(
        {
            "healthStatus": "degraded",
            "reasonCodes": ["runtime_heartbeat_stale"],
            "lifecycle": "running",
            "conditions": [_ready("True", "ReconcileSucceeded")],
        }
    )
    assert outcome is not None
    result = rollup.build_loop_result(
        {"loopId": "a", "transport": "local"},
        repo="/r",
        trace_id="t-a",
        started_at=NOW,
        ended_at=NOW,
        outcome=outcome,
    )
    assert result["status"] == "success"
    assert result["healthStatus"] == "degraded"
    assert result["healthReasonCodes"] == ["runtime_heartbeat_stale"]
    assert result["transitionState"] == "running"


@pytest.mark.parametrize(
    ("reason", "codes", "expected"),
    [
        ("ServiceRequestFailed", [], "transport_unreachable"),
        ("EventsUnavailable", [], "transport_unreachable"),
        ("ServiceResponseInvalid", [], "invalid_transport_payload"),
        ("SourceNotFound", [], "source_not_found"),
        ("ProjectionFailed", ["projection_failed"], "projection_failed"),
        ("SnapshotUnavailable", ["transport_unreachable"], "transport_unreachable"),
    ],
)
def test_failed_pass_is_classified_by_the_fleet_core(reason: str, codes: list[str], expected: str) -> None:
    outcome = fleet_resource.compute_loop_outcome(
        {"healthStatus": "critical", "reasonCodes": codes, "conditions": [_ready("False", reason, "boom")]}
    )
    assert outcome is not None
    assert outcome.exit_code == 1
    result = rollup.build_loop_result(
        {"loopId": "a", "transport": "sprite_service"},
        repo="/r",
        trace_id="t",
        started_at=NOW,
        ended_at=NOW,
        outcome=outcome,
    )
    assert result["status"] == "failed"
    assert result["reasonCode"] == expected
    assert result["healthStatus"] == "critical"
    assert result["outputExcerpt"] == "boom"


def test_snake_reason() -> None:
    assert fleet_resource.snake_reason("ServiceRequestFailed") == "service_request_failed"
    assert fleet_resource.snake_reason("Suspended") == "suspended"


def _intent(**extra: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "intentId": "loop-a:reconcile_failed:cancel",
        "candidateId": "loop-a:reconcile_failed",
        "loopId": "loop-a",
        "category": "reconcile_failed",
        "severity": "critical",
        "confidence": "high",
        "rationale": "Loop reconcile failed in fleet fan-out",
        "intent": "cancel",
        "fleetTraceId": "trace-1",
        "idempotencyKey": "fleet-handoff-trace-1-loop-a-reconcile-failed-cancel",
        "autonomous": {"eligible": False, "manualOnly": True, "reasons": ["autonomous_kill_switch_enabled"]},
    }
    intent.update(extra)
    return intent


def test_intent_manifest_is_named_from_the_intent_id_and_owned() -> None:
    manifest = handoff_intent_resource.build_intent_manifest(
        fleet_name="prod", fleet_uid="u", intent=_intent(), loop_name="prod-loop-a"
    )
    assert manifest["metadata"]["name"] == "prod-loop-a-reconcile-failed-cancel"
    assert (
        manifest["metadata"]["annotations"][owned_names.INTENT_ID_ANNOTATION]
        == "loop-a:reconcile_failed:cancel"
    )
    spec = manifest["spec"]
    assert spec["loopRef"] == {"name": "prod-loop-a"}
    assert spec["idempotencyKey"] == "fleet-handoff-trace-1-loop-a-reconcile-failed-cancel"
    assert spec["candidate"]["reasonCodes"] == ["autonomous_kill_switch_enabled"]
    assert spec["candidate"]["autonomousEligible"] is False
    assert spec["fleetRef"] == {"name": "prod"}
    long_key = handoff_intent_resource.build_intent_manifest(
        fleet_name="prod", fleet_uid="u", intent=_intent(idempotencyKey="k" * 300), loop_name="l"
    )["spec"]["idempotencyKey"]
    assert len(long_key) <= 253


def test_autonomous_statuses_and_handover() -> None:
    executing = handoff_intent_resource.build_autonomous_executing_status(
        previous={"phase": "pending_operator_confirmation"}, idempotency_key="k1", generation=1, now=NOW
    )
    assert (executing["phase"], executing["mode"], executing["idempotencyKey"]) == (
        "executing",
        "autonomous",
        "k1",
    )
    assert executing["result"]["attempt"] == 1
    done = handoff_intent_resource.build_autonomous_outcome_status(
        previous=executing, outcome="execution_ambiguous", execution={"status": "ambiguous"}, message="m",
        generation=1, now=NOW,
    )  # fmt: skip
    assert (done["phase"], done["mode"], done["reasonCodes"]) == (
        "execution_ambiguous",
        "autonomous",
        ["control_ambiguous"],
    )
    handed = handoff_intent_resource.build_manual_handover_status(done)
    assert handed is not None
    assert (handed["mode"], handed["phase"]) == ("manual", "execution_ambiguous")
    assert handed["result"]["attempt"] == 1
    executed = handoff_intent_resource.build_autonomous_outcome_status(
        previous=executing, outcome="executed", execution=None, message="m", generation=1, now=NOW
    )
    assert handoff_intent_resource.build_manual_handover_status(executed) is None
    assert (
        handoff_intent_resource.build_manual_handover_status({"mode": "manual", "phase": "execution_failed"})
        is None
    )


def _state(status: str, codes: list[str]) -> dict[str, Any]:
    return {
        "fleetId": "prod",
        "status": status,
        "reasonCodes": codes,
        "loopCount": 2,
        "failedCount": 1,
        "skippedCount": 0,
        "traceId": "t",
        "updatedAt": "2026-03-01T12:00:00Z",
        "results": [
            {"loopId": "a", "status": "failed", "reasonCode": "transport_unreachable",
             "healthStatus": "critical", "transport": "sprite_service",
             "files": {"stateFile": "/s/a/state.json"}},
            {"loopId": "b", "status": "success", "healthStatus": "healthy", "transport": "local",
             "files": {"stateFile": "/s/b/state.json"}},
        ],
    }  # fmt: skip


def test_fleet_status_keeps_summaries_and_pointers_and_conditions() -> None:
    state = _state("partial_failure", ["fleet_health_critical", "fleet_partial_failure"])
    status = fleet_resource.build_fleet_status(
        previous=None, generation=3, now=NOW, fleet_state=state, loop_names={"a": "prod-a", "b": "prod-b"}
    )
    assert status["healthStatus"] == "partial_failure"
    assert "results" not in status["state"]
    assert status["state"]["loops"][0] == {
        "loopId": "a",
        "loop": "prod-a",
        "status": "failed",
        "reasonCode": "transport_unreachable",
        "healthStatus": "critical",
        "transport": "sprite_service",
        "stateFile": "/s/a/state.json",
    }
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["observedGeneration"] == 3
    assert (conditions["Degraded"]["status"], conditions["Degraded"]["reason"]) == (
        "True",
        "FleetPartialFailure",
    )
    # a blocked pass keeps the last rollup and says why
    blocked = fleet_resource.build_fleet_status(
        previous=status,
        generation=4,
        now=NOW,
        fleet_state=None,
        blocked_reason="loops_pending",
        blocked_message="x",
    )
    assert blocked["healthStatus"] == "partial_failure"
    ready = next(c for c in blocked["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "LoopsPending")
    events = fleet_resource.compute_fleet_events(status, blocked)
    assert [e.reason for e in events] == ["LoopsPending"]


def test_fleet_events_only_on_transitions() -> None:
    first = fleet_resource.build_fleet_status(
        previous=None, generation=1, now=NOW, fleet_state=_state("success", [])
    )
    second = fleet_resource.build_fleet_status(
        previous=first, generation=1, now=NOW, fleet_state=_state("failed", ["fleet_reconcile_failed"])
    )
    assert [e.reason for e in fleet_resource.compute_fleet_events(None, first)] == ["FleetStatusChanged"]
    assert fleet_resource.compute_fleet_events(first, first) == []
    changed = fleet_resource.compute_fleet_events(
        first, second, created_intents=["i1"], autonomous_outcomes=[("i1", "execution_failed")]
    )
    assert [(e.type, e.reason) for e in changed] == [
        ("Warning", "FleetStatusChanged"),
        ("Normal", "IntentProposed"),
        ("Warning", "AutonomousExecution"),
    ]


def test_policy_status_rebases_effective_rollout_on_a_new_generation() -> None:
    first = fleet_policy_resource.build_fleet_policy_status(
        previous=None, generation=1, now=NOW, mode="guarded_auto", canary_percent=50, manual_pause=False,
        governance_posture="active",
    )  # fmt: skip
    assert first["effectiveRollout"]["canaryPercent"] == 50
    assert next(c for c in first["conditions"] if c["type"] == "Ready")["reason"] == "AwaitingFleetPass"
    moved = dict(first, effectiveRollout={**first["effectiveRollout"], "canaryPercent": 75})
    same_gen = fleet_policy_resource.build_fleet_policy_status(
        previous=moved, generation=1, now=NOW, mode="guarded_auto", canary_percent=50, manual_pause=False,
        governance_posture="active", policy_state={"reasonCodes": ["x"], "candidates": [{"a": 1}]},
    )  # fmt: skip
    assert same_gen["effectiveRollout"]["canaryPercent"] == 75
    assert "candidates" not in same_gen["policyState"]
    assert next(c for c in same_gen["conditions"] if c["type"] == "Ready")["reason"] == "PolicyEvaluated"
    new_gen = fleet_policy_resource.build_fleet_policy_status(
        previous=same_gen, generation=2, now=NOW, mode="guarded_auto", canary_percent=50, manual_pause=True,
        governance_posture="active",
    )  # fmt: skip
    assert new_gen["effectiveRollout"]["canaryPercent"] == 50
    assert new_gen["effectiveRollout"]["manualPause"] is True
    assert new_gen["policyState"] == {"reasonCodes": ["x"]}


def test_status_json_patch_sets_fields_whole_and_keeps_nulls() -> None:
    ops = build_status_json_patch({"policyState": {"x": None}}, ["gone", "policyState"], has_status=True)
    assert ops == [
        {"op": "add", "path": "/status/policyState", "value": {"x": None}},
        {"op": "remove", "path": "/status/gone"},
    ]
    assert build_status_json_patch({"a/b": 1}, [], has_status=False) == [
        {"op": "add", "path": "/status", "value": {}},
        {"op": "add", "path": "/status/a~1b", "value": 1},
    ]


def test_kubectl_fleet_view_reads_the_statuses() -> None:
    from superloop_ops.cli import kubectl_fleet

    state = _state("partial_failure", ["fleet_partial_failure"])
    status = fleet_resource.build_fleet_status(
        previous=None, generation=1, now=NOW, fleet_state=state, loop_names={"a": "prod-a"}
    )
    fleet = {"metadata": {"name": "prod"}, "spec": {"policyRef": {"name": "pol"}}, "status": status}
    policy = {
        "metadata": {"name": "pol"},
        "spec": {"mode": "guarded_auto", "autonomous": {"safety": {"killSwitch": True}}},
        "status": {"mode": "guarded_auto", "governancePosture": "active", "pause": {"active": False}},
    }
    view = kubectl_fleet.build_fleet_view(fleet, policy)
    assert view["status"] == "partial_failure"
    assert view["loops"][0]["loop"] == "prod-a"
    assert view["ready"] == {"status": "True", "reason": "FleetReconciled", "message": "fleet pass completed"}
    assert view["policy"]["killSwitch"] is True
    assert view["policy"]["governancePosture"] == "active"
    assert "policy" not in kubectl_fleet.build_fleet_view(fleet, None)


def _gates_document(decision: Any, **summary: Any) -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "generatedAt": "2026-03-01T11:59:00Z",
        "traceId": "pa-uid-1",
        "summary": {"decision": decision, **summary},
    }


def test_fleet_status_carries_the_promotion_decision_and_when_it_was_evaluated() -> None:
    document = _gates_document(
        "hold", failedGates=["drill_recency"], reasonCodes=["promotion_drill_state_missing"]
    )
    status = fleet_resource.build_fleet_status(
        previous=None, generation=1, now=NOW, fleet_state=_state("success", []), promotion_state=document
    )
    assert status["promotionDecision"] == "hold"
    assert status["promotion"] == {
        "decision": "hold",
        "evaluatedAt": "2026-03-01T11:59:00Z",
        "traceId": "pa-uid-1",
        "failedGates": ["drill_recency"],
        "reasonCodes": ["promotion_drill_state_missing"],
    }
    # a blocked pass keeps the last decision with the rest of the rollup
    blocked = fleet_resource.build_fleet_status(
        previous=status, generation=1, now=NOW, fleet_state=None, blocked_reason="loops_pending"
    )
    assert (blocked["promotionDecision"], blocked["promotion"]) == ("hold", status["promotion"])
    # a completed pass without a decision document leaves both fields unset
    cleared = fleet_resource.build_fleet_status(
        previous=status, generation=1, now=NOW, fleet_state=_state("success", [])
    )
    assert "promotionDecision" not in cleared
    assert "promotion" not in cleared


@pytest.mark.parametrize(
    "document",
    [
        None,
        {},
        {"summary": "promote"},
        _gates_document("skipped"),
        _gates_document(None),
        _gates_document(True),
    ],
)
def test_only_a_promote_or_hold_decision_reaches_the_fleet_status(document: Any) -> None:
    assert fleet_resource.build_promotion_status(document) == {}


def test_promotion_status_drops_malformed_lists() -> None:
    document = _gates_document("promote", failedGates="x", reasonCodes=[1, "a"])
    block = fleet_resource.build_promotion_status(document)
    assert block["promotionDecision"] == "promote"
    assert (block["promotion"]["failedGates"], block["promotion"]["reasonCodes"]) == ([], ["a"])


def _big_fleet(size: int, failed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fleet state and status surface of ``size`` loops, the first ``failed`` of them failed."""
    results = [
        {"loopId": f"loop-{i:05d}", "status": "failed" if i < failed else "success",
         "healthStatus": "critical" if i < failed else "healthy", "transport": "local",
         "traceId": f"{i:032x}", "files": {"stateFile": f"/s/loop-{i:05d}/state.json"}}
        for i in range(size)
    ]  # fmt: skip
    state = {"fleetId": "big", "status": "partial_failure", "loopCount": size, "failedCount": failed,
             "skippedCount": 0, "traceId": "t", "updatedAt": "2026-03-01T12:00:00Z",
             "results": results}  # fmt: skip
    ids = [r["loopId"] for r in results]
    surface = {
        "exceptions": {"reconcileFailures": ids[:failed], "criticalLoops": ids[:failed],
                       "degradedLoops": [], "skippedLoops": []},
        "traceLinkage": {"fleetTraceId": "t", "loopTraceIds": [r["traceId"] for r in results]},
    }  # fmt: skip
    return state, surface


def test_fleet_status_of_5000_loops_stays_under_100_kb_and_lists_the_problem_rows_first() -> None:
    import json

    state, surface = _big_fleet(5000, 150)
    names = {f"loop-{i:05d}": f"l-{i}" for i in range(5000)}
    status = fleet_resource.build_fleet_status(
        previous=None,
        generation=1,
        now=NOW,
        fleet_state=state,
        fleet_status_surface=surface,
        loop_names=names,
    )
    assert len(json.dumps(status, separators=(",", ":"))) < 100_000
    rows = status["state"]["loops"]
    assert len(rows) == 100
    assert all(row["status"] == "failed" for row in rows)
    assert status["state"]["omittedLoopRows"] == 4900
    exceptions = status["fleetStatus"]["exceptions"]
    assert len(exceptions["reconcileFailures"]) == 100
    assert status["fleetStatus"]["exceptionCounts"]["reconcileFailures"] == 150
    linkage = status["fleetStatus"]["traceLinkage"]
    assert len(linkage["loopTraceIds"]) == 100
    assert linkage["loopTraceIdCount"] == 5000


def test_small_fleet_status_still_lists_every_loop_in_order() -> None:
    state, surface = _big_fleet(60, 3)
    status = fleet_resource.build_fleet_status(
        previous=None, generation=1, now=NOW, fleet_state=state, fleet_status_surface=surface
    )
    assert [row["loopId"] for row in status["state"]["loops"]] == [f"loop-{i:05d}" for i in range(60)]
    assert "omittedLoopRows" not in status["state"]
    assert status["fleetStatus"]["exceptions"] == surface["exceptions"]
    assert "exceptionCounts" not in status["fleetStatus"]
    assert status["fleetStatus"]["traceLinkage"] == surface["traceLinkage"]
