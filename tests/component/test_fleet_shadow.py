"""Shadow autonomy on a simulated fleet: the Fleet, FleetPolicy and HandoffIntent handlers called
directly, real journal files, the real simulator and control engine, an in-memory API server.

People approve some shadow proposals and decline others; the agreement figures in the FleetPolicy
status, the journal and the metrics, and the shadow_agreement gate's decision, are exact.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from test_fleet_handlers import GROUP_VERSION, NS, _failed_status, _ok_status
from test_fleet_handlers import _fleet_dir as _journal_dir
from test_promotion_handler import FLEET as PROMOTION_FLEET
from test_promotion_handler import POLICY as PROMOTION_POLICY
from test_promotion_handler import Env as PromotionEnv

from helpers.operator_fakes import FakeEdge, WatchedMembers, build_context, build_frozen_clock
from superloop_ops.cli import main as cli_main
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import fleet_controller, fleet_objects, promotion_apply_controller
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names, policy_rules
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers.context import OperatorContext, build_fleet_deps
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.sim.simulator import Simulator

LOOPS = ("red0-1", "red1-1", "red2-1", "red3-1")


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


def _policy(min_rate: float) -> dict[str, Any]:
    spec = {
        "mode": "shadow",
        "noiseControls": {"dedupeWindowSeconds": 0},
        "autonomous": {
            "allow": {"categories": ["health_critical"], "intents": ["cancel"]},
            "safety": {"maxActionsPerRun": 3, "maxActionsPerLoop": 1, "cooldownSeconds": 0},
            "shadow": {"matchWindowSeconds": 600, "minAgreementRate": min_rate, "minSampleSize": 4},
        },
    }
    return {"apiVersion": GROUP_VERSION, "kind": "FleetPolicy", "metadata": {"name": "pol"}, "spec": spec}


def _setup(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> tuple[OperatorContext, fleet_objects.FleetPassDeps, list[Path]]:
    repos, pvcs = [], {}
    for index in range(len(LOOPS)):
        sim = Simulator(tmp_path / "sims", clock, loops=1, scenarios=["running"], loop_prefix=f"red{index}")
        sim.run(4)
        repos.append(sim.repo_of(f"red{index}-1"))
        pvcs[f"claim-{index}"] = repos[-1]
    ctx = build_context(tmp_path, edge, clock, pvcs, control_confirm_timeout_seconds=4, sleep=clock.sleep)
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    edge.add("fleetpolicies", _policy(0.6))
    loops = [
        {"loopId": loop_id, "transport": "local", "source": {"pvc": {"claimName": f"claim-{i}"}}}
        for i, loop_id in enumerate(LOOPS)
    ]
    spec = {
        "loops": loops,
        "deterministicOrder": True,
        "reconcileIntervalSeconds": 2,
        "policyRef": {"name": "pol"},
    }
    edge.add(
        "fleets", {"apiVersion": GROUP_VERSION, "kind": "Fleet", "metadata": {"name": "drill"}, "spec": spec}
    )
    _pass(edge, deps)  # materialise the Loops
    for loop_id in LOOPS:
        edge.get("loops", f"drill-{loop_id}")["status"] = _failed_status()
    return ctx, deps, repos


def _pass(edge: FakeEdge, deps: fleet_objects.FleetPassDeps) -> fleet_controller.FleetPassReport:
    return fleet_controller.reconcile_fleet(edge.get("fleets", "drill"), deps)


def _name(loop_id: str, category: str) -> str:
    return owned_names.compute_intent_name("drill", f"{loop_id}:{category}:cancel")


def _ref(name: str, namespace: str = NS) -> ObjectRef:
    return ObjectRef("HandoffIntent", "handoffintents", namespace, name)


def _approve(edge: FakeEdge, ctx: OperatorContext, name: str) -> None:
    intent_handlers.reconcile_intent(edge.get("handoffintents", name), ctx)  # pending
    edge.patch_annotations(
        _ref(name, edge.namespace),
        {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "oncall"},
    )
    assert intent_handlers.reconcile_intent(edge.get("handoffintents", name), ctx).phase == "executed"


def _decline(edge: FakeEdge, name: str, now: dt.datetime) -> None:
    edge.patch_annotations(
        _ref(name),
        {
            "ops.superloop.dev/declined": "true",
            "ops.superloop.dev/declined-by": "oncall",
            "ops.superloop.dev/declined-at": format_ts(now),
        },
    )


def _alive(repo: Path) -> bool:
    return (repo / ".superloop" / "state.json").is_file()


def _fleet_dir(tmp_path: Path) -> Path:
    return _journal_dir(tmp_path, "drill")


def _shadow_gate(ctx: OperatorContext, deps: fleet_objects.FleetPassDeps) -> dict[str, Any]:
    paths = promotion_apply_controller.build_promotion_paths(deps.settings, NS, "drill")
    document = promotion_apply_controller.evaluate_promotion_gates(paths, deps.clock, "trace-gate")
    assert document is not None
    gate: dict[str, Any] = document["gates"]["shadowAgreement"]
    gate["failed"] = "shadow_agreement" in document["summary"]["failedGates"]
    return gate


def _cli_shadow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    fleet_dir = _fleet_dir(tmp_path)
    code = cli_main.main([
        "fleet", "shadow", "--repo", str(tmp_path),
        "--registry-file", str(fleet_dir / "registry.v1.json"),
        "--policy-state-file", str(fleet_dir / "policy-state.json"),
    ])  # fmt: skip
    assert code == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_people_approve_some_shadow_proposals_and_decline_others(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, deps, repos = _setup(tmp_path, edge, clock)
    report = _pass(edge, deps)
    assert report.ran
    # shadow executes nothing: no autonomous outcome, every loop alive, every intent waits for a person
    assert report.autonomous_outcomes == ()
    assert all(_alive(repo) for repo in repos)
    assert len(edge.names("handoffintents")) == 8
    assert all("status" not in edge.get("handoffintents", n) or not edge.get("handoffintents", n)["status"]
               for n in edge.names("handoffintents"))  # fmt: skip
    decisions = {(d["loopId"], d["category"]): d for d in report.shadow.state["decisions"]}  # type: ignore[union-attr]
    assert {k: (d["decision"], d["reasons"]) for k, d in decisions.items()} == {
        ("red0-1", "health_critical"): ("execute", []),
        ("red1-1", "health_critical"): ("execute", []),
        ("red2-1", "health_critical"): ("execute", []),
        ("red3-1", "health_critical"): ("hold", ["autonomous_max_actions_per_run_exceeded"]),
        **{(loop, "reconcile_failed"): ("hold", ["category_not_allowlisted"]) for loop in LOOPS},
    }
    policy_status = edge.get("fleetpolicies", "pol")["status"]
    assert policy_status["mode"] == "shadow"
    assert {"fleet_shadow_mode", "fleet_shadow_would_execute"} <= set(policy_status["reasonCodes"])
    assert policy_status["shadow"]["agreement"]["pending"] == 8

    # people act: approve two of the three proposals shadow would have executed, decline the third,
    # approve the one it held for the run cap, decline one held reconcile_failed, leave three
    clock.advance(30)
    _approve(edge, ctx, _name("red0-1", "health_critical"))
    _approve(edge, ctx, _name("red1-1", "health_critical"))
    _decline(edge, _name("red2-1", "health_critical"), clock.now())
    _approve(edge, ctx, _name("red3-1", "health_critical"))
    _decline(edge, _name("red0-1", "reconcile_failed"), clock.now())
    assert [_alive(r) for r in repos] == [False, False, True, False]
    for loop_id in LOOPS:  # the loops recover: no candidate is proposed again
        edge.get("loops", f"drill-{loop_id}")["status"] = _ok_status()
    clock.advance(30)
    second = _pass(edge, deps)
    assert second.autonomous_outcomes == ()
    assert second.shadow is not None
    resolved = second.shadow.resolved_rows
    assert sorted((r["loopId"], r["candidateCategory"], r["human"], r["agreed"]) for r in resolved) == [
        ("red0-1", "health_critical", "approved", True),
        ("red0-1", "reconcile_failed", "rejected", True),
        ("red1-1", "health_critical", "approved", True),
        ("red2-1", "health_critical", "rejected", False),
        ("red3-1", "health_critical", "approved", False),
    ]
    assert second.shadow.new_rows == []
    # the three left alone lapse at the end of the match window (600 s after the decision)
    clock.advance(600)
    third = _pass(edge, deps)
    assert third.shadow is not None
    assert sorted((r["loopId"], r["human"], r["agreed"]) for r in third.shadow.resolved_rows) == [
        ("red1-1", "lapsed", True),
        ("red2-1", "lapsed", True),
        ("red3-1", "lapsed", True),
    ]
    agreement = edge.get("fleetpolicies", "pol")["status"]["shadow"]["agreement"]
    assert {k: agreement[k] for k in ("decisions", "resolved", "agreed", "disagreed", "pending")} == {
        "decisions": 8, "resolved": 8, "agreed": 6, "disagreed": 2, "pending": 0,
    }  # fmt: skip
    assert agreement["agreementRate"] == 0.75
    assert agreement["byDecision"] == {
        "execute": {"approved": 2, "rejected": 1, "lapsed": 0, "acted_differently": 0, "pending": 0},
        "hold": {"approved": 1, "rejected": 1, "lapsed": 3, "acted_differently": 0, "pending": 0},
    }
    assert agreement["byIntent"]["cancel"]["agreementRate"] == 0.75
    assert agreement["byReasonCode"]["health_critical"] == {
        "resolved": 4, "agreed": 2, "disagreed": 2, "pending": 0, "agreementRate": 0.5,
    }  # fmt: skip
    assert agreement["byReasonCode"]["reconcile_failed"]["agreementRate"] == 1
    rows = files.read_jsonl(_fleet_dir(tmp_path) / "telemetry" / "shadow.jsonl")
    assert [r["category"] for r in rows].count("fleet_shadow_decision") == 8
    assert [r["category"] for r in rows].count("fleet_shadow_resolution") == 8

    rendered = ctx.metrics.render().decode()
    for decision, human, value in (
        ("execute", "approved", 2), ("execute", "rejected", 1), ("hold", "approved", 1),
        ("hold", "rejected", 1), ("hold", "lapsed", 3),
    ):  # fmt: skip
        sample = (
            f'superloop_ops_shadow_decisions_total{{decision="{decision}",fleet="drill",'
            f'human="{human}",namespace="fleet-ns"}} {value:.1f}'
        )
        assert sample in rendered
    assert (
        'superloop_ops_shadow_agreement_ratio{fleet="drill",intent_type="all",namespace="fleet-ns",'
        'reason="all"} 0.75' in rendered
    )
    assert (
        'superloop_ops_shadow_agreement_ratio{fleet="drill",intent_type="all",namespace="fleet-ns",'
        'reason="health_critical"} 0.5' in rendered
    )
    assert "red0" not in "".join(line for line in rendered.splitlines() if "shadow" in line)

    # the gate: 8 resolved >= 4, 0.75 >= 0.6 passes ...
    gate = _shadow_gate(ctx, deps)
    assert (gate["status"], gate["failed"], gate["reasons"]) == ("pass", False, [])
    assert (gate["resolved"], gate["agreed"], gate["agreementRate"], gate["minAgreementRate"]) == (
        8,
        6,
        0.75,
        0.6,
    )
    # ... and holds once the policy asks for 0.8
    edge.get("fleetpolicies", "pol")["spec"] = _policy(0.8)["spec"]
    clock.advance(2)
    _pass(edge, deps)
    gate = _shadow_gate(ctx, deps)
    assert (gate["status"], gate["failed"]) == ("fail", True)
    assert gate["reasons"] == ["promotion_shadow_agreement_below_threshold"]
    assert (gate["agreementRate"], gate["minAgreementRate"]) == (0.75, 0.8)
    # the CLI shows the same figures from the journal, and the same verdict
    shown = _cli_shadow(tmp_path, capsys)
    assert (shown["mode"], shown["agreement"]["resolved"], shown["agreement"]["agreementRate"]) == (
        "shadow",
        8,
        0.75,
    )
    assert shown["agreement"]["byReasonCode"] == agreement["byReasonCode"]
    assert shown["gate"] == {
        "name": "shadow_agreement", "required": True, "status": "fail",
        "reasons": ["promotion_shadow_agreement_below_threshold"],
        "minAgreementRate": 0.8, "minSampleSize": 4, "resolved": 8, "agreementRate": 0.75,
    }  # fmt: skip


def test_fleet_shadow_cli_without_a_ledger_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main.main(["fleet", "shadow", "--repo", str(tmp_path)])
    assert code == 1
    assert "error: shadow ledger not found:" in capsys.readouterr().err


def test_a_canary_expands_into_guarded_auto_only_once_the_shadowed_complement_agrees(
    tmp_path: Path, clock: FrozenClock
) -> None:
    assert policy_rules.compute_cohort_bucket("red-1") >= 10  # the loop is outside a 10% canary
    env = PromotionEnv(tmp_path, clock, canaryPercent=10)
    shadow = {"matchWindowSeconds": 60, "minAgreementRate": 0.5, "minSampleSize": 1}
    env.edge.get("fleetpolicies", PROMOTION_POLICY)["spec"]["autonomous"]["shadow"] = shadow
    report = env.fleet_pass()
    # guarded_auto acts only inside the canary; the loop outside it gets a shadow decision instead
    assert report.autonomous_outcomes == ()
    assert env.loop_alive
    assert report.shadow is not None
    assert [(r["loopId"], r["candidateCategory"], r["decision"]) for r in report.shadow.new_rows] == [
        ("red-1", "reconcile_failed", "execute")
    ]
    env.create("grow", "expand")
    assert env.run("grow").phase == "rejected"
    assert "promotion_shadow_sample_insufficient" in env.status("grow")["reasonCodes"]
    # a person does what shadow would have done: the evidence is there, the gate passes
    name = owned_names.compute_intent_name(PROMOTION_FLEET, "red-1:reconcile_failed:cancel")
    _approve(env.edge, env.ctx, name)
    clock.advance(5)
    env.fleet_pass()
    env.create("grow-again", "expand")
    assert env.run("grow-again").phase == "rejected"  # the contract's five gates still hold
    assert not [c for c in env.status("grow-again")["reasonCodes"] if c.startswith("promotion_shadow_")]
    state = files.read_json(env.journal / "promotion-state.json")
    assert isinstance(state, dict)
    gate = state["gates"]["shadowAgreement"]
    assert (gate["status"], gate["resolved"], gate["agreed"], gate["agreementRate"]) == ("pass", 1, 1, 1)
    assert "shadow_agreement" not in state["summary"]["failedGates"]
