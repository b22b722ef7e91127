"""Alerting in operator mode: the sink catalog from a ConfigMap, sink secrets from a Secret, and
delivery from inside the Loop reconcile, against real HTTP receivers on 127.0.0.1.

The API server is the shared in-memory edge of the handler tests, extended with ConfigMaps; the
runtime is the project's simulator on real files; deliveries are counted at the receivers.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_alert_delivery import Receiver
from test_loop_handler import NS

from helpers.operator_fakes import FakeEdge
from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import loop_alerts
from superloop_ops.engine.alerts import alert_delivery
from superloop_ops.errors import InvalidSpecError
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectNotFoundError
from superloop_ops.metrics import build_metrics
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings
from superloop_ops.sim.simulator import Simulator

ROUTING_KEY = "pd-routing-key-e7f1"
WEBHOOK_ENV = "OPS_MANAGER_ALERT_WEBHOOK_URL"
PD_ENV = "OPS_MANAGER_ALERT_PAGERDUTY_ROUTING_KEY"
CATALOG_KEY = "ops-manager-alert-sinks.v1.json"


class AlertEdge(FakeEdge):
    """The Loop handler tests' in-memory API server, plus ConfigMaps and a forbidden Secret."""

    def __init__(self) -> None:
        super().__init__(NS)
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}
        self.forbidden: set[str] = set()
        self.secret_reads: list[tuple[str, str]] = []

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.secret_reads.append((name, key))
        if name in self.forbidden:
            raise InvalidSpecError(f"Secret {namespace}/{name}: rejected by the API server (403 Forbidden)")
        return super().fetch_secret_value(namespace, name, key)

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str:
        data = self.config_maps.get((namespace, name))
        if data is None:
            raise ObjectNotFoundError(f"ConfigMap {namespace}/{name}: not found")
        if key not in data:
            raise ObjectNotFoundError(f"ConfigMap {namespace}/{name} has no key {key!r}")
        return data[key]


def _catalog(*, webhook: bool = True, pagerduty: bool = True) -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "defaultMinSeverity": "warning",
        "sinks": {
            "hook": {"enabled": webhook, "type": "webhook", "urlEnv": WEBHOOK_ENV, "timeoutSeconds": 2},
            "pd": {
                "enabled": pagerduty,
                "type": "pagerduty_events",
                "routingKeyEnv": PD_ENV,
                "timeoutSeconds": 2,
            },
            "chat": {
                "enabled": False,
                "type": "slack",
                "webhookUrlEnv": "OPS_MANAGER_ALERT_SLACK_WEBHOOK_URL",
            },
        },
        "routing": {
            "defaultSinks": [],
            "categorySeverity": {"health_critical": "critical", "health_degraded": "warning"},
            "routes": [{"category": "health_critical", "sinks": ["pd", "hook"], "minSeverity": "critical"}],
        },
    }


def _loop_doc(alerts_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "loopId": "stale_heartbeat-1",
        "transport": "local",
        "source": {"pvc": {"claimName": "claim-a"}},
        "thresholds": {
            "degradedHeartbeatLagSeconds": 1,
            "criticalHeartbeatLagSeconds": 2,
            "overrides": {"degradedIngestLagSeconds": 100000, "criticalIngestLagSeconds": 100000},
        },
    }
    if alerts_spec is not None:
        spec["alerts"] = alerts_spec
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": "al"},
        "spec": spec,
    }


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1))


@pytest.fixture
def edge() -> AlertEdge:
    return AlertEdge()


@pytest.fixture
def pd_receiver() -> Iterator[Receiver]:
    receiver = Receiver(port=_free_port())
    receiver.start()
    yield receiver
    receiver.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _context(
    tmp_path: Path, edge: AlertEdge, clock: FrozenClock, pd_url: str = "", **extra: Any
) -> OperatorContext:
    sim = Simulator(
        tmp_path / "sim", clock, loops=1, scenarios=["stale_heartbeat"], loop_prefix="stale_heartbeat"
    )
    sim.run(4)
    settings = Settings(
        state_dir=tmp_path / "state",
        pvc_dirs={(NS, "claim-a"): sim.repo_of("stale_heartbeat-1")},
        metrics_port=0,
        alert_pagerduty_url=pd_url,
        **extra,
    )
    return OperatorContext(settings=settings, edge=edge, clock=clock, metrics=build_metrics())


