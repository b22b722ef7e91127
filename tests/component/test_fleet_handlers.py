"""Fleet and FleetPolicy handlers called directly: real journal files, the real simulator and
control engine, the real Loop and HandoffIntent handlers, an in-memory API server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from helpers.operator_fakes import SIM_RUNTIME, FakeEdge, WatchedMembers, build_context, build_frozen_clock
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import fleet_controller, fleet_objects
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry, owned_names
from superloop_ops.core.handoff import handoff_intent_resource
from superloop_ops.handlers import fleet_policy as policy_handlers
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext, build_fleet_deps
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.sim.simulator import Simulator

NS = "fleet-ns"
GROUP_VERSION = "ops.superloop.dev/v1alpha1"


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


def _context(tmp_path: Path, edge: FakeEdge, clock: FrozenClock, pvcs: dict[str, Path]) -> OperatorContext:
    return build_context(tmp_path, edge, clock, pvcs, control_confirm_timeout_seconds=4, sleep=clock.sleep)


def _fleet(name: str, loops: list[dict[str, Any]], policy: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "Fleet",
        "metadata": {"name": name},
        "spec": {"loops": loops, "deterministicOrder": True, "reconcileIntervalSeconds": 2, **spec},
    }
    if policy:
        body["spec"]["policyRef"] = {"name": policy}
    return body


def _governance(clock: FrozenClock) -> dict[str, str]:
    now = clock.now()
    return {
        "actor": "ops-user",
        "approvalRef": "CAB-7",
        "rationale": "drill",
        "changedAt": format_ts(now - dt.timedelta(days=1)),
        "reviewBy": format_ts(now + dt.timedelta(days=60)),
    }


def _policy(name: str, clock: FrozenClock, *, mode: str = "guarded_auto", **safety: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"mode": mode, "noiseControls": {"dedupeWindowSeconds": 0}}
    if mode == "guarded_auto":
        spec["autonomous"] = {
            "allow": {"categories": ["reconcile_failed", "health_critical"], "intents": ["cancel"]},
            "safety": {"maxActionsPerRun": 3, "maxActionsPerLoop": 1, "cooldownSeconds": 0, **safety},
            "governance": _governance(clock),
            "rollout": {
                "autoPause": {"minSampleSize": 2, "lookbackExecutions": 3, "failureRateThreshold": 0.5}
            },
        }
    return {"apiVersion": GROUP_VERSION, "kind": "FleetPolicy", "metadata": {"name": name}, "spec": spec}


def _ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def _failed_status(health: str = "critical", reason: str = "ServiceRequestFailed") -> dict[str, Any]:
    return {
        "healthStatus": health,
        "reasonCodes": ["transport_unreachable"],
        "conditions": [_ready("False", reason, "service request failed")],
    }


def _ok_status() -> dict[str, Any]:
    return {
        "healthStatus": "healthy",
        "reasonCodes": [],
        "lifecycle": "running",
        "conditions": [_ready("True", "ReconcileSucceeded", "ok")],
    }


def _pass(edge: FakeEdge, ctx: OperatorContext, deps: fleet_objects.FleetPassDeps, name: str) -> Any:
    return fleet_controller.reconcile_fleet(edge.get("fleets", name), deps)


def _cond(status: Mapping[str, Any], cond_type: str) -> dict[str, Any]:
    for cond in status.get("conditions") or []:
        if cond["type"] == cond_type:
            return dict(cond)
    raise AssertionError(f"no {cond_type} in {status}")


def _fleet_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / "state" / NS / ".superloop" / "ops-manager" / "fleet" / name


def _sims(tmp_path: Path, clock: FrozenClock, *scenarios: str) -> dict[str, Path]:
    repos: dict[str, Path] = {}
    for scenario in scenarios:
        sim = Simulator(tmp_path / "sims", clock, loops=1, scenarios=[scenario], loop_prefix=f"{scenario}-x")
        sim.run(4)
        repos[f"{scenario}-x-1"] = sim.repo_of(f"{scenario}-x-1")
    return repos


def _local(loop_id: str, claim: str, **extra: Any) -> dict[str, Any]:
    return {"loopId": loop_id, "transport": "local", "source": {"pvc": {"claimName": claim}}, **extra}


def test_fleet_materialises_owned_loops_and_rolls_up_their_status(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    repos = _sims(tmp_path, clock, "running", "stopped")
    ctx = _context(tmp_path, edge, clock, {"c-run": repos["running-x-1"], "c-stop": repos["stopped-x-1"]})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    edge.add("policies-unused", {"metadata": {"name": "x"}})
    edge.add("fleetpolicies", _policy("advice", clock, mode="advisory"))
    loops = [
        _local("running-x-1", "c-run"),
        _local("stopped-x-1", "c-stop"),
        _local("ghost", "c-missing"),
        _local("off", "c-run", enabled=False),
    ]
    fleet = edge.add("fleets", _fleet("prod", loops, policy="advice", maxParallel=2))
    report = _pass(edge, ctx, deps, "prod")
    assert not report.ran
    assert report.blocked_reason == "loops_pending"
    owned = edge.names("loops")
    assert owned == ["prod-ghost", "prod-off", "prod-running-x-1", "prod-stopped-x-1"]
    loop_body = edge.get("loops", "prod-running-x-1")
    assert loop_body["metadata"]["ownerReferences"][0]["uid"] == fleet["metadata"]["uid"]
    assert loop_body["metadata"]["ownerReferences"][0]["controller"] is True
    assert edge.get("loops", "prod-off")["spec"]["suspend"] is True
    assert _cond(edge.get("fleets", "prod")["status"], "Ready")["reason"] == "LoopsPending"
    # the Loop controller reconciles each Loop; the fleet pass only reads their status
    for name in owned:
        loop_handlers.reconcile_loop(edge.get("loops", name), ctx)
    report = _pass(edge, ctx, deps, "prod")
    assert report.ran
    status = edge.get("fleets", "prod")["status"]
    assert status["healthStatus"] == "partial_failure"
    assert status["loopCount"] == 4
    assert status["failedLoopCount"] == 1
    assert status["skippedLoopCount"] == 1
    assert "fleet_loop_skipped" in status["reasonCodes"]
    by_id = {row["loopId"]: row for row in status["state"]["loops"]}
    assert by_id["off"]["status"] == "skipped"
    assert by_id["off"]["reasonCode"] == "loop_disabled"
    assert by_id["ghost"]["status"] == "failed"
    assert by_id["ghost"]["reasonCode"] == "source_not_found"
    assert by_id["running-x-1"]["loop"] == "prod-running-x-1"
    assert by_id["running-x-1"]["stateFile"].endswith("/ops-manager/running-x-1/state.json")
    assert [row["loopId"] for row in status["state"]["loops"]] == [
        "ghost",
        "off",
        "running-x-1",
        "stopped-x-1",
    ]
    assert status["fleetStatus"]["exceptions"]["reconcileFailures"] == ["ghost"]
    assert _cond(status, "Ready")["status"] == "True"
    assert (_cond(status, "Degraded")["status"], _cond(status, "Degraded")["reason"]) == (
        "True",
        "FleetPartialFailure",
    )
    assert "FleetStatusChanged" in edge.reasons("prod")
    # journal in the reference layout, one directory per Fleet
    base = _fleet_dir(tmp_path, "prod")
    state = _read_doc(base / "state.json")
    assert state["execution"] == {
        "maxParallel": 2,
        "deterministicOrder": True,
        "fromStart": False,
        "maxEvents": 0,
    }
    assert len(files.read_jsonl(base / "telemetry" / "reconcile.jsonl")) == 1
    assert (base / "policy-state.json").is_file()
    # advisory: one HandoffIntent per unsuppressed candidate, owned by the Fleet, pending
    intent_name = owned_names.compute_intent_name("prod", "ghost:reconcile_failed:cancel")
    intent = edge.get("handoffintents", intent_name)
    assert intent["spec"]["loopRef"] == {"name": "prod-ghost"}
    assert intent["metadata"]["ownerReferences"][0]["kind"] == "Fleet"
    assert "IntentProposed" in edge.reasons("prod")
    policy_status = edge.get("fleetpolicies", "advice")["status"]
    assert policy_status["mode"] == "advisory"
    assert policy_status["governancePosture"] == "not_required"
    assert _cond(policy_status, "Ready")["reason"] == "PolicyEvaluated"
    rendered = ctx.metrics.render().decode()
    assert (
        'superloop_ops_fleet_status{fleet="prod",namespace="fleet-ns",status="partial_failure"} 1.0'
        in rendered
    )
    # a changed inline entry replaces its Loop (the operator never writes spec); a removed one is deleted
    fleet_body = edge.get("fleets", "prod")
    fleet_body["spec"]["loops"] = [
        _local("running-x-1", "c-run", metadata={"team": "a"}),
        _local("stopped-x-1", "c-run"),
    ]
    fleet_body["metadata"]["generation"] = 2
    _pass(edge, ctx, deps, "prod")
    assert edge.names("loops") == ["prod-running-x-1", "prod-stopped-x-1"]
    assert ("loops", "prod-stopped-x-1") in edge.deleted
    assert ("loops", "prod-running-x-1") not in edge.deleted
    assert edge.get("loops", "prod-stopped-x-1")["spec"]["source"]["pvc"]["claimName"] == "c-run"


def _drill_setup(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, policy: dict[str, Any], count: int = 1
) -> tuple[OperatorContext, fleet_objects.FleetPassDeps, list[Path]]:
    repos = []
    pvcs = {}
    for index in range(count):
        sim = Simulator(tmp_path / "sims", clock, loops=1, scenarios=["running"], loop_prefix=f"red{index}")
        sim.run(4)
        repos.append(sim.repo_of(f"red{index}-1"))
        pvcs[f"claim-{index}"] = repos[-1]
    ctx = _context(tmp_path, edge, clock, pvcs)
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    edge.add("fleetpolicies", policy)
    loops = [_local(f"red{i}-1", f"claim-{i}") for i in range(count)]
    edge.add("fleets", _fleet("drill", loops, policy=policy["metadata"]["name"]))
    _pass(edge, ctx, deps, "drill")  # materialise
    for index in range(count):
        edge.get("loops", f"drill-red{index}-1")["status"] = _failed_status()
    return ctx, deps, repos


def _read_doc(path: Path) -> dict[str, Any]:
    value = files.read_json(path)
    assert isinstance(value, dict), path
    return value


def _state_alive(repo: Path) -> bool:
    return (repo / ".superloop" / "state.json").is_file()


def test_kill_switch_blocks_autonomy_and_a_person_completes_it(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx, deps, (repo,) = _drill_setup(tmp_path, edge, clock, _policy("pol", clock, killSwitch=True))
    report = _pass(edge, ctx, deps, "drill")
    assert report.ran
    assert report.autonomous_outcomes == ()
    assert _state_alive(repo)
    policy_status = edge.get("fleetpolicies", "pol")["status"]
    assert "fleet_auto_kill_switch_enabled" in policy_status["reasonCodes"]
    assert policy_status["policyState"]["autoEligibleCount"] == 0
    names = sorted(edge.names("handoffintents"))
    assert names == sorted(
        owned_names.compute_intent_name("drill", f"red0-1:{c}:cancel")
        for c in ("health_critical", "reconcile_failed")
    )
    handoff_block = edge.get("fleets", "drill")["status"]["handoff"]
    assert all("autonomous_kill_switch_enabled" in i["reasons"] for i in handoff_block["intents"])
    assert (
        'superloop_ops_fleet_kill_switch{fleet="drill",namespace="fleet-ns"} 1.0'
        in ctx.metrics.render().decode()
    )
    # the person approves one intent: the HandoffIntent handler executes it (manual)
    target = owned_names.compute_intent_name("drill", "red0-1:reconcile_failed:cancel")
    intent_handlers.reconcile_intent(edge.get("handoffintents", target), ctx)  # pending
    edge.patch_annotations(
        ObjectRef("HandoffIntent", "handoffintents", NS, target),
        {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "oncall"},
    )
    done = intent_handlers.reconcile_intent(edge.get("handoffintents", target), ctx)
    assert done.phase == "executed"
    assert edge.get("handoffintents", target)["status"]["mode"] == "manual"
    assert not _state_alive(repo)
    # the next fleet pass records the manual execution in the fleet journal
    clock.advance(2)
    _pass(edge, ctx, deps, "drill")
    rows = files.read_jsonl(_fleet_dir(tmp_path, "drill") / "telemetry" / "handoff.jsonl")
    manual = [
        r for r in rows if r["category"] == "fleet_handoff_execute" and r["execution"]["mode"] == "manual"
    ]
    assert len(manual) == 1
    assert manual[0]["execution"]["results"][0]["requestedBy"] == "oncall"
    assert manual[0]["execution"]["executedCount"] == 1


def _control_rows(tmp_path: Path, loop_id: str) -> list[Any]:
    return files.read_jsonl(
        tmp_path / "state" / NS / ".superloop" / "ops-manager" / loop_id / "intents.jsonl"
    )


def test_ambiguous_autonomous_outcome_is_retry_guarded_until_a_person_approves(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    policy = _policy("pol", clock)
    policy["spec"]["autonomous"]["allow"]["categories"] = ["reconcile_failed"]
    ctx, deps, (repo,) = _drill_setup(tmp_path, edge, clock, policy)
    ctx.runtime_command = ("true",)  # the runtime accepts the cancel but never stops: ambiguous
    deps.runtime_command = ctx.runtime_command
    report = _pass(edge, ctx, deps, "drill")
    name = owned_names.compute_intent_name("drill", "red0-1:reconcile_failed:cancel")
    assert report.autonomous_outcomes == ((name, "execution_ambiguous"),)
    status = edge.get("handoffintents", name)["status"]
    assert (status["mode"], status["phase"]) == ("autonomous", "execution_ambiguous")
    assert len(_control_rows(tmp_path, "red0-1")) == 1
    for _ in range(3):  # no storm: later passes never execute the guarded intent again
        clock.advance(3)
        again = _pass(edge, ctx, deps, "drill")
        assert again.autonomous_outcomes == ()
    assert len(_control_rows(tmp_path, "red0-1")) == 1
    handoff_state = _read_doc(_fleet_dir(tmp_path, "drill") / "handoff-state.json")
    assert "fleet_handoff_retry_guarded" in handoff_state["reasonCodes"]
    guarded = next(i for i in handoff_state["intents"] if i["category"] == "reconcile_failed")
    assert "autonomous_retry_guard_ambiguous" in guarded["autonomous"]["reasons"]
    # the manual handler leaves the autonomous outcome alone...
    assert not intent_handlers.reconcile_intent(edge.get("handoffintents", name), ctx).executed
    # ...until a person approves: the HandoffIntent handler hands it over, the manual path retries once
    ctx.runtime_command = SIM_RUNTIME
    edge.patch_annotations(
        ObjectRef("HandoffIntent", "handoffintents", NS, name),
        {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "oncall"},
    )
    handed = intent_handlers.hand_over_intent(edge.get("handoffintents", name), ctx, edge)
    assert handed is not None
    assert handed.phase == "executed"
    status = edge.get("handoffintents", name)["status"]
    assert status["mode"] == "manual"
    assert status["idempotencyKey"].endswith("-attempt2")
    assert status["result"]["previousAttempts"][0]["phase"] == "execution_ambiguous"
    assert status["result"]["previousAttempts"][0]["approvedBy"] == "autonomous-policy"
    assert not _state_alive(repo)
    clock.advance(3)
    _pass(edge, ctx, deps, "drill")
    handoff_state = _read_doc(_fleet_dir(tmp_path, "drill") / "handoff-state.json")
    assert "retryGuards" not in handoff_state


def test_an_executed_intent_is_not_executed_again_on_loop_health_read_before_it(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Cooldown 0 lets the policy act on every pass; still, a cancel is not repeated while the Loop
    status the plan reads was written before it (issue 10: a duplicate cancel at the runtime)."""
    policy = _policy("pol", clock)
    policy["spec"]["autonomous"]["allow"]["categories"] = ["reconcile_failed"]
    ctx, deps, _ = _drill_setup(tmp_path, edge, clock, policy)
    name = owned_names.compute_intent_name("drill", "red0-1:reconcile_failed:cancel")
    assert _pass(edge, ctx, deps, "drill").autonomous_outcomes == ((name, "executed"),)
    for _ in range(3):  # the Loop status still says what it said before the cancel
        clock.advance(3)
        assert _pass(edge, ctx, deps, "drill").autonomous_outcomes == ()
    assert len(_control_rows(tmp_path, "red0-1")) == 1
    # a Loop status written after the execution that still fails: the policy decides again
    clock.advance(3)
    edge.get("loops", "drill-red0-1")["status"] = {
        **_failed_status(),
        "lastReconcileAt": format_ts(clock.now()),
    }
    assert [n for n, _ in _pass(edge, ctx, deps, "drill").autonomous_outcomes] == [name]
    assert len(_control_rows(tmp_path, "red0-1")) == 2


