"""PromotionApply on a real control plane: the controller moves the FleetPolicy's effective posture.

One operator process watches one namespace with a token of the chart's ServiceAccount (the
fleet e2e's setup), so the PromotionApply and FleetPolicy status writes go through the chart's
RBAC and admission policies. One Fleet of one simulated local loop under a ``guarded_auto``
FleetPolicy with a 50% canary:

- a ``rollback`` applies: the FleetPolicy status shows the manual pause, ``Applied=True``, the
  record is in the PromotionApply status and in the fleet journal;
- an ``expand`` is refused: the gates, evaluated over the fleet journal, say ``hold``;
- after an operator restart, a second object with the same idempotency key replays the record
  and moves nothing (the journal remembers);
- the spec of a PromotionApply cannot be edited (``kubectl apply`` is rejected by the CRD).
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.test_fleet_operator import API, CHART, Env, _cond, _eventually, _fleet, _local, _policy
from superloop_ops.journal import files

FLEET = "promo"
POLICY = "promo-policy"


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The chart for one watched namespace and one operator under its ServiceAccount."""
    release_ns = f"e2e-promorel-{uuid.uuid4().hex[:6]}"
    namespace = f"e2e-promo-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("promoop")
    cluster.kubectl("create", "namespace", release_ns)
    cluster.kubectl("create", "namespace", namespace)
    handle: Env | None = None
    try:
        cluster.helm(
            "install", "promoop", str(CHART), "--namespace", release_ns,
            "--set", f"peering.name=promoop-{uuid.uuid4().hex[:6]}",
            "--set", f"watch.allNamespaces=false,watch.namespaces={{{namespace}}}",
        )  # fmt: skip
        sa = write_service_account_kubeconfig(
            cluster, release_ns, "promoop-superloop-ops", workdir / "sa.kubeconfig"
        )
        handle = Env(cluster=cluster, namespace=namespace, workdir=workdir, sa_kubeconfig=sa.path)
        handle.mounts.mkdir(parents=True, exist_ok=True)

        def can_patch_status() -> bool:
            argv = [
                cluster.kubectl_bin, f"--kubeconfig={sa.path}", "auth", "can-i", "patch",
                "promotionapplies.ops.superloop.dev", "--subresource=status", "-n", namespace,
            ]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return done.stdout.strip() == "yes"

        _eventually(can_patch_status, timeout=60, what="the operator ServiceAccount's RBAC")
        handle.start_operator()
        yield handle
    finally:
        if handle is not None:
            for proc in handle.procs:
                try:
                    Env.stop_proc(proc)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            for sim in handle.sims:
                sim.stop()
        cluster.helm("uninstall", "promoop", "--namespace", release_ns, "--wait", check=False)
        for ns in (namespace, release_ns):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _promotion(name: str, intent: str, key: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "PromotionApply",
        "metadata": {"name": name},
        "spec": {
            "fleetRef": {"name": FLEET},
            "intent": intent,
            "governance": {
                "by": "ops-user",
                "approvalRef": "CAB-77",
                "rationale": f"e2e {intent}",
                "reviewWithinDays": 14,
            },
            "idempotencyKey": key,
            **spec,
        },
    }


def _phase(env: Env, name: str) -> str | None:
    return env.status("promotionapplies", name).get("phase") if env.exists("promotionapplies", name) else None


def _records(env: Env) -> list[Any]:
    return files.read_jsonl(env.fleet_dir(FLEET) / "telemetry" / "promotion-apply.jsonl")


