"""Issue 4 on a real control plane: the Loop and HandoffIntent controllers under the chart's RBAC.

The operator runs as a subprocess (``kopf run -m superloop_ops.main --namespace <ns>``) with a
kubeconfig holding a token of the chart's ServiceAccount, so every API call it makes goes
through the chart's RBAC and admission policies. Runtime artifacts come from the project's
simulator (ticking in a thread of this test process), sprite services are the project's server
as a subprocess, and PVC claims map to directories through the operator's settings.
Reconcile intervals are 2 s so the suite stays fast.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import real_runtime

from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import GROUP, chart_release, create_secret, grant_role
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import condition as _condition
from e2e.operator_harness import loop_eventually as _eventually
from superloop_ops.journal import files

SECRET = "svc-token"
TOKEN = "e2e-sprite-token"
DRIFT_INTERVAL = 10
INTERVAL = 2


def _local_loop(name: str, claim: str, loop_id: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name},
        "spec": {
            "loopId": loop_id,
            "transport": "local",
            "source": {"pvc": {"claimName": claim}},
            "reconcileIntervalSeconds": INTERVAL,
        },
    }
    body["spec"].update(spec)
    return body


def _grant_approvers(cluster: Cluster, namespace: str) -> None:
    rules = [
        {"apiGroups": [GROUP], "resources": ["handoffintents"], "verbs": ["get", "list", "create", "patch"]},
        {"apiGroups": [GROUP], "resources": ["loops"], "verbs": ["get", "list", "patch"]},
    ]
    grant_role(cluster, namespace, "approvers", rules, timeout=30.0)


@dataclass(frozen=True)
class Release:
    namespace: str
    service_account: str
    watched: tuple[str, str]  # (shared operator's namespace, crash test's namespace)
    peering: str = ""


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    """The chart installed once as a namespace-scoped release: its ServiceAccount, Roles in the
    two watched namespaces, and its admission policies."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"e2e-loopop-{suffix}"
    watched = (f"e2e-loops-{suffix}", f"e2e-crash-{suffix}")
    peering = f"loopop-{suffix}"
    with chart_release(
        cluster, f"loopop-{suffix}", namespace, watched,
        peering=peering, sets=[f"rbac.secretNames={{{SECRET}}}"],
    ) as account:  # fmt: skip
        yield Release(namespace=namespace, service_account=account, watched=watched, peering=peering)


def _make_env(cluster: Cluster, release: Release, namespace: str, tmp: Path) -> Env:
    sa = write_service_account_kubeconfig(
        cluster, release.namespace, release.service_account, tmp / "sa.kubeconfig"
    )
    env = Env(cluster=cluster, namespace=namespace, workdir=tmp, sa_kubeconfig=sa.path, sprite_token=TOKEN)
    env.mounts.mkdir(parents=True, exist_ok=True)
    create_secret(cluster, namespace, SECRET, token=TOKEN)
    _grant_approvers(cluster, namespace)
    return env


def _teardown(env: Env) -> None:
    env.close()


