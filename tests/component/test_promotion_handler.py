"""The PromotionApply handler called directly: the real fleet pass (Fleet and FleetPolicy handlers,
simulator repos, control engine), real journal files, an in-memory API server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from helpers.operator_fakes import FakeEdge, WatchedMembers, build_context, build_frozen_clock
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import fleet_controller, promotion_apply_controller
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.handlers import fleet_policy as policy_handlers
from superloop_ops.handlers import promotion_apply as promotion_handlers
from superloop_ops.handlers.context import build_fleet_deps
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectNotFoundError
from superloop_ops.sim.simulator import Simulator

NS = "promo-ns"
API = "ops.superloop.dev/v1alpha1"
FLEET = "canary"
POLICY = "canary-policy"


class Env:
    """One Fleet (one failing simulated loop) under a guarded_auto FleetPolicy, ready for applies."""

    def __init__(self, tmp_path: Path, clock: FrozenClock, **rollout: Any) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self.edge = FakeEdge(NS, drop_none_annotations=False)
        sim = Simulator(tmp_path / "sims", clock, loops=1, scenarios=["running"], loop_prefix="red")
        sim.run(4)
        self.repo = sim.repo_of("red-1")
        self.ctx = build_context(
            tmp_path,
            self.edge,
            clock,
            {"claim-0": self.repo},
            control_confirm_timeout_seconds=4,
            sleep=clock.sleep,
        )
        self.fleet_deps = build_fleet_deps(self.ctx, self.edge)
        self.fleet_deps.members = WatchedMembers(self.edge)
        self.deps = promotion_handlers.build_promotion_deps(self.ctx, self.fleet_deps)
        self.edge.add("fleetpolicies", policy_body(clock, **rollout))
        self.edge.add(
            "fleets",
            {
                "apiVersion": API,
                "kind": "Fleet",
                "metadata": {"name": FLEET},
                "spec": {
                    "policyRef": {"name": POLICY},
                    "loops": [
                        {"loopId": "red-1", "transport": "local", "source": {"pvc": {"claimName": "claim-0"}}}
                    ],
                    "reconcileIntervalSeconds": 2,
                },
            },
        )
        self.fleet_pass()  # materialise the Loop
        self.edge.get("loops", f"{FLEET}-red-1")["status"] = {
            "healthStatus": "critical",
            "reasonCodes": ["transport_unreachable"],
            "conditions": [
                {
                    "type": "Ready", "status": "False", "reason": "ServiceRequestFailed", "message": "down",
                    "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }  # fmt: skip

    @property
    def journal(self) -> Path:
        return self.tmp_path / "state" / NS / ".superloop" / "ops-manager" / "fleet" / FLEET

    def fleet_pass(self) -> fleet_controller.FleetPassReport:
        return fleet_controller.reconcile_fleet(self.edge.get("fleets", FLEET), self.fleet_deps)

    def decide(self, decision: str, *codes: str) -> None:
        """Fix the decision: read this state file instead of evaluating the gates."""
        self.deps.decision_source = promotion_apply_controller.fetch_promotion_state
        files.write_json_atomic(
            self.journal / "promotion-state.json",
            {"schemaVersion": "v1", "summary": {"decision": decision, "reasonCodes": list(codes)}},
        )

    def create(self, name: str, intent: str, **spec: Any) -> dict[str, Any]:
        governance = {
            "by": "ops-user",
            "approvalRef": "CAB-9",
            "rationale": f"{intent} the canary",
            "reviewBy": format_ts(self.clock.now() + dt.timedelta(days=14)),
        }
        governance.update(spec.pop("governance", {}))
        body = {
            "apiVersion": API,
            "kind": "PromotionApply",
            "metadata": {"name": name},
            "spec": {"fleetRef": {"name": FLEET}, "intent": intent, "governance": governance, **spec},
        }
        return self.edge.add("promotionapplies", body)

    def run(self, name: str) -> promotion_apply_controller.PromotionReport:
        return promotion_handlers.reconcile_promotion(
            self.edge.get("promotionapplies", name), self.ctx, self.deps, self.fleet_deps
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.edge.get("promotionapplies", name).get("status") or {})

    def effective(self) -> dict[str, Any]:
        return dict(self.edge.get("fleetpolicies", POLICY)["status"]["effectiveRollout"])

    def records(self) -> list[Any]:
        return files.read_jsonl(self.journal / "telemetry" / "promotion-apply.jsonl")

    def intents(self) -> list[dict[str, Any]]:
        return list(self.edge.get("fleets", FLEET)["status"]["handoff"]["intents"])

    @property
    def loop_alive(self) -> bool:
        return (self.repo / ".superloop" / "state.json").is_file()


def policy_body(clock: FrozenClock, *, kill_switch: bool = False, **rollout: Any) -> dict[str, Any]:
    now = clock.now()
    return {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "mode": "guarded_auto",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "autonomous": {
                "allow": {"categories": ["reconcile_failed"], "intents": ["cancel"]},
                "safety": {
                    "maxActionsPerRun": 3, "maxActionsPerLoop": 1, "cooldownSeconds": 0,
                    "killSwitch": kill_switch,
                },
                "governance": {
                    "actor": "gitops", "approvalRef": "CAB-1", "rationale": "baseline",
                    "changedAt": format_ts(now - dt.timedelta(days=1)),
                    "reviewBy": format_ts(now + dt.timedelta(days=60)),
                },
                "rollout": rollout,
            },
        },
    }  # fmt: skip


def _cond(status: Mapping[str, Any]) -> dict[str, Any]:
    return next(dict(c) for c in status.get("conditions") or [] if c["type"] == "Applied")


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


def test_rollback_pauses_the_fleet_once_and_a_replayed_key_does_not_apply_again(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock, canaryPercent=40)
    env.create("stop-1", "rollback", idempotencyKey="incident-7")  # no promotion state at all
    report = env.run("stop-1")
    assert (report.phase, report.moved) == ("applied", True)
    status = env.status("stop-1")
    uid = env.edge.get("promotionapplies", "stop-1")["metadata"]["uid"]
    record = status["record"]
    assert record["traceId"] == uid
    assert record["decision"] is None
    assert record["rollout"] == {
        "before": {"canaryPercent": 40, "manualPause": False},
        "after": {"canaryPercent": 40, "manualPause": True},
        "changed": {"canaryPercent": False, "manualPause": True},
    }
    assert record["files"]["applyTelemetryFile"] == str(env.journal / "telemetry" / "promotion-apply.jsonl")
    assert status["appliedAt"] == record["timestamp"] == format_ts(clock.now())
    assert (_cond(status)["status"], _cond(status)["reason"]) == ("True", "Applied")
    effective = env.effective()
    assert (effective["canaryPercent"], effective["manualPause"]) == (40, True)
    assert effective["lastApply"] == f"stop-1/{uid}"
    assert effective["governance"]["actor"] == "ops-user"
    assert env.records() == [record]
    assert files.read_json(env.journal / "promotion-apply-state.json") == record
    assert not (env.journal / promotion_apply_controller.PENDING_FILE).exists()
    assert "PromotionApplied" in env.edge.reasons("stop-1")
    assert "RolloutPostureChanged" in env.edge.reasons(POLICY)
    # the follow-up fleet pass read the paused posture: nothing executes autonomously
    assert env.loop_alive
    assert env.intents()
    assert all(
        not i["eligible"] and "autonomous_rollout_paused_manual" in i["reasons"] for i in env.intents()
    )
    # evaluated once: a later look changes nothing
    clock.advance(30)
    assert env.run("stop-1").phase == "applied"
    assert env.status("stop-1") == status
    # a second object with the same key replays the first record and moves nothing
    env.create("stop-2", "expand", idempotencyKey="incident-7", expandStep=50)
    env.decide("promote")
    replay = env.run("stop-2")
    assert (replay.phase, replay.moved) == ("replayed", False)
    second = env.status("stop-2")
    assert second["record"] == {**record, "replayed": True}
    assert second["reasonCodes"] == ["promotion_apply_replayed"]
    assert (_cond(second)["status"], _cond(second)["reason"]) == ("True", "Replayed")
    assert env.records() == [record]
    assert env.effective() == effective
    assert files.read_json(env.journal / "promotion-apply-state.json") == {**record, "replayed": True}


def test_expand_needs_promote_then_moves_the_canary_and_autonomy_follows(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock, canaryPercent=0)
    env.fleet_pass()
    assert all("autonomous_rollout_canary_excluded" in i["reasons"] for i in env.intents())
    env.deps.decision_source = promotion_apply_controller.fetch_promotion_state  # no state file written yet
    env.create("grow-0", "expand", expandStep=100)
    assert env.run("grow-0").phase == "rejected"
    assert env.status("grow-0")["reasonCodes"] == ["promotion_apply_decision_missing"]
    env.decide("hold", "promotion_drill_state_missing", "promotion_manual_backlog_exceeded")
    env.create("grow-1", "expand", expandStep=100)
    assert env.run("grow-1").phase == "rejected"
    held = env.status("grow-1")
    assert held["decision"] == "hold"
    assert held["reasonCodes"] == [
        "promotion_apply_decision_not_promote",
        "promotion_drill_state_missing",
        "promotion_manual_backlog_exceeded",
    ]
    assert (_cond(held)["status"], _cond(held)["reason"]) == ("False", "PromotionApplyDecisionNotPromote")
    assert _cond(held)["message"] == "intent expand requires promotion decision promote (found: hold)"
    assert "record" not in held
    assert "appliedAt" not in held
    assert "PromotionRejected" in env.edge.reasons("grow-1")
    assert env.records() == []
    assert "lastApply" not in env.effective()
    # the decision turns promote; a rejected object stays rejected (evaluated once), a new one applies
    env.decide("promote")
    assert env.run("grow-1").phase == "rejected"
    env.create("grow-2", "expand", expandStep=100)
    assert env.run("grow-2").phase == "applied"
    assert env.status("grow-2")["record"]["rollout"]["after"] == {"canaryPercent": 100, "manualPause": False}
    # the follow-up fleet pass put the loop in the cohort and executed its intent autonomously
    assert not env.loop_alive
    handoff_rows = files.read_jsonl(env.journal / "telemetry" / "handoff.jsonl")
    assert any(
        r["category"] == "fleet_handoff_execute" and r["execution"]["mode"] == "autonomous"
        for r in handoff_rows
    )


def test_a_new_policy_generation_rebases_and_the_kill_switch_always_wins(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock, kill_switch=True, canaryPercent=0)
    env.decide("promote")
    env.create("grow", "expand", expandStep=100)
    assert env.run("grow").phase == "applied"
    assert env.effective()["canaryPercent"] == 100
    (target,) = [i for i in env.intents() if i["intentId"] == "red-1:reconcile_failed:cancel"]
    assert not target["eligible"]
    assert target["reasons"] == ["autonomous_kill_switch_enabled"]  # in the cohort now, still blocked
    assert env.loop_alive
    # GitOps changes the policy: the effective posture goes back to the new spec
    policy = env.edge.get("fleetpolicies", POLICY)
    policy["spec"]["autonomous"]["rollout"]["canaryPercent"] = 10
    policy["metadata"]["generation"] = 2
    policy_handlers.reconcile_policy(env.edge.get("fleetpolicies", POLICY), env.fleet_deps)
    rebased = env.effective()
    assert (rebased["canaryPercent"], rebased["manualPause"], rebased["basedOnGeneration"]) == (10, False, 2)
    assert "lastApply" not in rebased
    # the next apply starts from the re-based posture
    env.create("grow-again", "expand", expandStep=15)
    assert env.run("grow-again").phase == "applied"
    assert env.status("grow-again")["record"]["rollout"]["before"]["canaryPercent"] == 10
    assert env.effective()["canaryPercent"] == 25


def test_expired_review_dry_run_and_an_advisory_policy_are_refused_without_moving(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock)
    env.decide("promote")
    past = format_ts(clock.now() - dt.timedelta(minutes=1))
    env.create("late", "rollback", governance={"reviewBy": past})
    assert env.run("late").phase == "rejected"
    late = env.status("late")
    assert late["reasonCodes"] == ["promotion_apply_review_expired"]
    assert _cond(late)["reason"] == "PromotionApplyReviewExpired"
    assert late["reviewBy"] == past
    env.create(
        "preview", "expand", dryRun=True, expandStep=30, governance={"reviewBy": None, "reviewWithinDays": 3}
    )
    assert env.run("preview").phase == "dry_run"
    preview = env.status("preview")
    assert (
        preview["message"]
        == "dry run, not applied: expand: canaryPercent 100 -> 100, manualPause false -> false"
    )
    assert preview["reviewBy"] == format_ts(clock.now() + dt.timedelta(days=3))
    assert (_cond(preview)["status"], _cond(preview)["reason"]) == ("False", "DryRun")
    assert "record" not in preview
    assert env.records() == []
    policy = env.edge.get("fleetpolicies", POLICY)
    assert "lastApply" not in (policy.get("status") or {}).get("effectiveRollout", {})
    policy["spec"] = {"mode": "advisory"}
    env.create("advice", "rollback")
    assert env.run("advice").phase == "rejected"
    assert env.status("advice")["reasonCodes"] == ["promotion_apply_mode_not_guarded_auto"]
    assert _cond(env.status("advice"))["message"] == "promotion apply requires policy.mode guarded_auto"


def test_a_missing_fleet_is_retried_then_applied(tmp_path: Path, clock: FrozenClock) -> None:
    env = Env(tmp_path, clock)
    fleet = env.edge.objects.pop(("fleets", NS, FLEET))
    env.create("early", "rollback")
    report = env.run("early")
    assert (report.phase, report.retry_after) == ("pending", 30.0)
    assert (_cond(env.status("early"))["status"], _cond(env.status("early"))["reason"]) == (
        "Unknown",
        "PromotionApplyFleetNotFound",
    )
    env.edge.add("fleets", fleet)
    assert env.run("early").phase == "applied"
    assert env.effective()["manualPause"] is True


def test_restarts_never_apply_twice(tmp_path: Path, clock: FrozenClock) -> None:
    env = Env(tmp_path, clock, canaryPercent=10)
    env.decide("promote")
    # crash after the journal, before the PromotionApply status: the journal finishes the status
    env.create("a", "expand", expandStep=10)
    env.edge.fail_status_of.add("a")
    with pytest.raises(ObjectNotFoundError):
        env.run("a")
    env.edge.fail_status_of.clear()
    assert env.effective()["canaryPercent"] == 20
    assert "status" not in env.edge.get("promotionapplies", "a")
    clock.advance(5)
    assert env.run("a").phase == "applied"
    assert env.status("a")["record"] == env.records()[0]
    assert len(env.records()) == 1
    assert env.effective()["canaryPercent"] == 20
    # crash between the posture write and the journal: the marker and the posture finish it
    env.create("b", "expand", expandStep=10)
    env.edge.fail_status_of.add("b")
    with pytest.raises(ObjectNotFoundError):
        env.run("b")
    env.edge.fail_status_of.clear()
    record_b = env.records()[-1]
    journal_lines = (env.journal / "telemetry" / "promotion-apply.jsonl").read_text().splitlines()
    (env.journal / "telemetry" / "promotion-apply.jsonl").write_text(journal_lines[0] + "\n")
    files.write_json_atomic(
        env.journal / promotion_apply_controller.PENDING_FILE,
        {"applyId": env.effective()["lastApply"], "record": record_b},
    )
    assert env.effective()["canaryPercent"] == 30
    assert env.run("b").phase == "applied"
    assert env.records()[-1] == record_b
    assert len(env.records()) == 2
    assert env.effective()["canaryPercent"] == 30
    assert not (env.journal / promotion_apply_controller.PENDING_FILE).exists()
    # crash after the marker only: the posture was never moved, so the apply starts over, once
    env.create("c", "expand", expandStep=10)
    c_uid = env.edge.get("promotionapplies", "c")["metadata"]["uid"]
    files.write_json_atomic(
        env.journal / promotion_apply_controller.PENDING_FILE,
        {"applyId": f"c/{c_uid}", "record": {"stale": True}},
    )
    assert env.run("c").phase == "applied"
    assert env.status("c")["record"]["rollout"]["before"]["canaryPercent"] == 30
    assert env.effective()["canaryPercent"] == 40
    assert len(env.records()) == 3


def test_the_gates_are_evaluated_over_the_fleet_journal_at_apply_time(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock, canaryPercent=10)
    env.create("too-soon", "expand")
    assert env.run("too-soon").phase == "rejected"  # no fleet pass yet: no decision to read
    assert env.status("too-soon")["reasonCodes"] == ["promotion_apply_decision_missing"]
    env.fleet_pass()
    env.create("grow", "expand")
    assert env.run("grow").phase == "rejected"
    status = env.status("grow")
    uid = env.edge.get("promotionapplies", "grow")["metadata"]["uid"]
    state = files.read_json(env.journal / "promotion-state.json")
    assert isinstance(state, dict)
    assert state["traceId"] == uid
    assert state["summary"]["decision"] == status["decision"] == "hold"
    assert state["source"]["drillStateFile"] == str(env.journal / "drills" / "promotion.v1.json")
    assert state["source"]["handoffTelemetryFile"] == str(env.journal / "telemetry" / "handoff.jsonl")
    assert status["reasonCodes"][0] == "promotion_apply_decision_not_promote"
    assert status["reasonCodes"][1:] == state["summary"]["reasonCodes"]
    assert {"promotion_drill_state_missing", "promotion_autonomous_sample_insufficient"} <= set(
        status["reasonCodes"]
    )
    assert len(files.read_jsonl(env.journal / "telemetry" / "promotion.jsonl")) == 1
    # a rollback records the decision it saw and applies anyway
    env.create("stop", "rollback")
    assert env.run("stop").phase == "applied"
    assert env.status("stop")["record"]["decision"] == "hold"
    assert env.status("stop")["record"]["idempotencyKey"] is None  # explicit null kept, as in the journal
    assert env.status("stop")["record"] == env.records()[-1]
    assert env.effective()["manualPause"] is True


def test_the_fleet_status_carries_the_latest_promotion_decision_from_its_journal(
    tmp_path: Path, clock: FrozenClock
) -> None:
    env = Env(tmp_path, clock, canaryPercent=10)
    env.fleet_pass()
    fleet_status = env.edge.get("fleets", FLEET)["status"]
    assert "promotionDecision" not in fleet_status  # no gates evaluated yet: the column stays empty
    assert "promotion" not in fleet_status
    env.create("grow", "expand")
    assert env.run("grow").phase == "rejected"
    state = files.read_json(env.journal / "promotion-state.json")
    assert isinstance(state, dict)
    clock.advance(30)
    env.fleet_pass()
    fleet_status = env.edge.get("fleets", FLEET)["status"]
    assert fleet_status["promotionDecision"] == "hold"
    assert fleet_status["promotion"] == {
        "decision": "hold",
        "evaluatedAt": state["generatedAt"],
        "traceId": env.edge.get("promotionapplies", "grow")["metadata"]["uid"],
        "failedGates": state["summary"]["failedGates"],
        "reasonCodes": state["summary"]["reasonCodes"],
    }
    # a decision written elsewhere (promotion CI on the same journal) shows on the next pass
    env.decide("promote")
    env.fleet_pass()
    fleet_status = env.edge.get("fleets", FLEET)["status"]
    assert fleet_status["promotionDecision"] == "promote"
    assert fleet_status["promotion"]["decision"] == "promote"
    # the state file gone: the fields are dropped, not left stale
    (env.journal / "promotion-state.json").unlink()
    env.fleet_pass()
    fleet_status = env.edge.get("fleets", FLEET)["status"]
    assert "promotionDecision" not in fleet_status
    assert "promotion" not in fleet_status