def _ops(tmp_path: Path) -> Path:
    return tmp_path / "state" / NS / ".superloop" / "ops-manager" / "stale_heartbeat-1"


def _pass(edge: AlertEdge, ctx: OperatorContext, clock: FrozenClock) -> dict[str, Any]:
    clock.advance(5)
    report = loop_handlers.reconcile_loop(edge.get("loops", "al"), ctx)
    assert report.outcome == "success", report
    return dict(edge.get("loops", "al")["status"])


# -- catalog and secret resolution -------------------------------------------------------------


def test_default_catalog_is_the_mounted_one_else_the_packaged_one(tmp_path: Path, edge: AlertEdge) -> None:
    packaged = loop_alerts.compute_default_catalog_path(None)
    assert packaged.name == CATALOG_KEY
    assert packaged.is_file()
    assert loop_alerts.compute_default_catalog_path(tmp_path) == packaged  # nothing mounted there
    mounted = tmp_path / CATALOG_KEY
    mounted.write_text(json.dumps(_catalog(webhook=False)))
    assert loop_alerts.compute_default_catalog_path(tmp_path) == mounted
    loop = Loop.from_body(_loop_doc({"secretRef": {"name": "alert-secrets"}}))
    edge.secrets[(NS, "alert-secrets")] = {PD_ENV: ROUTING_KEY}
    config = loop_alerts.fetch_loop_alert_config(loop, NS, edge, default_catalog=mounted)
    assert config.source == str(mounted)
    assert config.error is None
    assert config.catalog is not None
    assert dict(config.secrets) == {PD_ENV: ROUTING_KEY}
    # the shipped catalog has no enabled sink: no Secret is read at all
    edge.secret_reads.clear()
    shipped = loop_alerts.fetch_loop_alert_config(loop, NS, edge, default_catalog=packaged)
    assert shipped.catalog is not None
    assert shipped.secrets == {}
    assert edge.secret_reads == []


def test_config_map_catalog_and_secret_keys_named_by_the_catalog(edge: AlertEdge) -> None:
    edge.config_maps[(NS, "sinks")] = {CATALOG_KEY: json.dumps(_catalog())}
    edge.secrets[(NS, "alert-secrets")] = {PD_ENV: ROUTING_KEY, "UNRELATED": "x"}
    loop = Loop.from_body(
        _loop_doc({"sinksConfigMapRef": {"name": "sinks"}, "secretRef": {"name": "alert-secrets"}})
    )
    config = loop_alerts.fetch_loop_alert_config(loop, NS, edge, default_catalog=Path("/nonexistent"))
    assert config.source == f"configmap/{NS}/sinks#{CATALOG_KEY}"
    assert dict(config.secrets) == {PD_ENV: ROUTING_KEY}
    assert config.missing_secrets == (WEBHOOK_ENV,)
    # only enabled sinks' names are read (not the disabled slack sink's, not other keys)
    assert sorted(key for _, key in edge.secret_reads) == [PD_ENV, WEBHOOK_ENV]
    assert ROUTING_KEY not in repr(config)


def test_custom_key_disabled_alerts_and_unreadable_secrets(edge: AlertEdge) -> None:
    edge.config_maps[(NS, "sinks")] = {"custom.json": json.dumps(_catalog())}
    loop = Loop.from_body(
        _loop_doc(
            {"sinksConfigMapRef": {"name": "sinks", "key": "custom.json"}, "secretRef": {"name": "locked"}}
        )
    )
    edge.forbidden.add("locked")
    config = loop_alerts.fetch_loop_alert_config(loop, NS, edge, default_catalog=Path("/nonexistent"))
    assert config.error is None
    assert config.secrets == {}
    assert config.missing_secrets == (PD_ENV, WEBHOOK_ENV)
    # no secretRef at all: every enabled sink's secret is missing, nothing is read
    edge.secret_reads.clear()
    bare = Loop.from_body(_loop_doc({"sinksConfigMapRef": {"name": "sinks", "key": "custom.json"}}))
    config = loop_alerts.fetch_loop_alert_config(bare, NS, edge, default_catalog=Path("/nonexistent"))
    assert config.missing_secrets == (PD_ENV, WEBHOOK_ENV)
    assert edge.secret_reads == []
    off = Loop.from_body(_loop_doc({"enabled": False, "sinksConfigMapRef": {"name": "absent"}}))
    disabled = loop_alerts.fetch_loop_alert_config(off, NS, edge, default_catalog=Path("/nonexistent"))
    assert not disabled.enabled
    assert disabled.catalog is None
    assert disabled.error is None
    assert loop_alerts.build_operator_hooks(disabled).alert_dispatch is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, "alert sink config not readable: ConfigMap team-a/sinks: not found"),
        ({"other.json": "{}"}, "has no key 'ops-manager-alert-sinks.v1.json'"),
        ({CATALOG_KEY: "{not json"}, "invalid alert sink config JSON: configmap/team-a/sinks#"),
        ({CATALOG_KEY: json.dumps({"schemaVersion": "v2"})}, "alert sink config has invalid top-level shape"),
    ],
)
def test_unusable_config_map_is_reported_not_raised(
    edge: AlertEdge, data: dict[str, str] | None, expected: str
) -> None:
    if data is not None:
        edge.config_maps[(NS, "sinks")] = data
    loop = Loop.from_body(_loop_doc({"sinksConfigMapRef": {"name": "sinks"}}))
    config = loop_alerts.fetch_loop_alert_config(loop, NS, edge, default_catalog=Path("/nonexistent"))
    assert config.enabled
    assert config.catalog is None
    assert config.error is not None
    assert expected in config.error