@pytest.fixture(scope="module")
def env(cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One namespace watched by one operator process for most tests of this module."""
    handle = _make_env(cluster, release, release.watched[0], tmp_path_factory.mktemp("loopop"))
    try:
        handle.start_operator()
        yield handle
    finally:
        _teardown(handle)


def test_local_loop_reaches_status_and_follows_lifecycle_with_events(env: Env) -> None:
    # claim "mapped-claim" -> <mounts>/mapped-1 through the settings; the runtime is stepped by hand
    sim = env.simulate("stopped", prefix="mapped", auto=False)
    sim.sim.run(3)
    env.apply(_local_loop("local-a", "mapped-claim", sim.loop_id))
    started = time.monotonic()

    def running() -> bool:
        status = env.status("local-a")
        return status.get("lifecycle") == "running" and _condition(status, "Ready").get("status") == "True"

    _eventually(running, timeout=2 * INTERVAL + 10, what="lifecycle running with Ready=True")
    assert time.monotonic() - started < 2 * INTERVAL + 10
    status = env.status("local-a")
    assert status["healthStatus"] == "healthy"
    assert _condition(status, "Healthy")["status"] == "True"
    assert (
        _condition(status, "Ready")["observedGeneration"]
        == env.get("loops", "local-a")["metadata"]["generation"]
    )
    sim.sim.run(20)  # the rest of the iteration, then loop_stop
    assert sim.event_names()[-1] == "loop_stop"
    _eventually(
        lambda: env.status("local-a").get("lifecycle") == "stopped", timeout=2 * INTERVAL + 10, what="stopped"
    )
    _eventually(lambda: env.events("local-a").count("LifecycleChanged") >= 2, what="LifecycleChanged Events")
    assert (env.ops_dir(sim.loop_id) / "telemetry" / "reconcile.jsonl").is_file()
    # the status snapshot of the runbook, through the kubectl plugin
    shown = env.plugin("status", "local-a")
    assert shown.returncode == 0, shown.stderr
    snapshot = json.loads(shown.stdout)
    assert snapshot["lifecycle"]["state"] == "stopped"
    assert snapshot["health"]["status"] in ("healthy", "degraded", "critical")
    assert snapshot["cursor"]["eventLineOffset"] == sim.line_count()


def test_stale_heartbeat_out_of_order_and_divergence_appear(env: Env) -> None:
    stale = env.simulate("stale_heartbeat")
    # The test steps this runtime itself, so the rotation lands between two known passes.
    drift = env.simulate("out_of_order", auto=False)
    diverged = env.simulate("contradiction")
    env.apply(
        _local_loop(
            "stale", stale.loop_id, stale.loop_id,
            thresholds={"degradedHeartbeatLagSeconds": 2, "criticalHeartbeatLagSeconds": 100000},
        )
    )  # fmt: skip
    for _ in range(4):  # ticks 2..5: no truncation yet (the scenario truncates on every 6th tick)
        drift.sim.step()
    # A long interval keeps each pass's verdict in status long enough to observe under load.
    env.apply(_local_loop("drift", drift.loop_id, drift.loop_id, reconcileIntervalSeconds=DRIFT_INTERVAL))
    env.apply(_local_loop("diverged", diverged.loop_id, diverged.loop_id))

    def heartbeat_stale() -> bool:
        status = env.status("stale")
        return "runtime_heartbeat_stale" in status.get("reasonCodes", []) and status.get("heartbeat", {}).get(
            "freshnessStatus"
        ) in ("degraded", "critical")

    _eventually(heartbeat_stale, timeout=40, what="runtime_heartbeat_stale")

    lines_before = drift.line_count()
    _eventually(
        lambda: env.status("drift").get("cursor", {}).get("eventLineOffset") == lines_before,
        timeout=40, what="the drift loop's first pass",
    )  # fmt: skip
    drift.sim.step()  # tick 6: the events file is rotated back to one line, then one event is appended
    assert drift.line_count() < lines_before

    # The cursor is now ahead of the file: the poll fails closed (never clamps) until the operator
    # replays from the start (runbook "Cursor Reset and Replay"); the replayed batch then shows the
    # sequence going backwards.
    _eventually(
        lambda: _condition(env.status("drift"), "Ready").get("reason") == "EventsUnavailable",
        timeout=DRIFT_INTERVAL * 3, what="a cursor ahead of the file",
    )  # fmt: skip
    assert "EventsUnavailable" in env.events("drift")
    replay = env.plugin("replay", "drift")
    assert replay.returncode == 0, replay.stderr

    def drifting() -> dict[str, Any] | None:
        status = env.status("drift")
        return status if status.get("sequence", {}).get("driftActive") is True else None

    seen = _eventually(drifting, timeout=30, every=0.2, what="ordering drift in status.sequence")
    violations = set(seen["sequence"]["violations"])
    assert {"event_sequence_regression", "snapshot_sequence_regression"} <= violations
    assert "ordering_drift_detected" in seen["reasonCodes"]
    _eventually(lambda: "OrderingDriftDetected" in env.events("drift"), what="OrderingDriftDetected Event")

    def is_diverged() -> bool:
        return _condition(env.status("diverged"), "Diverged").get("status") == "True"

    _eventually(is_diverged, timeout=60, what="Diverged=True")
    assert _condition(env.status("diverged"), "Diverged")["reason"] == "DivergenceDetected"
    _eventually(lambda: "DivergenceDetected" in env.events("diverged"), what="DivergenceDetected Event")


def test_replay_annotation_rebuilds_the_cursor_once(env: Env) -> None:
    sim = env.simulate("complete")
    env.apply(_local_loop("replayed", sim.loop_id, sim.loop_id))
    _eventually(lambda: env.status("replayed").get("lifecycle") == "complete", timeout=60, what="complete")
    reconcile_log = env.ops_dir(sim.loop_id) / "telemetry" / "reconcile.jsonl"
    result = env.plugin("replay", "replayed", context="alice")
    assert result.returncode == 0, result.stderr
    _eventually(lambda: env.status("replayed").get("replayHandled"), what="replayHandled in status")
    rows = files.read_jsonl(reconcile_log)
    replays = [row for row in rows if row.get("fromStart") is True]
    assert len(replays) == 1
    assert replays[0]["cursorOffsetBefore"] == 0
    assert replays[0]["cursorOffsetAfter"] == sim.line_count()
    time.sleep(2 * INTERVAL + 1)
    assert len([row for row in files.read_jsonl(reconcile_log) if row.get("fromStart") is True]) == 1
    assert "ReplayedFromStart" in env.events("replayed")


def test_sprite_service_loop_outage_escalates_and_recovers(env: Env) -> None:
    sim = env.simulate("running")
    service, port = env.start_service(sim.repo)
    env.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "sprite"},
            "spec": {
                "loopId": sim.loop_id,
                "transport": "sprite_service",
                "service": {
                    "baseUrl": f"http://127.0.0.1:{port}",
                    "tokenSecretRef": {"name": SECRET, "key": "token"},
                    "retryAttempts": 1,
                    "retryBackoffSeconds": 0,
                    "connectTimeoutSeconds": 1,
                    "maxTimeSeconds": 5,
                },
                "thresholds": {
                    "overrides": {"degradedTransportFailureStreak": 1, "criticalTransportFailureStreak": 3}
                },
                "reconcileIntervalSeconds": INTERVAL,
            },
        }
    )

    def ready() -> bool:
        status = env.status("sprite")
        return status.get("lifecycle") == "running" and _condition(status, "Ready").get("status") == "True"

    _eventually(ready, timeout=2 * INTERVAL + 10, what="sprite loop running and Ready")
    os.killpg(service.pid, signal.SIGTERM)
    service.wait(timeout=10)

    def unreachable() -> bool:
        status = env.status("sprite")
        return "transport_unreachable" in status.get("reasonCodes", [])

    _eventually(unreachable, timeout=30, what="transport_unreachable")
    assert _condition(env.status("sprite"), "Ready")["reason"] == "ServiceRequestFailed"
    _eventually(lambda: env.status("sprite").get("healthStatus") == "critical", timeout=30, what="critical")
    assert env.status("sprite")["transportHealth"]["failureStreak"] >= 3
    env.start_service(sim.repo, port=port)

    def recovered() -> bool:
        status = env.status("sprite")
        return (
            _condition(status, "Ready").get("status") == "True"
            and "transport_unreachable" not in status.get("reasonCodes", [])
            and status["transportHealth"]["failureStreak"] == 0
        )

    _eventually(recovered, timeout=30, what="recovery after the service is back")
    sim.stop()
    # no lost events: the ingest cursor catches up with every line the runtime wrote
    total = sim.line_count()
    _eventually(
        lambda: env.status("sprite")["cursor"]["eventLineOffset"] == total, timeout=20, what="cursor catch-up"
    )
    ingested = sum(int(r.get("eventsIngested") or 0) for r in files.read_jsonl(
        env.ops_dir(sim.loop_id) / "telemetry" / "reconcile.jsonl"
    ))  # fmt: skip
    assert ingested == total


def _intent(name: str, loop: str, intent: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "HandoffIntent",
        "metadata": {"name": name},
        "spec": {"loopRef": {"name": loop}, "intent": intent, "note": "e2e"},
    }


def _phase(env: Env, name: str) -> str | None:
    return (env.get("handoffintents", name).get("status") or {}).get("phase")


def test_manual_intents_wait_for_approval_and_execute_once(env: Env) -> None:
    sim = env.simulate("awaiting_approval")
    env.apply(_local_loop("gate", sim.loop_id, sim.loop_id))
    _eventually(
        lambda: env.status("gate").get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting"
    )
    env.apply(_intent("approve-gate", "gate", "approve"))
    _eventually(lambda: _phase(env, "approve-gate") == "pending_operator_confirmation", what="pending")
    time.sleep(2 * INTERVAL + 1)
    assert _phase(env, "approve-gate") == "pending_operator_confirmation"
    assert "approval_consumed" not in sim.event_names()
    # bob cannot approve in alice's name (the chart's admission policy)
    forged = env.cluster.kubectl(
        "annotate", f"handoffintents.{GROUP}", "approve-gate", "-n", env.namespace,
        "ops.superloop.dev/approved=true", "ops.superloop.dev/approved-by=alice", context="bob", check=False,
    )  # fmt: skip
    assert forged.returncode != 0
    approved = env.plugin("approve", "approve-gate", "--note", "ship it", context="alice")
    assert approved.returncode == 0, approved.stderr
    _eventually(lambda: _phase(env, "approve-gate") == "executed", timeout=60, what="executed")
    intent = env.get("handoffintents", "approve-gate")
    assert intent["status"]["approvedBy"] == env.cluster.username("alice")
    assert _condition(intent["status"], "Executed")["status"] == "True"
    assert _condition(intent["status"], "Approved")["status"] == "True"
    assert sim.event_names().count("approval_consumed") == 1
    _eventually(lambda: "loop_complete" in sim.event_names(), what="loop_complete in the runtime")
    _eventually(lambda: env.status("gate").get("lifecycle") == "complete", timeout=30, what="complete")
    rows = files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")
    assert [(r["intent"], r["status"]) for r in rows] == [("approve", "confirmed")]
    assert rows[0]["requestedBy"] == env.cluster.username("alice")
    assert {"Executing", "Executed"} <= set(env.events("approve-gate"))
    listing = env.plugin("intents")
    assert "approve-gate" in listing.stdout
    assert "executed" in listing.stdout
    # a reject over the sprite path on another loop: the simulator shows the effect
    other = env.simulate("awaiting_approval")
    _, port = env.start_service(other.repo)
    env.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "gate-sprite"},
            "spec": {
                "loopId": other.loop_id,
                "transport": "sprite_service",
                "service": {
                    "baseUrl": f"http://127.0.0.1:{port}",
                    "tokenSecretRef": {"name": SECRET, "key": "token"},
                    "maxTimeSeconds": 60,
                },
                "reconcileIntervalSeconds": INTERVAL,
            },
        }
    )
    _eventually(
        lambda: env.status("gate-sprite").get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting"
    )
    env.apply(_intent("reject-gate", "gate-sprite", "reject"))
    assert env.plugin("approve", "reject-gate", context="alice").returncode == 0
    _eventually(
        lambda: _phase(env, "reject-gate") in ("executed", "executed_unconfirmed"), timeout=60, what="done"
    )
    _eventually(
        lambda: "approval_rejected" in other.event_names(), what="the runtime to consume the rejection"
    )
    time.sleep(2 * INTERVAL)
    assert other.event_names().count("approval_rejected") == 1
    assert other.event_names().count("approval_decision") == 1


def test_metrics_endpoint_passes_promtool(env: Env) -> None:
    sim = env.simulate("running")
    env.apply(_local_loop("metered", sim.loop_id, sim.loop_id))
    port = env.operators[0].metrics_port

    def scrape() -> bytes | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = bytes(response.read())
        return body if b'loop="metered"' in body else None

    body = _eventually(scrape, timeout=2 * INTERVAL + 15, what="metrics of the loop")
    text = body.decode()
    assert (
        f'superloop_ops_loop_health_status{{loop="metered",namespace="{env.namespace}",status="healthy"}}'
        in text
    )
    labels = f'loop="metered",namespace="{env.namespace}"'
    assert f'superloop_ops_loop_lifecycle_state{{{labels},state="running"}} 1.0' in text
    assert "superloop_ops_reconcile_duration_seconds_bucket{" in text
    assert "trace" not in text.lower().replace("superloop_ops", "")
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: scripts/install-tools.sh installs Debian's prometheus"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_sigkill_between_executing_and_outcome_is_ambiguous_and_never_rerun(
    cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    env = _make_env(cluster, release, release.watched[1], tmp_path)
    try:
        sim = env.simulate("awaiting_approval")
        paused = env.start_operator(SUPERLOOP_TEST_PAUSE_AFTER_EXECUTING_SECONDS="60")
        env.apply(_local_loop("crash", sim.loop_id, sim.loop_id))
        _eventually(
            lambda: env.status("crash").get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting"
        )
        env.apply(_intent("approve-crash", "crash", "approve"))
        assert env.plugin("approve", "approve-crash", context="alice").returncode == 0
        _eventually(lambda: _phase(env, "approve-crash") == "executing", timeout=30, what="executing")
        key = env.get("handoffintents", "approve-crash")["status"]["idempotencyKey"]
        paused.kill()  # SIGKILL while paused between executing and the side effect
        env.start_operator()
        _eventually(
            lambda: _phase(env, "approve-crash") == "execution_ambiguous", timeout=30, what="ambiguous"
        )
        status = env.get("handoffintents", "approve-crash")["status"]
        assert status["idempotencyKey"] == key
        assert status["reasonCodes"] == ["control_ambiguous"]
        time.sleep(2 * INTERVAL + 1)
        assert _phase(env, "approve-crash") == "execution_ambiguous"
        assert "approval_consumed" not in sim.event_names()  # never executed
        assert not (env.ops_dir(sim.loop_id) / "intents.jsonl").exists()
        handoff = files.read_jsonl(env.ops_dir(sim.loop_id) / "telemetry" / "handoff-intents.jsonl")
        assert [row["phase"] for row in handoff] == ["executing", "execution_ambiguous"]
        assert handoff[-1].get("recovered") is True
        assert "ExecutionAmbiguous" in env.events("approve-crash")
    finally:
        _teardown(env)


# --- issue 11: verdicts on artifacts recorded from the real Superloop runtime ------------------------


def _recorded_loop(env: Env, scenario: str, ended_seconds_ago: float) -> str:
    """A recorded real-runtime scenario, moved so the runtime's last write was that long ago."""
    loop_id = f"rr-{scenario.replace('_', '-')}-{uuid.uuid4().hex[:4]}"
    end = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ended_seconds_ago)
    real_runtime.install(scenario, env.mounts / loop_id, loop_id=loop_id, end_at=end)
    env.apply(_local_loop(loop_id, loop_id, loop_id))  # Loop name, claim and loop id alike
    return loop_id


