"""Issue 6 on a real control plane: Fleet and FleetPolicy controllers and the three incident drills.

One operator process (``kopf run -m superloop_ops.main``) watches one namespace with a token of
the chart's ServiceAccount, so the Fleet controller's creates, deletes and status writes go
through the chart's RBAC and admission policies. Seven loops mix ``local`` (simulator repos
mapped as PVC directories) and ``sprite_service`` (the project's sprite service as a
subprocess in front of a simulator repo), in three Fleets, one per drill:

1. kill switch: autonomous execution is halted; a person completes the intent by annotation;
2. sprite service outage: failed autonomous executions trigger auto-pause, candidates fall
   back to reason-coded manual intents, and the fleet recovers when the services return;
3. ambiguous outcome: the retry guard holds (executions counted at the sprite service) until a
   person approves.

Intervals are 1-2 s so the module stays well under five minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import controlplane
from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import (
    API,
    GROUP,
    PLUGIN,
    chart_release,
    create_secret,
    grant_role,
    wait_for_rbac,
)
from e2e.operator_harness import FleetEnv as Env
from e2e.operator_harness import SimThread as Sim
from e2e.operator_harness import condition as _cond
from e2e.operator_harness import fleet_eventually as _eventually
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names
from superloop_ops.journal import files

SECRET = "fleet-svc-token"
TOKEN = "e2e-fleet-token"


def _local(sim: Sim) -> dict[str, Any]:
    return {"loopId": sim.loop_id, "transport": "local", "source": {"pvc": {"claimName": sim.loop_id}}}


def _sprite(sim: Sim, port: int, retry_attempts: int = 1) -> dict[str, Any]:
    return {
        "loopId": sim.loop_id,
        "transport": "sprite_service",
        "sprite": {"id": f"sprite-{sim.loop_id}"},
        "service": {
            "baseUrl": f"http://127.0.0.1:{port}",
            "tokenSecretRef": {"name": SECRET, "key": "token"},
            "retryAttempts": retry_attempts,
            "retryBackoffSeconds": 0,
            "connectTimeoutSeconds": 1,
            "maxTimeSeconds": 8,
        },
    }


def _fleet(name: str, policy: str, loops: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Fleet",
        "metadata": {"name": name},
        "spec": {
            "policyRef": {"name": policy},
            "loops": loops,
            "maxParallel": 2,
            "deterministicOrder": True,
            "reconcileIntervalSeconds": 2,
        },
    }


def _governance() -> dict[str, str]:
    now = time.time()
    return {
        "actor": "ops-user",
        "approvalRef": "CAB-42",
        "rationale": "e2e drill",
        "changedAt": format_ts(_utc(now - 86400)),
        "reviewBy": format_ts(_utc(now + 30 * 86400)),
    }


def _utc(seconds: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def _policy(name: str, *, categories: list[str], **autonomous: Any) -> dict[str, Any]:
    safety = {
        "maxActionsPerRun": 3,
        "maxActionsPerLoop": 3,
        "cooldownSeconds": 0,
        **autonomous.pop("safety", {}),
    }
    return {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": "guarded_auto",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "autonomous": {
                "allow": {"categories": categories, "intents": ["cancel"]},
                "safety": safety,
                "governance": _governance(),
                **autonomous,
            },
        },
    }


def _grant_alice(cluster: Cluster, namespace: str) -> None:
    rules = [{"apiGroups": [GROUP], "resources": ["handoffintents"], "verbs": ["get", "list", "patch"]}]
    grant_role(cluster, namespace, "fleet-approvers", rules, timeout=40.0)


def _wait_for_operator_rbac(cluster: Cluster, kubeconfig: Path, namespace: str) -> None:
    """The chart's RBAC as the operator's ServiceAccount sees it (bindings propagate asynchronously)."""
    checks = (
        ("list", "namespaces"),
        ("create", f"loops.{GROUP}", "-n", namespace),
        ("delete", f"handoffintents.{GROUP}", "-n", namespace),
    )
    wait_for_rbac(cluster, kubeconfig, checks)


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The chart for one watched namespace (Role, admission policies) and one operator watching it."""
    release_ns = f"e2e-fleetrel-{uuid.uuid4().hex[:6]}"
    namespace = f"e2e-fleet-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("fleetop")
    with chart_release(
        cluster, "fleetop", release_ns, [namespace],
        peering=f"fleetop-{uuid.uuid4().hex[:6]}", sets=[f"rbac.secretNames={{{SECRET}}}"],
    ) as account:  # fmt: skip
        handle: Env | None = None
        try:
            sa = write_service_account_kubeconfig(cluster, release_ns, account, workdir / "sa.kubeconfig")
            handle = Env(
                cluster=cluster,
                namespace=namespace,
                workdir=workdir,
                sa_kubeconfig=sa.path,
                sprite_token=TOKEN,
            )
            handle.mounts.mkdir(parents=True, exist_ok=True)
            create_secret(cluster, namespace, SECRET, token=TOKEN)
            _grant_alice(cluster, namespace)
            _wait_for_operator_rbac(cluster, sa.path, namespace)
            handle.start_operator()
            yield handle
        finally:
            if handle is not None:
                handle.close()


