"""Issue 15: one trace id from the health signal to the effect, and ``superloop-ops trail``.

The real Loop, Fleet and HandoffIntent handlers, the simulator as the runtime and the control
engine, real journal files, an in-memory API server, a frozen clock and an injected trace id
source. A stale loop opens a remediation (trace ``trace-0001``), the fleet proposes a
HandoffIntent carrying it, a person approves, the cancel executes, and the next Loop pass shows
the effect; the CLI prints every step of that trail in order.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from helpers.operator_fakes import FakeEdge, WatchedMembers, build_context, build_frozen_clock
from superloop_ops.cli import main as cli_main
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import fleet_controller
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext, build_fleet_deps
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.sim.simulator import Simulator, cancel_runtime

NS = "trail-ns"
API = "ops.superloop.dev/v1alpha1"
LOOP_ID = "stale-1"


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


@pytest.fixture
def sim(tmp_path: Path, clock: FrozenClock) -> Simulator:
    simulator = Simulator(
        tmp_path / "sims", clock, loops=1, scenarios=["stale_heartbeat"], loop_prefix="stale"
    )
    simulator.run(4)
    return simulator


@pytest.fixture
def ctx(tmp_path: Path, edge: FakeEdge, clock: FrozenClock, sim: Simulator) -> OperatorContext:
    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        sim.step()

    context = build_context(
        tmp_path,
        edge,
        clock,
        {"claim-s": sim.repo_of(LOOP_ID)},
        control_confirm_timeout_seconds=6,
        sleep=sleep,
    )
    ids = itertools.count(1)
    context.new_trace_id = lambda: f"trace-{next(ids):04d}"
    return context


def _guarded_auto(clock: FrozenClock) -> dict[str, Any]:
    now = clock.now()
    governance = {
        "actor": "ops-user", "approvalRef": "CAB-15", "rationale": "trail",
        "changedAt": format_ts(now - dt.timedelta(days=1)),
        "reviewBy": format_ts(now + dt.timedelta(days=30)),
    }  # fmt: skip
    return {
        "mode": "guarded_auto",
        "noiseControls": {"dedupeWindowSeconds": 0},
        "autonomous": {
            "allow": {"categories": ["health_critical"], "intents": ["cancel"]},
            "safety": {"maxActionsPerRun": 3, "maxActionsPerLoop": 1, "cooldownSeconds": 0},
            "governance": governance,
        },
    }


def _setup_fleet(edge: FakeEdge, policy: dict[str, Any] | None = None) -> None:
    edge.add(
        "fleetpolicies",
        {
            "apiVersion": API,
            "kind": "FleetPolicy",
            "metadata": {"name": "pol"},
            "spec": policy or {"mode": "advisory", "noiseControls": {"dedupeWindowSeconds": 0}},
        },
    )
    loop = {"loopId": LOOP_ID, "transport": "local", "source": {"pvc": {"claimName": "claim-s"}}}
    edge.add(
        "fleets",
        {
            "apiVersion": API,
            "kind": "Fleet",
            "metadata": {"name": "fl"},
            "spec": {"policyRef": {"name": "pol"}, "loops": [loop], "deterministicOrder": True},
        },
    )


def _loop_pass(edge: FakeEdge, ctx: OperatorContext, name: str) -> dict[str, Any]:
    loop_handlers.reconcile_loop(edge.get("loops", name), ctx)
    return edge.get("loops", name)["status"]


def _trail(tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli_main.main(["trail", target, "--state-dir", str(tmp_path / "state" / NS), "-o", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_one_trace_id_follows_a_remediation_and_trail_prints_it_in_order(
    tmp_path: Path,
    edge: FakeEdge,
    clock: FrozenClock,
    ctx: OperatorContext,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _setup_fleet(edge)
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)  # what the Loop watch's index holds
    fleet_controller.reconcile_fleet(edge.get("fleets", "fl"), deps)  # materialises the Loop
    loop_name = owned_names.compute_loop_name("fl", LOOP_ID)
    clock.advance(600)  # the heartbeat goes stale
    status = _loop_pass(edge, ctx, loop_name)
    assert status["healthStatus"] == "critical"
    assert status["remediation"]["state"] == "open"
    trace = status["remediation"]["traceId"]
    assert trace == "trace-0001"  # minted once, by the pass that saw the signal
    clock.advance(5)
    assert _loop_pass(edge, ctx, loop_name)["traceId"] == trace  # later passes carry it
    assert [e[2] for e in edge.events if e[0] == loop_name].count("RemediationOpened") == 1
    # the fleet candidate and the HandoffIntent carry it
    fleet_controller.reconcile_fleet(edge.get("fleets", "fl"), deps)
    fleet_dir = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "fleet" / "fl"
    policy_state = files.read_json(fleet_dir / "policy-state.json")
    assert isinstance(policy_state, dict)
    assert {c["traceId"] for c in policy_state["candidates"]} == {trace}
    intent = owned_names.compute_intent_name("fl", f"{LOOP_ID}:health_critical:cancel")
    assert edge.get("handoffintents", intent)["spec"]["traceId"] == trace
    # a person approves; the execution and its journal rows carry it
    intent_handlers.reconcile_intent(edge.get("handoffintents", intent), ctx)
    clock.advance(30)
    edge.patch_annotations(
        ObjectRef("HandoffIntent", "handoffintents", NS, intent),
        {
            "ops.superloop.dev/approved": "true",
            "ops.superloop.dev/approved-by": "oncall",
            "ops.superloop.dev/approved-at": format_ts(clock.now()),
        },
    )
    assert intent_handlers.reconcile_intent(edge.get("handoffintents", intent), ctx).phase == "executed"
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / LOOP_ID
    assert [r["traceId"] for r in files.read_jsonl(ops / "intents.jsonl")] == [trace]
    assert {r["traceId"] for r in files.read_jsonl(ops / "telemetry" / "handoff-intents.jsonl")} == {trace}
    intent_events = [e for e in edge.events if e[0] == intent]
    assert intent_events
    assert all(e[3].endswith(f"[trace {trace}]") for e in intent_events)
    # the next Loop pass shows the effect, with the same id: the run is cancelled, the Loop healthy,
    # the remediation resolved; the pass after it has an id of its own
    clock.advance(5)
    after = _loop_pass(edge, ctx, loop_name)
    assert (after["traceId"], after["healthStatus"]) == (trace, "healthy")
    assert after["reasonCodes"] == ["run_cancelled"]
    assert after["remediation"]["state"] == "resolved"
    assert [e[2] for e in edge.events if e[0] == loop_name].count("RemediationResolved") == 1
    clock.advance(5)
    assert _loop_pass(edge, ctx, loop_name)["traceId"] == "trace-0002"
    # the trail, from the journal, by loop, by intent and by trace id: every step in order
    code, by_loop = _trail(tmp_path, LOOP_ID, capsys)
    assert code == 0
    assert by_loop["traceId"] == trace
    kinds = [s["step"] for s in by_loop["steps"]]

    assert kinds == [
        "health_signal", "alert", "alert_delivery", "health_pass", "fleet_candidate", "handoff_intent",
        "approval", "execution", "control", "outcome", "effect", "resolved",
    ]  # fmt: skip
    assert [s["at"] for s in by_loop["steps"]] == sorted(s["at"] for s in by_loop["steps"])
    assert _trail(tmp_path, intent, capsys)[1] == by_loop
    assert _trail(tmp_path, trace, capsys)[1] == by_loop
    # an unknown id prints an empty trail and exits 1
    assert _trail(tmp_path, "no-such-trace", capsys) == (
        1,
        {"traceId": "no-such-trace", "steps": [], "stepKinds": []},
    )


def test_an_autonomous_remediation_carries_the_loops_trace_id_and_its_decision_is_a_step(
    tmp_path: Path,
    edge: FakeEdge,
    clock: FrozenClock,
    ctx: OperatorContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _setup_fleet(edge, _guarded_auto(clock))
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)  # what the Loop watch's index holds
    fleet_controller.reconcile_fleet(edge.get("fleets", "fl"), deps)
    loop_name = owned_names.compute_loop_name("fl", LOOP_ID)
    clock.advance(600)
    trace = _loop_pass(edge, ctx, loop_name)["remediation"]["traceId"]
    clock.advance(5)
    report = fleet_controller.reconcile_fleet(edge.get("fleets", "fl"), deps)
    assert [outcome for _, outcome in report.autonomous_outcomes] == ["executed"]
    intent = owned_names.compute_intent_name("fl", f"{LOOP_ID}:health_critical:cancel")
    body = edge.get("handoffintents", intent)
    assert (body["spec"]["traceId"], body["status"]["mode"]) == (trace, "autonomous")
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / LOOP_ID
    assert [r["traceId"] for r in files.read_jsonl(ops / "intents.jsonl")] == [trace]
    rows = files.read_jsonl(ops / "telemetry" / "handoff-intents.jsonl")
    assert [(r["phase"], r["mode"], r["traceId"]) for r in rows] == [
        ("executing", "autonomous", trace), ("executed", "autonomous", trace),
    ]  # fmt: skip
    code, shown = _trail(tmp_path, trace, capsys)
    assert code == 0
    kinds = [s["step"] for s in shown["steps"]]
    assert kinds.index("fleet_candidate") < kinds.index("execution") < kinds.index("outcome")
    assert "approval" not in kinds
    assert "autonomously" in next(s["summary"] for s in shown["steps"] if s["step"] == "execution")


# ---------------------------------------------------------------------------------------------
# a pass working from a body older than the last status write (the scheduler's entry while the
# create handler's pass runs: kopf delivers the Loop's next event only after that handler)


def _materialise(edge: FakeEdge, ctx: OperatorContext) -> str:
    _setup_fleet(edge)
    deps = build_fleet_deps(ctx, edge)
    deps.members = WatchedMembers(edge)
    fleet_controller.reconcile_fleet(edge.get("fleets", "fl"), deps)
    return owned_names.compute_loop_name("fl", LOOP_ID)


def _remediation_rows(tmp_path: Path) -> list[tuple[str, str]]:
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / LOOP_ID
    return [(r["event"], r["traceId"]) for r in files.read_jsonl(ops / "telemetry" / "remediations.jsonl")]


def _loop_reasons(edge: FakeEdge, name: str) -> list[str]:
    return [e[2] for e in edge.events if e[0] == name and e[2].startswith("Remediation")]


def test_a_pass_on_a_body_older_than_the_opening_write_carries_the_open_remediation(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, ctx: OperatorContext
) -> None:
    loop_name = _materialise(edge, ctx)
    clock.advance(600)  # the heartbeat goes stale
    watched = copy.deepcopy(edge.get("loops", loop_name))  # the scheduler's entry: no status yet
    assert _loop_pass(edge, ctx, loop_name)["remediation"]["traceId"] == "trace-0001"  # the create pass
    clock.advance(2)
    loop_handlers.reconcile_loop(watched, ctx)  # the periodic pass, from the older body
    status = edge.get("loops", loop_name)["status"]
    assert (status["remediation"]["traceId"], status["remediation"]["state"]) == ("trace-0001", "open")
    assert status["traceId"] == "trace-0001"  # the pass ran with the remediation's id
    assert _remediation_rows(tmp_path) == [("opened", "trace-0001")]
    assert _loop_reasons(edge, loop_name) == ["RemediationOpened"]


def test_a_pass_on_a_body_older_than_the_resolving_write_does_not_resolve_again(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock, ctx: OperatorContext, sim: Simulator
) -> None:
    loop_name = _materialise(edge, ctx)
    clock.advance(600)
    assert _loop_pass(edge, ctx, loop_name)["remediation"]["state"] == "open"
    cancel_runtime(sim.repo_of(LOOP_ID))  # the run stops: the next pass finds the Loop healthy
    sim.step()
    clock.advance(5)
    watched = copy.deepcopy(edge.get("loops", loop_name))  # still open, as the watch last saw it
    resolved = _loop_pass(edge, ctx, loop_name)["remediation"]
    assert (resolved["state"], resolved["traceId"]) == ("resolved", "trace-0001")
    clock.advance(5)
    loop_handlers.reconcile_loop(watched, ctx)
    status = edge.get("loops", loop_name)["status"]
    assert status["remediation"] == resolved  # resolvedAt stays the first resolution's
    assert status["traceId"] == "trace-0002"  # a pass after the resolution has an id of its own
    assert _remediation_rows(tmp_path) == [("opened", "trace-0001"), ("resolved", "trace-0001")]
    assert _loop_reasons(edge, loop_name) == ["RemediationOpened", "RemediationResolved"]


class _SlowPassClock(FrozenClock):
    """Each reading a second after the last: a pass that takes seconds (a loaded machine)."""

    def now(self) -> dt.datetime:
        self.advance(1)
        return super().now()


def test_a_remediation_resolves_after_the_rows_of_the_pass_that_resolves_it(
    tmp_path: Path,
    edge: FakeEdge,
    clock: FrozenClock,
    ctx: OperatorContext,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop_name = _materialise(edge, ctx)
    clock.advance(600)
    assert _loop_pass(edge, ctx, loop_name)["remediation"]["state"] == "open"
    cancel_runtime(sim.repo_of(LOOP_ID))
    sim.step()
    ctx.clock = _SlowPassClock(clock.now())  # the resolving pass crosses seconds
    resolved = _loop_pass(edge, ctx, loop_name)["remediation"]
    assert resolved["state"] == "resolved"
    code, shown = _trail(tmp_path, "trace-0001", capsys)
    assert code == 0
    last = shown["steps"][-2:]
    assert [s["step"] for s in last] == ["health_pass", "resolved"]  # the pass found it healthy, then
    assert "healthy" in last[0]["summary"]
    assert last[0]["at"] <= last[1]["at"] == resolved["resolvedAt"]
    assert resolved["openedAt"] < last[0]["at"]
