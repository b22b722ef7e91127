"""Fleet policy: candidates, suppression, cooldowns, autonomy gates, caps, cohort, pause, audit (fleet §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry, policy_rules

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
PATHS = policy_rules.PolicyPaths(
    registry_file="/r/registry.v1.json",
    fleet_state_file="/r/state.json",
    policy_state_file="/r/policy-state.json",
    policy_history_file="/r/policy-history.jsonl",
    handoff_telemetry_file="/r/handoff.jsonl",
    governance_audit_file="/r/policy-governance.jsonl",
)


def governance(approval: str = "CAB-123") -> dict[str, Any]:
    return {
        "actor": "ops-user",
        "approvalRef": approval,
        "rationale": "guarded rollout",
        "changedAt": format_ts(NOW - dt.timedelta(days=10)),
        "reviewBy": format_ts(NOW + dt.timedelta(days=300)),
    }


def registry(loop_ids: list[str], *, mode: str = "advisory", **policy: Any) -> dict[str, Any]:
    autonomous = policy.pop("autonomous", {})
    if mode == "guarded_auto":
        autonomous.setdefault("governance", governance())
    raw = {
        "schemaVersion": "v1",
        "fleetId": "fleet-x",
        "loops": [{"loopId": loop_id} for loop_id in loop_ids],
        "policy": {"mode": mode, "autonomous": autonomous, **policy},
    }
    assert fleet_registry.compute_registry_errors(raw, NOW) == []
    return fleet_registry.build_normalized_registry(raw, PATHS.registry_file)


def result(loop_id: str, status: str = "success", health: str = "healthy") -> dict[str, Any]:
    return {"loopId": loop_id, "status": status, "healthStatus": health, "traceId": f"trace-1-{loop_id}"}


def fleet_state(*results: dict[str, Any], trace: str = "trace-1") -> dict[str, Any]:
    return {"fleetId": "fleet-x", "traceId": trace, "status": "partial_failure", "results": list(results)}


def evaluate(
    reg: dict[str, Any],
    state: dict[str, Any],
    *,
    history: list[Any] | None = None,
    handoff: list[Any] | None = None,
    previous: dict[str, Any] | None = None,
    had_previous: bool = False,
    window: int | None = None,
    trace: str = "trace-policy-1",
    now: dt.datetime = NOW,
) -> policy_rules.PolicyEvaluation:
    return policy_rules.build_policy_evaluation(
        registry=reg,
        fleet_state=state,
        history=history or [],
        handoff_telemetry=handoff or [],
        previous_state=previous,
        had_previous_state=had_previous,
        dedupe_window_seconds=reg["policy"]["noiseControls"]["dedupeWindowSeconds"]
        if window is None
        else window,
        trace_id=trace,
        paths=PATHS,
        now=now,
    )


def by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["candidateId"]: c for c in state["candidates"]}


def guarded(loop_ids: list[str], **autonomous: Any) -> dict[str, Any]:
    autonomous.setdefault("safety", {"maxActionsPerRun": 10, "maxActionsPerLoop": 10, "cooldownSeconds": 0})
    return registry(
        loop_ids, mode="guarded_auto", noiseControls={"dedupeWindowSeconds": 0}, autonomous=autonomous
    )


def execute_row(requested: int, ambiguous: int = 0, failed: int = 0, minutes_ago: int = 5) -> dict[str, Any]:
    return {
        "timestamp": format_ts(NOW - dt.timedelta(minutes=minutes_ago)),
        "category": "fleet_handoff_execute",
        "execution": {
            "mode": "autonomous",
            "requestedIntentCount": requested,
            "executedCount": requested - ambiguous - failed,
            "ambiguousCount": ambiguous,
            "failedCount": failed,
        },
    }


# --- cohort hash ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loop_id", "salt", "bucket"),
    [
        ("loop-a", "fleet-autonomous-rollout-v1", 36),
        ("loop-a-b", "fleet-autonomous-rollout-v1", 47),
        ("loop-red", "fleet-autonomous-rollout-v1", 76),
        ("loop-blue", "fleet-autonomous-rollout-v1", 45),
        ("loop-green", "fleet-autonomous-rollout-v1", 66),
        ("loop-1", "cohort-seed-v1", 55),
        ("loop-2", "cohort-seed-v1", 15),
        ("loop-3", "cohort-seed-v1", 75),
        ("loop-4", "cohort-seed-v1", 35),
        ("loop-5", "cohort-seed-v1", 92),
        ("é", "x", 24),  # code points, not UTF-8 bytes (bytes would give 12)
    ],
)
def test_cohort_bucket_matches_hand_computed_values(loop_id: str, salt: str, bucket: int) -> None:
    assert policy_rules.compute_cohort_bucket(loop_id, salt) == bucket


def test_cohort_bucket_hand_computation_for_a_short_seed() -> None:
    # "a|b": h = 17 -> 17*31+97=624 -> 624*31+124=19468 -> 19468*31+98=603606 (< 1000003) -> 6
    assert policy_rules.compute_cohort_bucket("a", "b") == 6


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_cohort_bucket_is_in_range_and_deterministic(loop_id: str, salt: str) -> None:
    first = policy_rules.compute_cohort_bucket(loop_id, salt)
    assert 0 <= first <= 99
    assert policy_rules.compute_cohort_bucket(loop_id, salt) == first


# --- advisory: candidates and suppression ---------------------------------------------------


# fleet.bats #16: advisory suppressions split the candidates (policy half)
def test_advisory_suppressions_split_candidates() -> None:
    reg = registry(
        ["loop-red", "loop-blue"], suppressions={"loop-red": ["reconcile_failed"], "*": ["health_degraded"]}
    )
    state = evaluate(
        reg, fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", "success", "degraded"))
    ).state
    assert state["candidateCount"] == 3
    assert state["unsuppressedCount"] == 1
    assert state["suppressedCount"] == 2
    assert "fleet_action_required" in state["reasonCodes"]
    assert "fleet_actions_suppressed" in state["reasonCodes"]
    assert "fleet_actions_policy_suppressed" in state["reasonCodes"]
    # Advisory mode: nothing is eligible and every candidate names the mode gate.
    assert all("policy_mode_not_guarded_auto" in c["autonomous"]["reasons"] for c in state["candidates"])
    assert [c["candidateId"] for c in state["candidates"]] == [
        "loop-blue:health_degraded",
        "loop-red:health_critical",
        "loop-red:reconcile_failed",
    ]


# fleet.bats #19: loop over global precedence, then advisory cooldown
def test_suppression_precedence_then_advisory_cooldown_dedupes_the_second_run() -> None:
    reg = registry(
        ["loop-red", "loop-blue", "loop-green"],
        suppressions={"loop-red": ["health_critical"], "*": ["health_critical"]},
        noiseControls={"dedupeWindowSeconds": 3600},
    )
    state_in = fleet_state(
        result("loop-red", health="critical"),
        result("loop-blue", health="critical"),
        result("loop-green", health="degraded"),
    )
    first = evaluate(reg, state_in)
    cands = by_id(first.state)
    assert cands["loop-red:health_critical"]["suppressionScope"] == "loop"
    assert cands["loop-red:health_critical"]["suppressionSource"] == "policy.suppressions.<loopId>"
    assert cands["loop-blue:health_critical"]["suppressionScope"] == "global"
    assert cands["loop-blue:health_critical"]["suppressionSource"] == "policy.suppressions.*"
    green = cands["loop-green:health_degraded"]
    assert green["suppressed"] is False
    assert green["suppressionScope"] is None
    assert green["cooldown"] == {
        "enabled": True,
        "windowSeconds": 3600,
        "active": False,
        "remainingSeconds": 0,
        "lastUnsuppressedAt": None,
    }
    later = NOW + dt.timedelta(seconds=60)
    second = evaluate(reg, state_in, history=first.history_rows, now=later)
    green = by_id(second.state)["loop-green:health_degraded"]
    assert green["suppressionReason"] == "advisory_cooldown_active"
    assert green["suppressionScope"] == "cooldown"
    assert green["cooldown"]["remainingSeconds"] == 3540
    assert "fleet_actions_deduped" in second.state["reasonCodes"]
    assert second.state["cooldownSuppressedCount"] == 1
    assert len(first.history_rows) + len(second.history_rows) >= 6
    # Cooldown-suppressed rows do not refresh the window: after W it surfaces again.
    third = evaluate(
        reg, state_in, history=first.history_rows + second.history_rows, now=NOW + dt.timedelta(hours=1)
    )
    assert by_id(third.state)["loop-green:health_degraded"]["suppressed"] is False


def test_zero_window_disables_dedupe() -> None:
    reg = registry(["a"], noiseControls={"dedupeWindowSeconds": 0})
    first = evaluate(reg, fleet_state(result("a", "failed")))
    second = evaluate(reg, fleet_state(result("a", "failed")), history=first.history_rows)
    assert second.state["candidates"][0]["cooldown"]["enabled"] is False
    assert second.state["suppressedCount"] == 0


# --- guarded_auto: gates, kill switch, caps, cooldown --------------------------------------------


# fleet.bats #20: guarded_auto keeps advisory candidates and marks one eligible
def test_guarded_auto_keeps_advisory_semantics_and_marks_one_eligible() -> None:
    reg = guarded(["loop-red"], allow={"categories": ["reconcile_failed"]})
    out = evaluate(reg, fleet_state(result("loop-red", "failed", "critical")))
    state = out.state
    assert state["mode"] == "guarded_auto"
    assert state["candidateCount"] == 2
    assert state["autoEligibleCount"] == 1
    assert state["manualOnlyCount"] == 1
    cands = by_id(state)
    assert cands["loop-red:reconcile_failed"]["autonomous"]["eligible"] is True
    critical = cands["loop-red:health_critical"]["autonomous"]
    assert critical["manualOnly"] is True
    assert critical["reasons"] == ["category_not_allowlisted"]
    assert "fleet_auto_candidates_eligible" in state["reasonCodes"]
    assert isinstance(out.history_rows[-1]["autonomousEligible"], bool)


# fleet.bats #21: the kill switch blocks every otherwise eligible candidate
def test_kill_switch_blocks_every_candidate_that_passed_other_gates() -> None:
    reg = guarded(
        ["loop-red"],
        allow={"categories": ["reconcile_failed", "health_critical"]},
        safety={"maxActionsPerRun": 2, "maxActionsPerLoop": 2, "cooldownSeconds": 0, "killSwitch": True},
    )
    state = evaluate(reg, fleet_state(result("loop-red", "failed", "critical"))).state
    assert state["autoEligibleCount"] == 0
    assert state["manualOnlyCount"] == 2
    for candidate in state["candidates"]:
        assert candidate["autonomous"]["reasons"] == ["autonomous_kill_switch_enabled"]
        assert candidate["autonomous"]["safety"]["killSwitchActive"] is True
    assert "fleet_auto_kill_switch_enabled" in state["reasonCodes"]


# fleet.bats #23: per-run and per-loop caps
def test_run_and_loop_caps_are_consumed_in_loop_then_category_order() -> None:
    reg = guarded(
        ["loop-a", "loop-b", "loop-c"],
        safety={"maxActionsPerRun": 2, "maxActionsPerLoop": 1, "cooldownSeconds": 0},
    )
    state = evaluate(
        reg,
        fleet_state(
            result("loop-a", "failed", "critical"),
            result("loop-b", "failed"),
            result("loop-c", health="critical"),
        ),
    ).state
    cands = by_id(state)
    assert state["autoEligibleCount"] == 2
    assert cands["loop-a:health_critical"]["autonomous"]["eligible"] is True
    assert cands["loop-a:reconcile_failed"]["autonomous"]["reasons"] == [
        "autonomous_max_actions_per_loop_exceeded"
    ]
    assert cands["loop-a:reconcile_failed"]["autonomous"]["safety"]["loopCapBlocked"] is True
    assert cands["loop-b:reconcile_failed"]["autonomous"]["eligible"] is True
    assert cands["loop-c:health_critical"]["autonomous"]["reasons"] == [
        "autonomous_max_actions_per_run_exceeded"
    ]
    assert cands["loop-c:health_critical"]["autonomous"]["safety"]["runCapBlocked"] is True
    assert "fleet_auto_candidates_safety_blocked" in state["reasonCodes"]


# fleet.bats #24: autonomous cooldown from history blocks a repeat
def test_autonomous_cooldown_from_history_blocks_a_repeat() -> None:
    reg = guarded(
        ["loop-red"], safety={"maxActionsPerRun": 5, "maxActionsPerLoop": 5, "cooldownSeconds": 600}
    )
    history = [
        {
            "timestamp": format_ts(NOW - dt.timedelta(seconds=60)),
            "candidateId": "loop-red:reconcile_failed",
            "autonomousEligible": True,
            "traceId": "older-trace",
        }
    ]
    state = evaluate(reg, fleet_state(result("loop-red", "failed")), history=history).state
    autonomous = state["candidates"][0]["autonomous"]
    assert state["autoEligibleCount"] == 0
    assert autonomous["reasons"] == ["autonomous_cooldown_active"]
    assert autonomous["safety"]["cooldown"] == {
        "active": True,
        "remainingSeconds": 540,
        "lastEligibleAt": format_ts(NOW - dt.timedelta(seconds=60)),
    }
    assert "fleet_auto_candidates_safety_blocked" in state["reasonCodes"]


# fleet.bats #25: deterministic rollout cohort: scope and canary
def test_rollout_cohort_scope_and_canary_are_stable_across_runs() -> None:
    # cohort-seed-v1 buckets: loop-1 55, loop-2 15, loop-3 75; canary 50.
    reg = guarded(
        ["loop-2", "loop-3", "loop-1"],
        allow={"categories": ["health_critical"]},
        rollout={
            "canaryPercent": 50,
            "scope": {"loopIds": ["loop-2", "loop-3"]},
            "selector": {"salt": "cohort-seed-v1"},
        },
    )
    state_in = fleet_state(*(result(i, health="critical") for i in ("loop-1", "loop-2", "loop-3")))
    runs = [evaluate(reg, state_in, trace=f"trace-cohort-{n}").state for n in (1, 2)]
    cands = by_id(runs[0])
    inside = cands["loop-2:health_critical"]["autonomous"]
    assert inside["eligible"] is True
    assert inside["rollout"]["selector"]["bucket"] == 15
    outside = cands["loop-3:health_critical"]["autonomous"]
    assert outside["manualOnly"] is True
    assert outside["reasons"] == ["autonomous_rollout_canary_excluded"]
    assert outside["rollout"]["selector"]["bucket"] == 75
    missed = cands["loop-1:health_critical"]["autonomous"]
    assert missed["reasons"] == ["autonomous_rollout_scope_excluded"]
    assert "fleet_auto_candidates_rollout_gated" in runs[0]["reasonCodes"]
    assert runs[0]["autonomous"]["rollout"]["candidateBuckets"] == {
        "inScopeCount": 2,
        "inCohortCount": 1,
        "outOfCohortCount": 1,
    }
    selectors = [[c["autonomous"]["rollout"]["selector"] for c in run["candidates"]] for run in runs]
    assert selectors[0] == selectors[1]


@pytest.mark.parametrize(("canary", "selected"), [(0, False), (100, True)])
def test_canary_extremes(canary: int, selected: bool) -> None:
    reg = guarded(["loop-a"], rollout={"canaryPercent": canary})
    candidate = evaluate(reg, fleet_state(result("loop-a", "failed"))).state["candidates"][0]
    assert candidate["autonomous"]["gates"]["rolloutCanarySelected"] is selected


# fleet.bats #26: manual pause gates every candidate (policy half)
def test_manual_pause_gates_every_candidate() -> None:
    reg = guarded(["loop-red"], rollout={"pause": {"manual": True}})
    state = evaluate(reg, fleet_state(result("loop-red", "failed"))).state
    assert state["autoEligibleCount"] == 0
    assert state["manualOnlyCount"] == 1
    assert state["candidates"][0]["autonomous"]["reasons"] == ["autonomous_rollout_paused_manual"]
    assert "fleet_auto_candidates_paused" in state["reasonCodes"]


# fleet.bats #27: auto-pause on an ambiguity spike (policy half)
def test_auto_pause_on_ambiguity_spike() -> None:
    reg = guarded(["loop-red"])
    handoff = [execute_row(2, ambiguous=1, minutes_ago=10), execute_row(2, ambiguous=1, minutes_ago=5)]
    state = evaluate(reg, fleet_state(result("loop-red", "failed")), handoff=handoff).state
    pause = state["autonomous"]["rollout"]["pause"]
    assert state["autoEligibleCount"] == 0
    assert pause["auto"]["active"] is True
    assert pause["auto"]["metrics"]["attemptedCount"] == 4
    assert pause["auto"]["metrics"]["ambiguityRate"] == 0.5
    reasons = state["candidates"][0]["autonomous"]["reasons"]
    assert reasons == ["autonomous_autopause_ambiguous_spike", "autonomous_rollout_paused_auto"]
    assert {"fleet_auto_candidates_paused", "fleet_auto_candidates_autopause_triggered"} <= set(
        state["reasonCodes"]
    )


# fleet.bats #28: sprite_service outage failure spike (policy half)
def test_sprite_outage_failure_spike_pauses_both_candidates() -> None:
    reg = guarded(
        ["loop-sprite"],
        allow={"categories": ["reconcile_failed"]},
        safety={"maxActionsPerRun": 3, "maxActionsPerLoop": 3, "cooldownSeconds": 0},
        rollout={
            "canaryPercent": 100,
            "autoPause": {
                "enabled": True,
                "lookbackExecutions": 3,
                "minSampleSize": 2,
                "ambiguityRateThreshold": 0.9,
                "failureRateThreshold": 0.5,
            },
        },
    )
    handoff = [execute_row(1, failed=1, minutes_ago=10), execute_row(1, failed=1, minutes_ago=5)]
    state = evaluate(reg, fleet_state(result("loop-sprite", "failed", "degraded")), handoff=handoff).state
    auto = state["autonomous"]["rollout"]["pause"]["auto"]
    assert auto["active"] is True
    assert auto["metrics"]["attemptedCount"] == 2
    assert auto["metrics"]["failureRate"] == 1
    assert isinstance(auto["metrics"]["failureRate"], int)  # printed as 1, not 1.0
    assert sorted(by_id(state)) == ["loop-sprite:health_degraded", "loop-sprite:reconcile_failed"]
    for candidate in state["candidates"]:
        assert "autonomous_rollout_paused_auto" in candidate["autonomous"]["reasons"]
        assert "autonomous_autopause_failure_spike" in candidate["autonomous"]["reasons"]
    assert {"fleet_auto_candidates_paused", "fleet_auto_candidates_autopause_triggered"} <= set(
        state["reasonCodes"]
    )


def test_auto_pause_window_ignores_plans_and_manual_runs_and_prefers_executed_counts() -> None:
    rollout = {"autoPause": {"lookbackExecutions": 2, "minSampleSize": 1}}
    rows: list[Any] = [
        {"category": "fleet_handoff_plan", "timestamp": format_ts(NOW)},
        {
            "category": "fleet_handoff_execute",
            "timestamp": format_ts(NOW),
            "execution": {"mode": "manual", "failedCount": 9},
        },
        execute_row(1, failed=1, minutes_ago=30),  # falls out of the window of two
        {
            "category": "fleet_handoff_execute",
            "timestamp": format_ts(NOW - dt.timedelta(minutes=2)),
            "execution": {
                "mode": "autonomous",
                "executedIntentCount": 1,
                "requestedIntentCount": 5,
                "executedCount": 1,
            },
        },
        execute_row(1, minutes_ago=1),
    ]
    pause = policy_rules.compute_autopause(rollout, rows)
    assert pause["auto"]["metrics"]["windowExecutionCount"] == 2
    assert pause["auto"]["metrics"]["attemptedCount"] == 2
    assert pause["auto"]["metrics"]["failedCount"] == 0
    assert pause["active"] is False


def test_regression_auto_pause_disabled_never_triggers() -> None:
    reg = guarded(["loop-red"], rollout={"autoPause": {"enabled": False, "minSampleSize": 1}})
    handoff = [execute_row(2, failed=2)]
    state = evaluate(reg, fleet_state(result("loop-red", "failed")), handoff=handoff).state
    auto = state["autonomous"]["rollout"]["pause"]["auto"]
    assert auto["enabled"] is False
    assert auto["active"] is False
    assert auto["metrics"]["failedCount"] == 2  # still measured, never acted on
    assert state["autoEligibleCount"] == 1


def test_policy_level_pause_is_computed_even_without_candidates() -> None:
    reg = guarded(["loop-red"], rollout={"autoPause": {"minSampleSize": 1}})
    state = evaluate(reg, fleet_state(result("loop-red")), handoff=[execute_row(1, failed=1)]).state
    assert state["candidateCount"] == 0
    assert state["autonomous"]["rollout"]["pause"]["auto"]["active"] is True
    assert "fleet_auto_candidates_autopause_triggered" in state["reasonCodes"]
    assert "no_action_required" in state["reasonCodes"]


def test_expired_governance_review_blocks_autonomy_but_keeps_candidates() -> None:
    raw_gov = governance()
    raw_gov["reviewBy"] = format_ts(NOW - dt.timedelta(days=1))
    raw_gov["changedAt"] = format_ts(NOW - dt.timedelta(days=60))
    raw = {
        "schemaVersion": "v1",
        "loops": [{"loopId": "loop-red"}],
        "policy": {"mode": "guarded_auto", "autonomous": {"governance": raw_gov}},
    }
    reg = fleet_registry.build_normalized_registry(raw, "/r")
    state = evaluate(reg, fleet_state(result("loop-red", "failed"))).state
    assert state["candidateCount"] == 1
    assert state["autoEligibleCount"] == 0
    assert state["candidates"][0]["autonomous"]["reasons"] == ["autonomous_governance_review_expired"]
    assert "fleet_auto_candidates_governance_blocked" in state["reasonCodes"]


def test_history_rows_carry_explicit_booleans() -> None:
    reg = guarded(["loop-a"], rollout={"canaryPercent": 0})
    row = evaluate(reg, fleet_state(result("loop-a", "failed"))).history_rows[0]
    assert row["autonomousRolloutInScope"] is True
    assert row["autonomousRolloutInCohort"] is False
    assert row["autonomousRolloutPauseActive"] is False
    assert row["autonomousAutoPauseActive"] is False
    assert row["autonomousEligible"] is False
    assert row["autonomousManualOnly"] is True
    assert "suppressionReason" not in row


# --- caps across restarts (hypothesis) -----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    run_cap=st.integers(min_value=0, max_value=3),
    loop_cap=st.integers(min_value=0, max_value=2),
    failing=st.lists(
        st.sampled_from(["loop-a", "loop-b", "loop-c", "loop-d"]), min_size=1, max_size=4, unique=True
    ),
    restarts=st.integers(min_value=1, max_value=4),
    cooldown=st.sampled_from([0, 300]),
)
def test_caps_hold_across_restarts_of_the_same_run(
    run_cap: int, loop_cap: int, failing: list[str], restarts: int, cooldown: int
) -> None:
    reg = guarded(
        ["loop-a", "loop-b", "loop-c", "loop-d"],
        safety={"maxActionsPerRun": run_cap, "maxActionsPerLoop": loop_cap, "cooldownSeconds": cooldown},
    )
    state_in = fleet_state(*(result(loop_id, "failed", "critical") for loop_id in failing))
    history: list[Any] = []
    selected: set[str] = set()
    for attempt in range(restarts):
        # A restarted operator re-evaluates the same fleet run (same trace) from the durable history.
        out = evaluate(
            reg, state_in, history=history, now=NOW + dt.timedelta(seconds=attempt), trace="trace-run-1"
        )
        history += out.history_rows
        selected |= {c["candidateId"] for c in out.state["candidates"] if c["autonomous"]["eligible"]}
        assert out.state["autoEligibleCount"] <= run_cap
    assert len(selected) <= run_cap
    per_loop: dict[str, int] = {}
    for candidate_id in selected:
        loop_id = candidate_id.split(":")[0]
        per_loop[loop_id] = per_loop.get(loop_id, 0) + 1
    assert all(count <= loop_cap for count in per_loop.values())


# --- governance audit -----------------------------------------------------------------------


# fleet.bats #29: governance audit events: initialised, mutated, toggled
def test_governance_audit_initialises_mutates_and_toggles() -> None:
    state_in = fleet_state(result("loop-a", "failed"))
    first = evaluate(registry(["loop-a"], mode="guarded_auto"), state_in, trace="t1")
    assert first.governance_event is not None
    assert first.governance_event["eventType"] == "autonomous_policy_initialized"
    assert "previousMode" not in first.governance_event
    again = evaluate(
        registry(["loop-a"], mode="guarded_auto"),
        state_in,
        previous=first.state,
        had_previous=True,
        trace="t2",
    )
    assert again.governance_event is None
    mutated_reg = registry(["loop-a"], mode="guarded_auto", autonomous={"governance": governance("CAB-222")})
    mutated = evaluate(mutated_reg, state_in, previous=again.state, had_previous=True, trace="t3")
    assert mutated.governance_event is not None
    assert mutated.governance_event["eventType"] == "autonomous_policy_mutated"
    assert mutated.governance_event["traceId"] == "t3"
    assert mutated.governance_event["governance"]["approvalRef"] == "CAB-222"
    assert mutated.governance_event["previousGovernance"]["approvalRef"] == "CAB-123"
    toggled = evaluate(registry(["loop-a"]), state_in, previous=mutated.state, had_previous=True, trace="t4")
    assert toggled.governance_event is not None
    assert toggled.governance_event["eventType"] == "autonomous_mode_toggled"
    assert toggled.governance_event["previousMode"] == "guarded_auto"
    assert toggled.governance_event["mode"] == "advisory"


# fleet.bats #30: governance audit snapshots of controls (core half)
def test_governance_audit_tracks_control_changes_and_ignores_suppressions() -> None:
    state_in = fleet_state(result("loop-a", "failed"))
    base = registry(["loop-a"], mode="guarded_auto", autonomous={"safety": {"maxActionsPerRun": 1}})
    first = evaluate(base, state_in)
    assert first.governance_event is not None
    assert first.governance_event["controls"]["safety"]["maxActionsPerRun"] == 1
    changed = registry(["loop-a"], mode="guarded_auto", autonomous={"safety": {"maxActionsPerRun": 2}})
    second = evaluate(changed, state_in, previous=first.state, had_previous=True)
    assert second.governance_event is not None
    assert second.governance_event["previousControls"]["safety"]["maxActionsPerRun"] == 1
    assert second.governance_event["controls"]["safety"]["maxActionsPerRun"] == 2
    noisy = registry(
        ["loop-a"],
        mode="guarded_auto",
        autonomous={"safety": {"maxActionsPerRun": 2}},
        suppressions={"*": ["health_degraded"]},
        noiseControls={"dedupeWindowSeconds": 60},
    )
    third = evaluate(noisy, state_in, previous=second.state, had_previous=True)
    assert third.governance_event is None


def test_policy_state_shape_and_summary() -> None:
    reg = registry(["loop-red", "loop-blue"], suppressions={"*": ["health_degraded"]})
    out = evaluate(
        reg, fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", health="degraded"))
    )
    state = out.state
    assert list(state) == [
        "schemaVersion", "updatedAt", "fleetId", "traceId", "mode", "fleetStatus", "source", "taxonomy",
        "noiseControls", "autonomous", "evaluatedLoopCount", "candidateCount", "unsuppressedCount",
        "suppressedCount", "cooldownSuppressedCount", "autoEligibleCount", "manualOnlyCount", "candidates",
        "summary", "suppressionState", "reasonCodes",
    ]  # fmt: skip
    assert list(state["candidates"][0]) == [
        "loopId", "category", "signal", "traceId", "candidateId", "severity", "confidence", "rationale",
        "taxonomyVersion", "recommendedIntent", "suppressionScope", "suppressed", "suppressionReason",
        "suppressionSource", "cooldown", "autonomous",
    ]  # fmt: skip
    summary = state["summary"]
    assert summary["bySeverity"] == {"critical": 2, "warning": 1, "info": 0}
    assert summary["byCategory"] == {"health_degraded": 1, "health_critical": 1, "reconcile_failed": 1}
    assert summary["bySuppressionReason"] == {"registry_policy_suppression": 1}
    assert summary["byAutonomyReason"] == {"policy_mode_not_guarded_auto": 2}
    assert state["autonomous"]["governance"] == {
        "requiredForGuardedAuto": True,
        "authorityContextPresent": True,
    }
    assert out.telemetry_row["summary"]["candidateCount"] == 3
    assert out.telemetry_row["category"] == "fleet_policy"