def test_guarded_auto_without_governance_is_rejected_by_apply(env: Env) -> None:
    policy = _policy("no-governance", categories=["reconcile_failed"])
    del policy["spec"]["autonomous"]["governance"]
    result = env.apply(policy, check=False)
    assert result.returncode != 0
    assert "spec.autonomous.governance is required when spec.mode is guarded_auto" in result.stderr
    partial = _policy("half-governance", categories=["reconcile_failed"])
    del partial["spec"]["autonomous"]["governance"]["approvalRef"]
    result = env.apply(partial, check=False)
    assert result.returncode != 0
    assert "approvalRef is required when spec.mode is guarded_auto" in result.stderr


def _intent_name(fleet: str, intent_id: str) -> str:
    return owned_names.compute_intent_name(fleet, intent_id)


def _handoff_rows(env: Env, fleet: str) -> list[Any]:
    return files.read_jsonl(env.fleet_dir(fleet) / "telemetry" / "handoff.jsonl")


def test_drill_kill_switch_halts_autonomy_and_a_person_completes_it(env: Env) -> None:
    stale = env.simulate("stale_heartbeat", "ks-stale")
    running = env.simulate("running", "ks-run")
    remote = env.simulate("running", "ks-remote")
    port = controlplane.find_free_port()
    env.start_service(remote.repo, port)
    env.apply(_policy("ks-policy", categories=["health_critical"], safety={"killSwitch": True}))
    env.apply(_fleet("ks", "ks-policy", [_local(stale), _local(running), _sprite(remote, port)]))
    owned = [owned_names.compute_loop_name("ks", s.loop_id) for s in (stale, running, remote)]
    _eventually(lambda: all(env.exists("loops", n) for n in owned), what="owned Loops")
    assert env.get("loops", owned[2])["metadata"]["ownerReferences"][0]["kind"] == "Fleet"
    intent = _intent_name("ks", f"{stale.loop_id}:health_critical:cancel")
    _eventually(lambda: env.exists("handoffintents", intent), timeout=60, what="the proposed HandoffIntent")
    _eventually(
        lambda: env.status("fleets", "ks")["handoff"]["intents"], what="the intents in the Fleet status"
    )
    status = env.status("fleets", "ks")
    assert status["loopCount"] == 3
    assert "fleet_health_critical" in status["reasonCodes"]
    assert {row["transport"] for row in status["state"]["loops"]} == {"local", "sprite_service"}
    policy = env.status("fleetpolicies", "ks-policy")
    assert "fleet_auto_kill_switch_enabled" in policy["reasonCodes"]
    assert policy["governancePosture"] == "active"
    # several passes later: still nothing executed autonomously
    time.sleep(5)
    assert stale.alive
    assert env.status("handoffintents", intent).get("phase") == "pending_operator_confirmation"
    listed = next(i for i in env.status("fleets", "ks")["handoff"]["intents"] if i["handoffIntent"] == intent)
    assert "autonomous_kill_switch_enabled" in listed["reasons"]
    assert not listed["eligible"]
    # a person completes it through the approval annotation
    env.approve(intent)
    _eventually(
        lambda: env.status("handoffintents", intent).get("phase") == "executed", timeout=60, what="executed"
    )
    done = env.status("handoffintents", intent)
    assert done["mode"] == "manual"
    assert done["approvedBy"] == env.cluster.username("alice")
    assert not stale.alive

    def manual_recorded() -> bool:
        return any(
            row["category"] == "fleet_handoff_execute" and row["execution"]["mode"] == "manual"
            for row in _handoff_rows(env, "ks")
        )

    _eventually(manual_recorded, what="the manual execution in the fleet journal")
    assert not any(
        row["category"] == "fleet_handoff_execute" and row["execution"]["mode"] == "autonomous"
        for row in _handoff_rows(env, "ks")
    )
    assert "IntentProposed" in env.events("ks")
    # The cancel ended the run: a cancelled run is not judged stale (issue 11), so the loop is no
    # longer critical, its candidate leaves the plan and the executed intent with it (the fleet
    # journal keeps the record, above).
    _eventually(
        lambda: all(i["handoffIntent"] != intent for i in env.status("fleets", "ks")["handoff"]["intents"]),
        timeout=60,
        what="the executed intent leaves the plan",
    )
    # the kubectl plugin's fleet view
    argv = [*PLUGIN, f"--kubeconfig={env.cluster.kubeconfig}", *env.cluster.identity_args("admin")]
    shown = subprocess.run(
        [*argv, "-n", env.namespace, "fleet", "ks"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["loopCount"] == 3
    assert view["policy"]["killSwitch"] is True
    assert all(i["handoffIntent"] != intent for i in view["intents"])


def test_drill_sprite_outage_auto_pauses_with_manual_fallback_and_recovers(env: Env) -> None:
    remotes = [env.simulate("running", f"out-{i}") for i in range(2)]
    local = env.simulate("running", "out-local")
    ports = [controlplane.find_free_port() for _ in remotes]
    services = [env.start_service(sim.repo, port) for sim, port in zip(remotes, ports, strict=True)]
    autopause = {
        "minSampleSize": 2,
        "lookbackExecutions": 3,
        "failureRateThreshold": 0.5,
        "ambiguityRateThreshold": 0.9,
    }
    env.apply(_policy("out-policy", categories=["reconcile_failed"], rollout={"autoPause": autopause}))
    loops = [_sprite(sim, port) for sim, port in zip(remotes, ports, strict=True)] + [_local(local)]
    env.apply(_fleet("out", "out-policy", loops))
    _eventually(
        lambda: env.status("fleets", "out").get("healthStatus") == "success",
        timeout=60,
        what="a healthy fleet",
    )
    for service in services:
        Env.stop_proc(service)

    def outage_seen() -> bool:
        status = env.status("fleets", "out")
        failed = {r["loopId"]: r for r in status["state"]["loops"] if r["status"] == "failed"}
        return set(failed) == {s.loop_id for s in remotes} and all(
            r["reasonCode"] == "transport_unreachable" for r in failed.values()
        )

    _eventually(outage_seen, timeout=60, what="transport_unreachable on both sprite loops")
    assert env.status("fleets", "out")["healthStatus"] == "partial_failure"

    def paused() -> bool:
        return (
            env.status("fleetpolicies", "out-policy").get("pause", {}).get("auto", {}).get("active") is True
        )

    _eventually(paused, timeout=60, what="auto-pause")
    policy = env.status("fleetpolicies", "out-policy")
    assert policy["pause"]["auto"]["reasons"] == ["autonomous_autopause_failure_spike"]
    assert {"fleet_auto_candidates_paused", "fleet_auto_candidates_autopause_triggered"} <= set(
        policy["reasonCodes"]
    )
    autonomous_rows = [
        r for r in _handoff_rows(env, "out")
        if r["category"] == "fleet_handoff_execute" and r["execution"]["mode"] == "autonomous"
    ]  # fmt: skip
    assert sum(r["execution"]["failedCount"] for r in autonomous_rows) >= 2
    # manual fallback: every planned intent is pending for a person, with its reasons
    intents = env.status("fleets", "out")["handoff"]["intents"]
    assert intents
    assert all(not i["eligible"] for i in intents)
    assert all("autonomous_rollout_paused_auto" in i["reasons"] for i in intents)
    assert "AutoPauseActivated" in env.events("out")
    executions_before = len(autonomous_rows)
    time.sleep(5)
    assert len([
        r for r in _handoff_rows(env, "out")
        if r["category"] == "fleet_handoff_execute" and r["execution"]["mode"] == "autonomous"
    ]) == executions_before  # fmt: skip
    # recovery: the services come back, the loops and the fleet rollup recover
    for sim, port in zip(remotes, ports, strict=True):
        env.start_service(sim.repo, port)
    _eventually(
        lambda: env.status("fleets", "out").get("healthStatus") == "success",
        timeout=60,
        what="fleet recovery",
    )
    status = env.status("fleets", "out")
    assert status["failedLoopCount"] == 0
    assert not {"fleet_partial_failure", "fleet_reconcile_failed"} & set(status["reasonCodes"])
    assert _cond(status, "Degraded")["reason"] != "FleetPartialFailure"
    assert all(sim.alive for sim in remotes)  # nothing was cancelled during the outage


def test_drill_ambiguous_outcome_is_retry_guarded_until_a_person_approves(env: Env) -> None:
    sim = env.simulate("stale_heartbeat", "amb")
    port = controlplane.find_free_port()
    env.start_service(sim.repo, port, runtime="true")  # accepts every intent, never stops: ambiguous
    env.apply(_policy("amb-policy", categories=["health_critical"]))
    # a second attempt with the same idempotency key reads the service's stored (ambiguous)
    # answer instead of the transient 409, exactly as a client retry would
    env.apply(_fleet("amb", "amb-policy", [_sprite(sim, port, retry_attempts=2)]))
    intent = _intent_name("amb", f"{sim.loop_id}:health_critical:cancel")

    def ambiguous() -> bool:
        status = env.status("handoffintents", intent) if env.exists("handoffintents", intent) else {}
        return status.get("phase") == "execution_ambiguous"

    _eventually(ambiguous, timeout=90, what="an ambiguous autonomous execution")
    status = env.status("handoffintents", intent)
    assert status["mode"] == "autonomous"
    assert status["reasonCodes"] == ["control_ambiguous"]
    assert sim.service_executions() == 1
    time.sleep(8)  # four fleet passes: no retry storm
    assert sim.service_executions() == 1
    handoff = env.status("fleets", "amb")["handoff"]
    assert "fleet_handoff_retry_guarded" in handoff["reasonCodes"]
    guarded = next(i for i in handoff["intents"] if i["intentId"].endswith(":health_critical:cancel"))
    assert "autonomous_retry_guard_ambiguous" in guarded["reasons"]
    assert handoff["retryGuards"][guarded["intentId"]]["reason"] == "autonomous_retry_guard_ambiguous"
    # a person approves: one more execution, as a manual retry with a new key
    env.approve(intent)

    def retried() -> bool:  # the attempt's outcome, not the hand-over just before it (same phase)
        current = env.status("handoffintents", intent)
        return (
            current.get("mode") == "manual"
            and str(current.get("idempotencyKey")).endswith("-attempt2")
            and current.get("phase") in ("execution_ambiguous", "executed")
        )

    _eventually(retried, timeout=60, what="the manual retry")
    current = env.status("handoffintents", intent)
    assert current["idempotencyKey"].endswith("-attempt2")
    assert current["result"]["previousAttempts"][0]["phase"] == "execution_ambiguous"
    assert sim.service_executions() == 2
    time.sleep(6)
    assert sim.service_executions() == 2


def _refusing_loop(name: str, port: int, label: str) -> dict[str, Any]:
    """A Loop whose sprite service refuses connections: every pass fails fast (a critical candidate)."""
    return {
        "apiVersion": API,
        "kind": "Loop",
        "metadata": {"name": name, "labels": {"e2e-paced": label}},
        "spec": {
            "loopId": name,
            "transport": "sprite_service",
            "service": {
                "baseUrl": f"http://127.0.0.1:{port}",
                "retryAttempts": 1,
                "retryBackoffSeconds": 0,
                "connectTimeoutSeconds": 1,
                "maxTimeSeconds": 2,
            },
            "reconcileIntervalSeconds": 600,
        },
    }


def _owned_intents(env: Env, fleet: str) -> list[dict[str, Any]]:
    selector = f"{owned_names.FLEET_LABEL}={owned_names.compute_dns_name(fleet)}"
    out = env.cluster.kubectl(
        "get", f"handoffintents.{GROUP}", "-n", env.namespace, "-l", selector, "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def _pacing_after(env: Env, fleet: str, generation: int) -> dict[str, Any]:
    """The Fleet's ``handoff.pacing`` once a full pass of ``generation`` wrote its status."""

    def written() -> dict[str, Any] | None:
        status = env.get("fleets", fleet).get("status") or {}
        pacing = (status.get("handoff") or {}).get("pacing")
        return pacing if status.get("observedGeneration") == generation and pacing else None

    try:
        result: dict[str, Any] = _eventually(written, timeout=120, what=f"a full pass of {generation}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the Fleet's status: {env.get('fleets', fleet).get('status')}") from exc
    return result


def test_a_new_policy_over_thirty_loops_proposes_at_most_five_intents_a_pass_and_all_once(env: Env) -> None:
    """Issue 12: FleetPolicy ``handoff.maxIntentsPerPass: 5`` over 30 failing Loops (the default
    300 s dedupe window keeps the candidates out of the later plans): each pass creates at most 5
    HandoffIntents, the deferred ones follow in the next passes, and every planned intent ends up
    with exactly one object. Passes are driven one at a time by spec changes (the periodic
    interval is an hour)."""
    port = controlplane.find_free_port()  # nothing listens: connection refused
    label = uuid.uuid4().hex[:6]
    env.apply({"apiVersion": API, "kind": "FleetPolicy", "metadata": {"name": "paced"},
               "spec": {"mode": "advisory", "handoff": {"maxIntentsPerPass": 5}}})  # fmt: skip
    loops = [_refusing_loop(f"paced-{i:02d}", port, label) for i in range(30)]
    env.apply({"apiVersion": "v1", "kind": "List", "items": loops})
    _eventually(
        lambda: all(_cond(env.get("loops", loop["metadata"]["name"]).get("status") or {}, "Ready")
                    for loop in loops),
        timeout=180, what="every Loop's first pass (a Fleet created before waits one interval)",
    )  # fmt: skip
    fleet = {
        "apiVersion": API,
        "kind": "Fleet",
        "metadata": {"name": "paced"},
        "spec": {
            "policyRef": {"name": "paced"},
            "selector": {"matchLabels": {"e2e-paced": label}},
            "reconcileIntervalSeconds": 3600,
        },
    }
    env.apply(fleet)
    generation = int(env.get("fleets", "paced")["metadata"]["generation"])
    pacing = _pacing_after(env, "paced", generation)
    planned = pacing["proposedThisPass"] + pacing["deferredCount"]
    assert planned >= 30  # one intent per critical candidate, at least one per Loop
    counts = [len(_owned_intents(env, "paced"))]
    assert counts == [5]
    for interval in range(3599, 3599 - 2 * planned, -1):
        if pacing["deferredCount"] == 0:
            break
        fleet["spec"]["reconcileIntervalSeconds"] = interval  # a spec change: exactly one pass
        env.apply(fleet)
        generation += 1
        pacing = _pacing_after(env, "paced", generation)
        assert pacing["proposedThisPass"] <= 5
        counts.append(len(_owned_intents(env, "paced")))
        assert 0 < counts[-1] - counts[-2] <= 5, counts
    intents = _owned_intents(env, "paced")
    ids = [i["metadata"]["annotations"][owned_names.INTENT_ID_ANNOTATION] for i in intents]
    assert len(ids) == len(set(ids)) == planned, counts  # all of them, none twice
    assert {i["spec"]["loopRef"]["name"] for i in intents} == {loop["metadata"]["name"] for loop in loops}
    assert len(counts) == -(-planned // 5)  # ceil(planned / 5) passes
    _eventually(
        lambda: {"IntentsDeferred", "IntentsDeferralCleared"} <= set(env.events("paced")),
        what="the Events of the deferral and of its end",
    )