def test_sink_deliveries_skip_deferred_results() -> None:
    rows = [
        {"sinks": [{"type": "pagerduty_events", "status": "success"}, {"type": "webhook", "status": "failed",
                                                                        "reasonCode": "missing_secret"}]},
        {"sinks": [{"type": "webhook", "status": "failed", "reasonCode": "request_failed",
                    "message": "deferred: sink unavailable earlier in this run"}]},
        {"status": "skipped", "reasonCode": "no_dispatchable_sinks"},
        "garbage",
    ]  # fmt: skip
    assert loop_alerts.compute_sink_deliveries(rows) == (
        loop_alerts.SinkDelivery("pagerduty_events", "success"),
        loop_alerts.SinkDelivery("webhook", "missing_secret"),
    )


# -- dispatch inside the Loop reconcile ----------------------------------------------------------


def test_critical_loop_pages_once_with_the_routing_key_from_the_secret(
    tmp_path: Path, edge: AlertEdge, clock: FrozenClock, pd_receiver: Receiver
) -> None:
    ctx = _context(tmp_path, edge, clock, pd_url=pd_receiver.url)
    edge.config_maps[(NS, "sinks")] = {CATALOG_KEY: json.dumps(_catalog())}
    edge.secrets[(NS, "alert-secrets")] = {PD_ENV: ROUTING_KEY}  # the webhook URL key is missing
    edge.add(
        "loops", _loop_doc({"sinksConfigMapRef": {"name": "sinks"}, "secretRef": {"name": "alert-secrets"}})
    )
    status = _pass(edge, ctx, clock)
    assert status["healthStatus"] == "critical"
    escalations = [row for row in files.read_jsonl(_ops(tmp_path) / "escalations.jsonl")
                   if row.get("category") == "health_critical"]  # fmt: skip
    assert len(escalations) == 1
    (page,) = pd_receiver.bodies()
    assert page["routing_key"] == ROUTING_KEY
    assert page["event_action"] == "trigger"
    assert page["dedup_key"] == f"stale_heartbeat-1:health_critical:{escalations[0]['timestamp']}"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["custom_details"]["traceId"] == escalations[0]["traceId"]
    # the webhook's missing secret blocks only the webhook
    last = status["alerts"]["lastDelivery"]
    assert last["escalationCategory"] == "health_critical"
    assert (last["status"], last["reasonCode"]) == ("partial", "partial_dispatch_failure")
    assert (last["dispatchedSinkCount"], last["failedSinkCount"]) == (1, 1)
    assert "missing_secret" in status["alerts"]["dispatch"]["failureReasonCodes"]
    assert status["alerts"]["dispatch"]["lastTraceId"] == status["traceId"]
    assert status["tuning"]["summaryWindow"] == 200
    assert "recommendedProfile" in status["tuning"]
    assert {"confidence", "rationale", "appliedProfile"} <= set(status["tuning"])
    assert status["drift"]["status"]  # the drift state file, mirrored
    # further passes: no new escalation, no second page (the webhook stays pending, retried later)
    for _ in range(3):
        status = _pass(edge, ctx, clock)
    assert len(pd_receiver.accepted) == 1
    # the secret value is nowhere: status, Events, journal
    assert ROUTING_KEY not in json.dumps(status)
    assert all(ROUTING_KEY not in message for *_, message in edge.events)
    for path in _ops(tmp_path).rglob("*"):
        if path.is_file():
            assert ROUTING_KEY not in path.read_text(errors="replace"), path
    rendered = ctx.metrics.render().decode()
    assert (
        'superloop_ops_alert_deliveries_total{namespace="team-a",outcome="success",'
        'sink_type="pagerduty_events"} 1.0' in rendered
    )
    assert 'outcome="missing_secret",sink_type="webhook"' in rendered


