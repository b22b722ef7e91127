"""The foundation on a real API server: chart, CRD validation, approval attribution, operator RBAC.

Everything here runs against the session's cluster (our loopback control plane or
``$KUBECONFIG``). The operator is started as a local process authenticated as the chart's
ServiceAccount, so the releases here have no replica (``replicaCount=0``): on a cluster with a
node two operators would act at once. The operator in its Pod is e2e/test_in_cluster.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import controlplane
from e2e.harness.cluster import Cluster
from e2e.harness.identities import service_account_username, write_service_account_kubeconfig

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "superloop-ops"
SAMPLES = REPO / "config" / "samples"
INVALID = REPO / "tests" / "data" / "crd-cases" / "invalid"
GROUP = "ops.superloop.dev"
KINDS = ("Loop", "Fleet", "FleetPolicy", "HandoffIntent", "PromotionApply")
PLURALS = ("loops", "fleets", "fleetpolicies", "handoffintents", "promotionapplies")
APPROVED = "ops.superloop.dev/approved"
APPROVED_BY = "ops.superloop.dev/approved-by"
GIVEN_SECRET = "loop-service-token"
GIVEN_CONFIG_MAP = "loop-alert-sinks"
# An HTTP 403 in kopf's --verbose request log, or kopf's own wording for it.
_FORBIDDEN = re.compile(r'HTTP/1\.1" 403 |403 Forbidden|APIForbiddenError|forbidden:')


def _docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def _sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.yaml"))


def _invalid_files() -> list[Path]:
    return sorted(INVALID.glob("*.yaml"))


def _samples(kind: str) -> list[dict[str, Any]]:
    return [doc for path in _sample_files() for doc in _docs(path.read_text()) if doc.get("kind") == kind]


def _sample_of(kind: str, **spec_match: object) -> dict[str, Any]:
    for doc in _samples(kind):
        if all(doc.get("spec", {}).get(key) == value for key, value in spec_match.items()):
            return doc
    pytest.fail(f"no {kind} sample with {spec_match} in {SAMPLES}")


def _given_secrets() -> list[str]:
    """The Secrets the test release hands the operator: ours, and those the Loop samples name.

    Other tests leave sample Loops behind in their namespaces; the operator under test sees
    them all, and must be allowed to read the tokens they reference (then 404, never 403).
    """
    names = {GIVEN_SECRET}
    for loop in _samples("Loop"):
        ref = (loop.get("spec", {}).get("service") or {}).get("tokenSecretRef") or {}
        if ref.get("name"):
            names.add(str(ref["name"]))
        alert_ref = (loop.get("spec", {}).get("alerts") or {}).get("secretRef") or {}
        if alert_ref.get("name"):
            names.add(str(alert_ref["name"]))
    return sorted(names)


def _given_config_maps() -> list[str]:
    """The ConfigMaps the test release lets the operator read: ours, and the samples' sink catalogs."""
    names = {GIVEN_CONFIG_MAP}
    for loop in _samples("Loop"):
        ref = (loop.get("spec", {}).get("alerts") or {}).get("sinksConfigMapRef") or {}
        if ref.get("name"):
            names.add(str(ref["name"]))
    return sorted(names)


