"""Fault matrix on the real control plane (issue 10, docs/reliability.md).

kube-apiserver and etcd are SIGKILLed and restarted while the operator supervises a Loop and a
manual HandoffIntent is approved and executed: the operator's watches resume on their own, the
intent is executed exactly once (counted at the runtime: one ``approval_consumed`` event, one
journal row), no HandoffIntent is duplicated, and the Loop's status converges on the runtime.

Two replicas with peering: only the higher-priority one runs passes; SIGKILLed (it never leaves
the peering object), the standby takes over once its record expires and executes the approved
intent exactly once.

The operator SIGKILLed (the crash hook) at each step of a manual and of an autonomous
(``guarded_auto``) execution, over the local transport and over the sprite service: the next
operator completes or records what happened, and no side effect is ever duplicated, counted at
the runtime (a runtime command that logs its every call, and the runtime's own events) and at the
service (its idempotency store and its intents rows).
"""

from __future__ import annotations

import shlex
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.operator_harness import GROUP, SIM_RUNTIME, Operator
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import SimThread as Sim
from e2e.operator_harness import loop_eventually as _eventually
from e2e.test_fleet_operator import _fleet, _local, _policy
from e2e.test_loop_operator import (
    INTERVAL,
    SECRET,
    Release,
    _intent,
    _local_loop,
    _make_env,
    _phase,
    release,
)
from superloop_ops.core.fleet import owned_names
from superloop_ops.journal import files
from superloop_ops.journal.service_idempotency import STORE_FILE

__all__ = ["release"]  # the chart release fixture, shared with the Loop operator module


def _restart(cluster: Cluster, component: str) -> None:
    if cluster.restart_component is None:
        pytest.fail("the restart rows need the project's own control plane (unset KUBECONFIG)")
    cluster.restart_component(component)


