"""``kubectl superloop`` against the API server, as a kubectl user runs it.

No operator runs here: objects get their status from a status patch, so each command's output
is checked against known values. Identities are the control plane's kubeconfig contexts
(``admin``, ``alice``, ``bob``) or impersonation (``--as``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import yaml

from e2e.harness.cluster import Cluster

PLUGIN = [sys.executable, "-m", "superloop_ops.cli.kubectl_plugin"]
GROUP = "ops.superloop.dev"
NOW = "2026-01-01T00:00:00Z"


def _plugin(
    cluster: Cluster, *args: str, context: str = "admin", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = [*PLUGIN, *args, f"--kubeconfig={cluster.kubeconfig}", *cluster.identity_args(context)]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def _apply(cluster: Cluster, doc: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _status(cluster: Cluster, namespace: str, kind: str, name: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def _ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
    }


def _loop(cluster: Cluster, namespace: str, name: str, labels: dict[str, str] | None = None) -> None:
    _apply(
        cluster,
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"loopId": name, "transport": "local", "source": {"pvc": {"claimName": "repo"}}},
        },
    )


def _intent(cluster: Cluster, namespace: str, name: str) -> None:
    _apply(
        cluster,
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "HandoffIntent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"loopRef": {"name": "red"}, "intent": "cancel"},
        },
    )


def test_get_shows_the_columns_and_formats_kubectl_users_expect(cluster: Cluster, namespace: str) -> None:
    _loop(cluster, namespace, "red", {"team": "a"})
    _loop(cluster, namespace, "blue", {"team": "b"})
    _status(cluster, namespace, "loop", "red", {
        "healthStatus": "critical", "reasonCodes": ["ingest_stale", "transport_unreachable"],
        "reasonSummary": "ingest_stale, transport_unreachable",
        "conditions": [_ready("False", "TransportUnreachable", "ingest failed: connection refused")],
    })  # fmt: skip
    table = _plugin(cluster, "get", "loops", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "READY", "STATUS", "LOOP"]
    red = next(r for r in rows if r.startswith("red"))
    assert "False" in red
    assert "TransportUnreachable" in red
    assert "ingest_stale, transport_unreachable" in red
    wide = _plugin(cluster, "-o", "wide", "get", "sloop", "red", "-n", namespace)
    assert "ingest failed: connection refused" in wide.stdout
    names = _plugin(cluster, "get", "loops", "-l", "team=a", "-n", namespace, "-o", "name")
    assert names.stdout.split() == ["loop.ops.superloop.dev/red"]
    listed = json.loads(_plugin(cluster, "get", "loops", "-n", namespace, "-o", "json").stdout)
    assert listed["kind"] == "List"
    assert len(listed["items"]) == 2
    everywhere = _plugin(cluster, "get", "loops", "-A")
    assert everywhere.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "red"] for line in everywhere.stdout.splitlines())
    # kubectl's own `get` shows the same columns from the CRD
    kubectl = cluster.kubectl("get", "loops", "-n", namespace).stdout.splitlines()[0].split()
    assert kubectl[:3] == ["NAME", "READY", "STATUS"]


def test_flags_after_the_command_and_status_exit_codes(cluster: Cluster, namespace: str) -> None:
    _loop(cluster, namespace, "red")
    _status(cluster, namespace, "loop", "red", {
        "healthStatus": "degraded", "reasonCodes": ["ingest_stale"],
        "conditions": [_ready("True", "ReconcileSucceeded", "ok")],
    })  # fmt: skip
    listing = _plugin(cluster, "intents", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    shown = _plugin(cluster, "status", "red", "-n", namespace, "--exit-code")
    assert shown.returncode == 3, shown.stderr
    assert json.loads(shown.stdout)["health"] == {"status": "degraded"}
    assert _plugin(cluster, "status", "red", "-n", namespace).returncode == 0


def test_forbidden_and_missing_objects_print_the_servers_message(cluster: Cluster, namespace: str) -> None:
    denied = _plugin(cluster, "get", "loops", "-n", namespace, context="bob")
    assert denied.returncode == 1
    assert denied.stderr.startswith("Error from server (Forbidden):")
    assert 'cannot list resource "loops"' in denied.stderr
    assert "Traceback" not in denied.stderr
    impersonated = _plugin(cluster, "get", "loops", "-n", namespace, "--as", "carol")
    assert 'User "carol" cannot list' in impersonated.stderr
    missing = _plugin(cluster, "status", "nosuch", "-n", namespace)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == 'Error from server (NotFound): loops.ops.superloop.dev "nosuch" not found'
    )


def test_suspend_resume_reconcile_now_and_reject(cluster: Cluster, namespace: str) -> None:
    _loop(cluster, namespace, "red")
    assert _plugin(cluster, "suspend", "loop/red", "-n", namespace).returncode == 0
    spec = json.loads(cluster.kubectl("get", "loop", "red", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["suspend"] is True
    assert _plugin(cluster, "resume", "red", "-n", namespace).returncode == 0
    loop = json.loads(cluster.kubectl("get", "loop", "red", "-n", namespace, "-o", "json").stdout)
    assert loop["spec"]["suspend"] is False
    assert _plugin(cluster, "reconcile-now", "red", "-n", namespace).returncode == 0
    loop = json.loads(cluster.kubectl("get", "loop", "red", "-n", namespace, "-o", "json").stdout)
    assert "ops.superloop.dev/reconcile-requested-at" in loop["metadata"]["annotations"]
    _intent(cluster, namespace, "cancel-red")
    rejected = _plugin(cluster, "reject", "cancel-red", "-n", namespace)
    assert rejected.returncode == 0, rejected.stderr
    assert "rejected by admin" in rejected.stdout
    gone = cluster.kubectl("get", "handoffintent", "cancel-red", "-n", namespace, check=False)
    assert gone.returncode != 0


def test_wait_for_executed_and_timeout(cluster: Cluster, namespace: str) -> None:
    _intent(cluster, namespace, "cancel-red")
    slow = _plugin(cluster, "wait", "cancel-red", "--for=executed", "--timeout=2s", "-n", namespace)
    assert slow.returncode == 1
    assert "timed out waiting for the condition" in slow.stdout

    def execute_later() -> None:
        time.sleep(2)
        _status(cluster, namespace, "handoffintent", "cancel-red", {"phase": "executed"})

    worker = threading.Thread(target=execute_later)
    worker.start()
    done = _plugin(cluster, "wait", "cancel-red", "--for", "executed", "--timeout", "30s", "-n", namespace)
    worker.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "condition met" in done.stdout


def test_get_watch_prints_changes(cluster: Cluster, namespace: str) -> None:
    _loop(cluster, namespace, "red")
    argv = [*PLUGIN, "get", "loops", "-n", namespace, "-w", "--request-timeout", "20"]
    argv += [f"--kubeconfig={cluster.kubeconfig}", *cluster.identity_args("admin")]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as watch:
        assert watch.stdout is not None
        header, first = watch.stdout.readline(), watch.stdout.readline()
        assert header.split()[:3] == ["NAME", "READY", "STATUS"]
        assert first.split()[0] == "red"
        _status(
            cluster, namespace, "loop", "red", {"conditions": [_ready("True", "ReconcileSucceeded", "ok")]}
        )
        changed = watch.stdout.readline()
        watch.kill()
    assert changed.split()[:3] == ["red", "True", "ReconcileSucceeded"]