def _settled(env: Env, name: str, lifecycle: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = env.status(name)
        return status if status.get("lifecycle") == lifecycle and status.get("health") else None

    settled: dict[str, Any] = _eventually(done, timeout=2 * INTERVAL + 20, what=f"{name} {lifecycle}")
    return settled


def _escalation_categories(env: Env, loop_id: str) -> list[str]:
    path = env.ops_dir(loop_id) / "escalations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["category"] for line in path.read_text().splitlines() if line.strip()]


def _scrape(env: Env, name: str) -> str:
    port = env.operators[0].metrics_port

    def scrape() -> str | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = bytes(response.read()).decode()
        return text if f'superloop_ops_loop_role_calls{{loop="{name}"' in text else None

    scraped: str = _eventually(scrape, timeout=2 * INTERVAL + 15, what=f"usage metrics of {name}")
    return scraped


def test_a_loop_completed_an_hour_ago_is_healthy_pages_no_one_and_shows_its_cost(env: Env) -> None:
    name = _recorded_loop(env, "complete", 3600)
    status = _settled(env, name, "complete")
    assert (status["healthStatus"], status["reasonCodes"]) == ("healthy", [])
    assert status["health"]["metrics"]["runOutcome"] == "complete"
    assert status["health"]["metrics"]["ingestLagSeconds"] >= 3600
    time.sleep(2 * INTERVAL)  # a few more passes: still quiet
    assert env.status(name)["healthStatus"] == "healthy"
    assert _escalation_categories(env, name) == []
    assert not {"HealthCritical", "HealthDegraded"} & set(env.events(name))
    text = _scrape(env, name)
    labels = f'loop="{name}",namespace="{env.namespace}"'
    assert f'superloop_ops_loop_run_outcome{{{labels},outcome="complete"}} 1.0' in text
    for role in ("planner", "implementer", "tester", "reviewer"):
        assert f'superloop_ops_loop_role_calls{{{labels},role="{role}"}} 1.0' in text
        assert f'superloop_ops_loop_cost_usd{{{labels},role="{role}"}}' in text
    assert f'superloop_ops_loop_tokens{{kind="input",{labels},role="implementer"}} 5400.0' in text


def test_an_approval_waiting_twenty_minutes_reminds_and_does_not_page(env: Env) -> None:
    name = _recorded_loop(env, "approval_waiting", 20 * 60)
    status = _settled(env, name, "awaiting_approval")
    assert (status["healthStatus"], status["reasonCodes"]) == ("degraded", ["approval_waiting"])
    _eventually(lambda: "health_degraded" in _escalation_categories(env, name), what="a reminder")
    assert "health_critical" not in _escalation_categories(env, name)
    assert "HealthCritical" not in env.events(name)


def test_a_runner_failure_is_seen_on_the_next_pass(env: Env) -> None:
    name = _recorded_loop(env, "runner_failure", 5)
    status = _settled(env, name, "running")  # what the reference stops at
    assert (status["healthStatus"], status["reasonCodes"]) == ("critical", ["run_dead"])
    assert status["health"]["metrics"]["runOutcome"] == "dead"
    _eventually(lambda: "RunDead" in env.events(name), what="a RunDead Event")


@pytest.mark.parametrize(
    ("scenario", "lifecycle", "outcome", "code", "event"),
    [
        ("cancelled", "unknown", "cancelled", "run_cancelled", "RunCancelled"),
        ("role_timeout", "failed", "timed_out", "run_timed_out", "RunTimedOut"),
        ("max_iterations", "stopped", "max_iterations", "run_max_iterations", "RunMaxIterations"),
    ],
)
def test_cancel_timeout_and_max_iterations_show_as_such(
    env: Env, scenario: str, lifecycle: str, outcome: str, code: str, event: str
) -> None:
    name = _recorded_loop(env, scenario, 3600)
    status = _settled(env, name, lifecycle)
    assert status["health"]["metrics"]["runOutcome"] == outcome
    assert code in status["health"]["reasonCodes"]
    assert "ingest_stale" not in status["health"]["reasonCodes"]
    _eventually(lambda: event in env.events(name), what=f"a {event} Event")
    assert "health_critical" not in _escalation_categories(env, name)


# --- issue 12: one scheduler, no finalizer ----------------------------------------------------

KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _metrics(env: Env) -> str:
    port = env.operators[0].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return bytes(response.read()).decode()


def test_loops_carry_no_finalizer_and_an_old_one_is_removed(env: Env) -> None:
    """No handler needs to run before a Loop goes (no daemon to stop), so kopf adds no finalizer;
    a Loop carrying the one an older version added loses it on the operator's next event of it,
    and deletes at once. The scheduler keeps passing every Loop, and a deleted Loop's gauges go."""
    fresh_sim, old_sim = env.simulate("running", prefix="nofin-a"), env.simulate("running", prefix="nofin-b")
    fresh, old = "nofin-fresh", "nofin-old"
    env.apply(_local_loop(fresh, fresh_sim.loop_id, fresh_sim.loop_id))
    stale = _local_loop(old, old_sim.loop_id, old_sim.loop_id)
    stale["metadata"]["finalizers"] = [KOPF_FINALIZER]
    env.apply(stale)
    for name in (fresh, old):
        _eventually(lambda name=name: env.status(name).get("lifecycle"), timeout=30, what=f"{name} passed")
    _eventually(
        lambda: not env.get("loops", old)["metadata"].get("finalizers"), timeout=30, what="old finalizer gone"
    )
    assert not env.get("loops", fresh)["metadata"].get("finalizers")

    def passes(name: str) -> float | None:
        labels = f'loop="{name}",namespace="{env.namespace}"'
        prefix = f"superloop_ops_loop_last_pass_timestamp_seconds{{{labels}}} "
        rows = [line for line in _metrics(env).splitlines() if line.startswith(prefix)]
        return float(rows[0].split()[-1]) if rows else None

    first = _eventually(lambda: passes(fresh), timeout=30, what="a pass gauge")
    _eventually(lambda: (passes(fresh) or 0) > first, timeout=3 * INTERVAL + 10, what="a periodic pass")
    env.cluster.kubectl("delete", f"loops.{GROUP}", old, "-n", env.namespace, "--wait=true", timeout=30)
    _eventually(lambda: passes(old) is None, timeout=30, what="the deleted Loop's gauges dropped")
    env.cluster.kubectl("delete", f"loops.{GROUP}", fresh, "-n", env.namespace, "--wait=true", timeout=30)
