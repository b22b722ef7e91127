"""Fleet registry validation (exact messages, emission order) and normalisation (fleet §1)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
WHEN_GUARDED = "when policy.mode is guarded_auto"


def governance(**overrides: Any) -> dict[str, Any]:
    base = {
        "actor": "ops-user",
        "approvalRef": "CAB-1",
        "rationale": "dogfood guarded auto",
        "changedAt": format_ts(NOW - dt.timedelta(days=30)),
        "reviewBy": format_ts(NOW + dt.timedelta(days=281)),
    }
    base.update(overrides)
    return base


def registry(*loops: dict[str, Any], **policy: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": "v1",
        "fleetId": "fleet-x",
        "loops": list(loops) or [{"loopId": "loop-a"}],
    }
    if policy:
        doc["policy"] = policy
    return doc


def errors(doc: Any) -> list[str]:
    return fleet_registry.compute_registry_errors(doc, NOW)


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    assert errors(doc) == []
    return fleet_registry.build_normalized_registry(doc, "/repo/registry.v1.json")


# --- the ten registry scenarios of the reference suite -----------------------------------------


# fleet.bats #1: a sprite_service loop without a base URL is refused
def test_sprite_service_loop_needs_a_base_url() -> None:
    doc = registry({"loopId": "loop-a", "transport": "sprite_service"})
    assert errors(doc) == ["loops[0]: sprite_service loops require service.baseUrl or sprite.serviceBaseUrl"]


# fleet.bats #2: an unknown category under the * suppression is refused
def test_unknown_category_in_the_wildcard_suppression_is_refused() -> None:
    doc = registry(suppressions={"*": ["health_degraded", "made_up"]})
    assert errors(doc) == ["policy.suppressions.* contains unknown categories"]


# fleet.bats #3: guarded_auto with full governance normalises custom allow/thresholds/safety
def test_guarded_auto_with_full_governance_normalises_custom_controls() -> None:
    doc = registry(
        mode="guarded_auto",
        autonomous={
            "allow": {"categories": ["reconcile_failed", "health_critical"], "intents": ["cancel"]},
            "thresholds": {"minSeverity": "warning", "minConfidence": "high"},
            "safety": {"maxActionsPerRun": 3, "maxActionsPerLoop": 1, "cooldownSeconds": 120},
            "governance": governance(changedAt="2026-02-23T00:00:00Z", reviewBy="2026-12-31T00:00:00Z"),
        },
    )
    out = normalized(doc)
    auto = out["policy"]["autonomous"]
    assert out["policy"]["mode"] == "guarded_auto"
    assert auto["enabled"] is True
    assert auto["allow"]["categories"] == ["reconcile_failed", "health_critical"]
    assert auto["thresholds"]["minSeverity"] == "warning"
    assert auto["safety"]["maxActionsPerRun"] == 3
    assert auto["governance"]["actor"] == "ops-user"
    # Fixed past data with a fixed NOW: the spec's worked example of the derived window.
    assert auto["governance"]["reviewWindowDays"] == 311


# fleet.bats #4: an unsupported allow.categories value is refused
def test_unsupported_autonomous_category_is_refused() -> None:
    doc = registry(autonomous={"allow": {"categories": ["reconcile_failed", "loop_on_fire"]}})
    assert errors(doc) == ["policy.autonomous.allow.categories contains unsupported categories"]


# fleet.bats #5: approve in allow.intents is refused
def test_approve_is_not_an_autonomous_intent() -> None:
    doc = registry(autonomous={"allow": {"intents": ["cancel", "approve"]}})
    assert errors(doc) == ["policy.autonomous.allow.intents contains unsupported intents"]


# fleet.bats #6: bad minConfidence and a negative run cap give both messages
def test_bad_confidence_and_negative_run_cap_both_reported_in_order() -> None:
    doc = registry(
        autonomous={"thresholds": {"minConfidence": "certain"}, "safety": {"maxActionsPerRun": -1}}
    )
    assert errors(doc) == [
        "policy.autonomous.thresholds.minConfidence must be one of high, medium, low",
        "policy.autonomous.safety.maxActionsPerRun must be an integer >= 0 when present",
    ]


# fleet.bats #7: rollout canary and scope normalise with cohort defaults
def test_rollout_controls_normalise_with_cohort_defaults() -> None:
    doc = registry(
        {"loopId": "loop-a"},
        {"loopId": "loop-b"},
        autonomous={"rollout": {"canaryPercent": 40, "scope": {"loopIds": ["loop-a"]}}},
    )
    rollout = normalized(doc)["policy"]["autonomous"]["rollout"]
    assert rollout["canaryPercent"] == 40
    assert rollout["scope"]["loopIds"] == ["loop-a"]
    assert rollout["selector"]["salt"] == "fleet-autonomous-rollout-v1"
    assert rollout["autoPause"]["enabled"] is True
    assert rollout["autoPause"]["lookbackExecutions"] == 5


# fleet.bats #8: canary 101, unknown scope id, failure rate 1.5: one message each
def test_invalid_rollout_controls_give_one_message_each() -> None:
    doc = registry(
        autonomous={
            "rollout": {
                "canaryPercent": 101,
                "scope": {"loopIds": ["loop-zzz"]},
                "autoPause": {"failureRateThreshold": 1.5},
            }
        }
    )
    assert errors(doc) == [
        "policy.autonomous.rollout.canaryPercent must be an integer between 0 and 100 when present",
        "policy.autonomous.rollout.scope.loopIds entries must reference declared loopIds",
        "policy.autonomous.rollout.autoPause.failureRateThreshold must be a number between 0 and 1"
        " when present",
    ]


# fleet.bats #9: guarded_auto without governance lists every missing field
def test_guarded_auto_without_governance_lists_every_missing_field() -> None:
    found = errors(registry(mode="guarded_auto"))
    assert found == [
        "policy.autonomous.governance is required when policy.mode is guarded_auto",
        "policy.autonomous.governance.actor is required when policy.mode is guarded_auto",
        "policy.autonomous.governance.approvalRef is required when policy.mode is guarded_auto",
        "policy.autonomous.governance.rationale is required when policy.mode is guarded_auto",
        f"policy.autonomous.governance.changedAt must be an ISO-8601 timestamp {WHEN_GUARDED}",
        f"policy.autonomous.governance.reviewBy must be an ISO-8601 timestamp {WHEN_GUARDED}",
    ]


# fleet.bats #10: guarded_auto with a past reviewBy is refused
def test_guarded_auto_review_deadline_in_the_past_is_refused() -> None:
    doc = registry(
        mode="guarded_auto",
        autonomous={
            "governance": governance(
                changedAt=format_ts(NOW - dt.timedelta(days=90)),
                reviewBy=format_ts(NOW - dt.timedelta(days=1)),
            )
        },
    )
    assert errors(doc) == [
        "policy.autonomous.governance.reviewBy must be in the future when policy.mode is guarded_auto"
    ]


# --- other rules and fixed reference defects ----------------------------------------------------


def test_top_level_errors_come_first_and_are_all_collected() -> None:
    assert errors({"fleetId": 5, "loops": []}) == [
        'schemaVersion must be "v1"',
        "fleetId must be a string when present",
        "loops must include at least one loop entry",
    ]
    assert errors({"schemaVersion": "v1"}) == ["loops must be an array"]


def test_duplicate_loop_ids_and_per_loop_checks_in_order() -> None:
    doc = registry(
        {"loopId": "a"},
        {
            "loopId": "a",
            "enabled": "yes",
            "transport": "ftp",
            "service": {"tokenEnv": "", "retryAttempts": 0},
        },
    )
    assert errors(doc) == [
        "loopId values must be unique",
        "loops[1]: enabled must be boolean when present",
        "loops[1]: transport must be local or sprite_service",
        "loops[1]: service.tokenEnv must be a non-empty string when present",
        "loops[1]: service.retryAttempts must be >= 1 when present",
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("loop-a", "loops[0]: entry must be an object"),
        ({"loopId": "a", "sprite": "s"}, "loops[0]: sprite must be an object when present"),
        ({"loopId": "a", "service": "t"}, "loops[0]: service must be an object when present"),
        ({"loopId": "a", "metadata": []}, "loops[0]: metadata must be an object when present"),
    ],
)
def test_non_object_values_get_a_message_instead_of_a_crash(entry: Any, message: str) -> None:
    assert message in errors(registry(entry))


def test_non_object_policy_gets_a_message() -> None:
    doc = registry()
    doc["policy"] = []
    assert errors(doc) == ["policy must be an object when present"]


def test_empty_service_base_url_wins_over_a_sprite_base_url() -> None:
    doc = registry(
        {
            "loopId": "a",
            "transport": "sprite_service",
            "service": {"baseUrl": ""},
            "sprite": {"serviceBaseUrl": "http://svc"},
        }
    )
    assert errors(doc) == ["loops[0]: sprite_service loops require service.baseUrl or sprite.serviceBaseUrl"]


def test_governance_order_rule_reports_both_generic_and_guarded_variants() -> None:
    gov = governance(
        changedAt=format_ts(NOW + dt.timedelta(days=20)), reviewBy=format_ts(NOW + dt.timedelta(days=10))
    )
    assert errors(registry(mode="guarded_auto", autonomous={"governance": gov})) == [
        "policy.autonomous.governance.reviewBy must be after policy.autonomous.governance.changedAt",
        "policy.autonomous.governance.reviewBy must be after policy.autonomous.governance.changedAt"
        " when policy.mode is guarded_auto",
    ]


def test_only_the_strict_timestamp_form_parses() -> None:
    gov = {"changedAt": "2026-03-01T00:00:00.123Z", "reviewBy": "2030-02-01T00:00:00+00:00"}
    assert errors(registry(autonomous={"governance": gov})) == [
        "policy.autonomous.governance.changedAt must be an ISO-8601 timestamp when present",
        "policy.autonomous.governance.reviewBy must be an ISO-8601 timestamp when present",
    ]


def test_scope_and_suppression_key_rules() -> None:
    doc = registry(
        autonomous={"rollout": {"scope": {"loopIds": ["loop-a", "loop-a"]}, "selector": {"salt": ""}}},
        suppressions={"ghost": ["health_degraded"], "loop-a": "health_degraded"},
    )
    assert errors(doc) == [
        "policy.autonomous.rollout.scope.loopIds entries must be unique",
        "policy.autonomous.rollout.selector.salt must be non-empty when present",
        "policy.suppressions.ghost key must reference a declared loopId or *",
        "policy.suppressions.loop-a must be an array",
    ]


def test_integral_floats_count_as_integers() -> None:
    doc = registry(
        noiseControls={"dedupeWindowSeconds": 5.0}, autonomous={"safety": {"cooldownSeconds": 1.5}}
    )
    assert errors(doc) == ["policy.autonomous.safety.cooldownSeconds must be an integer >= 0 when present"]


def test_defaults_of_a_minimal_registry() -> None:
    out = normalized({"schemaVersion": "v1", "loops": [{"loopId": "a", "sprite": {"id": "s", "extra": 1}}]})
    assert out["fleetId"] == "default"
    assert out["loopCount"] == 1
    assert out["loops"][0] == {
        "loopId": "a",
        "enabled": True,
        "transport": "local",
        "sprite": {"id": "s"},
        "service": {"retryAttempts": 3, "retryBackoffSeconds": 1},
        "metadata": {},
    }
    policy = out["policy"]
    assert policy["mode"] == "advisory"
    assert policy["noiseControls"] == {"dedupeWindowSeconds": 300}
    assert policy["autonomous"]["enabled"] is False
    assert policy["autonomous"]["governance"] == {}
    assert policy["autonomous"]["safety"] == {
        "maxActionsPerRun": 1,
        "maxActionsPerLoop": 1,
        "cooldownSeconds": 300,
        "killSwitch": False,
    }


def test_base_urls_are_shared_between_sprite_and_service() -> None:
    out = normalized(
        registry({"loopId": "a", "transport": "sprite_service", "sprite": {"serviceBaseUrl": "http://s"}})
    )
    assert out["loops"][0]["service"]["baseUrl"] == "http://s"
    assert out["loops"][0]["sprite"]["serviceBaseUrl"] == "http://s"


def test_zero_values_are_kept() -> None:
    doc = registry(noiseControls={"dedupeWindowSeconds": 0}, autonomous={"rollout": {"canaryPercent": 0}})
    out = normalized(doc)
    assert out["policy"]["noiseControls"]["dedupeWindowSeconds"] == 0
    assert out["policy"]["autonomous"]["rollout"]["canaryPercent"] == 0


def test_regression_enabled_false_stays_false() -> None:
    out = normalized(registry({"loopId": "a", "enabled": False}))
    assert out["loops"][0]["enabled"] is False


def test_regression_auto_pause_can_be_disabled() -> None:
    out = normalized(registry(autonomous={"rollout": {"autoPause": {"enabled": False}}}))
    assert out["policy"]["autonomous"]["rollout"]["autoPause"]["enabled"] is False


def test_loop_selection_and_unknown_loop() -> None:
    out = normalized(registry({"loopId": "a"}, {"loopId": "b"}))
    picked = fleet_registry.select_registry_loop(out, "b")
    assert [loop["loopId"] for loop in picked["loops"]] == ["b"]
    assert picked["loopCount"] == 1
    with pytest.raises(fleet_registry.LoopNotFoundError, match="loop not found in registry: zzz"):
        fleet_registry.select_registry_loop(out, "zzz")


def test_normalisation_does_not_mutate_its_input() -> None:
    doc = registry({"loopId": "a", "metadata": {"team": "x"}}, suppressions={"*": ["health_degraded"]})
    before = copy.deepcopy(doc)
    normalized(doc)
    assert doc == before
