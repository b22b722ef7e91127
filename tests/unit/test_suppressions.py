"""Suppressions with an owner, a reason and an expiry (issue 15 part 2), on a frozen clock.

The registry is the operator's and the CLI's common input; ``policy_rules.build_policy_evaluation``
applies the suppressions that hold at ``now`` and reports each one (``suppressionState.entries``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.cli import kubectl_suppressions
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_policy_resource, fleet_registry, policy_rules, suppressions
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.fleet_policy import (
    DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS,
    DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS,
    FleetPolicy,
    FleetPolicySpec,
)

T0 = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
SEC = dt.timedelta(seconds=1)
PATHS = policy_rules.PolicyPaths(
    registry_file="/r/registry.v1.json",
    fleet_state_file="/r/state.json",
    policy_state_file="/r/policy-state.json",
    policy_history_file="/r/policy-history.jsonl",
    handoff_telemetry_file="/r/handoff.jsonl",
    governance_audit_file="/r/policy-governance.jsonl",
)


def terms(starts: dt.datetime, expires: dt.datetime, owner: str = "alice") -> dict[str, str]:
    return {
        "owner": owner,
        "reason": "INC-42",
        "startsAt": format_ts(starts),
        "expiresAt": format_ts(expires),
    }


def registry(
    suppress: dict[str, list[str]], owned: dict[str, dict[str, str]], **limits: int
) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "mode": "advisory",
        "noiseControls": {"dedupeWindowSeconds": 0},
        "suppressions": suppress,
        "suppressionTerms": owned,
    }
    if limits:
        policy["suppressionLimits"] = limits
    raw = {
        "schemaVersion": "v1",
        "fleetId": "f",
        "loops": [{"loopId": "a"}, {"loopId": "b"}],
        "policy": policy,
    }
    assert fleet_registry.compute_registry_errors(raw, T0) == []
    return fleet_registry.build_normalized_registry(raw, PATHS.registry_file)


def fleet_state(**health: str) -> dict[str, Any]:
    results = [
        {"loopId": k, "status": "success", "healthStatus": v, "traceId": "t"} for k, v in health.items()
    ]
    return {"fleetId": "f", "traceId": "t", "status": "success", "results": results}


def evaluate(
    reg: dict[str, Any], state: dict[str, Any], now: dt.datetime, history: list[Any] | None = None
) -> policy_rules.PolicyEvaluation:
    return policy_rules.build_policy_evaluation(
        registry=reg, fleet_state=state, history=history or [], handoff_telemetry=[], previous_state=None,
        had_previous_state=False, dedupe_window_seconds=0, trace_id="trace-1", paths=PATHS, now=now,
    )  # fmt: skip


def entry(state: dict[str, Any], key: str) -> dict[str, Any]:
    found = [e for e in state["suppressionState"]["entries"] if e["key"] == key]
    assert len(found) == 1
    return found[0]


def suppressed(state: dict[str, Any]) -> dict[str, bool]:
    return {c["candidateId"]: c["suppressed"] for c in state["candidates"]}


# --- expiry --------------------------------------------------------------------------------


def test_a_suppression_applies_until_the_second_before_expires_at_and_not_at_it() -> None:
    reg = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + HOUR)})
    degraded = fleet_state(a="degraded")
    last_second = evaluate(reg, degraded, T0 + HOUR - SEC).state
    assert suppressed(last_second) == {"a:health_degraded": True}
    assert entry(last_second, "a")["state"] == "expiring"
    assert entry(last_second, "a")["expiresInSeconds"] == 1
    at_expiry = evaluate(reg, degraded, T0 + HOUR).state
    assert suppressed(at_expiry) == {"a:health_degraded": False}
    assert entry(at_expiry, "a") | {"hidingNow": None} == {
        "key": "a", "scope": "loop", "categories": ["health_degraded"], "state": "expired", "applies": False,
        "owner": "alice", "reason": "INC-42", "startsAt": format_ts(T0), "expiresAt": format_ts(T0 + HOUR),
        "cappedByMaxDuration": False, "expiresInSeconds": 0, "hidingNow": None,
        "hiddenSignals": {"health_degraded": 0}, "hiddenSignalCount": 0,
    }  # fmt: skip
    assert "fleet_suppressions_expired" in at_expiry["reasonCodes"]
    assert at_expiry["unsuppressedCount"] == 1


def test_a_suppression_does_not_apply_before_starts_at() -> None:
    reg = registry({"*": ["health_critical"]}, {"*": terms(T0, T0 + HOUR)})
    before = evaluate(reg, fleet_state(a="critical"), T0 - SEC).state
    assert suppressed(before) == {"a:health_critical": False}
    assert entry(before, "*")["state"] == "pending"
    at_start = evaluate(reg, fleet_state(a="critical"), T0).state
    assert suppressed(at_start) == {"a:health_critical": True}
    assert entry(at_start, "*")["scope"] == "global"


@pytest.mark.parametrize(
    ("remaining", "state"), [(3601, "active"), (3600, "expiring"), (1, "expiring"), (0, "expired")]
)
def test_expiring_starts_exactly_expiring_within_seconds_before_the_expiry(
    remaining: int, state: str
) -> None:
    reg = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + 2 * HOUR)}, expiringWithinSeconds=3600)
    now = T0 + 2 * HOUR - dt.timedelta(seconds=remaining)
    assert entry(evaluate(reg, fleet_state(a="healthy"), now).state, "a")["state"] == state


def test_no_warning_window_means_never_expiring() -> None:
    reg = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + HOUR)}, expiringWithinSeconds=0)
    assert entry(evaluate(reg, fleet_state(), T0 + HOUR - SEC).state, "a")["state"] == "active"


def test_an_entry_without_terms_keeps_applying_as_the_reference_does_and_is_reported_unowned() -> None:
    reg = registry({"a": ["health_degraded"], "b": ["health_degraded"]}, {"b": terms(T0, T0 + HOUR)})
    state = evaluate(reg, fleet_state(a="degraded", b="degraded"), T0 + 2 * HOUR).state
    assert suppressed(state) == {"a:health_degraded": True, "b:health_degraded": False}
    assert entry(state, "a") == {
        "key": "a", "scope": "loop", "categories": ["health_degraded"], "state": "unowned", "applies": True,
        "cappedByMaxDuration": False, "hidingNow": {"health_degraded": 1},
        "hiddenSignals": {"health_degraded": 1}, "hiddenSignalCount": 1,
    }  # fmt: skip


def test_expired_loop_entry_falls_back_to_an_applying_global_one() -> None:
    reg = registry(
        {"*": ["health_degraded"], "a": ["health_degraded"]},
        {"*": terms(T0, T0 + 3 * HOUR), "a": terms(T0, T0 + HOUR)},
    )
    state = evaluate(reg, fleet_state(a="degraded"), T0 + 2 * HOUR).state
    assert state["candidates"][0]["suppressionScope"] == "global"
    assert entry(state, "*")["hidingNow"] == {"health_degraded": 1}
    assert entry(state, "a")["hidingNow"] == {"health_degraded": 0}


# --- maximum duration ------------------------------------------------------------------------


def test_the_default_maximum_and_warning_live_in_the_model() -> None:
    spec = FleetPolicySpec()
    assert spec.suppression_limits.max_duration_seconds == DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS == 604800
    assert spec.suppression_limits.expiring_within_seconds == DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS
    assert suppressions.SuppressionLimits.read({}) == suppressions.SuppressionLimits(604800, 86400)


def _spec(expires: dt.datetime, **limits: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "suppressions": {"a": ["health_degraded"]},
        "suppressionTerms": {"a": terms(T0, expires)},
    }
    if limits:
        spec["suppressionLimits"] = limits
    return spec


def test_the_model_accepts_exactly_the_maximum_duration_and_refuses_one_second_more() -> None:
    week = dt.timedelta(seconds=DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS)
    FleetPolicySpec.model_validate(_spec(T0 + week))
    with pytest.raises(ValueError, match=r"must not exceed suppressionLimits\.maxDurationSeconds"):
        FleetPolicySpec.model_validate(_spec(T0 + week + SEC))
    FleetPolicySpec.model_validate(_spec(T0 + 2 * HOUR, maxDurationSeconds=7200))
    with pytest.raises(ValueError, match="must not exceed"):
        FleetPolicySpec.model_validate(_spec(T0 + 2 * HOUR + SEC, maxDurationSeconds=7200))
    with pytest.raises(ValueError, match="expiresAt must be after startsAt"):
        FleetPolicySpec.model_validate(_spec(T0))


def test_a_registry_entry_longer_than_the_maximum_is_capped_at_starts_at_plus_the_maximum() -> None:
    reg = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + 10 * HOUR)}, maxDurationSeconds=7200)
    still = evaluate(reg, fleet_state(a="degraded"), T0 + 2 * HOUR - SEC).state
    assert suppressed(still) == {"a:health_degraded": True}
    capped = evaluate(reg, fleet_state(a="degraded"), T0 + 2 * HOUR).state
    assert suppressed(capped) == {"a:health_degraded": False}
    row = entry(capped, "a")
    assert (row["state"], row["expiresAt"], row["cappedByMaxDuration"]) == (
        "expired", format_ts(T0 + 2 * HOUR), True,
    )  # fmt: skip


def test_registry_validation_of_terms_and_limits() -> None:
    def errors(**policy: Any) -> list[str]:
        raw = {"schemaVersion": "v1", "loops": [{"loopId": "a"}], "policy": policy}
        return fleet_registry.compute_registry_errors(raw, T0)

    ok = terms(T0, T0 + HOUR)
    assert errors(suppressions={"a": ["health_degraded"]}, suppressionTerms={"a": ok}) == []
    assert errors(suppressionTerms={"a": ok}) == [
        "policy.suppressionTerms.a must name an entry of policy.suppressions"
    ]
    assert errors(suppressions={"a": []}, suppressionTerms={"a": {"owner": "x"}}) == [
        "policy.suppressionTerms.a needs reason, startsAt, expiresAt"
    ]
    assert errors(suppressions={"a": []}, suppressionTerms={"a": terms(T0, T0)}) == [
        "policy.suppressionTerms.a expiresAt must be after startsAt"
    ]
    assert errors(suppressionLimits={"maxDurationSeconds": 59, "expiringWithinSeconds": -1}) == [
        "policy.suppressionLimits.maxDurationSeconds must be an integer >= 60 when present",
        "policy.suppressionLimits.expiringWithinSeconds must be an integer >= 0 when present",
    ]


# --- what a suppression hid ------------------------------------------------------------------


def test_hidden_signals_are_counted_per_suppression_and_category_within_its_window() -> None:
    reg = registry(
        {"*": ["health_degraded"], "a": ["health_critical", "health_degraded"]},
        {"*": terms(T0, T0 + 3 * HOUR), "a": terms(T0, T0 + HOUR)},
    )
    history: list[Any] = []
    passes = [
        (T0 - 10 * SEC, {"a": "critical", "b": "degraded"}),  # before both windows: nothing hidden
        (T0, {"a": "critical", "b": "degraded"}),  # a: 1 critical; *: 1 degraded (b)
        (T0 + 30 * SEC, {"a": "degraded", "b": "degraded"}),  # a: 1 degraded (loop wins); *: b
        (T0 + HOUR, {"a": "degraded", "b": "healthy"}),  # a expired: * hides a's degraded
    ]
    for now, health in passes:
        out = evaluate(reg, fleet_state(**health), now, history)
        history.extend(out.history_rows)
    state = out.state
    assert entry(state, "a")["hiddenSignals"] == {"health_critical": 1, "health_degraded": 1}
    assert entry(state, "a")["hiddenSignalCount"] == 2
    assert entry(state, "a")["hidingNow"] == {"health_critical": 0, "health_degraded": 0}
    assert entry(state, "*")["hiddenSignals"] == {"health_degraded": 3}
    assert entry(state, "*")["hidingNow"] == {"health_degraded": 1}


def test_a_renewed_suppression_counts_only_its_own_window() -> None:
    old = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + HOUR)})
    history = evaluate(old, fleet_state(a="degraded"), T0 + 60 * SEC).history_rows
    renewed = registry({"a": ["health_degraded"]}, {"a": terms(T0 + HOUR, T0 + 2 * HOUR)})
    state = evaluate(renewed, fleet_state(a="degraded"), T0 + HOUR, history).state
    assert entry(state, "a")["hiddenSignalCount"] == 1


# --- the FleetPolicy's status, condition and Events ------------------------------------------


def _status_rows(now: dt.datetime, counted: list[Any] | None = None) -> list[Any]:
    spec = {"suppressions": {"a": ["health_degraded"]}, "suppressionTerms": {"a": terms(T0, T0 + HOUR)}}
    return suppressions.build_suppression_status(
        spec | {"suppressionLimits": {"maxDurationSeconds": 604800, "expiringWithinSeconds": 600}},
        now,
        counted,
    )


def test_status_rows_take_the_counts_of_the_same_suppression_only() -> None:
    counted = [{"key": "a", "expiresAt": format_ts(T0 + HOUR), "hidingNow": {"health_degraded": 1},
                "hiddenSignals": {"health_degraded": 7}}]  # fmt: skip
    assert _status_rows(T0, counted)[0]["hiddenSignalCount"] == 7
    renewed_elsewhere = [dict(counted[0], expiresAt=format_ts(T0 + 2 * HOUR))]
    assert _status_rows(T0, renewed_elsewhere)[0]["hiddenSignalCount"] == 0


def test_events_are_posted_once_on_the_transition_to_expired() -> None:
    active = _status_rows(T0)
    expiring = _status_rows(T0 + HOUR - 600 * SEC)
    expired = _status_rows(T0 + HOUR)
    assert suppressions.compute_suppression_events(None, expired) == []
    assert suppressions.compute_suppression_events(active, active) == []
    [warn] = suppressions.compute_suppression_events(active, expiring)
    assert (warn.type, warn.reason) == ("Normal", "SuppressionExpiring")
    [event] = suppressions.compute_suppression_events(expiring, expired)
    assert (event.type, event.reason) == ("Warning", "SuppressionExpired")
    assert event.message == (
        f"suppression a [health_degraded] expired and no longer applies at {format_ts(T0 + HOUR)}"
        " (owner alice, reason: INC-42; hid 0 signal(s))"
    )
    assert suppressions.compute_suppression_events(expired, expired) == []
    assert suppressions.compute_suppression_events(active, expired)[0].reason == "SuppressionExpired"


def _policy_status(rows: list[Any], previous: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    return fleet_policy_resource.build_fleet_policy_status(
        previous=previous, generation=3, now=now, mode="advisory", canary_percent=100, manual_pause=False,
        governance_posture=None, suppressions=rows,
    )  # fmt: skip


def test_suppressions_expiring_condition_is_kstatus_shaped_and_moves_with_the_state() -> None:
    first = _policy_status(_status_rows(T0), None, T0)
    cond = {c["type"]: c for c in first["conditions"]}["SuppressionsExpiring"]
    assert cond == {
        "type": "SuppressionsExpiring", "status": "False", "observedGeneration": 3,
        "lastTransitionTime": format_ts(T0), "reason": "NoneExpiring",
        "message": "no suppression expires soon",
    }  # fmt: skip
    soon = T0 + HOUR - 600 * SEC
    second = _policy_status(_status_rows(soon), first, soon)
    cond = {c["type"]: c for c in second["conditions"]}["SuppressionsExpiring"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "True", "SuppressionsExpiring", format_ts(soon),
    )  # fmt: skip
    assert cond["message"] == (
        f"1 suppression(s) expire soon: a; first a at {format_ts(T0 + HOUR)} (owner alice)"
    )
    third = _policy_status(_status_rows(T0 + HOUR), second, T0 + HOUR)
    cond = {c["type"]: c for c in third["conditions"]}["SuppressionsExpiring"]
    assert (cond["status"], cond["reason"]) == ("False", "SuppressionsExpired")
    assert third["suppressions"][0]["state"] == "expired"


def test_without_a_parsed_spec_the_previous_rows_are_kept() -> None:
    first = _policy_status(_status_rows(T0), None, T0)
    kept = fleet_policy_resource.build_fleet_policy_status(
        previous=first, generation=4, now=T0, mode="advisory", canary_percent=100, manual_pause=False,
        governance_posture=None, blocked_reason="invalid_spec",
    )  # fmt: skip
    assert kept["suppressions"] == first["suppressions"]


def test_the_crd_model_refuses_terms_without_an_owner() -> None:
    ownerless = {k: v for k, v in terms(T0, T0 + HOUR).items() if k != "owner"}
    body = {
        "apiVersion": "ops.superloop.dev/v1alpha1", "kind": "FleetPolicy", "metadata": {"name": "p"},
        "spec": {"suppressions": {"a": []}, "suppressionTerms": {"a": ownerless}},
    }  # fmt: skip
    with pytest.raises(InvalidSpecError, match="owner"):
        FleetPolicy.from_body(body)


def test_two_passes_in_the_same_second_count_two_signals() -> None:
    reg = registry({"a": ["health_degraded"]}, {"a": terms(T0, T0 + HOUR)})
    first = evaluate(reg, fleet_state(a="degraded"), T0 + HOUR / 2)
    second = evaluate(reg, fleet_state(a="degraded"), T0 + HOUR / 2, first.history_rows)
    assert entry(second.state, "a")["hiddenSignals"] == {"health_degraded": 2}


# --- the tables of both CLIs ---------------------------------------------------------------------


def test_the_plugin_rows_recompute_the_state_now_and_take_the_counts_from_the_status() -> None:
    spec = {"suppressions": {"a": ["health_degraded"]}, "suppressionTerms": {"a": terms(T0, T0 + HOUR)}}
    counted = [{"key": "a", "expiresAt": format_ts(T0 + HOUR), "state": "active",
                "hidingNow": {"health_degraded": 1}, "hiddenSignals": {"health_degraded": 4}}]  # fmt: skip
    policy = {
        "metadata": {"namespace": "ns", "name": "pol"},
        "spec": spec,
        "status": {"suppressions": counted},
    }
    (row,) = kubectl_suppressions.build_suppression_rows([policy], T0 + HOUR + 5 * SEC)
    assert (row["namespace"], row["policy"], row["state"], row["hiddenSignalCount"]) == (
        "ns",
        "pol",
        "expired",
        4,
    )
    table = suppressions.build_suppression_table([row], T0 + HOUR + 5 * SEC, (("POLICY", "policy"),))
    assert table == [
        ["POLICY", "KEY", "CATEGORIES", "STATE", "OWNER", "EXPIRES IN", "HID", "REASON"],
        [
            "pol",
            "a",
            "health_degraded",
            "expired",
            "alice",
            "expired 5s ago",
            "4 (health_degraded=4)",
            "INC-42",
        ],
    ]


@pytest.mark.parametrize(
    ("now", "shown"),
    [
        (T0 - 90 * SEC, "starts in 1m30s"),
        (T0 + HOUR - 61 * SEC, "1m1s"),
        (T0 + 60 * SEC, "59m"),
        (T0 + HOUR - 59 * SEC, "59s"),
        (T0 + HOUR + 86400 * SEC + 3600 * SEC, "expired 1d1h ago"),
    ],
)
def test_expires_in_is_relative_to_now(now: dt.datetime, shown: str) -> None:
    spec = {"suppressions": {"a": []}, "suppressionTerms": {"a": terms(T0, T0 + HOUR)}}
    (row,) = suppressions.build_suppression_status(spec, now, None)
    assert suppressions.build_suppression_table([row], now)[1][4] == shown
