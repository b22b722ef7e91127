"""Fault matrix on the real control plane (issue 10, docs/reliability.md).

kube-apiserver and etcd are SIGKILLed and restarted while the operator supervises a Loop and a
manual HandoffIntent is approved and executed: the operator's watches resume on their own, the
intent is executed exactly once (counted at the runtime: one ``approval_consumed`` event, one
journal row), no HandoffIntent is duplicated, and the Loop's status converges on the runtime.

Two replicas with peering: only the higher-priority one runs passes; SIGKILLed (it never leaves
the peering object), the standby takes over once its record expires and executes the approved
intent exactly once.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from e2e.harness.cluster import Cluster
from e2e.operator_harness import GROUP, Operator
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import loop_eventually as _eventually
from e2e.test_loop_operator import INTERVAL, Release, _intent, _local_loop, _make_env, _phase, release
from superloop_ops.journal import files

__all__ = ["release"]  # the chart release fixture, shared with the Loop operator module


def _restart(cluster: Cluster, component: str) -> None:
    if cluster.restart_component is None:
        pytest.fail("the restart rows need the project's own control plane (unset KUBECONFIG)")
    cluster.restart_component(component)


def test_apiserver_and_etcd_restarts_resume_watches_without_duplicates(
    cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env: Env = _make_env(cluster, release, release.watched[0], tmp_path_factory.mktemp("faults"))
    try:
        env.start_operator()
        sim = env.simulate("awaiting_approval")
        env.apply(_local_loop("restart-gate", sim.loop_id, sim.loop_id))
        _eventually(
            lambda: env.status("restart-gate").get("lifecycle") == "awaiting_approval",
            timeout=60,
            what="awaiting",
        )
        env.apply(_intent("restart-approve", "restart-gate", "approve"))
        _eventually(lambda: _phase(env, "restart-approve") == "pending_operator_confirmation", what="pending")

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
        sim = env.simulate("awaiting_approval")
        env.apply(_local_loop("peer-gate", sim.loop_id, sim.loop_id))
        _eventually(
            lambda: env.status("peer-gate").get("lifecycle") == "awaiting_approval",
            timeout=60,
            what="awaiting",
        )
        env.apply(_intent("peer-approve", "peer-gate", "approve"))
        _eventually(lambda: _phase(env, "peer-approve") == "pending_operator_confirmation", what="pending")
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
            survivor.stop()
        # a crash before anything was recorded is simply executed; later ones are recorded, not re-run
        assert outcomes["handoff.executing_status"] == "executed"
        assert outcomes["handoff.outcome_status"] == "executed"
    finally:
        env.close()
