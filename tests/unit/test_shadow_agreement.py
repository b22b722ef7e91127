"""Shadow autonomy, pure: the shadow classification, the ledger, the agreement figures and the gate.

Frozen ``T0``; every other instant is relative to it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from test_fleet_policy import PATHS, governance

from superloop_ops.cli import kubectl_completion, kubectl_fleet, kubectl_plugin
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry, policy_rules, shadow_agreement
from superloop_ops.core.promotion import promotion_gates
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.fleet_policy import FleetPolicy

T0 = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
CONFIG = shadow_agreement.ShadowConfig(
    match_window_seconds=1800,
    agreement_window_seconds=3600,
    min_agreement_rate=0.9,
    min_sample_size=5,
    gate_required=True,
)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


# ---------------------------------------------------------------------------------------------
# the shadow classification (policy rules in mode shadow)


def shadow_registry(loop_ids: list[str], **autonomous: Any) -> dict[str, Any]:
    raw = {
        "schemaVersion": "v1",
        "fleetId": "fleet-x",
        "loops": [{"loopId": loop_id} for loop_id in loop_ids],
        "policy": {"mode": "shadow", "noiseControls": {"dedupeWindowSeconds": 0}, "autonomous": autonomous},
    }
    assert fleet_registry.compute_registry_errors(raw, T0) == []
    return fleet_registry.build_normalized_registry(raw, PATHS.registry_file)


def critical(*loop_ids: str) -> dict[str, Any]:
    results = [
        {"loopId": loop_id, "status": "success", "healthStatus": "critical", "traceId": f"t-{loop_id}"}
        for loop_id in loop_ids
    ]
    return {"fleetId": "fleet-x", "traceId": "trace-1", "status": "partial_failure", "results": results}


def classify(
    reg: dict[str, Any], loops: tuple[str, ...], history: list[Any], now: dt.datetime, trace: str
) -> policy_rules.PolicyEvaluation:
    return policy_rules.build_policy_evaluation(
        registry=reg, fleet_state=critical(*loops), history=history, handoff_telemetry=[],
        previous_state=None, had_previous_state=False, dedupe_window_seconds=0, trace_id=trace,
        paths=PATHS, now=now,
    )  # fmt: skip


def test_shadow_mode_runs_the_guarded_path_and_makes_nothing_eligible() -> None:
    reg = shadow_registry(
        ["a", "b", "c"], safety={"maxActionsPerRun": 2, "maxActionsPerLoop": 1, "cooldownSeconds": 600}
    )
    first = classify(reg, ("a", "b", "c"), [], T0, "trace-p1")
    blocks = {c["loopId"]: c["autonomous"] for c in first.state["candidates"]}
    assert {k: (b["shadow"]["decision"], b["shadow"]["reasons"]) for k, b in blocks.items()} == {
        "a": ("execute", []),
        "b": ("execute", []),
        "c": ("hold", ["autonomous_max_actions_per_run_exceeded"]),
    }
    assert all(b["eligible"] is False and b["manualOnly"] is True for b in blocks.values())
    assert blocks["a"]["reasons"] == ["policy_mode_shadow"]
    assert blocks["c"]["reasons"] == ["autonomous_max_actions_per_run_exceeded", "policy_mode_shadow"]
    assert first.state["autoEligibleCount"] == 0
    assert first.state["autonomous"]["enabled"] is False
    assert {"fleet_shadow_mode", "fleet_shadow_would_execute"} <= set(first.state["reasonCodes"])
    assert not {"fleet_auto_candidates_eligible", "fleet_auto_candidates_blocked"} & set(
        first.state["reasonCodes"]
    )
    rows = {r["loopId"]: r for r in first.history_rows}
    assert [rows[k]["autonomousShadowWouldExecute"] for k in "abc"] == [True, True, False]
    assert all(r["autonomousEligible"] is False for r in rows.values())
    # the cooldown counts the would-be executions, as guarded_auto counts its executions
    second = classify(reg, ("a", "b", "c"), first.history_rows, at(5), "trace-p2")
    shadow = {c["loopId"]: c["autonomous"]["shadow"] for c in second.state["candidates"]}
    assert shadow == {
        "a": {"decision": "hold", "reasons": ["autonomous_cooldown_active"]},
        "b": {"decision": "hold", "reasons": ["autonomous_cooldown_active"]},
        "c": {"decision": "execute", "reasons": []},
    }


def test_shadow_mode_honours_the_kill_switch_and_the_allowlist() -> None:
    reg = shadow_registry(["a"], safety={"killSwitch": True}, allow={"categories": ["reconcile_failed"]})
    evaluation = classify(reg, ("a",), [], T0, "trace-p1")
    (candidate,) = evaluation.state["candidates"]
    assert candidate["autonomous"]["shadow"] == {"decision": "hold", "reasons": ["category_not_allowlisted"]}
    reg = shadow_registry(["a"], safety={"killSwitch": True})
    (candidate,) = classify(reg, ("a",), [], T0, "trace-p1").state["candidates"]
    assert candidate["autonomous"]["shadow"] == {
        "decision": "hold",
        "reasons": ["autonomous_kill_switch_enabled"],
    }


def test_guarded_auto_with_a_shadow_block_shadows_the_loops_the_canary_leaves_out() -> None:
    # default salt buckets: loop-a 36, loop-blue 45 (in a 50% canary), loop-green 66, loop-red 76
    loops = ["loop-a", "loop-blue", "loop-green", "loop-red"]
    raw = {
        "schemaVersion": "v1",
        "loops": [{"loopId": loop_id} for loop_id in loops],
        "policy": {
            "mode": "guarded_auto",
            "autonomous": {
                "governance": governance(),
                "safety": {"maxActionsPerRun": 1, "maxActionsPerLoop": 1, "cooldownSeconds": 0},
                "rollout": {"canaryPercent": 50},
                "shadow": {"minSampleSize": 2},
            },
        },
    }
    assert fleet_registry.compute_registry_errors(raw, T0) == []
    reg = fleet_registry.build_normalized_registry(raw, PATHS.registry_file)
    evaluation = classify(reg, tuple(loops), [], T0, "trace-p1")
    blocks = {c["loopId"]: c["autonomous"] for c in evaluation.state["candidates"]}
    # the cohort acts for real (its own run cap); the rest gets shadow decisions with their own slots
    assert [loop for loop, b in blocks.items() if b["eligible"]] == ["loop-a"]
    assert blocks["loop-blue"]["reasons"] == ["autonomous_max_actions_per_run_exceeded"]
    assert "shadow" not in blocks["loop-a"]
    assert "shadow" not in blocks["loop-blue"]
    assert blocks["loop-green"]["shadow"] == {"decision": "execute", "reasons": []}
    assert blocks["loop-red"]["shadow"] == {
        "decision": "hold",
        "reasons": ["autonomous_max_actions_per_run_exceeded"],
    }
    assert blocks["loop-green"]["eligible"] is False
    assert blocks["loop-green"]["reasons"] == ["autonomous_rollout_canary_excluded"]
    assert "fleet_shadow_would_execute" in evaluation.state["reasonCodes"]
    assert "fleet_shadow_mode" not in evaluation.state["reasonCodes"]
    rows = {r["loopId"]: r for r in evaluation.history_rows}
    assert rows["loop-green"]["autonomousShadowWouldExecute"] is True
    assert "autonomousShadowWouldExecute" not in rows["loop-a"]


def test_advisory_and_guarded_auto_candidates_carry_no_shadow_block() -> None:
    raw = {"schemaVersion": "v1", "loops": [{"loopId": "a"}], "policy": {"mode": "advisory"}}
    reg = fleet_registry.build_normalized_registry(raw, PATHS.registry_file)
    (candidate,) = classify(reg, ("a",), [], T0, "t").state["candidates"]
    assert "shadow" not in candidate["autonomous"]
    assert "policy_mode_not_guarded_auto" in candidate["autonomous"]["reasons"]


def test_registry_accepts_shadow_and_validates_its_block() -> None:
    raw: dict[str, Any] = {
        "schemaVersion": "v1",
        "loops": [{"loopId": "a"}],
        "policy": {"mode": "shadow", "autonomous": {"shadow": {"minAgreementRate": 1.5, "minSampleSize": 0}}},
    }
    assert fleet_registry.compute_registry_errors(raw, T0) == [
        "policy.autonomous.shadow.minSampleSize must be an integer >= 1 when present",
        "policy.autonomous.shadow.minAgreementRate must be a number between 0 and 1 when present",
    ]
    raw["policy"]["mode"] = "autopilot"
    assert "policy.mode must be advisory, shadow or guarded_auto" in fleet_registry.compute_registry_errors(
        raw, T0
    )
    raw["policy"] = {"mode": "shadow", "autonomous": {"shadow": {"minSampleSize": 4}}}
    normalized = fleet_registry.build_normalized_registry(raw, "/r")
    assert normalized["policy"]["autonomous"]["shadow"] == {
        "matchWindowSeconds": 1800,
        "agreementWindowSeconds": 604800,
        "minAgreementRate": 0.9,
        "minSampleSize": 4,
    }


# ---------------------------------------------------------------------------------------------
# the ledger and the figures


def candidate(loop_id: str, category: str, decision: str, *reasons: str, suppressed: bool = False) -> Any:
    return {
        "loopId": loop_id,
        "category": category,
        "candidateId": f"{loop_id}:{category}",
        "recommendedIntent": "cancel",
        "suppressed": suppressed,
        "autonomous": {"shadow": {"decision": decision, "reasons": list(reasons)}},
    }


def policy_state(now: dt.datetime, *candidates: Any) -> dict[str, Any]:
    return {
        "mode": "shadow",
        "updatedAt": format_ts(now),
        "traceId": "trace-p",
        "candidates": list(candidates),
    }


def intent(
    name: str,
    loop_id: str,
    category: str | None,
    *,
    kind: str = "cancel",
    started: dt.datetime | None = None,
    mode: str = "manual",
    declined_at: dt.datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "annotations": {}},
        "spec": {"intent": kind, "loopRef": {"name": f"fleet-{loop_id}"}},
        "status": {},
    }
    if category is not None:
        body["spec"]["candidate"] = {"candidateId": f"{loop_id}:{category}", "category": category}
    if started is not None:
        body["status"] = {
            "mode": mode,
            "phase": "executed",
            "startedAt": format_ts(started),
            "approvedBy": "oncall",
            "idempotencyKey": f"{name}-k1",
        }
    if declined_at is not None:
        body["metadata"]["annotations"] = {
            "ops.superloop.dev/declined": "true",
            "ops.superloop.dev/declined-by": "oncall",
            "ops.superloop.dev/declined-at": format_ts(declined_at),
        }
    return body


NAMES = {f"fleet-{x}": x for x in "abcdf"}


def run(
    ledger: shadow_agreement.LedgerUpdate | None,
    state: dict[str, Any] | None,
    intents: list[dict[str, Any]],
    now: dt.datetime,
) -> shadow_agreement.LedgerUpdate:
    return shadow_agreement.update_ledger(
        decisions=ledger.decisions if ledger else [],
        consumed=ledger.consumed if ledger else [],
        policy_state=state,
        actions=shadow_agreement.read_human_actions(intents, NAMES, now),
        config=CONFIG,
        fleet_id="fleet-x",
        now=now,
    )


def three_passes() -> tuple[shadow_agreement.LedgerUpdate, ...]:
    first = run(
        None,
        policy_state(
            T0,
            candidate("a", "health_critical", "execute"),
            candidate("b", "health_critical", "execute"),
            candidate("c", "health_critical", "hold", "autonomous_max_actions_per_run_exceeded"),
            candidate("d", "reconcile_failed", "hold", "category_not_allowlisted"),
            candidate("e", "health_critical", "execute", suppressed=True),
            candidate("f", "health_critical", "execute"),
        ),
        [intent("hi-d-old", "d", "reconcile_failed", started=at(-1))],  # before the decision: not it
        T0,
    )
    people = [
        intent("hi-a", "a", "health_critical", started=at(10)),  # approved
        intent("hi-b", "b", "health_critical", declined_at=at(5)),  # rejected
        intent("hi-c", "c", "health_critical", started=at(12)),  # approved what shadow held
        intent("hi-f", "f", None, kind="reject", started=at(8)),  # another intent type on loop f
        intent("hi-a-auto", "a", "health_critical", started=at(9), mode="autonomous"),  # not a person
        intent("hi-d-old", "d", "reconcile_failed", started=at(-1)),
    ]
    second = run(
        first,
        policy_state(
            at(15),
            candidate("a", "health_critical", "execute"),
            candidate("b", "health_critical", "execute"),
            candidate("d", "reconcile_failed", "hold", "category_not_allowlisted"),
        ),
        people,
        at(15),
    )
    third = run(second, None, people, at(31))
    return first, second, third


def test_the_ledger_matches_people_to_decisions_with_exact_figures() -> None:
    first, second, third = three_passes()
    assert [(d["loopId"], d["decision"]) for d in first.new_rows] == [
        ("a", "execute"), ("b", "execute"), ("c", "hold"), ("d", "hold"), ("f", "execute"),
    ]  # fmt: skip
    assert first.resolved_rows == []
    assert [(r["loopId"], r["human"], r["agreed"], r["humanAt"]) for r in second.resolved_rows] == [
        ("a", "approved", True, format_ts(at(10))),
        ("b", "rejected", False, format_ts(at(5))),
        ("c", "approved", False, format_ts(at(12))),
        ("f", "acted_differently", False, format_ts(at(8))),
    ]
    assert second.resolved_rows[0]["humanIntent"] == "hi-a"
    assert (second.resolved_rows[0]["category"], second.resolved_rows[0]["candidateCategory"]) == (
        "fleet_shadow_resolution",
        "health_critical",
    )
    # a and b were proposed again (their decisions resolved); d still has its open decision
    assert [(d["loopId"], d["decidedAt"]) for d in second.new_rows] == [
        ("a", format_ts(at(15))),
        ("b", format_ts(at(15))),
    ]
    # the old decline of b is spent: b's new decision stays open; d lapses at the end of its window
    assert [(r["loopId"], r["human"], r["agreed"], r["humanAt"]) for r in third.resolved_rows] == [
        ("d", "lapsed", True, format_ts(at(30))),
    ]
    figures = shadow_agreement.compute_agreement(third.decisions, CONFIG, at(31))
    assert {k: v for k, v in figures.items() if k != "recent"} == {
        "evaluatedAt": format_ts(at(31)),
        "windowSeconds": 3600,
        "matchWindowSeconds": 1800,
        "decisions": 7,
        "resolved": 5,
        "agreed": 2,
        "disagreed": 3,
        "pending": 2,
        "agreementRate": 0.4,
        "byDecision": {
            "execute": {"approved": 1, "rejected": 1, "lapsed": 0, "acted_differently": 1, "pending": 2},
            "hold": {"approved": 1, "rejected": 0, "lapsed": 1, "acted_differently": 0, "pending": 0},
        },
        "byIntent": {
            "cancel": {"resolved": 5, "agreed": 2, "disagreed": 3, "pending": 2, "agreementRate": 0.4}
        },
        "byReasonCode": {
            "health_critical": {
                "resolved": 4,
                "agreed": 1,
                "disagreed": 3,
                "pending": 2,
                "agreementRate": 0.25,
            },
            "reconcile_failed": {
                "resolved": 1,
                "agreed": 1,
                "disagreed": 0,
                "pending": 0,
                "agreementRate": 1,
            },
        },
    }
    assert len(figures["recent"]) == 7
    assert figures["recent"][2]["reasons"] == ["autonomous_max_actions_per_run_exceeded"]


def test_the_window_rolls_decisions_out_of_the_figures_and_the_ledger() -> None:
    _, _, third = three_passes()
    later = run(third, None, [], at(61))
    # a and b's second decisions (made at +15) lapse at +45; everything made before +1 rolls out
    assert [(d["loopId"], d["human"]) for d in later.decisions] == [("a", "lapsed"), ("b", "lapsed")]
    figures = shadow_agreement.compute_agreement(later.decisions, CONFIG, at(61))
    assert (figures["decisions"], figures["resolved"], figures["agreed"], figures["agreementRate"]) == (
        2, 2, 0, 0,
    )  # fmt: skip


def test_an_empty_ledger_has_no_rate() -> None:
    figures = shadow_agreement.compute_agreement([], CONFIG, T0)
    assert (figures["resolved"], figures["agreementRate"], figures["byIntent"]) == (0, None, {})


@pytest.mark.parametrize(
    ("decision", "human", "agrees"),
    [
        ("execute", "approved", True),
        ("execute", "rejected", False),
        ("execute", "lapsed", False),
        ("execute", "acted_differently", False),
        ("hold", "approved", False),
        ("hold", "rejected", True),
        ("hold", "lapsed", True),
        ("hold", "acted_differently", False),
    ],
)
def test_agreement_table(decision: str, human: str, agrees: bool) -> None:
    assert shadow_agreement.compute_agrees(decision, human) is agrees


# ---------------------------------------------------------------------------------------------
# the shadow_agreement gate


def test_gate_reasons_and_inputs() -> None:
    _, _, third = three_passes()
    figures = shadow_agreement.compute_agreement(third.decisions, CONFIG, at(31))
    reasons, detail = shadow_agreement.evaluate_shadow_gate(CONFIG, figures)
    assert reasons == ["promotion_shadow_agreement_below_threshold"]
    keys = ("minAgreementRate", "minSampleSize", "resolved", "agreed", "agreementRate")
    assert {k: detail[k] for k in keys} == {
        "minAgreementRate": 0.9, "minSampleSize": 5, "resolved": 5, "agreed": 2, "agreementRate": 0.4,
    }  # fmt: skip
    loose = shadow_agreement.ShadowConfig(1800, 3600, 0.4, 6, True)
    assert shadow_agreement.evaluate_shadow_gate(loose, figures)[0] == [
        "promotion_shadow_sample_insufficient"
    ]
    passing = shadow_agreement.ShadowConfig(1800, 3600, 0.4, 5, True)
    assert shadow_agreement.evaluate_shadow_gate(passing, figures)[0] == []


def gates_with(registry: Any, ledger_text: str | None, now: dt.datetime) -> list[promotion_gates.GateResult]:
    evidence = promotion_gates.build_shadow_evidence(registry, ledger_text)
    gates = promotion_gates.compute_gates(
        {}, promotion_gates.HandoffEvidence("missing"), promotion_gates.DrillEvidence("missing"),
        promotion_gates.GateThresholds(), now, evidence,
    )  # fmt: skip
    return list(gates)


def test_the_gate_joins_the_report_only_when_the_policy_has_a_shadow_block() -> None:
    assert len(gates_with({"policy": {"mode": "shadow"}}, None, T0)) == 5
    _, _, third = three_passes()
    shadow_block = {"minAgreementRate": 0.4, "minSampleSize": 5, "agreementWindowSeconds": 3600}
    registry = {"policy": {"autonomous": {"shadow": shadow_block}}}
    ledger = json.dumps({"decisions": third.decisions})
    gates = gates_with(registry, ledger, at(31))
    assert [g.name for g in gates][-1] == "shadow_agreement"
    shadow = gates[-1].to_json()
    assert (shadow["status"], shadow["resolved"], shadow["agreementRate"]) == ("pass", 5, 0.4)
    # recomputed at evaluation time: an hour later the window holds only the two later decisions
    later = gates_with(registry, ledger, at(61))[-1].to_json()
    assert later["status"] == "fail"
    assert later["reasons"] == ["promotion_shadow_sample_insufficient"]
    assert gates_with(registry, None, T0)[-1].reasons == (
        "promotion_shadow_evidence_missing",
        "promotion_shadow_sample_insufficient",
    )
    assert gates_with(registry, "{not json", T0)[-1].reasons[0] == "promotion_shadow_evidence_invalid"


# ---------------------------------------------------------------------------------------------
# the model


def test_the_model_accepts_shadow_without_governance_and_bounds_its_block() -> None:
    body: dict[str, Any] = {"kind": "FleetPolicy", "metadata": {"name": "p"}, "spec": {"mode": "shadow"}}
    policy = FleetPolicy.from_body(body)
    assert (policy.spec.mode, policy.spec.autonomous.shadow) == ("shadow", None)
    body["spec"]["autonomous"] = {"shadow": {"minSampleSize": 3}}
    shadow = FleetPolicy.from_body(body).spec.autonomous.shadow
    assert shadow is not None
    assert (shadow.match_window_seconds, shadow.agreement_window_seconds) == (1800, 604800)
    assert (shadow.min_agreement_rate, shadow.min_sample_size) == (0.9, 3)
    body["spec"]["autonomous"] = {"shadow": {"matchWindowSeconds": 30}}
    with pytest.raises(InvalidSpecError, match=r"matchWindowSeconds"):
        FleetPolicy.from_body(body)
    # the registry document (a dump without nulls) carries the block only when it is set
    body["spec"] = {"mode": "shadow"}
    plain = FleetPolicy.from_body(body)
    assert "shadow" not in plain.spec.model_dump(mode="json", by_alias=True, exclude_none=True)["autonomous"]


# ---------------------------------------------------------------------------------------------
# the kubectl plugin (pure parts; e2e/test_shadow_operator.py runs it against a cluster)


def test_plugin_decline_parses_and_the_fleet_view_carries_the_shadow_figures() -> None:
    args = kubectl_plugin.parse_args(["decline", "hoi-1", "-n", "team-a"])
    assert (args.command, args.intent, args.namespace) == ("decline", "hoi-1", "team-a")
    assert "decline" in kubectl_plugin.build_parser().format_help()
    assert kubectl_completion.NAME_SOURCES["decline"] == "handoffintents"
    shadow = {"updatedAt": format_ts(T0), "config": {"minSampleSize": 5}, "agreement": {"agreementRate": 0.4}}
    fleet = {"metadata": {"name": "f"}, "spec": {"policyRef": {"name": "p"}}, "status": {}}
    policy = {
        "metadata": {"name": "p"},
        "spec": {"mode": "shadow"},
        "status": {"mode": "shadow", "shadow": shadow},
    }
    view = kubectl_fleet.build_fleet_view(fleet, policy)
    assert view["policy"]["shadow"] == shadow
    policy["status"] = {"mode": "advisory"}
    assert "shadow" not in kubectl_fleet.build_fleet_view(fleet, policy)["policy"]


def test_shadow_config_reads_the_block_through_the_model_and_a_bad_one_keeps_the_gate() -> None:
    read = shadow_agreement.ShadowConfig.read
    assert read({"mode": "shadow"}).gate_required is False
    config = read({"autonomous": {"shadow": {"minSampleSize": 7, "minAgreementRate": 0.75}}})
    assert (config.min_sample_size, config.min_agreement_rate, config.gate_required) == (7, 0.75, True)
    bad = read({"autonomous": {"shadow": {"minSampleSize": "lots"}}})
    assert (bad.min_sample_size, bad.min_agreement_rate, bad.gate_required) == (20, 0.9, True)