def _eventually(check: Callable[[], bool], *, timeout: float = 20.0, what: str) -> None:
    """Admission policies and RBAC reach the apiserver's caches a moment after they are created."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for: {what}")


# -- chart, offline ----------------------------------------------------------------------------


def test_helm_lint_passes_for_default_and_alternative_values(cluster: Cluster) -> None:
    cluster.helm("lint", "--strict", str(CHART))
    cluster.helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "watch.allNamespaces=false,watch.namespaces={team-a,team-b}",
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        "--set",
        "rbac.secretNames={token-a}",
    )


def test_values_schema_rejects_bad_values(cluster: Cluster) -> None:
    bad = cluster.helm("template", "x", str(CHART), "--set", "replicaCount=-1", check=False)
    assert bad.returncode != 0
    assert "replicaCount" in bad.stderr
    unknown = cluster.helm("template", "x", str(CHART), "--set", "nosuchkey=1", check=False)
    assert unknown.returncode != 0


def _render(cluster: Cluster, *sets: str, namespace: str = "ops") -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", namespace]
    for item in sets:
        args += ["--set", item]
    return _docs(cluster.helm(*args).stdout)


def _one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, (
        f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def test_helm_template_renders_a_hardened_single_writer_deployment(cluster: Cluster) -> None:
    docs = _render(cluster)
    deployment = _one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["kopf"]
    args = container["args"]
    assert args[:3] == ["run", "-m", "superloop_ops.main"]
    assert "--all-namespaces" in args
    assert "--peering=superloop-ops" in args
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    # Startup and readiness probes on the same endpoint; the startup probe gives a slow start
    # (kopf opens /healthz only after the startup handlers) minutes, not seconds.
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 300
    assert "successThreshold" not in startup
    assert container["readinessProbe"]["successThreshold"] == 1
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["liveness"] == 8080
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SUPERLOOP_STATE_DIR"]["value"] == "/var/lib/superloop/state"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["state"] == "/var/lib/superloop/state"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "rel-superloop-ops-state"
    assert _one(docs, "PersistentVolumeClaim", "-state")["spec"]["resources"]["requests"]["storage"] == "1Gi"
    config = _one(docs, "ConfigMap", "-config")["data"]
    assert json.loads(config["ops-manager-threshold-profiles.v1.json"])["schemaVersion"] == "v1"
    assert _one(docs, "Service", "-metrics")["spec"]["ports"][0]["port"] == 9090
    assert _one(docs, "ClusterKopfPeering")["metadata"]["name"] == "superloop-ops"
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]


def test_helm_template_shards(cluster: Cluster) -> None:
    """Issue 12: shards=3 renders one Deployment, state claim and peering per shard, each pod with
    SUPERLOOP_SHARD=i/3 and the shard in its selector; one shard keeps the unsuffixed names."""
    docs = _render(cluster, "shards=3", "watch.allNamespaces=false", "watch.namespaces={team-a}")
    deployments = sorted((d for d in docs if d["kind"] == "Deployment"), key=lambda d: d["metadata"]["name"])
    assert [d["metadata"]["name"] for d in deployments] == [f"rel-superloop-ops-shard-{i}" for i in range(3)]
    for index, deployment in enumerate(deployments):
        assert deployment["spec"]["selector"]["matchLabels"]["ops.superloop.dev/shard"] == str(index)
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["SUPERLOOP_SHARD"] == f"{index}/3"
        assert env["SUPERLOOP_PEERING"] == f"superloop-ops-shard-{index}"
        assert f"--peering=superloop-ops-shard-{index}" in pod["containers"][0]["args"]
        (state,) = [v for v in pod["volumes"] if v["name"] == "state"]
        assert state["persistentVolumeClaim"]["claimName"] == f"rel-superloop-ops-state-shard-{index}"
    claims = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claims == [f"rel-superloop-ops-state-shard-{i}" for i in range(3)]
    peerings = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "KopfPeering")
    assert peerings == [f"superloop-ops-shard-{i}" for i in range(3)]
    single = _render(cluster)
    (deployment,) = [d for d in single if d["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == "rel-superloop-ops"
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SUPERLOOP_SHARD" not in env
    assert "SUPERLOOP_LOOP_PASS_PROCESSES" not in env
    assert cluster.helm("template", "x", str(CHART), "--set", "shards=0", check=False).returncode != 0


def test_helm_template_pass_processes(cluster: Cluster) -> None:
    """Issue 12, item 3: passProcesses=n sets SUPERLOOP_LOOP_PASS_PROCESSES on every shard's pod;
    a negative count fails the schema."""
    docs = _render(cluster, "shards=2", "passProcesses=2")
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {e["name"]: e.get("value") for e in container["env"]}["SUPERLOOP_LOOP_PASS_PROCESSES"] == "2"
    refused = cluster.helm("template", "x", str(CHART), "--set", "passProcesses=-1", check=False)
    assert refused.returncode != 0


def test_helm_template_probe_values(cluster: Cluster) -> None:
    """Each probe's timings come from values; a probe can be dropped; bad timings fail the schema."""
    docs = _render(
        cluster,
        "probes.startup.failureThreshold=60,probes.startup.periodSeconds=5",
        "probes.readiness.enabled=false",
        "probes.liveness.initialDelaySeconds=15",
        "liveness.port=8181",
    )
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["startupProbe"]["failureThreshold"] == 60
    assert container["startupProbe"]["periodSeconds"] == 5
    assert "readinessProbe" not in container
    assert container["livenessProbe"]["initialDelaySeconds"] == 15
    assert container["livenessProbe"]["httpGet"]["port"] == "liveness"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["liveness"] == 8181
    assert "--liveness=http://0.0.0.0:8181/healthz" in container["args"]
    for bad in (
        "probes.startup.failureThreshold=0",
        "probes.readiness.periodSeconds=-1",
        "probes.liveness.successThreshold=2",  # the kubelet requires 1 for liveness and startup
        "probes.readiness.httpGet=x",
    ):
        result = cluster.helm("template", "x", str(CHART), "--set", bad, check=False)
        assert result.returncode != 0, f"{bad} was accepted"
        assert "probes" in result.stderr, result.stderr


