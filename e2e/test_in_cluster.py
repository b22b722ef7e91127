"""The operator as users run it: the chart's Deployment, from the image the Dockerfile builds, on
the e2e cluster's node (``e2e/harness/node.py``; ``pytest --node``, on in ``make test``).

``helm install --wait`` must return with the operator Pod Ready through the chart's own startup
and readiness probes; the Pod runs as the image's non-root user on a read-only root filesystem
and talks to the apiserver with its projected ServiceAccount token (no kubeconfig anywhere).
Loop repositories are real PersistentVolumeClaims: hostPath PersistentVolumes on the node,
pre-bound to the claims the chart mounts (``loopClaims``), and the journal is the chart's own
state claim on another. The runtime is the project's simulator ticking on the host into those
directories (files handed to the Pod's user, 10001); the control path runs ``superloop-ops
simulate`` inside the Pod, as a real runtime CLI would run there.

The node has no kube-proxy, so the Pod is given the apiserver's address through
``KUBERNETES_SERVICE_HOST/PORT`` (``extraEnv``); everything else is the chart as shipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.in_cluster import POD_USER, bound_claim, chart_args, host_path_volume, volume_list
from e2e.harness.node import Node
from e2e.operator_harness import CHART, GROUP, OperatorEnv, SimThread, condition, grant_role, loop_eventually
from superloop_ops.journal import files

pytestmark = pytest.mark.node

RELEASE = "ops"
DEPLOYMENT = f"{RELEASE}-superloop-ops"
STATE_CLAIM = f"{DEPLOYMENT}-state"
INTERVAL = 2
CLAIMS = {"repo-gate": ("awaiting_approval", "gate"), "repo-run": ("running", "run")}


@dataclass
class Deployed:
    """The release, its namespace, the simulated runtimes behind each claim, and its timings."""

    cluster: Cluster
    node: Node
    env: OperatorEnv
    sims: dict[str, SimThread]
    state_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.env.namespace

    def pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", "app.kubernetes.io/instance=ops", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]

    def ready_pod(self) -> dict[str, Any]:
        (pod,) = self.pods()
        assert condition(pod["status"], "Ready").get("status") == "True", pod["status"]
        return pod

    def exec(self, pod: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("exec", "-n", self.namespace, pod, "--", *argv, check=False)

    def ops_dir(self, loop_id: str) -> Path:
        return self.state_dir / self.namespace / ".superloop" / "ops-manager" / loop_id


def _install(deployed: Deployed) -> None:
    """``helm install --wait``: returns once the Deployment's Pod is Ready (or fails the module)."""
    env = {
        "SUPERLOOP_RUNTIME_COMMAND": "superloop-ops simulate",
        "SUPERLOOP_CONTROL_CONFIRM_TIMEOUT_SECONDS": "20",
        "SUPERLOOP_CONTROL_CONFIRM_INTERVAL_SECONDS": "1",
    }
    claims = {claim: f"/loops/{claim}" for claim in CLAIMS}
    began = time.monotonic()
    deployed.cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", deployed.namespace, "--wait", "--timeout", "300s",
        *chart_args(deployed.node, deployed.namespace, claims=claims, env=env),
        # the chart's probes, on a faster clock so the module stays short
        "--set", "probes.startup.periodSeconds=2", "--set", "probes.readiness.periodSeconds=3",
        timeout=330,
    )  # fmt: skip
    deployed.timings["helm install --wait"] = time.monotonic() - began