def test_failed_autonomous_executions_trigger_auto_pause_with_manual_fallback(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx, deps, repos = _drill_setup(
        tmp_path, edge, clock, _policy("pol", clock, maxActionsPerLoop=2), count=2
    )
    ctx.runtime_command = ("false",)  # the control command fails
    deps.runtime_command = ctx.runtime_command
    report = _pass(edge, ctx, deps, "drill")
    # four eligible candidates, the run cap (3) holds
    assert sorted(outcome for _, outcome in report.autonomous_outcomes) == ["execution_failed"] * 3
    clock.advance(3)
    report = _pass(edge, ctx, deps, "drill")
    assert report.autonomous_outcomes == ()
    pause = edge.get("fleetpolicies", "pol")["status"]["pause"]
    assert pause["auto"]["active"] is True
    assert pause["auto"]["reasons"] == ["autonomous_autopause_failure_spike"]
    reasons = edge.get("fleetpolicies", "pol")["status"]["reasonCodes"]
    assert {"fleet_auto_candidates_paused", "fleet_auto_candidates_autopause_triggered"} <= set(reasons)
    intents = edge.get("fleets", "drill")["status"]["handoff"]["intents"]
    assert all(not i["eligible"] for i in intents)
    assert all("autonomous_rollout_paused_auto" in i["reasons"] for i in intents)
    assert "AutoPauseActivated" in edge.reasons("drill")
    rendered = ctx.metrics.render().decode()
    assert 'superloop_ops_fleet_autopause_active{fleet="drill",namespace="fleet-ns"} 1.0' in rendered
    assert 'outcome="execution_failed"} 3.0' in rendered
    # recovery: the loops report healthy again, the rollup clears
    for index in range(2):
        edge.get("loops", f"drill-red{index}-1")["status"] = _ok_status()
    clock.advance(3)
    _pass(edge, ctx, deps, "drill")
    status = edge.get("fleets", "drill")["status"]
    assert status["healthStatus"] == "success"
    assert _cond(status, "Degraded")["status"] == "False"
    assert all(_state_alive(r) for r in repos)


def test_a_fleet_pass_validates_its_registry_once_and_never_reads_it_back(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _policy("pol", clock)
    policy["spec"]["autonomous"]["allow"]["categories"] = ["reconcile_failed"]
    ctx, deps, _ = _drill_setup(tmp_path, edge, clock, policy)
    registry_file = _fleet_dir(tmp_path, "drill") / "registry.v1.json"
    validated: list[Any] = []
    read_back: list[Path] = []
    real_errors, real_read_text = fleet_registry.compute_registry_errors, Path.read_text

    def counting_errors(raw: Any, now: dt.datetime) -> list[str]:
        validated.append(raw)
        return real_errors(raw, now)

    def counting_read_text(path: Path, *args: Any, **kwargs: Any) -> str:
        if path == registry_file:
            read_back.append(path)
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(fleet_registry, "compute_registry_errors", counting_errors)
    monkeypatch.setattr(Path, "read_text", counting_read_text)
    report = _pass(edge, ctx, deps, "drill")
    monkeypatch.undo()
    # every stage ran: rollup, policy, plan, autonomous execution and the re-plan, status surface
    assert report.ran
    assert report.autonomous_outcomes
    assert len(validated) == 1
    assert read_back == []
    assert _read_doc(registry_file) == validated[0]  # the journal records what the pass validated


def test_autonomous_execution_interrupted_by_a_crash_becomes_ambiguous_and_guarded(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx, deps, _ = _drill_setup(tmp_path, edge, clock, _policy("pol", clock, killSwitch=True))
    _pass(edge, ctx, deps, "drill")
    name = owned_names.compute_intent_name("drill", "red0-1:reconcile_failed:cancel")
    body = edge.get("handoffintents", name)
    body["status"] = handoff_intent_resource.build_autonomous_executing_status(
        previous=None, idempotency_key="key-crash-1", generation=1, now=clock.now()
    )
    clock.advance(3)
    _pass(edge, ctx, deps, "drill")
    status = edge.get("handoffintents", name)["status"]
    assert (status["phase"], status["mode"]) == ("execution_ambiguous", "autonomous")
    handoff_state = _read_doc(_fleet_dir(tmp_path, "drill") / "handoff-state.json")
    guard = handoff_state["retryGuards"]["red0-1:reconcile_failed:cancel"]
    assert guard["reason"] == "autonomous_retry_guard_ambiguous"


def test_policy_handler_reports_posture_and_expired_review_never_breaks_status(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx, deps, (repo,) = _drill_setup(tmp_path, edge, clock, _policy("pol", clock))
    governance = edge.get("fleetpolicies", "pol")["spec"]["autonomous"]["governance"]
    governance["changedAt"] = format_ts(clock.now() - dt.timedelta(days=30))
    governance["reviewBy"] = format_ts(clock.now() - dt.timedelta(days=1))
    fleets = policy_handlers.reconcile_policy(edge.get("fleetpolicies", "pol"), deps)
    assert fleets == ["drill"]
    report = _pass(edge, ctx, deps, "drill")
    assert report.ran
    assert report.autonomous_outcomes == ()
    assert _state_alive(repo)
    status = edge.get("fleetpolicies", "pol")["status"]
    assert status["governancePosture"] == "review_expired"
    assert status["governance"]["blocksAutonomous"] is True
    assert _cond(status, "Ready")["status"] == "True"
    assert status["effectiveRollout"]["basedOnGeneration"] == 1
    intents = edge.get("fleets", "drill")["status"]["handoff"]["intents"]
    assert any("autonomous_governance_review_expired" in i["reasons"] for i in intents)


def test_suppression_of_an_undeclared_loop_is_reported_on_both_objects(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    policy = _policy("pol", clock, mode="advisory")
    policy["spec"]["suppressions"] = {"not-a-loop": ["health_degraded"]}
    ctx, deps, _ = _drill_setup(tmp_path, edge, clock, policy)
    report = _pass(edge, ctx, deps, "drill")
    assert report.blocked_reason == "invalid_registry"
    ready = _cond(edge.get("fleets", "drill")["status"], "Ready")
    assert ready["reason"] == "InvalidRegistry"
    assert "policy.suppressions.not-a-loop key must reference a declared loopId or *" in ready["message"]
    assert _cond(edge.get("fleetpolicies", "pol")["status"], "Ready")["reason"] == "InvalidPolicy"
    assert edge.names("handoffintents") == []


def test_loop_ref_entries_use_existing_loops_without_owning_them(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx = _context(tmp_path, edge, clock, {})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    edge.add(
        "loops",
        {
            "apiVersion": GROUP_VERSION,
            "kind": "Loop",
            "metadata": {"name": "team-loop"},
            "spec": {
                "loopId": "shared-1",
                "transport": "sprite_service",
                "service": {"baseUrl": "http://127.0.0.1:9"},
            },
            "status": _failed_status(health="degraded"),
        },
    )
    edge.add("fleets", _fleet("adopt", [{"loopId": "shared-1", "loopRef": {"name": "team-loop"}}]))
    report = _pass(edge, ctx, deps, "adopt")
    assert report.ran
    assert edge.names("loops") == ["team-loop"]  # nothing materialised
    assert "ownerReferences" not in edge.get("loops", "team-loop")["metadata"]
    status = edge.get("fleets", "adopt")["status"]
    (row,) = status["state"]["loops"]
    assert row == {
        "loopId": "shared-1",
        "loop": "team-loop",
        "status": "failed",
        "reasonCode": "transport_unreachable",
        "healthStatus": "degraded",
        "transport": "sprite_service",
        "stateFile": str(tmp_path / "state" / NS / ".superloop" / "ops-manager" / "shared-1" / "state.json"),
    }
    assert status["healthStatus"] == "failed"
    assert "handoff" not in status  # no policy: rollup only
    # the referenced Loop disappears: the pass waits instead of guessing
    del edge.objects[("loops", NS, "team-loop")]
    blocked = _pass(edge, ctx, deps, "adopt")
    assert blocked.blocked_reason == "loops_pending"
    assert edge.get("fleets", "adopt")["status"]["healthStatus"] == "failed"  # last rollup kept


# -- fleet metrics: candidates by category and suppression, autonomous executions --------------

CANDIDATES = "superloop_ops_fleet_candidates"
AUTONOMOUS = "superloop_ops_fleet_autonomous_executions_total"
CANDIDATE_LABELS = {"namespace", "fleet", "category", "suppression"}
AUTONOMOUS_LABELS = {"namespace", "fleet", "outcome"}
CATEGORY_VALUES = {"reconcile_failed", "health_critical", "health_degraded"}
SUPPRESSION_VALUES = {"none", "loop", "global", "cooldown"}
OUTCOME_VALUES = {"executed", "executed_unconfirmed", "execution_ambiguous", "execution_failed", "other"}


def _fleet_samples(ctx: OperatorContext, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family, keyed by their sorted label pairs."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in ctx.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def _candidate_counts(ctx: OperatorContext, fleet: str) -> dict[tuple[str, str], float]:
    out = {}
    for labels, value in _fleet_samples(ctx, CANDIDATES).items():
        found = dict(labels)
        assert set(found) == CANDIDATE_LABELS
        if (found["namespace"], found["fleet"]) == (NS, fleet):
            out[(found["category"], found["suppression"])] = value
    return out


def test_fleet_metrics_count_candidates_by_category_and_suppression_and_autonomous_executions(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    policy = _policy("pol", clock)
    policy["spec"]["suppressions"] = {"red1-1": ["reconcile_failed"], "*": ["health_critical"]}
    policy["spec"]["noiseControls"]["dedupeWindowSeconds"] = 600
    ctx, deps, repos = _drill_setup(tmp_path, edge, clock, policy, count=3)
    edge.get("loops", "drill-red2-1")["status"] = _failed_status(health="degraded")

    report = _pass(edge, ctx, deps, "drill")
    assert report.ran
    # red0: reconcile_failed (open) + health_critical (global); red1: reconcile_failed (its own
    # loop entry) + health_critical (global); red2: reconcile_failed + health_degraded (open).
    expected = {(c, s): 0.0 for c in CATEGORY_VALUES for s in SUPPRESSION_VALUES}
    expected |= {
        ("reconcile_failed", "none"): 2.0,
        ("reconcile_failed", "loop"): 1.0,
        ("health_critical", "global"): 2.0,
        ("health_degraded", "none"): 1.0,
    }
    assert _candidate_counts(ctx, "drill") == expected
    # The two open reconcile_failed candidates are allowed (category, intent cancel) and within
    # the caps (3 per run, 1 per loop): both execute autonomously through the simulator.
    executed = sorted(name for name, outcome in report.autonomous_outcomes if outcome == "executed")
    assert executed == sorted(
        owned_names.compute_intent_name("drill", f"{loop}:reconcile_failed:cancel")
        for loop in ("red0-1", "red2-1")
    )
    assert not _state_alive(repos[0])
    assert not _state_alive(repos[2])
    assert _state_alive(repos[1])
    autonomous = _fleet_samples(ctx, AUTONOMOUS)
    assert autonomous == {(("fleet", "drill"), ("namespace", NS), ("outcome", "executed")): 2.0}

    # Within the dedupe window the same open candidates come back cooldown-suppressed, so nothing
    # new is proposed or executed; the gauge is replaced (not added to), the counter holds.
    clock.advance(3)
    again = _pass(edge, ctx, deps, "drill")
    assert again.autonomous_outcomes == ()
    expected = {(c, s): 0.0 for c in CATEGORY_VALUES for s in SUPPRESSION_VALUES}
    expected |= {
        ("reconcile_failed", "cooldown"): 2.0,
        ("reconcile_failed", "loop"): 1.0,
        ("health_critical", "global"): 2.0,
        ("health_degraded", "cooldown"): 1.0,
    }
    assert _candidate_counts(ctx, "drill") == expected
    assert _fleet_samples(ctx, AUTONOMOUS) == autonomous

    # Label values stay within closed vocabularies and object names: no trace ids, intent names
    # or candidate ids, whatever the pass produced.
    policy_state = _read_doc(_fleet_dir(tmp_path, "drill") / "policy-state.json")
    unbounded = {str(c.get("traceId")) for c in policy_state["candidates"]} | {
        str(c["candidateId"]) for c in policy_state["candidates"]
    }
    unbounded |= set(edge.names("handoffintents"))
    for name in (CANDIDATES, AUTONOMOUS):
        for labels in _fleet_samples(ctx, name):
            values = dict(labels)
            assert values["namespace"] == NS
            assert values["fleet"] == "drill"
            assert values.get("category", "reconcile_failed") in CATEGORY_VALUES
            assert values.get("suppression", "none") in SUPPRESSION_VALUES
            assert values.get("outcome", "executed") in OUTCOME_VALUES
            assert not set(values.values()) & unbounded
    assert {frozenset(dict(labels)) for labels in _fleet_samples(ctx, AUTONOMOUS)} == {
        frozenset(AUTONOMOUS_LABELS)
    }


def _labelled_loop(name: str, labels: dict[str, str], status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "Loop",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "loopId": f"id-{name}",
            "transport": "sprite_service",
            "service": {"baseUrl": "http://127.0.0.1:9"},
        },
    }
    if status is not None:
        body["status"] = status
    return body


def _selector_fleet(name: str) -> dict[str, Any]:
    body = _fleet(name, [])
    del body["spec"]["loops"]
    body["spec"]["selector"] = {
        "matchLabels": {"team": "a"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}],
    }
    return body


def test_selector_fleet_holds_the_matching_loops_read_from_the_watch_not_a_list(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: membership by label selector; members come from the watch-kept index (no LIST)."""
    ctx = _context(tmp_path, edge, clock, {})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    for i in range(600):  # more than an explicit list may hold
        edge.add("loops", _labelled_loop(f"a-{i:03d}", {"team": "a"}, _ok_status()))
    edge.add("loops", _labelled_loop("canary", {"team": "a", "tier": "canary"}, _ok_status()))
    edge.add("loops", _labelled_loop("other", {"team": "b"}, _failed_status()))
    edge.add("fleets", _selector_fleet("sel"))
    report = _pass(edge, ctx, deps, "sel")
    assert report.ran
    status = edge.get("fleets", "sel")["status"]
    assert status["loopCount"] == 600
    assert status["failedLoopCount"] == 0
    assert edge.lists["loops"] == 0
    registry = json.loads((_fleet_dir(tmp_path, "sel") / "registry.v1.json").read_text())
    assert [loop["loopId"] for loop in registry["loops"]][:2] == ["id-a-000", "id-a-001"]
    assert "id-canary" not in {loop["loopId"] for loop in registry["loops"]}


def test_fleet_pass_with_nothing_changed_writes_nothing_and_a_changed_loop_runs_it_again(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: an idle fleet pass costs no journal write and no status write; a member's new
    outcome, or the refresh period, brings the full pass back."""
    ctx = _context(tmp_path, edge, clock, {})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    for i in range(3):
        edge.add("loops", _labelled_loop(f"a-{i}", {"team": "a"}, _ok_status()))
    edge.add("fleets", _selector_fleet("sel"))
    assert _pass(edge, ctx, deps, "sel").ran
    state_file = _fleet_dir(tmp_path, "sel") / "state.json"
    written = state_file.stat().st_mtime_ns
    patches = len(edge.status_patches)
    clock.advance(30)
    idle = _pass(edge, ctx, deps, "sel")
    assert idle.unchanged
    assert not idle.ran
    assert len(edge.status_patches) == patches
    assert state_file.stat().st_mtime_ns == written
    edge.get("loops", "a-1")["status"] = _failed_status()
    changed = _pass(edge, ctx, deps, "sel")
    assert changed.ran
    assert edge.get("fleets", "sel")["status"]["failedLoopCount"] == 1
    clock.advance(ctx.settings.fleet_recheck_seconds)
    assert _pass(edge, ctx, deps, "sel").ran  # the refresh period is over: a full pass again


def test_owned_loop_created_but_not_yet_seen_by_the_watch_is_not_refused(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """The watch may not show an owned Loop the last pass created: its create conflicts, and the
    pass must recognise its own Loop instead of calling it foreign."""
    repos = _sims(tmp_path, clock, "running")
    ctx = _context(tmp_path, edge, clock, {"c-run": repos["running-x-1"]})
    deps = build_fleet_deps(ctx, edge)
    deps.members = {}  # the watch has shown nothing yet
    edge.add("fleets", _fleet("own", [_local("running-x-1", "c-run")]))
    first = _pass(edge, ctx, deps, "own")
    assert first.blocked_reason == "loops_pending"
    second = _pass(edge, ctx, deps, "own")
    assert second.blocked_reason == "loops_pending"
    assert second.error is None


def test_a_new_policy_over_thirty_failed_loops_proposes_five_intents_a_pass_and_all_thirty_once(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: ``handoff.maxIntentsPerPass`` caps the HandoffIntents a pass creates; the rest are
    deferred (the dedupe window keeps their candidates out of the next plans) and proposed by the
    following passes, none twice; status, Events and the metric count the deferred ones."""
    ctx = _context(tmp_path, edge, clock, {})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    critical = {**_ok_status(), "healthStatus": "critical"}  # one candidate each (health_critical)
    for i in range(30):
        edge.add("loops", _labelled_loop(f"a-{i:02d}", {"team": "a"}, critical))
    policy = _policy("paced", clock, mode="advisory")
    policy["spec"] = {"mode": "advisory", "handoff": {"maxIntentsPerPass": 5}}  # dedupe window: 300 s
    edge.add("fleetpolicies", policy)
    fleet = _selector_fleet("sel")
    fleet["spec"]["policyRef"] = {"name": "paced"}
    edge.add("fleets", fleet)
    counts: list[int] = []
    deferred: list[int] = []
    for _ in range(7):
        report = _pass(edge, ctx, deps, "sel")
        assert report.ran
        counts.append(len(report.created_intents))
        deferred.append(edge.get("fleets", "sel")["status"]["handoff"]["pacing"]["deferredCount"])
        clock.advance(10)
    assert counts == [5, 5, 5, 5, 5, 5, 0]
    assert deferred == [25, 20, 15, 10, 5, 0, 0]
    intents = [edge.get("handoffintents", n) for n in edge.names("handoffintents")]
    loops = sorted(i["spec"]["loopRef"]["name"] for i in intents)
    assert loops == [f"a-{i:02d}" for i in range(30)]  # all thirty, none twice
    assert not [p for p, _ in edge.deleted if p == "handoffintents"]
    assert edge.reasons("sel").count("IntentProposed") == 30
    assert edge.reasons("sel").count("IntentsDeferred") == 1
    assert edge.reasons("sel").count("IntentsDeferralCleared") == 1
    assert not (_fleet_dir(tmp_path, "sel") / "handoff-deferred.json").exists()
    samples = _fleet_samples(ctx, "superloop_ops_fleet_handoff_intents_deferred")
    assert samples == {(("fleet", "sel"), ("namespace", NS)): 0.0}


def test_a_policy_fleets_pass_rewrites_its_registry_only_when_it_changed(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: a Fleet with a policy runs every interval, but its registry (5,000 rows at 5,000
    Loops) is written and validated again only when its document changed."""
    ctx = _context(tmp_path, edge, clock, {})
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    for i in range(3):
        edge.add("loops", _labelled_loop(f"a-{i}", {"team": "a"}, _ok_status()))
    edge.add("fleetpolicies", _policy("p", clock, mode="advisory"))
    fleet = _selector_fleet("sel")
    fleet["spec"]["policyRef"] = {"name": "p"}
    edge.add("fleets", fleet)
    assert _pass(edge, ctx, deps, "sel").ran
    registry_file = _fleet_dir(tmp_path, "sel") / "registry.v1.json"
    written = registry_file.stat().st_mtime_ns
    clock.advance(30)
    edge.get("loops", "a-1")["status"] = _failed_status()  # a new outcome: not a registry change
    assert _pass(edge, ctx, deps, "sel").ran
    assert registry_file.stat().st_mtime_ns == written
    assert edge.get("fleets", "sel")["status"]["failedLoopCount"] == 1
    edge.add("loops", _labelled_loop("a-3", {"team": "a"}, _ok_status()))
    clock.advance(30)
    assert _pass(edge, ctx, deps, "sel").ran
    assert registry_file.stat().st_mtime_ns != written
    assert "id-a-3" in registry_file.read_text()