def test_helm_template_optional_pieces_and_loop_claims(cluster: Cluster) -> None:
    docs = _render(
        cluster,
        "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        "loopClaims.ws-a=/loops/a,loopClaims.ws-b=/loops/b",
        "watch.allNamespaces=false,watch.namespaces={team-a,team-b}",
    )
    assert _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    assert _one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # the claims are PVCs of the release namespace: only Loops there reach them
    assert env["SUPERLOOP_PVC_DIRS"] == "ops/ws-a=/loops/a,ops/ws-b=/loops/b"
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(container["args"])
    assert "--all-namespaces" not in container["args"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/loops/a", "/loops/b"}
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering") == [
        "team-a",
        "team-b",
    ]


# -- chart, installed --------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    service_account: str
    peering: str

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.service_account)


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    """The chart installed once for this module (its admission policies are cluster-wide)."""
    namespace = f"e2e-chart-{uuid.uuid4().hex[:8]}"
    peering = f"superloop-ops-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    name = "ops"
    try:
        cluster.helm(
            "install", name, str(CHART), "--namespace", namespace,
            # the module runs its own operator processes: no operator Pod on a cluster with nodes
            "--set", "replicaCount=0", "--set", f"peering.name={peering}",
            "--set", f"rbac.secretNames={{{','.join(_given_secrets())}}}",
            "--set", f"rbac.configMapNames={{{','.join(_given_config_maps())}}}",
        )  # fmt: skip
        yield Release(
            name=name, namespace=namespace, service_account=f"{name}-superloop-ops", peering=peering
        )
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_chart_installs_every_object(cluster: Cluster, release: Release) -> None:
    ns, full = release.namespace, f"{release.name}-superloop-ops"
    cluster_scoped = f"{ns}-{full}"
    for kind, name in [
        ("deployment", full),
        ("serviceaccount", full),
        ("service", f"{full}-metrics"),
        ("configmap", f"{full}-config"),
        ("persistentvolumeclaim", f"{full}-state"),
    ]:
        cluster.kubectl("get", kind, name, "-n", ns)
    for kind, name in [
        ("clusterrole", f"{cluster_scoped}-framework"),
        ("clusterrole", f"{cluster_scoped}-operator"),
        ("clusterrolebinding", f"{cluster_scoped}-operator"),
        ("validatingadmissionpolicy", f"{cluster_scoped}-approval-attribution"),
        ("validatingadmissionpolicybinding", f"{cluster_scoped}-approval-attribution"),
        ("validatingadmissionpolicy", f"{cluster_scoped}-operator-spec-readonly"),
        ("clusterkopfpeerings.kopf.dev", release.peering),
        ("crd", "kopfpeerings.kopf.dev"),
    ]:
        cluster.kubectl("get", kind, name)
    for plural in PLURALS:
        cluster.kubectl("get", "crd", f"{plural}.{GROUP}")
    status = json.loads(cluster.helm("status", release.name, "--namespace", ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"


# -- CRD validation ----------------------------------------------------------------------------


def test_a_sample_exists_for_every_kind() -> None:
    kinds = {doc.get("kind") for path in _sample_files() for doc in _docs(path.read_text())}
    assert set(KINDS) <= kinds, f"missing samples for {sorted(set(KINDS) - kinds)}"


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_valid_sample_is_accepted(cluster: Cluster, namespace: str, path: Path) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    for doc in _docs(path.read_text()):
        cluster.kubectl("get", f"{doc['kind'].lower()}.{GROUP}", doc["metadata"]["name"], "-n", namespace)


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    prefix = "# expect:"
    assert first.startswith(prefix), f"{path.name}: first line must be '# expect: <message substring>'"
    expected = first[len(prefix) :].strip()
    assert expected, f"{path.name}: empty expectation"
    return expected


def test_enough_invalid_cases() -> None:
    assert len(_invalid_files()) >= 15


@pytest.mark.parametrize("path", _invalid_files(), ids=lambda p: p.stem)
def test_invalid_object_is_rejected_with_its_message(cluster: Cluster, namespace: str, path: Path) -> None:
    expected = _expectation(path)
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert expected in result.stderr, f"{path.name}: {expected!r} not in:\n{result.stderr}"


# -- approval attribution (ValidatingAdmissionPolicy) -------------------------------------------


def _grant_handoff_editing(cluster: Cluster, namespace: str) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "handoff-approvers", "namespace": namespace},
        "rules": [
            {"apiGroups": [GROUP], "resources": ["handoffintents"], "verbs": ["get", "create", "patch"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "handoff-approvers", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "handoff-approvers"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": cluster.username(u)}
            for u in ("alice", "bob")
        ],
    }
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )
    for user in ("alice", "bob"):
        _eventually(_can_patch_intents(cluster, namespace, user), what=f"RBAC for {user}")


def _can_patch_intents(cluster: Cluster, namespace: str, user: str) -> Callable[[], bool]:
    def check() -> bool:
        answer = cluster.kubectl(
            "auth", "can-i", "patch", f"handoffintents.{GROUP}", "-n", namespace, context=user, check=False
        )
        return answer.stdout.strip() == "yes"

    return check


def _intent(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    doc = _sample_of("HandoffIntent")
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": doc["apiVersion"], "kind": "HandoffIntent", "metadata": meta, "spec": doc["spec"]}


def _annotate(
    cluster: Cluster, namespace: str, name: str, user: str, approved_by: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "annotate", "--overwrite", f"handoffintent.{GROUP}/{name}", "-n", namespace,
        f"{APPROVED}=true", f"{APPROVED_BY}={cluster.username(approved_by)}",
        context=user, check=False,
    )  # fmt: skip


def test_approval_must_name_the_requesting_user(cluster: Cluster, release: Release, namespace: str) -> None:
    _grant_handoff_editing(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_intent("cancel-1")))

    # bob approving in alice's name is refused; the policy may need a moment to load.
    def bob_for_alice_is_denied() -> bool:
        result = _annotate(cluster, namespace, "cancel-1", "bob", "alice")
        return result.returncode != 0 and "approved-by must equal the requesting user" in result.stderr

    _eventually(bob_for_alice_is_denied, what="the approval attribution policy to deny bob")
    denied = _annotate(cluster, namespace, "cancel-1", "alice", "bob")
    assert denied.returncode != 0
    assert f"requesting user {cluster.username('alice')}" in denied.stderr

    accepted = _annotate(cluster, namespace, "cancel-1", "alice", "alice")
    assert accepted.returncode == 0, accepted.stderr
    annotations = json.loads(
        cluster.kubectl("get", f"handoffintent.{GROUP}", "cancel-1", "-n", namespace, "-o", "json").stdout
    )["metadata"]["annotations"]
    assert annotations[APPROVED_BY] == cluster.username("alice")

    # Once approved, updates that leave the approval alone pass for anyone allowed to patch.
    relabel = cluster.kubectl(
        "label", f"handoffintent.{GROUP}/cancel-1", "-n", namespace, "team=x", context="bob", check=False
    )
    assert relabel.returncode == 0, relabel.stderr

    # CREATE with an approval: bob may approve as bob, never as alice; no approver at all is refused.
    own = _intent("cancel-2", {APPROVED: "true", APPROVED_BY: cluster.username("bob")})
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(own), context="bob")
    forged = _intent("cancel-3", {APPROVED: "true", APPROVED_BY: cluster.username("alice")})
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(forged), context="bob", check=False
    )
    assert result.returncode != 0
    assert "approved-by must equal the requesting user" in result.stderr
    anonymous = _intent("cancel-4", {APPROVED: "true"})
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(anonymous), context="alice", check=False
    )
    assert result.returncode != 0
    assert "(got nothing)" in result.stderr


