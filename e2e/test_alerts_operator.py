"""Issue 5 on a real control plane: a Loop going critical pages PagerDuty from inside the operator.

The operator runs as a subprocess under the chart's ServiceAccount (a namespace-scoped release
whose RBAC names exactly the alert ConfigMap and Secret it may read). The sink catalog is a
ConfigMap, the PagerDuty routing key a Secret key named after the catalog's ``routingKeyEnv``.
PagerDuty itself is a real HTTP server in this test process on 127.0.0.1 (the operator's
``SUPERLOOP_ALERT_PAGERDUTY_URL`` points at it), and deliveries are counted there.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import controlplane
from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import chart_release, create_secret
from e2e.operator_harness import loop_eventually as _eventually
from e2e.test_loop_operator import INTERVAL, _local_loop
from superloop_ops.journal import files

CONFIG_MAP = "alert-sinks"
SECRET = "alert-secrets"
PD_ENV = "OPS_MANAGER_ALERT_PAGERDUTY_ROUTING_KEY"
CATALOG = {
    "schemaVersion": "v1",
    "defaultMinSeverity": "warning",
    "sinks": {
        "pagerduty-oncall": {
            "enabled": True,
            "type": "pagerduty_events",
            "routingKeyEnv": PD_ENV,
            "component": "loop-operator",
            "timeoutSeconds": 3,
        },
    },
    "routing": {
        "defaultSinks": [],
        "categorySeverity": {"health_critical": "critical", "health_degraded": "warning"},
        "routes": [{"category": "health_critical", "sinks": ["pagerduty-oncall"], "minSeverity": "critical"}],
    },
}


@dataclass
class PagerDuty:
    """A PagerDuty Events API v2 stand-in: records every request and answers 202 like the real one."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    def start(self) -> None:
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.requests.append(
                    {
                        "path": self.path,
                        "contentType": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                answer = b'{"status":"success","message":"Event processed"}'
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass(frozen=True)
class Release:
    namespace: str
    service_account: str
    watched: str


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    namespace, watched = f"e2e-alertop-{suffix}", f"e2e-alerts-{suffix}"
    with chart_release(
        cluster, f"alertop-{suffix}", namespace, [watched], peering=f"alertop-{suffix}",
        sets=[f"rbac.secretNames={{{SECRET}}}", f"rbac.configMapNames={{{CONFIG_MAP}}}"],
    ) as account:  # fmt: skip
        yield Release(namespace=namespace, service_account=account, watched=watched)


@pytest.fixture
def pagerduty() -> Iterator[PagerDuty]:
    receiver = PagerDuty(port=controlplane.find_free_port())
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def env(cluster: Cluster, release: Release, tmp_path: Path) -> Iterator[Env]:
    sa = write_service_account_kubeconfig(
        cluster, release.namespace, release.service_account, tmp_path / "sa.kubeconfig"
    )
    handle = Env(cluster=cluster, namespace=release.watched, workdir=tmp_path, sa_kubeconfig=sa.path)
    handle.mounts.mkdir(parents=True, exist_ok=True)
    try:
        yield handle
    finally:
        handle.close()


def _metric(port: int, prefix: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_critical_loop_pages_pagerduty_once_with_the_routing_key_from_a_secret(
    env: Env, pagerduty: PagerDuty
) -> None:
    routing_key = f"rk-{uuid.uuid4().hex}"
    ns = env.namespace
    create_secret(env.cluster, ns, SECRET, **{PD_ENV: routing_key})
    env.cluster.kubectl(
        "create", "configmap", CONFIG_MAP,
        f"--from-literal=ops-manager-alert-sinks.v1.json={json.dumps(CATALOG)}", "-n", ns,
    )  # fmt: skip
    operator = env.start_operator(SUPERLOOP_ALERT_PAGERDUTY_URL=pagerduty.url)
    paging = env.simulate("stale_heartbeat", prefix="paging")
    quiet = env.simulate("stale_heartbeat", prefix="quiet")
    thresholds = {
        "degradedHeartbeatLagSeconds": 1,
        "criticalHeartbeatLagSeconds": 3,
        "overrides": {"degradedIngestLagSeconds": 100000, "criticalIngestLagSeconds": 100000},
    }
    env.apply(
        _local_loop(
            "paging", paging.loop_id, paging.loop_id, thresholds=thresholds,
            alerts={"sinksConfigMapRef": {"name": CONFIG_MAP}, "secretRef": {"name": SECRET}},
        )
    )  # fmt: skip
    env.apply(
        _local_loop("quiet", quiet.loop_id, quiet.loop_id, thresholds=thresholds, alerts={"enabled": False})
    )

    def delivered() -> dict[str, Any] | None:
        last = env.status("paging").get("alerts", {}).get("lastDelivery") or {}
        return last if last.get("status") == "dispatched" and pagerduty.requests else None

    last = _eventually(delivered, timeout=60, what="a PagerDuty delivery in the Loop status")
    assert last["escalationCategory"] == "health_critical"
    assert last["eventSeverity"] == "critical"
    assert (last["sinkCount"], last["dispatchedSinkCount"], last["failedSinkCount"]) == (1, 1, 0)
    # a few more passes: the loop stays critical, nothing new is escalated, nothing is re-sent
    passes = env.status("paging")["lastReconcileAt"]
    _eventually(
        lambda: env.status("paging")["lastReconcileAt"] != passes, timeout=10 * INTERVAL, what="a pass"
    )
    time.sleep(3 * INTERVAL)
    critical = [
        row
        for row in files.read_jsonl(env.ops_dir(paging.loop_id) / "escalations.jsonl")
        if row.get("category") == "health_critical"
    ]
    assert critical, "the loop never escalated health_critical"
    assert len(pagerduty.requests) == len(critical), "exactly one page per escalation"
    page = pagerduty.requests[0]
    assert page["path"] == "/v2/enqueue"
    assert page["contentType"] == "application/json"
    body = page["body"]
    assert body["routing_key"] == routing_key
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"{paging.loop_id}:health_critical:{critical[0]['timestamp']}"
    assert body["payload"]["severity"] == "critical"
    assert body["payload"]["component"] == "loop-operator"
    assert body["payload"]["summary"] == f"ops-manager health_critical (critical) loop={paging.loop_id}"
    assert len({request["body"]["dedup_key"] for request in pagerduty.requests}) == len(critical)

    status = env.status("paging")
    assert status["healthStatus"] == "critical"
    dispatch = status["alerts"]["dispatch"]  # the latest run's counts: nothing new by now
    assert dispatch["status"] in ("success", "no_new_escalations")
    assert dispatch["failureReasonCodes"] == []
    escalation_lines = (env.ops_dir(paging.loop_id) / "escalations.jsonl").read_text().count("\n")
    assert dispatch["escalationsLineOffset"] == escalation_lines
    assert "recommendedProfile" in status["tuning"]
    # the kubectl plugin's snapshot shows the same delivery
    shown = env.plugin("status", "paging")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["alerts"]["lastDelivery"]["status"] == "dispatched"
    # the routing key is nowhere but in the request: not in status, the journal or the operator log
    assert routing_key not in json.dumps(status)
    assert routing_key not in operator.output()
    for path in env.ops_dir(paging.loop_id).rglob("*"):
        if path.is_file():
            assert routing_key not in path.read_text(errors="replace"), path
    assert _metric(
        operator.metrics_port,
        'superloop_ops_alert_deliveries_total{namespace="' + ns + '",outcome="success",'
        'sink_type="pagerduty_events"}',
    ) == len(critical)
    # alerts disabled on the other Loop: critical too, but no dispatch at all
    quiet_status = env.status("quiet")
    assert quiet_status.get("healthStatus") == "critical"
    assert "alerts" not in quiet_status
    assert not (env.ops_dir(quiet.loop_id) / "alert-dispatch-state.json").exists()
