"""Handoff plan, retry guard and execution bookkeeping (fleet §5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.handoff import handoff_plan

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
REGISTRY = {
    "fleetId": "fleet-h",
    "loops": [
        {
            "loopId": "loop-red",
            "transport": "local",
            "service": {"retryAttempts": 3, "retryBackoffSeconds": 1},
        },
        {
            "loopId": "loop-blue",
            "transport": "sprite_service",
            "service": {
                "baseUrl": "http://sprite-service.local",
                "tokenEnv": "TOK",
                "retryAttempts": 2,
                "retryBackoffSeconds": 0,
            },
            "metadata": {"team": "blue"},
        },
    ],
}


def candidate(
    loop_id: str,
    category: str,
    *,
    eligible: bool = False,
    reasons: list[str] | None = None,
    suppressed: bool = False,
) -> dict[str, Any]:
    return {
        "loopId": loop_id,
        "category": category,
        "signal": "status_failed" if category == "reconcile_failed" else category,
        "traceId": f"trace-fleet-{loop_id}",
        "candidateId": f"{loop_id}:{category}",
        "severity": "critical",
        "confidence": "high",
        "rationale": "why",
        "recommendedIntent": "cancel",
        "suppressed": suppressed,
        "autonomous": {
            "eligible": eligible,
            "manualOnly": not eligible,
            "reasons": reasons
            if reasons is not None
            else ([] if eligible else ["policy_mode_not_guarded_auto"]),
        },
    }


def policy(
    *candidates: dict[str, Any], mode: str = "advisory", trace: str | None = "trace-policy-1"
) -> dict[str, Any]:
    state: dict[str, Any] = {"fleetId": "fleet-h", "mode": mode, "candidates": list(candidates)}
    if trace:
        state["traceId"] = trace
    return state


def plan(
    policy_state: dict[str, Any],
    prior: dict[str, Any] | None = None,
    *,
    trace: str = "trace-handoff-1",
    expired: bool = False,
) -> dict[str, Any]:
    return handoff_plan.build_handoff_plan(
        policy_state=policy_state,
        registry=REGISTRY,
        prior_state=prior,
        trace_id=trace,
        prefix="fleet-handoff",
        registry_file="/r/registry.v1.json",
        policy_state_file="/r/policy-state.json",
        governance_expired=expired,
        now=NOW,
    )


def execute(
    state: dict[str, Any], mode: str, outcomes: dict[str, int], *, intent_ids: tuple[str, ...] = ()
) -> dict[str, Any]:
    request = handoff_plan.ExecutionRequest(mode=mode, requested_by="ops-bot", requested_at=NOW)
    targets = handoff_plan.select_execution_targets(state, mode=mode, intent_ids=intent_ids)
    results = [
        handoff_plan.build_execution_result(
            target,
            request=request,
            trace_id=state["traceId"],
            idempotency_key=target["idempotencyKey"],
            executed_at=NOW,
            outcome=handoff_plan.ControlOutcome(
                exit_code=outcomes[target["loopId"]],
                document={
                    "status": {0: "confirmed", 2: "ambiguous"}.get(
                        outcomes[target["loopId"]], "failed_command"
                    ),
                    "confirmed": outcomes[target["loopId"]] == 0,
                },
            ),
        )
        for target in targets
    ]
    return handoff_plan.build_executed_state(
        state, results, request=request, requested_count=len(targets), completed_at=NOW
    )


# --- slugs and keys ----------------------------------------------------------------------------


def test_idempotency_key_slugs_every_part() -> None:
    key = handoff_plan.compute_idempotency_key(
        "Pre--fix-", "--My Trace!!ID--", "Loop_Red", "reconcile_failed", "cancel"
    )
    assert key == "pre-fix-my-trace-id-loop_red-reconcile_failed-cancel"


def test_empty_slugs_are_dropped() -> None:
    assert handoff_plan.compute_idempotency_key("p", "!!!", "a", "b", "c") == "p-a-b-c"


@pytest.mark.parametrize(
    ("status", "code"),
    [("confirmed", 0), ("executed_unconfirmed", 0), ("ambiguous", 2), ("failed_command", 1), (None, 1)],
)
def test_control_status_to_exit_code(status: str | None, code: int) -> None:
    assert handoff_plan.compute_control_exit_code(status) == code


# --- plan ------------------------------------------------------------------------------------


# fleet.bats #32: the plan maps unsuppressed candidates to pending intents (core)
def test_plan_maps_unsuppressed_candidates_to_pending_intents() -> None:
    state = plan(
        policy(
            candidate("loop-red", "reconcile_failed"),
            candidate("loop-blue", "health_critical"),
            candidate("loop-blue", "health_degraded", suppressed=True),
        ),
        trace="trace-fleet-handoff-plan-1",
    )
    assert state["summary"]["intentCount"] == 2
    assert state["summary"]["pendingConfirmationCount"] == 2
    assert state["summary"]["candidateCount"] == 3
    assert state["summary"]["unsuppressedCandidateCount"] == 2
    assert {i["intent"] for i in state["intents"]} == {"cancel"}
    assert {i["status"] for i in state["intents"]} == {"pending_operator_confirmation"}
    assert state["reasonCodes"] == ["fleet_handoff_action_required", "fleet_handoff_confirmation_pending"]
    first = state["intents"][0]
    assert first["loopId"] == "loop-blue"  # sorted by loopId
    assert first["idempotencyKey"].startswith("fleet-handoff-trace-fleet-handoff-plan-1-")
    assert first["intentId"] == "loop-blue:health_critical:cancel"
    assert first["transport"] == "sprite_service"
    assert first["service"] == {
        "baseUrl": "http://sprite-service.local",
        "tokenEnv": "TOK",
        "retryAttempts": 2,
        "retryBackoffSeconds": 0,
    }
    assert first["metadata"] == {"team": "blue"}
    assert first["policyTraceId"] == "trace-policy-1"
    assert first["candidateTraceId"] == "trace-fleet-loop-blue"
    row = handoff_plan.build_plan_telemetry_row(state)
    assert row["category"] == "fleet_handoff_plan"
    assert row["summary"]["policyTraceId"] == "trace-policy-1"


# fleet.bats #33: the plan preserves the policy's eligibility (core)
def test_plan_preserves_policy_eligibility() -> None:
    state = plan(
        policy(
            candidate("loop-red", "reconcile_failed", eligible=True),
            candidate("loop-blue", "health_critical", reasons=["category_not_allowlisted"]),
            mode="guarded_auto",
        )
    )
    assert state["summary"]["autoEligibleIntentCount"] == 1
    assert state["summary"]["manualOnlyIntentCount"] == 1
    intents = {i["loopId"]: i["autonomous"] for i in state["intents"]}
    assert intents["loop-red"] == {"eligible": True, "manualOnly": False, "reasons": []}
    assert intents["loop-blue"]["reasons"] == ["category_not_allowlisted"]
    assert "fleet_handoff_auto_eligible_intents" in state["reasonCodes"]


def test_plan_without_candidates_and_unknown_loops() -> None:
    empty = plan(policy(trace=None))
    assert empty["reasonCodes"] == ["fleet_handoff_no_action"]
    assert empty["policyTraceId"] == "trace-handoff-1"
    stray = plan(policy(candidate("ghost", "health_critical")))
    assert stray["intents"][0]["transport"] == "local"
    assert stray["intents"][0]["metadata"] == {}


def test_unknown_category_without_intent_is_unmapped() -> None:
    odd = candidate("loop-red", "mystery")
    odd["recommendedIntent"] = None
    state = plan(policy(odd))
    assert state["summary"]["intentCount"] == 0
    assert state["reasonCodes"] == [
        "fleet_handoff_no_action",
        "fleet_handoff_partial_mapping",
        "fleet_handoff_unmapped_candidates",
    ]


def test_expired_governance_strips_autonomous_eligibility() -> None:
    state = plan(
        policy(candidate("loop-red", "reconcile_failed", eligible=True), mode="guarded_auto"), expired=True
    )
    assert state["intents"][0]["autonomous"] == {
        "eligible": False,
        "manualOnly": True,
        "reasons": ["autonomous_governance_review_expired"],
    }
    with pytest.raises(handoff_plan.UnmatchedFilterError):
        handoff_plan.select_execution_targets(state, mode="autonomous", loops=("loop-red",))


# --- execution -------------------------------------------------------------------------------


# fleet.bats #36: autonomous execution dispatches only eligible intents (core)
def test_autonomous_execution_dispatches_only_eligible_intents() -> None:
    state = plan(
        policy(
            candidate("loop-red", "reconcile_failed", eligible=True),
            candidate("loop-blue", "health_critical", reasons=["category_not_allowlisted"]),
            mode="guarded_auto",
        )
    )
    done = execute(state, "autonomous", {"loop-red": 0})
    execution = done["execution"]
    assert execution["mode"] == "autonomous"
    assert execution["requestedIntentCount"] == 1
    assert execution["executedCount"] == 1
    assert execution["note"] is None
    assert execution["results"][0]["reasonCode"] == "control_confirmed"
    statuses = {i["loopId"]: i["status"] for i in done["intents"]}
    assert statuses == {"loop-red": "executed", "loop-blue": "pending_operator_confirmation"}
    assert done["summary"]["pendingConfirmationCount"] == 1
    red = next(i for i in done["intents"] if i["loopId"] == "loop-red")
    assert red["execution"]["confirmed"] is True
    assert red["execution"]["controlStatus"] == "confirmed"
    assert "fleet_handoff_executed" in done["reasonCodes"]
    row = handoff_plan.build_execute_telemetry_row(done)
    assert row["category"] == "fleet_handoff_execute"
    assert row["execution"]["requestedIntentCount"] == 1


# fleet.bats #38: outcome to intent status mapping (core)
def test_status_mapping_across_outcomes() -> None:
    red = candidate("loop-red", "reconcile_failed", eligible=True)
    blue = candidate("loop-blue", "health_critical", eligible=True)
    green = candidate("loop-blue", "reconcile_failed", eligible=True)
    done = execute(
        plan(policy(red, blue, green, mode="guarded_auto")), "autonomous", {"loop-red": 0, "loop-blue": 2}
    )
    by_id = {i["intentId"]: i for i in done["intents"]}
    assert by_id["loop-red:reconcile_failed:cancel"]["status"] == "executed"
    assert by_id["loop-blue:health_critical:cancel"]["status"] == "execution_ambiguous"
    assert by_id["loop-blue:health_critical:cancel"]["execution"]["confirmed"] is False
    results = {r["intentId"]: r for r in done["execution"]["results"]}
    assert results["loop-blue:health_critical:cancel"]["reasonCode"] == "control_ambiguous"
    assert results["loop-blue:health_critical:cancel"]["controlExitCode"] == 2
    failed = execute(plan(policy(red, mode="guarded_auto")), "autonomous", {"loop-red": 7})
    result = failed["execution"]["results"][0]
    assert (result["status"], result["reasonCode"], result["controlExitCode"]) == (
        "failed",
        "control_failed_command",
        7,
    )
    assert failed["intents"][0]["status"] == "execution_failed"
    assert "fleet_handoff_execution_failed" in failed["reasonCodes"]


def test_manual_execution_targets_every_pending_intent_and_clears_pending_code() -> None:
    state = plan(policy(candidate("loop-red", "reconcile_failed"), candidate("loop-blue", "health_critical")))
    done = execute(state, "manual", {"loop-red": 0, "loop-blue": 0})
    assert done["execution"]["requestedIntentCount"] == 2
    assert done["summary"]["pendingConfirmationCount"] == 0
    assert "fleet_handoff_confirmation_pending" not in done["reasonCodes"]


def test_unmatched_filters_fail_closed() -> None:
    state = plan(policy(candidate("loop-red", "reconcile_failed"), mode="guarded_auto"))
    with pytest.raises(
        handoff_plan.UnmatchedFilterError, match="loop filter not found in manual execution intents: nope,zip"
    ):
        handoff_plan.select_execution_targets(state, mode="manual", loops=("loop-red", "nope", "zip"))
    with pytest.raises(
        handoff_plan.UnmatchedFilterError,
        match="intent filter not found in autonomous execution intents: loop-red",
    ):
        handoff_plan.select_execution_targets(state, mode="autonomous", intent_ids=("loop-red",))
    picked = handoff_plan.select_execution_targets(
        state, mode="manual", intent_ids=("loop-red:reconcile_failed:cancel",)
    )
    assert [i["loopId"] for i in picked] == ["loop-red"]


def test_precheck_refuses_service_intent_without_base_url() -> None:
    intent = {"intentId": "x", "transport": "sprite_service", "service": {}, "autonomous": {"eligible": True}}
    assert handoff_plan.compute_precheck_failure(intent, "manual") == "missing_service_base_url"
    intent["service"] = {"baseUrl": "http://s"}
    assert handoff_plan.compute_precheck_failure(intent, "manual") is None
    intent["autonomous"] = {"eligible": False}
    assert handoff_plan.compute_precheck_failure(intent, "autonomous") == "autonomous_intent_not_eligible"


# --- retry guard ------------------------------------------------------------------------------


# fleet.bats #37: an ambiguous outcome guards the next autonomous run (core)
def test_ambiguous_outcome_guards_the_next_autonomous_run() -> None:
    pol = policy(candidate("loop-red", "reconcile_failed", eligible=True), mode="guarded_auto")
    first = execute(plan(pol), "autonomous", {"loop-red": 2})
    assert first["summary"]["ambiguousCount"] == 1
    assert "fleet_handoff_execution_ambiguous" in first["reasonCodes"]
    second = plan(pol, prior=first, trace="trace-handoff-2")
    intent = second["intents"][0]
    assert intent["status"] == "pending_operator_confirmation"
    assert intent["autonomous"]["manualOnly"] is True
    assert "autonomous_retry_guard_ambiguous" in intent["autonomous"]["reasons"]
    assert {"fleet_handoff_retry_guarded", "fleet_handoff_confirmation_pending"} <= set(second["reasonCodes"])
    assert handoff_plan.select_execution_targets(second, mode="autonomous") == []


def test_regression_retry_guard_lasts_until_a_person_executes_successfully() -> None:
    pol = policy(candidate("loop-red", "reconcile_failed", eligible=True), mode="guarded_auto")
    state = execute(plan(pol), "autonomous", {"loop-red": 1})
    # Several autonomous runs later the guard still holds (the reference forgot it after one run).
    for run in range(3):
        state = execute(plan(pol, prior=state, trace=f"t{run}"), "autonomous", {})
        assert state["execution"]["requestedIntentCount"] == 0
        assert state["intents"][0]["autonomous"]["reasons"] == ["autonomous_retry_guard_failed"]
    # It survives a run where the candidate is not planned at all.
    state = plan(policy(mode="guarded_auto"), prior=state)
    assert "loop-red:reconcile_failed:cancel" in state["retryGuards"]
    # A failed manual attempt keeps it; a successful manual attempt clears it.
    state = execute(plan(pol, prior=state), "manual", {"loop-red": 1})
    state = execute(plan(pol, prior=state), "manual", {"loop-red": 0})
    assert "retryGuards" not in state
    again = plan(pol, prior=state)
    assert again["intents"][0]["autonomous"] == {"eligible": True, "manualOnly": False, "reasons": []}


def test_guard_is_also_read_from_a_reference_state_without_guard_map() -> None:
    prior = {
        "intents": [{"intentId": "loop-red:reconcile_failed:cancel", "status": "execution_failed"}],
        "updatedAt": "x",
    }
    guards = handoff_plan.compute_retry_guards(prior)
    assert guards["loop-red:reconcile_failed:cancel"]["reason"] == "autonomous_retry_guard_failed"
    assert handoff_plan.compute_retry_guards(None) == {}


def test_attempt_keys_after_a_guarded_outcome() -> None:
    assert handoff_plan.compute_attempt(None) == 1
    assert handoff_plan.compute_attempt({"reason": "autonomous_retry_guard_ambiguous"}) == 2
    assert handoff_plan.compute_attempt({"reason": "autonomous_retry_guard_failed", "attempt": 2}) == 3
    assert handoff_plan.compute_attempt_key("k", 1) == "k"
    assert handoff_plan.compute_attempt_key("k", 3) == "k-attempt3"