def _provision(cluster: Cluster, node: Node, namespace: str) -> tuple[dict[str, SimThread], Path]:
    """Runtimes behind each loop claim and the journal's directory, as PVs bound to their claims."""
    root = node.volumes / namespace
    state_dir = root / "state"
    state_dir.mkdir(parents=True)
    os.chown(state_dir, POD_USER, POD_USER)
    sims = {
        claim: SimThread(root, scenario, prefix, owner=POD_USER)
        for claim, (scenario, prefix) in CLAIMS.items()
    }
    volumes = [host_path_volume(f"{namespace}-state", state_dir, namespace, STATE_CLAIM)]
    for claim, sim in sims.items():
        volumes.append(host_path_volume(f"{namespace}-{claim}", sim.repo, namespace, claim))
    claims = [bound_claim(claim, f"{namespace}-{claim}") for claim in sims]
    cluster.kubectl("apply", "-f", "-", input=volume_list(volumes))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=volume_list(claims))
    return sims, state_dir


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    namespace = f"e2e-pod-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    sims: dict[str, SimThread] = {}
    try:
        sims, state_dir = _provision(cluster, node, namespace)
        env = OperatorEnv(cluster, namespace, tmp_path_factory.mktemp("in-cluster"), sa_kubeconfig=Path())
        handle = Deployed(cluster=cluster, node=node, env=env, sims=sims, state_dir=state_dir)
        _install(handle)
        rules = [
            {
                "apiGroups": [GROUP],
                "resources": ["handoffintents"],
                "verbs": ["get", "list", "create", "patch"],
            },
            {"apiGroups": [GROUP], "resources": ["loops"], "verbs": ["get", "list"]},
        ]
        grant_role(cluster, namespace, "approvers", rules, timeout=30.0)
        yield handle
    finally:
        for sim in sims.values():
            sim.stop()
        cluster.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", "-l", f"superloop-e2e={namespace}", "--wait=false", check=False)


def _loop(name: str, claim: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name},
        "spec": {
            "loopId": CLAIMS[claim][1] + "-1",
            "transport": "local",
            "source": {"pvc": {"claimName": claim}},
            "reconcileIntervalSeconds": INTERVAL,
        },
    }


def _status(deployed: Deployed, name: str) -> dict[str, Any]:
    return dict(deployed.env.get("loops", name).get("status") or {})


def _phase(deployed: Deployed, name: str) -> str | None:
    return (deployed.env.get("handoffintents", name).get("status") or {}).get("phase")