# -- the operator's ServiceAccount ---------------------------------------------------------------


def _can_i(cluster: Cluster, release: Release, namespace: str, verb: str, resource: str) -> bool:
    answer = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={release.username}", check=False
    ).stdout.strip()
    return answer == "yes"


ALLOWED = [
    *[(verb, f"{plural}.{GROUP}") for plural in PLURALS for verb in ("get", "list", "watch", "patch")],
    *[("patch", f"{plural}.{GROUP}/status") for plural in PLURALS],
    # The Fleet controller materialises Loops and proposes HandoffIntents, and deletes the ones
    # it replaced or withdrew.
    *[(verb, f"{plural}.{GROUP}") for plural in ("loops", "handoffintents") for verb in ("create", "delete")],
    ("create", "events"),
    ("create", "events.events.k8s.io"),
    ("get", f"secrets/{GIVEN_SECRET}"),
    ("get", f"configmaps/{GIVEN_CONFIG_MAP}"),  # an alert sink catalog a Loop references
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
DENIED = [
    ("list", "namespaces"),  # kopf lists namespaces only when watching a list of them
    ("delete", "secrets"),
    ("list", "secrets"),
    ("get", "secrets/some-other-secret"),
    ("create", "secrets"),
    ("get", "configmaps/some-other-configmap"),
    ("list", "configmaps"),
    ("update", "configmaps"),
    # drill evidence ConfigMaps are written by people (kubectl superloop drill record); the operator reads
    ("create", "configmaps"),
    ("patch", f"configmaps/{GIVEN_CONFIG_MAP}"),
    *[("update", f"{plural}.{GROUP}") for plural in PLURALS],
    *[("delete", f"{plural}.{GROUP}") for plural in ("fleets", "fleetpolicies", "promotionapplies")],
    *[("deletecollection", f"{plural}.{GROUP}") for plural in PLURALS],
    ("create", f"fleets.{GROUP}"),
    ("create", f"promotionapplies.{GROUP}"),
    ("create", "pods"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "clusterkopfpeerings.kopf.dev/someone-elses"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
]


def test_service_account_rbac_is_least_privilege(cluster: Cluster, release: Release, namespace: str) -> None:
    def rbac_loaded() -> bool:
        return _can_i(cluster, release, namespace, "list", f"loops.{GROUP}")

    _eventually(rbac_loaded, what="the chart's RBAC")
    wrong_allowed = [f"{v} {r}" for v, r in ALLOWED if not _can_i(cluster, release, namespace, v, r)]
    wrong_denied = [f"{v} {r}" for v, r in DENIED if _can_i(cluster, release, namespace, v, r)]
    assert wrong_allowed == [], "the operator lacks rights it needs"
    assert wrong_denied == [], "the operator holds rights it must not have"
    assert _can_i(cluster, release, namespace, "patch", f"clusterkopfpeerings.kopf.dev/{release.peering}")


def _free_port() -> int:
    return controlplane.find_free_port()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_operator_runs_under_the_chart_service_account(
    cluster: Cluster, release: Release, namespace: str, tmp_path: Path
) -> None:
    sa = write_service_account_kubeconfig(
        cluster, release.namespace, release.service_account, tmp_path / "sa.kubeconfig"
    )
    assert sa.username == release.username

    def as_operator(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cluster.kubectl_bin, f"--kubeconfig={sa.path}", *args],
            input=input, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    whoami = as_operator("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == release.username

    loop = _sample_of("Loop", transport="local")
    loop_name = loop["metadata"]["name"]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(loop))
    denied_delete = as_operator("delete", "secrets", "--all", "-n", namespace)
    assert denied_delete.returncode != 0
    assert "forbidden" in denied_delete.stderr.lower()
    # A PUT of the spec is not in the operator's verbs...
    current = json.loads(as_operator("get", f"loop.{GROUP}", loop_name, "-n", namespace, "-o", "json").stdout)
    current["metadata"].setdefault("labels", {})["touched"] = "yes"
    replaced = as_operator("replace", "-n", namespace, "-f", "-", input=json.dumps(current))
    assert replaced.returncode != 0
    assert "forbidden" in replaced.stderr.lower()
    # ...and a PATCH of spec (patch is needed for finalizers) is refused by the spec guard policy,
    # while a metadata-only patch passes.
    label_patch = json.dumps({"metadata": {"labels": {"y": "1"}}})
    label_only = as_operator(
        "patch", f"loop.{GROUP}", loop_name, "-n", namespace, "--type=merge", "-p", label_patch
    )
    assert label_only.returncode == 0, label_only.stderr
    spec_change = json.dumps({"spec": {"suspend": not loop["spec"].get("suspend", False)}})

    def spec_patch_denied() -> bool:
        result = as_operator(
            "patch", f"loop.{GROUP}", loop_name, "-n", namespace, "--type=merge", "-p", spec_change
        )
        return result.returncode != 0 and "never writes spec" in result.stderr

    _eventually(spec_patch_denied, what="the spec guard policy to deny the operator's spec patch")

    # The operator itself starts with only these rights, and reports healthy.
    with _operator(sa.path, release.peering, tmp_path / "op") as op:
        op.wait_healthy()

        def registered_in_peering() -> bool:
            peering = json.loads(
                cluster.kubectl("get", "clusterkopfpeerings.kopf.dev", release.peering, "-o", "json").stdout
            )
            return bool(peering.get("status"))

        _eventually(registered_in_peering, timeout=30, what="kopf to announce itself in the peering object")
        time.sleep(2)  # let the first watch round run, so RBAC errors would show in the log
        assert _FORBIDDEN.findall(op.output()) == [], op.output()[-4000:]


def test_peering_lets_only_the_highest_priority_replica_act(
    cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    sa = write_service_account_kubeconfig(
        cluster, release.namespace, release.service_account, tmp_path / "sa"
    )
    resumed = "Resuming the watch-stream for loops."

    def peers() -> int:
        peering = cluster.kubectl("get", "clusterkopfpeerings.kopf.dev", release.peering, "-o", "json").stdout
        return len(json.loads(peering).get("status") or {})

    with contextlib.ExitStack() as stack:
        high = stack.enter_context(_operator(sa.path, release.peering, tmp_path / "high", priority=10))
        high.wait_healthy()
        _eventually(lambda: resumed in high.output(), timeout=30, what="the first replica to start handling")
        with _operator(sa.path, release.peering, tmp_path / "low", priority=0) as low:
            low.wait_healthy()
            _eventually(lambda: peers() == 2, timeout=30, what="both replicas in the peering object")
            time.sleep(5)
            assert resumed not in low.output(), "a second replica handles objects while the first one runs"
            stack.close()  # the first replica leaves the peering object when it exits cleanly
            _eventually(lambda: resumed in low.output(), timeout=60, what="the second replica to take over")


def test_namespaced_release_runs_the_operator_without_denials(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """watch.allNamespaces=false: Roles and a KopfPeering in the watched namespace only."""
    name, peering = "scoped", f"scoped-{uuid.uuid4().hex[:6]}"
    cluster.helm(
        "install", name, str(CHART), "--namespace", namespace,
        "--set", f"watch.allNamespaces=false,watch.namespaces={{{namespace}}},peering.name={peering}",
        "--set", "state.persistence.enabled=false", "--set", "replicaCount=0",
    )  # fmt: skip
    try:
        cluster.kubectl("get", "role", f"{name}-superloop-ops", "-n", namespace)
        cluster.kubectl("get", "kopfpeerings.kopf.dev", peering, "-n", namespace)
        sa_name = f"{name}-superloop-ops"
        user = service_account_username(namespace, sa_name)
        other = cluster.kubectl(
            "auth", "can-i", "list", f"loops.{GROUP}", "-n", "default", f"--as={user}", check=False
        )
        assert other.stdout.strip() == "no"
        listing = cluster.kubectl("auth", "can-i", "list", "namespaces", f"--as={user}", check=False)
        assert listing.stdout.strip() == "yes"
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(_sample_of("Loop", transport="local"))
        )
        sa = write_service_account_kubeconfig(cluster, namespace, sa_name, tmp_path / "sa")
        with _operator(sa.path, peering, tmp_path / "op", scope=(f"--namespace={namespace}",)) as op:
            op.wait_healthy()
            _eventually(
                lambda: "Resuming the watch-stream for loops." in op.output(),
                timeout=30,
                what="the namespaced operator to start handling",
            )
            time.sleep(2)
            assert _FORBIDDEN.findall(op.output()) == [], op.output()[-4000:]
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


@dataclass
class _Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None and not _healthy(self.port):
            time.sleep(0.5)
        assert self.proc.poll() is None, f"kopf exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
        assert _healthy(self.port), f"kopf never became healthy:\n{self.output()[-4000:]}"


@contextlib.contextmanager
def _operator(
    kubeconfig: Path,
    peering: str,
    workdir: Path,
    *,
    priority: int = 0,
    scope: tuple[str, ...] = ("--all-namespaces",),
) -> Iterator[_Operator]:
    """``kopf run`` of our operator as a local process, always stopped (by its process group)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kubeconfig),
        SUPERLOOP_STATE_DIR=str(workdir / "state"),
        SUPERLOOP_METRICS_PORT=str(_free_port()),
        SUPERLOOP_METRICS_HOST="127.0.0.1",
        SUPERLOOP_PEERING=peering,
    )
    log_path = workdir / "kopf.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "kopf", "run", "-m", "superloop_ops.main", *scope,
                f"--peering={peering}", f"--priority={priority}",
                f"--liveness=http://127.0.0.1:{port}/healthz", "--verbose",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            yield _Operator(proc=proc, log=log_path, port=port)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def test_mirrored_status_documents_are_tracked_whole_in_managed_fields(
    cluster: Cluster, namespace: str
) -> None:
    """Issue 12 (memory): the status writer's managedFields entry names each mirrored journal
    document, not every key inside it (it was ~6 KB of a ~15 KB Loop, and the operator keeps every
    Loop's body in memory); a merge patch into one of them still merges key by key."""
    loop = {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": "mf-loop", "namespace": namespace},
        "spec": {"loopId": "mf-loop", "transport": "local", "source": {"pvc": {"claimName": "c"}}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(loop))
    health = {"status": "healthy", "metrics": {"ingestLagSeconds": 1, "heartbeatLagSeconds": 2}}
    for patch in (
        {"status": {"health": health}},
        {"status": {"health": {"metrics": {"ingestLagSeconds": 5}}}},
    ):
        cluster.kubectl(
            "patch", "loop", "mf-loop", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
    body = json.loads(
        cluster.kubectl(
            "get", "loop", "mf-loop", "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    assert body["status"]["health"] == {
        "status": "healthy",
        "metrics": {"ingestLagSeconds": 5, "heartbeatLagSeconds": 2},
    }
    (entry,) = [m for m in body["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert entry["fieldsV1"]["f:status"]["f:health"] == {}
