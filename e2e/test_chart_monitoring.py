"""The chart as Prometheus, Helm and RBAC users meet it: rules, scraping, values, user roles.

The PrometheusRule is rendered by Helm and checked with promtool (``check rules``, and ``test
rules`` with the series of ``tests/data/prometheus/alerts.test.yaml``); every runbook link must
land on a heading of docs/runbook.md. The aggregated user roles are checked on the control plane
with ``kubectl auth can-i`` as the test users.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import Cluster

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "superloop-ops"
RUNBOOK = REPO / "docs" / "runbook.md"
RULE_TESTS = REPO / "tests" / "data" / "prometheus" / "alerts.test.yaml"
GROUP = "ops.superloop.dev"
PAGED_ON = {
    "SuperloopOpsOperatorDown",
    "SuperloopLoopCritical",
    "SuperloopLoopHeartbeatStale",
    "SuperloopLoopReconcileFailing",
    "SuperloopReconcileErrors",
    "SuperloopFleetAutoPaused",
    "SuperloopFleetKillSwitchEngaged",
    "SuperloopFleetSuppressionExpiring",
    "SuperloopIntentAwaitingApproval",
    "SuperloopAlertSinkFailing",
}


def _render(cluster: Cluster, *sets: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["template", "rel", str(CHART), "--namespace", "ops"]
    for item in sets:
        args += ["--set", item]
    return cluster.helm(*args, check=check)


def _docs(cluster: Cluster, *sets: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_render(cluster, *sets).stdout) if isinstance(d, dict)]


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: scripts/install-tools.sh installs it (Debian's prometheus)"
    return found


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, spaces to dashes, punctuation other than -_ dropped."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            text = match.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


# -- Prometheus ------------------------------------------------------------------------------------


def test_service_monitor_keeps_the_operators_namespace_label(cluster: Cluster) -> None:
    docs = _docs(cluster, "serviceMonitor.enabled=true")
    (monitor,) = _kind(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "metrics"


def test_prometheus_rule_needs_the_metrics_it_reads(cluster: Cluster) -> None:
    assert _kind(_docs(cluster, "prometheusRule.enabled=true"), "PrometheusRule")
    assert not _kind(_docs(cluster, "prometheusRule.enabled=true", "metrics.enabled=false"), "PrometheusRule")


def _rules(cluster: Cluster, *sets: str) -> dict[str, Any]:
    (rule,) = _kind(_docs(cluster, "prometheusRule.enabled=true", *sets), "PrometheusRule")
    return dict(rule["spec"])


def test_every_shipped_alert_has_a_runbook_heading(cluster: Cluster) -> None:
    rules = [r for group in _rules(cluster)["groups"] for r in group["rules"]]
    assert {r["alert"] for r in rules} == PAGED_ON
    anchors = _anchors(RUNBOOK.read_text())
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/runbook.md"), url
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in docs/runbook.md"
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_runbook_base_and_approval_wait_come_from_values(cluster: Cluster) -> None:
    rules = _rules(
        cluster,
        "prometheusRule.runbookBaseUrl=https://wiki.example/runbook",
        "prometheusRule.approvalWaitMinutes=90",
    )
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    waiting = by_name["SuperloopIntentAwaitingApproval"]
    assert waiting["expr"].endswith("> 5400")
    assert (
        waiting["annotations"]["runbook_url"]
        == "https://wiki.example/runbook#superloopintentawaitingapproval"
    )


def test_promtool_checks_and_unit_tests_the_rules(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules(cluster), sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    promtool = _promtool()
    check = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(PAGED_ON)} rules found" in check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr


# -- values ----------------------------------------------------------------------------------------


def test_values_accept_helms_global_key_as_a_dependency(cluster: Cluster) -> None:
    result = _render(cluster, "global.imageRegistry=registry.example", "global.labels.team=a")
    assert _kind([d for d in yaml.safe_load_all(result.stdout) if isinstance(d, dict)], "Deployment")


def test_more_than_one_replica_needs_peering(cluster: Cluster) -> None:
    refused = _render(cluster, "replicaCount=2", "peering.enabled=false", check=False)
    assert refused.returncode != 0
    assert "peering" in refused.stderr
    (deployment,) = _kind(_docs(cluster, "replicaCount=2"), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=superloop-ops" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    standalone = _docs(cluster, "peering.enabled=false")
    assert not _kind(standalone, "ClusterKopfPeering")
    (single,) = _kind(standalone, "Deployment")
    assert "--standalone" in single["spec"]["template"]["spec"]["containers"][0]["args"]


# -- user roles ------------------------------------------------------------------------------------


def _eventually(check: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for: {what}")


def _can_i(cluster: Cluster, user: str, verb: str, resource: str, namespace: str, *extra: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, *extra, context=user, check=False
    )
    return result.stdout.strip() == "yes"


def _bind(cluster: Cluster, namespace: str, user: str, cluster_role: str) -> None:
    cluster.kubectl(
        "create", "rolebinding", f"{user}-{cluster_role}", f"--clusterrole={cluster_role}",
        f"--user={cluster.username(user)}", "-n", namespace,
    )  # fmt: skip


def test_view_users_read_and_edit_users_approve(cluster: Cluster, namespace: str) -> None:
    release = f"roles-{uuid.uuid4().hex[:6]}"
    roles = cluster.helm(
        "template", release, str(CHART), "--namespace", namespace, "-s", "templates/user-roles.yaml"
    ).stdout
    cluster.kubectl("apply", "-f", "-", input=roles)
    try:
        _bind(cluster, namespace, "alice", "view")
        _bind(cluster, namespace, "bob", "edit")
        intents = f"handoffintents.{GROUP}"
        _eventually(
            lambda: all(
                _can_i(cluster, "alice", verb, f"{plural}.{GROUP}", namespace)
                for plural in ("loops", "fleets", "fleetpolicies", "handoffintents", "promotionapplies")
                for verb in ("get", "list", "watch")
            ),
            what="view reads the five kinds (aggregated)",
        )
        assert not _can_i(cluster, "alice", "patch", intents, namespace)
        assert not _can_i(cluster, "alice", "create", f"loops.{GROUP}", namespace)
        _eventually(lambda: _can_i(cluster, "bob", "patch", intents, namespace), what="edit approves intents")
        assert _can_i(cluster, "bob", "create", f"loops.{GROUP}", namespace)
        assert _can_i(cluster, "bob", "list", f"loops.{GROUP}", namespace)
        # status stays the operator's: users may not write it
        assert not _can_i(cluster, "bob", "patch", f"loops.{GROUP}", namespace, "--subresource=status")
        assert _can_i(cluster, "alice", "get", f"loops.{GROUP}", namespace, "--subresource=status")
        assert not _can_i(cluster, "bob", "deletecollection", f"loops.{GROUP}", namespace)
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=roles, check=False)