def _approval_gate(env: Env, loop: str, intent: str) -> Sim:
    """A local Loop whose run awaits approval and an approve intent waiting for a person."""
    sim = env.simulate("awaiting_approval")
    env.apply(_local_loop(loop, sim.loop_id, sim.loop_id))
    _eventually(lambda: env.status(loop).get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting")
    env.apply(_intent(intent, loop, "approve"))
    _eventually(lambda: _phase(env, intent) == "pending_operator_confirmation", what="pending")
    return sim


def test_apiserver_and_etcd_restarts_resume_watches_without_duplicates(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env: Env = _make_env(cluster, release, release.watched[0], tmp_path_factory.mktemp("faults"))
    try:
        env.start_operator()
        sim = _approval_gate(env, "restart-gate", "restart-approve")

        _restart(cluster, "kube-apiserver")  # mid-pass: the operator's periodic passes keep running
        approved = env.plugin("approve", "restart-approve", "--note", "after restart", context="alice")
        assert approved.returncode == 0, approved.stderr
        _restart(cluster, "etcd")  # while the approved intent is being executed

        _eventually(lambda: _phase(env, "restart-approve") == "executed", timeout=120, what="executed")
        _eventually(lambda: "loop_complete" in sim.event_names(), timeout=60, what="the runtime completes")
        _eventually(
            lambda: env.status("restart-gate").get("lifecycle") == "complete",
            timeout=60,
            what="status converges",
        )
        time.sleep(3 * INTERVAL)  # more passes after the restarts: still exactly once
        assert sim.event_names().count("approval_consumed") == 1
        rows = files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")
        assert [(row["intent"], row["status"]) for row in rows] == [("approve", "confirmed")]
        intents = cluster.kubectl("get", f"handoffintents.{GROUP}", "-n", env.namespace, "-o", "name").stdout
        assert intents.split() == [f"handoffintent.{GROUP}/restart-approve"]
        status = env.status("restart-gate")
        assert status["cursor"]["eventLineOffset"] == sim.line_count()
    finally:
        env.close()


def _reconcile_passes(operator: Operator, namespace: str) -> float:
    """Loop passes this replica ran in ``namespace`` (its own metrics endpoint)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = f'superloop_ops_reconcile_duration_seconds_count{{namespace="{namespace}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def test_two_replicas_one_acts_and_the_standby_takes_over_after_a_kill(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env: Env = _make_env(cluster, release, release.watched[1], tmp_path_factory.mktemp("peering"))
    try:
        active = env.start_operator(args=["--priority=10"], SUPERLOOP_PEERING=release.peering)
        standby = env.start_operator(args=["--priority=0"], SUPERLOOP_PEERING=release.peering)
        sim = _approval_gate(env, "peer-gate", "peer-approve")
        time.sleep(2 * INTERVAL)
        assert _reconcile_passes(active, env.namespace) > 0
        assert _reconcile_passes(standby, env.namespace) == 0  # exactly one replica acts

        active.kill()  # SIGKILL: it never leaves the peering object; the standby waits out its lifetime
        approved = env.plugin("approve", "peer-approve", context="alice")
        assert approved.returncode == 0, approved.stderr
        _eventually(
            lambda: _phase(env, "peer-approve") == "executed", timeout=180, what="the standby executes"
        )
        assert _reconcile_passes(standby, env.namespace) > 0
        _eventually(lambda: "loop_complete" in sim.event_names(), timeout=60, what="the runtime completes")
        time.sleep(3 * INTERVAL)
        assert sim.event_names().count("approval_consumed") == 1
        rows = files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")
        assert [(row["intent"], row["status"]) for row in rows] == [("approve", "confirmed")]
    finally:
        env.close()


def _delete(env: Env, *objects: tuple[str, str]) -> None:
    """Delete a finished case's objects (plural, name): every operator started later resumes all."""
    for plural, name in objects:
        env.cluster.kubectl("delete", f"{plural}.{GROUP}", name, "-n", env.namespace, "--wait=false")


# The operator killed (SIGKILL through the crash hook) at each step of a manual execution: before
# it records ``executing``, inside the local control run (claim, approval file, event, result row),
# and before it records the outcome.
OPERATOR_CRASH_POINTS = (
    "handoff.executing_status",
    "control.claim",
    "approval.approval_file",
    "approval.event",
    "control.intent_row",
    "handoff.outcome_status",
)


def test_operator_killed_at_each_step_of_an_execution_never_duplicates_a_side_effect(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env: Env = _make_env(cluster, release, release.watched[1], tmp_path_factory.mktemp("crash-steps"))
    try:
        outcomes: dict[str, str | None] = {}
        for index, point in enumerate(OPERATOR_CRASH_POINTS):
            name = f"step-{index}"
            sim = env.simulate("awaiting_approval")
            crashing = env.start_operator(SUPERLOOP_OPS_CRASH_AT=point)
            env.apply(_local_loop(name, sim.loop_id, sim.loop_id))
            _eventually(
                lambda n=name: env.status(n).get("lifecycle") == "awaiting_approval",
                timeout=60,
                what="awaiting",
            )
            env.apply(_intent(f"{name}-approve", name, "approve"))
            assert env.plugin("approve", f"{name}-approve", context="alice").returncode == 0
            _eventually(
                lambda p=crashing: p.proc.poll() is not None, timeout=60, what=f"the crash at {point}"
            )
            survivor = env.start_operator()
            _eventually(
                lambda n=name: _phase(env, f"{n}-approve") in ("executed", "execution_ambiguous"),
                timeout=90, what=f"an outcome after the crash at {point}",
            )  # fmt: skip
            time.sleep(2 * INTERVAL)
            outcomes[point] = _phase(env, f"{name}-approve")
            # zero duplicate side effects, counted at the runtime and in its files
            assert sim.event_names().count("approval_decision") <= 1, point
            assert sim.event_names().count("approval_consumed") <= 1, point
            decisions = sim.repo / ".superloop" / "loops" / sim.loop_id / "decisions.jsonl"
            assert len(files.read_jsonl(decisions)) <= 1, point
            rows = files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")
            assert len(rows) <= 1, point
            _delete(env, ("handoffintents", f"{name}-approve"), ("loops", name))
            survivor.stop()
        # a crash before anything was recorded is simply executed; later ones are recorded, not re-run
        assert outcomes["handoff.executing_status"] == "executed"
        assert outcomes["handoff.outcome_status"] == "executed"
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# The operator SIGKILLed at each step of an autonomous execution, and of a manual and an
# autonomous one over the sprite service. Each case counts its side effects where they happen.


@dataclass(frozen=True)
class CrashCase:
    """One crash: where the operator dies, and what the next operator must make of it."""

    point: str
    result: str  # the recorded outcome: the fleet journal's result status, or the intent's phase
    effects: int  # side effects at the runtime: 1 when the crash came after it, else 0


def _counting_runtime(workdir: Path) -> tuple[str, Path]:
    """A runtime command that logs each of its calls (the arguments, one line), then runs the simulator."""
    log = workdir / "runtime-calls.log"
    script = workdir / "counting-runtime"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\nexec {SIM_RUNTIME} "$@"\n')
    script.chmod(0o755)
    return str(script), log


def _cancels(log: Path, repo: Path) -> int:
    """The runtime's cancel calls for one repository."""
    calls = [line.split() for line in (log.read_text().splitlines() if log.is_file() else [])]
    return sum(
        1 for argv in calls if argv[:2] == ["cancel", "--repo"] and Path(argv[2]).resolve() == repo.resolve()
    )


def _crash_then_survive(env: Env, point: str, runtime: str, trigger: Callable[[], None]) -> Operator:
    """An operator that dies at ``point`` once ``trigger`` starts an execution; then the next one."""
    crashing = env.start_operator(SUPERLOOP_OPS_CRASH_AT=point, SUPERLOOP_RUNTIME_COMMAND=runtime)
    trigger()
    _eventually(lambda: crashing.proc.poll() is not None, timeout=120, what=f"the crash at {point}")
    return env.start_operator(SUPERLOOP_RUNTIME_COMMAND=runtime)


def _service(port: int) -> dict[str, Any]:
    return {
        "baseUrl": f"http://127.0.0.1:{port}",
        "tokenSecretRef": {"name": SECRET, "key": "token"},
        "retryAttempts": 1,
        "maxTimeSeconds": 60,
    }


def _sprite_member(sim: Sim, port: int) -> dict[str, Any]:
    return {
        "loopId": sim.loop_id,
        "transport": "sprite_service",
        "sprite": {"id": f"sprite-{sim.loop_id}"},
        "service": _service(port),
    }


def _service_counts(sim: Sim) -> tuple[int, int]:
    """At the service: (keys its idempotency store answered, control runs it recorded)."""
    store = sim.repo / ".superloop" / "ops-manager" / sim.loop_id / STORE_FILE
    return len(files.read_jsonl(store)), sim.service_executions()


def _fleet_results(env: Env, fleet: str, intent_id: str) -> list[dict[str, Any]]:
    """Every execution result the fleet journal recorded for one intent."""
    journal = env.state_dir / env.namespace / ".superloop" / "ops-manager" / "fleet" / fleet
    rows = files.read_jsonl(journal / "telemetry" / "handoff.jsonl")
    return [
        result
        for row in rows
        if isinstance(row, dict) and row.get("category") == "fleet_handoff_execute"
        for result in row["execution"]["results"]
        if result["intentId"] == intent_id
    ]


def _run_autonomous_case(
    env: Env, case: CrashCase, name: str, sim: Sim, member: dict[str, Any], runtime: str
) -> None:
    """A guarded_auto Fleet cancels its stale loop; the operator dies at ``case.point`` on the way."""
    env.apply(_policy(f"{name}-policy", categories=["health_critical"]))
    survivor = _crash_then_survive(
        env, case.point, runtime, lambda: env.apply(_fleet(name, f"{name}-policy", [member]))
    )
    intent_id = f"{sim.loop_id}:health_critical:cancel"
    _eventually(
        lambda: _fleet_results(env, name, intent_id), timeout=120, what=f"the recorded outcome ({case.point})"
    )
    time.sleep(3 * INTERVAL)  # more fleet passes: nothing is executed again
    results = _fleet_results(env, name, intent_id)
    assert [r["status"] for r in results] == [case.result], case.point
    selector = f"{owned_names.FLEET_LABEL}={owned_names.compute_dns_name(name)}"
    listed = env.cluster.kubectl(
        "get", f"handoffintents.{GROUP}", "-n", env.namespace, "-l", selector, "-o", "name"
    ).stdout.split()
    assert len(listed) <= 1, case.point  # no HandoffIntent duplicated
    _delete(env, ("fleets", name), ("fleetpolicies", f"{name}-policy"))  # its Loop and intent go with it
    survivor.stop()


AUTONOMOUS_CASES = (
    CrashCase("autonomous.executing_status", "executed", 1),  # nothing recorded yet: executed next
    CrashCase("control.claim", "ambiguous", 0),  # executing, nothing done: recorded, never re-run
    CrashCase("control.intent_row", "ambiguous", 1),  # done, not recorded: recorded, never re-run
    CrashCase("autonomous.outcome_status", "executed", 1),  # recovered from the journal
    CrashCase("autonomous.fleet_record", "executed", 1),  # recorded from the HandoffIntent
)


@pytest.fixture
def crash_env(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Env, str, Path]]:
    """The crash tests' namespace, its work directory, and a counting runtime: (env, command, log).

    The restart test's namespace: it leaves one Loop there, where the peering and manual crash
    tests leave many (every operator started resumes them all)."""
    env: Env = _make_env(cluster, release, release.watched[0], tmp_path_factory.mktemp("crashes"))
    try:
        yield (env, *_counting_runtime(env.workdir))
    finally:
        env.close()


def test_operator_killed_at_each_step_of_an_autonomous_execution_never_duplicates_a_side_effect(
    crash_env: tuple[Env, str, Path],
) -> None:
    env, runtime, calls = crash_env
    for index, case in enumerate(AUTONOMOUS_CASES):
        sim = env.simulate("stale_heartbeat", f"auto-{index}")
        _run_autonomous_case(env, case, f"auto-{index}", sim, _local(sim), runtime)
        assert _cancels(calls, sim.repo) == case.effects, case.point
        assert len(files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")) <= 1, case.point
        sim.stop()


def _run_manual_sprite_case(env: Env, case: CrashCase, name: str, runtime: str) -> Sim:
    """A person approves a Loop served by the sprite service; the operator dies at ``case.point``."""
    sim = env.simulate("awaiting_approval", name)
    _, port = env.start_service(sim.repo, runtime=runtime)
    loop = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name},
        "spec": {
            "loopId": sim.loop_id,
            "transport": "sprite_service",
            "service": _service(port),
            "reconcileIntervalSeconds": INTERVAL,
        },
    }

    def approve() -> None:
        env.apply(loop)
        _eventually(
            lambda: env.status(name).get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting"
        )
        env.apply(_intent(f"{name}-approve", name, "approve"))
        assert env.plugin("approve", f"{name}-approve", context="alice").returncode == 0

    survivor = _crash_then_survive(env, case.point, runtime, approve)
    outcomes = ("executed", "execution_ambiguous")
    _eventually(
        lambda: _phase(env, f"{name}-approve") in outcomes, timeout=90, what=f"the outcome ({case.point})"
    )
    _eventually(
        lambda: sim.event_names().count("approval_consumed") == case.effects,
        what=f"the runtime consumes the approval ({case.point})",
    )
    time.sleep(2 * INTERVAL)
    assert _phase(env, f"{name}-approve") == case.result, case.point
    assert sim.event_names().count("approval_decision") == case.effects, case.point
    assert sim.event_names().count("approval_consumed") == case.effects, case.point
    assert _service_counts(sim) == (case.effects, case.effects), case.point
    _delete(env, ("handoffintents", f"{name}-approve"), ("loops", name))
    survivor.stop()
    return sim


SPRITE_MANUAL_CASES = (
    CrashCase("handoff.executing_status", "executed", 1),
    CrashCase("control.service_request", "execution_ambiguous", 0),
    CrashCase("control.intent_row", "execution_ambiguous", 1),  # the service answered, nothing recorded
    CrashCase("handoff.outcome_status", "executed", 1),
)
SPRITE_AUTONOMOUS_CASES = (
    CrashCase("autonomous.executing_status", "executed", 1),
    CrashCase("control.intent_row", "ambiguous", 1),
    CrashCase("autonomous.fleet_record", "executed", 1),
)


def test_operator_killed_during_sprite_service_executions_never_duplicates_a_side_effect(
    crash_env: tuple[Env, str, Path],
) -> None:
    env, runtime, calls = crash_env
    for index, case in enumerate(SPRITE_MANUAL_CASES):
        _run_manual_sprite_case(env, case, f"svc-manual-{index}", runtime).stop()
    for index, case in enumerate(SPRITE_AUTONOMOUS_CASES):
        sim = env.simulate("stale_heartbeat", f"svc-auto-{index}")
        _, port = env.start_service(sim.repo, runtime=runtime)
        _run_autonomous_case(env, case, f"svc-auto-{index}", sim, _sprite_member(sim, port), runtime)
        assert _cancels(calls, sim.repo) == case.effects, case.point
        assert _service_counts(sim) == (case.effects, case.effects), case.point
        sim.stop()