def test_helm_install_wait_brings_the_operator_pod_ready_as_deployed(deployed: Deployed) -> None:
    pod = deployed.ready_pod()
    name = pod["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == deployed.node.images.image
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    (state,) = pod["status"]["containerStatuses"]
    assert state["ready"] is True
    assert state["restartCount"] == 0
    assert pod["spec"]["nodeName"] == "superloop-node"
    assert pod["status"]["podIP"] != deployed.node.address  # the CNI bridge, not the host network
    # non-root, read-only root filesystem, no capabilities
    assert deployed.exec(name, "id", "-u").stdout.strip() == str(POD_USER)
    denied = deployed.exec(name, "touch", "/written-by-the-test")
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    capabilities = deployed.exec(name, "grep", "CapEff", "/proc/1/status").stdout.split()
    assert capabilities == ["CapEff:", "0000000000000000"]
    # the projected ServiceAccount token is the only credential in the Pod
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert deployed.exec(name, "test", "-s", f"{token_dir}/token").returncode == 0
    environment = deployed.exec(name, "env").stdout
    assert "KUBECONFIG" not in environment
    assert deployed.cluster.kubectl("get", "pvc", STATE_CLAIM, "-n", deployed.namespace, "-o",
                                    "jsonpath={.status.phase}").stdout == "Bound"  # fmt: skip


def test_a_loop_on_a_real_claim_is_reconciled_by_the_pod(deployed: Deployed) -> None:
    deployed.env.apply(_loop("run", "repo-run"))

    def running() -> bool:
        status = _status(deployed, "run")
        return status.get("lifecycle") == "running" and condition(status, "Ready").get("status") == "True"

    loop_eventually(running, timeout=90, what="the in-cluster operator to reconcile the Loop")
    journal = deployed.ops_dir("run-1") / "telemetry" / "reconcile.jsonl"
    assert files.read_jsonl(journal), "the journal lands on the chart's state claim"
    assert journal.stat().st_uid == POD_USER


def test_metrics_answer_through_the_pod_and_pass_promtool(deployed: Deployed) -> None:
    deployed.env.apply(_loop("run", "repo-run"))
    name = deployed.ready_pod()["metadata"]["name"]
    path = f"/api/v1/namespaces/{deployed.namespace}/pods/{name}:9090/proxy/metrics"

    def scrape() -> str | None:
        text = deployed.cluster.kubectl("get", "--raw", path).stdout
        return text if 'loop="run"' in text else None

    text = loop_eventually(scrape, timeout=60, what="the Pod's metrics of the loop")
    labels = f'loop="run",namespace="{deployed.namespace}"'
    assert f'superloop_ops_loop_lifecycle_state{{{labels},state="running"}} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: scripts/install-tools.sh installs Debian's prometheus"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_approved_handoff_executes_once_in_the_pod(deployed: Deployed) -> None:
    gate = deployed.sims["repo-gate"]
    deployed.env.apply(_loop("gate", "repo-gate"))
    loop_eventually(
        lambda: _status(deployed, "gate").get("lifecycle") == "awaiting_approval", timeout=90, what="awaiting"
    )
    deployed.env.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "HandoffIntent",
            "metadata": {"name": "approve-gate"},
            "spec": {"loopRef": {"name": "gate"}, "intent": "approve", "note": "in-cluster e2e"},
        }
    )
    loop_eventually(
        lambda: _phase(deployed, "approve-gate") == "pending_operator_confirmation", what="pending"
    )
    approved = deployed.env.plugin("approve", "approve-gate", "--note", "ship it", context="alice")
    assert approved.returncode == 0, approved.stderr
    loop_eventually(lambda: _phase(deployed, "approve-gate") == "executed", timeout=60, what="executed")
    assert deployed.env.get("handoffintents", "approve-gate")["status"]["approvedBy"] == "alice"
    assert gate.event_names().count("approval_consumed") == 1
    rows = files.read_jsonl(deployed.ops_dir(gate.loop_id) / "intents.jsonl")
    assert [(row["intent"], row["status"]) for row in rows] == [("approve", "confirmed")]


def test_a_deleted_pod_is_replaced_and_resumes_without_duplicates(deployed: Deployed) -> None:
    gate, run = deployed.sims["repo-gate"], deployed.sims["repo-run"]
    old = deployed.ready_pod()["metadata"]
    deployed.cluster.kubectl("delete", "pod", old["name"], "-n", deployed.namespace, "--wait=false")
    began = time.monotonic()

    def replaced() -> bool:
        pods = deployed.pods()
        return (
            len(pods) == 1
            and pods[0]["metadata"]["uid"] != old["uid"]
            and condition(pods[0]["status"], "Ready").get("status") == "True"
        )

    loop_eventually(replaced, timeout=180, what="a new operator Pod, Ready")
    deployed.timings["pod replaced and Ready"] = time.monotonic() - began
    run.stop()  # the runtime's last line is now fixed: the new Pod's cursor must reach it exactly
    total = run.line_count()
    loop_eventually(
        lambda: _status(deployed, "run")["cursor"]["eventLineOffset"] == total,
        timeout=60,
        what="cursor catch-up",
    )
    ingested = sum(
        int(row.get("eventsIngested") or 0)
        for row in files.read_jsonl(deployed.ops_dir(run.loop_id) / "telemetry" / "reconcile.jsonl")
    )
    assert ingested == total  # across both Pods: every event once, none twice
    # the executed intent stays executed: nothing re-ran in the new Pod
    time.sleep(2 * INTERVAL + 1)
    assert _phase(deployed, "approve-gate") == "executed"
    assert gate.event_names().count("approval_consumed") == 1
    assert len(files.read_jsonl(deployed.ops_dir(gate.loop_id) / "intents.jsonl")) == 1
    print(f"in-cluster timings: {deployed.timings}")