def test_promotion_apply_moves_the_effective_posture_once(env: Env) -> None:
    sim = env.simulate("running", "promo")
    env.apply(_policy(POLICY, categories=["health_critical"], rollout={"canaryPercent": 50}))
    env.apply(_fleet(FLEET, POLICY, [_local(sim)]))
    _eventually(
        lambda: env.status("fleets", FLEET).get("healthStatus") == "success", timeout=90, what="a fleet pass"
    )
    before = env.status("fleetpolicies", POLICY)["effectiveRollout"]
    assert (before["canaryPercent"], before["manualPause"]) == (50, False)

    # 1. rollback is always allowed: the FleetPolicy status shows the pause
    env.apply(_promotion("stop-1", "rollback", "incident-42"))
    _eventually(lambda: _phase(env, "stop-1") == "applied", timeout=60, what="the rollback applied")
    status = env.status("promotionapplies", "stop-1")
    applied = _cond(status, "Applied")
    assert (applied["status"], applied["reason"]) == ("True", "Applied")
    record = status["record"]
    assert record["intent"] == "rollback"
    assert record["rollout"]["after"] == {"canaryPercent": 50, "manualPause": True}
    assert status["appliedAt"] == record["timestamp"]
    uid = env.get("promotionapplies", "stop-1")["metadata"]["uid"]
    assert record["traceId"] == uid
    effective = env.status("fleetpolicies", POLICY)["effectiveRollout"]
    assert (effective["canaryPercent"], effective["manualPause"]) == (50, True)
    assert effective["lastApply"] == f"stop-1/{uid}"
    assert effective["governance"]["approvalRef"] == "CAB-77"
    assert _records(env) == [record]
    _eventually(lambda: "PromotionApplied" in env.events("stop-1"), what="the PromotionApplied Event")
    shown = env.cluster.kubectl("get", "fleetpolicies.ops.superloop.dev", POLICY, "-n", env.namespace)
    assert "true" in shown.stdout.splitlines()[1].split()  # the Paused printer column

    # 2. expand needs promote: the gates over this fleet's journal say hold
    env.apply(_promotion("grow-1", "expand", "grow-1", expandStep=25))
    _eventually(lambda: _phase(env, "grow-1") == "rejected", timeout=60, what="the expand refused")
    held = env.status("promotionapplies", "grow-1")
    assert held["decision"] == "hold"
    assert held["reasonCodes"][0] == "promotion_apply_decision_not_promote"
    assert "promotion_drill_state_missing" in held["reasonCodes"]
    refused = _cond(held, "Applied")
    assert (refused["status"], refused["reason"]) == ("False", "PromotionApplyDecisionNotPromote")
    assert refused["message"] == "intent expand requires promotion decision promote (found: hold)"
    assert "record" not in held
    state = files.read_json(env.fleet_dir(FLEET) / "promotion-state.json")
    assert isinstance(state, dict)
    assert state["traceId"] == env.get("promotionapplies", "grow-1")["metadata"]["uid"]
    assert env.status("fleetpolicies", POLICY)["effectiveRollout"] == effective
    assert len(_records(env)) == 1

    # 3. across an operator restart, the same idempotency key replays and moves nothing
    operator = env.procs[0]
    Env.stop_proc(operator)
    env.procs.remove(operator)
    env.start_operator()
    env.apply(_promotion("stop-2", "rollback", "incident-42"))
    _eventually(lambda: _phase(env, "stop-2") == "replayed", timeout=60, what="the replay")
    replayed = env.status("promotionapplies", "stop-2")
    assert replayed["record"] == {**record, "replayed": True}
    assert _cond(replayed, "Applied")["reason"] == "Replayed"
    assert len(_records(env)) == 1
    assert env.status("fleetpolicies", POLICY)["effectiveRollout"]["lastApply"] == f"stop-1/{uid}"
    assert env.status("promotionapplies", "stop-1")["record"] == record  # not evaluated again

    # 4. the spec is immutable: a changed PromotionApply is refused by the API server
    edited = env.apply(_promotion("stop-1", "expand", "incident-42"), check=False)
    assert edited.returncode != 0
    assert "spec is immutable" in edited.stderr
    assert env.get("promotionapplies", "stop-1")["spec"]["intent"] == "rollback"
