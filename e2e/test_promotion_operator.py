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

A second Fleet, whose FleetPolicy names a drill evidence ConfigMap: an ``expand`` is held on
missing drills; a person (``alice``, with her own RBAC on that ConfigMap: the operator may only
read it) records the three drills with ``kubectl superloop drill record``; the gates then pass
``drill_recency``, and with 20 clean autonomous executions seeded into the fleet's handoff
telemetry (the outcome_reliability sample) a second ``expand`` is applied and moves the canary.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import API, GROUP, PLUGIN, chart_release, grant_role, wait_for_rbac
from e2e.operator_harness import FleetEnv as Env
from e2e.operator_harness import condition as _cond
from e2e.operator_harness import fleet_eventually as _eventually
from e2e.test_fleet_operator import _fleet, _local, _policy
from superloop_ops.journal import files

FLEET = "promo"
POLICY = "promo-policy"


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The chart for one watched namespace and one operator under its ServiceAccount."""
    release_ns = f"e2e-promorel-{uuid.uuid4().hex[:6]}"
    namespace = f"e2e-promo-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("promoop")
    with chart_release(
        cluster, "promoop", release_ns, [namespace], peering=f"promoop-{uuid.uuid4().hex[:6]}"
    ) as account:
        handle: Env | None = None
        try:
            sa = write_service_account_kubeconfig(cluster, release_ns, account, workdir / "sa.kubeconfig")
            handle = Env(cluster=cluster, namespace=namespace, workdir=workdir, sa_kubeconfig=sa.path)
            handle.mounts.mkdir(parents=True, exist_ok=True)
            status_patch = ("patch", f"promotionapplies.{GROUP}", "--subresource=status", "-n", namespace)
            wait_for_rbac(cluster, sa.path, [status_patch])
            handle.start_operator()
            yield handle
        finally:
            if handle is not None:
                handle.close()


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
    # the next fleet pass shows that decision on the Fleet (status and the Promotion printer column)
    _eventually(
        lambda: (env.status("fleets", FLEET).get("promotion") or {}).get("traceId") == state["traceId"],
        timeout=60,
        what="the decision on the Fleet",
    )
    fleet_status = env.status("fleets", FLEET)
    assert fleet_status["promotionDecision"] == "hold"
    assert fleet_status["promotion"]["evaluatedAt"] == state["generatedAt"]
    listed = env.cluster.kubectl("get", "fleets.ops.superloop.dev", FLEET, "-n", env.namespace)
    assert "hold" in listed.stdout.splitlines()[1].split()

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


DRILL_FLEET = "drilled"
DRILL_POLICY = "drilled-policy"
DRILL_CM = "drilled-evidence"
DRILLS = ("kill_switch", "sprite_service_outage", "ambiguous_retry_guard")


def _grant_drill_recorder(env: Env) -> None:
    """``alice`` may read FleetPolicies and create/patch the evidence ConfigMap, nothing more."""
    rules = [
        {"apiGroups": [GROUP], "resources": ["fleetpolicies"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [DRILL_CM],
            "verbs": ["get", "patch"],
        },
    ]
    grant_role(
        env.cluster, env.namespace, "drill-recorders", rules,
        timeout=40.0, can_i=("create", "configmaps"), what="RBAC for the drill recorder",
    )  # fmt: skip


def _record_drill(env: Env, drill: str, status: str) -> subprocess.CompletedProcess[str]:
    argv = [*PLUGIN, f"--kubeconfig={env.cluster.kubeconfig}", *env.cluster.identity_args("alice")]
    argv += ["-n", env.namespace, "drill", "record", "--fleet-policy", DRILL_POLICY]
    argv += ["--drill", drill, "--status", status]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _gates_state(env: Env) -> dict[str, Any]:
    state = files.read_json(env.fleet_dir(DRILL_FLEET) / "promotion-state.json")
    assert isinstance(state, dict)
    return state


def _expand(name: str) -> dict[str, Any]:
    body = _promotion(name, "expand", name, expandStep=25)
    body["spec"]["fleetRef"] = {"name": DRILL_FLEET}
    return body


def test_drills_recorded_with_the_plugin_pass_the_drill_gate_and_an_expand_moves_the_canary(env: Env) -> None:
    sim = env.simulate("running", "drilled")
    policy = _policy(DRILL_POLICY, categories=["health_critical"], rollout={"canaryPercent": 25})
    policy["spec"]["promotion"] = {"drillEvidenceConfigMapRef": {"name": DRILL_CM}}
    env.apply(policy)
    env.apply(_fleet(DRILL_FLEET, DRILL_POLICY, [_local(sim)]))
    _eventually(
        lambda: env.status("fleets", DRILL_FLEET).get("healthStatus") == "success",
        timeout=90,
        what="a pass of the drilled fleet",
    )
    source = f"configmap://{env.namespace}/{DRILL_CM}/promotion.v1.json"

    # 1. no ConfigMap yet: the expand is held on missing drill evidence, read from the ConfigMap
    env.apply(_expand("drilled-grow-0"))
    _eventually(lambda: _phase(env, "drilled-grow-0") == "rejected", timeout=60, what="the first expand")
    assert "promotion_drill_state_missing" in env.status("promotionapplies", "drilled-grow-0")["reasonCodes"]
    state = _gates_state(env)
    assert state["source"]["drillStateFile"] == source
    assert state["gates"]["drillRecency"]["reasons"] == ["promotion_drill_state_missing"]

    # 2. alice records the three drills (a failed run first, then its passing re-run)
    _grant_drill_recorder(env)
    first = _record_drill(env, "sprite_service_outage", "fail")
    assert first.returncode == 0, first.stderr
    for drill in DRILLS:
        done = _record_drill(env, drill, "pass")
        assert done.returncode == 0, done.stderr
        assert f"drill {drill} recorded as pass" in done.stdout
    stored = env.cluster.kubectl("get", "configmap", DRILL_CM, "-n", env.namespace, "-o", "json")
    evidence = json.loads(json.loads(stored.stdout)["data"]["promotion.v1.json"])
    assert [(d["id"], d["status"]) for d in evidence["drills"]] == [(d, "pass") for d in DRILLS]
    # bob has no rights on the ConfigMap, and the plugin says so
    denied = subprocess.run(
        [*PLUGIN, f"--kubeconfig={env.cluster.kubeconfig}", *env.cluster.identity_args("bob"),
         "-n", env.namespace, "drill", "record", "--fleet-policy", DRILL_POLICY,
         "--drill", "kill_switch", "--status", "fail"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr.lower(), denied.stderr  # kubectl's own words, as kubectl prints them

    # 3. the outcome_reliability gate's sample: 20 clean autonomous executions in the fleet journal
    row = {
        "category": "fleet_handoff_execute",
        "execution": {
            "mode": "autonomous", "requestedIntentCount": 1, "executedCount": 1,
            "ambiguousCount": 0, "failedCount": 0,
        },
    }  # fmt: skip
    files.append_jsonl(env.fleet_dir(DRILL_FLEET) / "telemetry" / "handoff.jsonl", [row] * 20)

    # 4. the gates now promote: the expand applies and moves the canary in FleetPolicy status
    env.apply(_expand("drilled-grow-1"))
    _eventually(lambda: _phase(env, "drilled-grow-1") in ("applied", "rejected"), timeout=60, what="expand")
    state = _gates_state(env)
    assert state["gates"]["drillRecency"] == {
        "status": "pass",
        "reasons": [],
        "requiredDrills": list(DRILLS),
        "drills": evidence["drills"],
    }
    grown = env.status("promotionapplies", "drilled-grow-1")
    assert state["summary"]["failedGates"] == [], state["summary"]
    assert grown["phase"] == "applied", grown
    assert grown["decision"] == "promote"
    assert grown["record"]["rollout"]["after"] == {"canaryPercent": 50, "manualPause": False}
    effective = env.status("fleetpolicies", DRILL_POLICY)["effectiveRollout"]
    assert (effective["canaryPercent"], effective["manualPause"]) == (50, False)
    uid = env.get("promotionapplies", "drilled-grow-1")["metadata"]["uid"]
    assert effective["lastApply"] == f"drilled-grow-1/{uid}"
