"""Alert sink catalog (§4): staged fail-closed validation, env status, routing and severity gates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from helpers.alert_configs import WEBHOOK_URL_ENV, enabled_webhook_config
from superloop_ops.core.alerts import sink_catalog
from superloop_ops.errors import ContractError

SHIPPED = json.loads(
    (Path(__file__).resolve().parents[2] / "config" / "ops-manager-alert-sinks.v1.json").read_text()
)


def test_lists_shipped_sinks_in_catalog_order() -> None:
    """Port of bats: resolver lists default sink catalog entries."""
    catalog = sink_catalog.build_sink_catalog(SHIPPED)
    assert sink_catalog.build_sink_listing(catalog) == [
        "webhook-default\twebhook\tfalse",
        "slack-default\tslack\tfalse",
        "pagerduty-default\tpagerduty_events\tfalse",
    ]


def test_shipped_summary_has_no_enabled_sinks() -> None:
    """Port of bats: resolver returns default config summary."""
    catalog = sink_catalog.build_sink_catalog(SHIPPED)
    summary = sink_catalog.build_catalog_summary(catalog, source_file="cfg.json", env={}, env_check=True)
    assert summary["defaultMinSeverity"] == "warning"
    assert summary["enabledSinkCount"] == 0
    assert summary["sinks"][0] == {
        "id": "webhook-default",
        "enabled": False,
        "type": "webhook",
        "timeoutSeconds": 5,
        "secretRefs": {
            "urlEnv": "OPS_MANAGER_ALERT_WEBHOOK_URL",
            "authTokenEnv": "OPS_MANAGER_ALERT_WEBHOOK_TOKEN",
        },
    }
    assert summary["routing"] == SHIPPED["routing"]
    assert list(summary["envStatus"]) == sorted(summary["envStatus"])
    assert summary["envStatus"]["OPS_MANAGER_ALERT_SLACK_WEBHOOK_URL"] == {"present": False}
    assert summary["validation"] == {"envCheckEnabled": True}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"category": None, "severity": "warning", "list_sinks": False}, "--severity requires --category"),
        (
            {"category": "x", "severity": None, "list_sinks": True},
            "--list-sinks cannot be combined with --category",
        ),
        (
            {"category": "x", "severity": "loud", "list_sinks": False},
            "--severity must be one of: info, warning",
        ),
    ],
)
def test_argument_checks(kwargs: dict[str, Any], message: str) -> None:
    """Port of bats: resolver rejects severity without category (plus the sibling checks)."""
    with pytest.raises(ContractError, match=message):
        sink_catalog.validate_severity_args(**kwargs)


def test_fails_closed_when_enabled_sink_secret_is_missing() -> None:
    """Port of bats: resolver fails closed when enabled sink secret env var is missing."""
    catalog = sink_catalog.build_sink_catalog(enabled_webhook_config())
    with pytest.raises(
        ContractError, match=f"enabled sink secret env var\\(s\\) are unset: {WEBHOOK_URL_ENV}"
    ):
        sink_catalog.ensure_secrets_present(catalog, {})
    sink_catalog.ensure_secrets_present(catalog, {WEBHOOK_URL_ENV: "https://example.test/webhook"})
    with pytest.raises(ContractError):
        sink_catalog.ensure_secrets_present(catalog, {WEBHOOK_URL_ENV: ""})


def test_missing_secrets_cover_every_enabled_sink_sorted() -> None:
    config = enabled_webhook_config()
    config["sinks"]["webhook-a"]["authTokenEnv"] = "B_TOKEN"
    config["sinks"]["pd"] = {"enabled": True, "type": "pagerduty_events", "routingKeyEnv": "A_KEY"}
    config["sinks"]["off"] = {"enabled": False, "type": "slack", "webhookUrlEnv": "C_OFF"}
    catalog = sink_catalog.build_sink_catalog(config)
    assert sink_catalog.compute_missing_secrets(catalog, {}) == ["A_KEY", "B_TOKEN", WEBHOOK_URL_ENV]
    assert list(sink_catalog.compute_env_status(catalog, {"C_OFF": "x"})) == [
        "A_KEY",
        "B_TOKEN",
        "C_OFF",
        WEBHOOK_URL_ENV,
    ]


def test_resolves_route_and_dispatchable_sinks() -> None:
    """Port of bats: resolver resolves route and dispatchable sinks when env var is set."""
    catalog = sink_catalog.build_sink_catalog(enabled_webhook_config())
    env = {WEBHOOK_URL_ENV: "https://example.test/webhook"}
    route = sink_catalog.build_route_resolution(
        catalog, "health_degraded", "warning", source_file="cfg.json", env=env, env_check=True
    )
    assert route["shouldDispatch"] is True
    assert [sink["id"] for sink in route["dispatchableSinks"]] == ["webhook-a"]
    assert route["dispatchableSinks"][0]["config"] == {"headers": {}}
    assert route["route"]["category"] == "health_degraded"
    assert route["categoryMappedSeverity"] == "warning"


def test_min_severity_gate() -> None:
    """Port of bats: resolver enforces min severity gate during category resolution."""
    catalog = sink_catalog.build_sink_catalog(enabled_webhook_config())
    route = sink_catalog.build_route_resolution(
        catalog, "health_degraded", "info", source_file="cfg.json", env={}, env_check=True
    )
    assert route["shouldDispatch"] is False
    assert route["dispatchableSinks"] == []
    assert len(route["selectedSinks"]) == 1


def test_shipped_catalog_routes_every_category_to_disabled_sinks() -> None:
    catalog = sink_catalog.build_sink_catalog(SHIPPED)
    for category in ("health_critical", "health_degraded", "divergence_detected", "profile_drift_detected"):
        route = sink_catalog.build_route_resolution(
            catalog, category, None, source_file="c", env={}, env_check=True
        )
        assert route["shouldDispatch"] is True
        assert route["dispatchableSinks"] == []
    unmapped = sink_catalog.build_route_resolution(
        catalog, "ordering_drift_detected", None, source_file="c", env={}, env_check=True
    )
    assert unmapped["eventSeverity"] == "warning"
    assert "route" not in unmapped
    assert "categoryMappedSeverity" not in unmapped
    assert [sink["id"] for sink in unmapped["selectedSinks"]] == ["webhook-default"]
    critical = sink_catalog.build_route_resolution(
        catalog, "health_critical", None, source_file="c", env={}, env_check=True
    )
    pagerduty = critical["selectedSinks"][0]
    assert pagerduty["config"] == {
        "source": "superloop-ops-manager",
        "component": "ops-manager",
        "group": "loop-run",
        "class": "escalation",
    }


def test_disabled_route_never_matches() -> None:
    """Deliberate fix of the reference quirk (§8.1): ``enabled: false`` routes are skipped."""
    config = enabled_webhook_config()
    config["sinks"]["webhook-b"] = {"enabled": True, "type": "webhook", "urlEnv": "OTHER_URL"}
    config["routing"]["routes"] = [
        {"category": "health_degraded", "sinks": ["webhook-b"], "minSeverity": "info", "enabled": False},
        {"category": "health_degraded", "sinks": ["webhook-a"], "minSeverity": "critical"},
    ]
    catalog = sink_catalog.build_sink_catalog(config)
    route = sink_catalog.build_route_resolution(
        catalog, "health_degraded", None, source_file="c", env={}, env_check=False
    )
    assert route["route"]["sinks"] == ["webhook-a"]
    assert route["minSeverity"] == "critical"
    assert route["shouldDispatch"] is False


def test_route_without_sinks_falls_back_to_default_sinks() -> None:
    config = enabled_webhook_config()
    config["routing"]["routes"] = [{"category": "health_degraded", "sinks": []}]
    catalog = sink_catalog.build_sink_catalog(config)
    route = sink_catalog.build_route_resolution(
        catalog, "health_degraded", None, source_file="c", env={}, env_check=False
    )
    assert [sink["id"] for sink in route["selectedSinks"]] == ["webhook-a"]


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(enabled_webhook_config())
    target: Any = config
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


SHAPE = "alert sink config has invalid top-level shape"
SINKS = "alert sink config sink definitions are invalid"
ROUTING = "alert sink config routing is invalid"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["schemaVersion"], "v2", SHAPE),
        (["defaultMinSeverity"], "loud", SHAPE),
        (["sinks"], {}, SHAPE),
        (["routing", "defaultSinks"], KeyError, SHAPE),
        (["routing", "categorySeverity"], [], SHAPE),
        (["routing", "routes"], {}, SHAPE),
        (["sinks", "webhook-a", "enabled"], "yes", SINKS),
        (["sinks", "webhook-a", "type"], "email", SINKS),
        (["sinks", "webhook-a", "timeoutSeconds"], 0, SINKS),
        (["sinks", "webhook-a", "timeoutSeconds"], 121, SINKS),
        (["sinks", "webhook-a", "timeoutSeconds"], "5", SINKS),
        (["sinks", "webhook-a", "urlEnv"], "lower_case", SINKS),
        (["sinks", "webhook-a", "authTokenEnv"], "9BAD", SINKS),
        (["sinks", "webhook-a", "headers"], {"X": 1}, SINKS),
        (["routing", "defaultSinks"], ["nope"], ROUTING),
        (["routing", "routes", 0, "category"], "", ROUTING),
        (["routing", "routes", 0, "enabled"], "yes", ROUTING),
        (["routing", "routes", 0, "minSeverity"], "loud", ROUTING),
        (["routing", "routes", 0, "sinks"], ["nope"], ROUTING),
        (["routing", "categorySeverity", "health_degraded"], "loud", ROUTING),
    ],
)
def test_validation_stages_fail_closed_with_their_message(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(ContractError) as excinfo:
        sink_catalog.build_sink_catalog(_mutated(path, value))
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["routing", "routes"], KeyError),
        (["routing", "routes"], None),
        (["sinks", "webhook-a", "timeoutSeconds"], 2.5),
        (["sinks", "webhook-a", "timeoutSeconds"], None),
        (["sinks", "webhook-a", "authTokenEnv"], None),
        (["routing", "routes", 0, "minSeverity"], KeyError),
    ],
)
def test_validation_accepts_what_the_script_accepts(path: list[Any], value: Any) -> None:
    catalog = sink_catalog.build_sink_catalog(_mutated(path, value))
    assert catalog.sinks[0].timeout_seconds in (5, 2.5)


def test_non_object_catalog_is_a_shape_error() -> None:
    with pytest.raises(ContractError, match=SHAPE):
        sink_catalog.build_sink_catalog(["not", "an", "object"])