def test_secret_added_later_delivers_the_pending_webhook_once(
    tmp_path: Path, edge: AlertEdge, clock: FrozenClock, pd_receiver: Receiver
) -> None:
    hook = Receiver(port=_free_port())
    hook.start()
    try:
        ctx = _context(tmp_path, edge, clock, pd_url=pd_receiver.url)
        edge.config_maps[(NS, "sinks")] = {CATALOG_KEY: json.dumps(_catalog())}
        edge.secrets[(NS, "alert-secrets")] = {PD_ENV: ROUTING_KEY}
        edge.add(
            "loops",
            _loop_doc({"sinksConfigMapRef": {"name": "sinks"}, "secretRef": {"name": "alert-secrets"}}),
        )
        _pass(edge, ctx, clock)
        assert hook.seen == []
        edge.secrets[(NS, "alert-secrets")][WEBHOOK_ENV] = hook.url
        clock.advance(alert_delivery.DispatchSettings().max_retry_interval_seconds)
        for _ in range(3):
            status = _pass(edge, ctx, clock)
        assert len(hook.accepted) == 1
        assert len(pd_receiver.accepted) == 1
        assert hook.bodies()[0]["event"] == {"category": "health_critical", "severity": "critical"}
        assert status["alerts"]["dispatch"].get("pendingCount", 0) == 0
    finally:
        hook.stop()


def test_missing_config_map_never_fails_the_reconcile(
    tmp_path: Path, edge: AlertEdge, clock: FrozenClock
) -> None:
    ctx = _context(tmp_path, edge, clock)
    edge.add("loops", _loop_doc({"sinksConfigMapRef": {"name": "absent"}}))
    status = _pass(edge, ctx, clock)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    last = status["alerts"]["lastDelivery"]
    assert (last["status"], last["reasonCode"]) == ("failed_command", "alert_dispatch_failed")
    assert not (_ops(tmp_path) / "alert-dispatch-state.json").exists()  # the cursor has not moved
    # once the ConfigMap exists, the backlog is dispatched from the start
    edge.config_maps[(NS, "absent")] = {CATALOG_KEY: json.dumps(_catalog(webhook=False, pagerduty=False))}
    status = _pass(edge, ctx, clock)
    dispatch = status["alerts"]["dispatch"]
    assert dispatch["status"] == "success"
    assert dispatch["processedCount"] >= 1


def test_alerts_disabled_skips_dispatch(tmp_path: Path, edge: AlertEdge, clock: FrozenClock) -> None:
    ctx = _context(tmp_path, edge, clock)
    edge.add("loops", _loop_doc({"enabled": False, "sinksConfigMapRef": {"name": "absent"}}))
    status = _pass(edge, ctx, clock)
    assert status["healthStatus"] == "critical"
    assert (_ops(tmp_path) / "escalations.jsonl").is_file()
    assert not (_ops(tmp_path) / "alert-dispatch-state.json").exists()
    assert not (_ops(tmp_path) / "telemetry" / "alerts.jsonl").exists()
    assert "alerts" not in status


def test_operator_settings_read_config_dir_and_pagerduty_url() -> None:
    from superloop_ops.settings import fetch_settings

    settings = fetch_settings(
        {
            "SUPERLOOP_CONFIG_DIR": "/etc/superloop-ops",
            "SUPERLOOP_ALERT_PAGERDUTY_URL": "http://127.0.0.1:9/v2",
        }
    )
    assert settings.config_dir == Path("/etc/superloop-ops")
    assert settings.alert_pagerduty_url == "http://127.0.0.1:9/v2"
    assert fetch_settings({}).config_dir is None
    with pytest.raises(InvalidSpecError, match="SUPERLOOP_ALERT_PAGERDUTY_URL"):
        fetch_settings({"SUPERLOOP_ALERT_PAGERDUTY_URL": "ftp://x"})
