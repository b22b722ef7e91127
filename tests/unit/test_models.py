"""The custom-resource models: aliases, defaults, strictness, parse errors, condition helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from superloop_ops import errors
from superloop_ops.core.common import jsonutil
from superloop_ops.models import (
    ALL_KINDS,
    Fleet,
    FleetPolicy,
    Loop,
    PromotionApply,
    common,
    conditions,
)
from superloop_ops.models.fleet_policy import FleetPolicySpec, GovernanceSettings
from superloop_ops.models.loop import LoopSpec, ServiceSettings

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GROUP = "ops.superloop.dev/v1alpha1"


def loop_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"loopId": "demo-loop", "source": {"pvc": {"claimName": "repo"}}}
    base.update(spec)
    return {
        "apiVersion": GROUP,
        "kind": "Loop",
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": base,
    }


def governance(**over: Any) -> dict[str, Any]:
    gov = {
        "actor": "ops-user",
        "approvalRef": "CAB-1",
        "rationale": "pilot",
        "changedAt": "2026-02-23T00:00:00Z",
        "reviewBy": "2026-12-31T00:00:00Z",
    }
    gov.update(over)
    return gov


# -- camelCase round trip ---------------------------------------------------------------------


def test_loop_round_trips_with_camel_case_keys() -> None:
    body = loop_body(
        transport="sprite_service",
        service={"baseUrl": "http://svc:8787", "tokenSecretRef": {"name": "tok"}, "retryAttempts": 5},
        thresholds={"profile": "strict", "overrides": {"criticalIngestLagSeconds": 600}},
    )
    loop = Loop.from_body(body)
    assert loop.spec.service is not None
    assert loop.spec.service.base_url == "http://svc:8787"
    assert loop.spec.service.retry_attempts == 5
    dumped = loop.to_body()
    assert dumped["spec"]["service"]["tokenSecretRef"] == {"name": "tok", "key": "token"}
    assert dumped["spec"]["thresholds"]["overrides"] == {"criticalIngestLagSeconds": 600}
    assert "retry_attempts" not in str(dumped)
    assert Loop.from_body(dumped) == loop


def test_models_accept_python_names_too() -> None:
    spec = LoopSpec(
        loop_id="demo", transport="sprite_service", service=ServiceSettings(base_url="http://svc")
    )
    assert spec.to_body()["service"]["baseUrl"] == "http://svc"


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.crd.kind)
def test_kind_metadata_and_names(kind: type[common.KindModel]) -> None:
    assert kind.crd.crd_name == f"{kind.crd.plural}.ops.superloop.dev"
    assert kind.crd.categories == ("superloop",)
    assert kind.model_fields["kind"].default == kind.crd.kind


def test_metadata_keeps_what_the_operator_uses_and_ignores_server_fields() -> None:
    body = loop_body()
    body["metadata"].update(
        {
            "uid": "u-1",
            "generation": 3,
            "annotations": {"ops.superloop.dev/replay": "from-start"},
            "labels": {"team": "infra"},
            "ownerReferences": [
                {"apiVersion": GROUP, "kind": "Fleet", "name": "f", "uid": "u-0", "controller": True}
            ],
            "managedFields": [{"manager": "kubectl"}],
            "resourceVersion": "42",
        }
    )
    meta = Loop.from_body(body).metadata
    assert (meta.uid, meta.generation, meta.resource_version) == ("u-1", 3, "42")
    assert meta.annotations["ops.superloop.dev/replay"] == "from-start"
    assert meta.owner_references[0].kind == "Fleet"
    assert meta.owner_references[0].controller is True


# -- defaults --------------------------------------------------------------------------------


def test_loop_defaults_follow_the_reconcile_flags() -> None:
    spec = Loop.from_body(loop_body()).spec
    assert spec.transport == "local"
    assert (spec.thresholds.profile, spec.thresholds.overrides) == (None, None)
    assert (
        spec.thresholds.degraded_heartbeat_lag_seconds,
        spec.thresholds.critical_heartbeat_lag_seconds,
    ) == (
        120,
        300,
    )
    assert (spec.drift.min_confidence, spec.drift.required_streak, spec.drift.summary_window) == (
        "medium",
        3,
        200,
    )
    assert spec.alerts.enabled is True
    assert spec.alerts.sinks_config_map_ref is None
    assert (spec.max_events, spec.reconcile_interval_seconds, spec.suspend) == (0, 60, False)


def test_service_defaults_match_the_service_client() -> None:
    spec = Loop.from_body(loop_body(transport="sprite_service", service={"baseUrl": "http://svc"})).spec
    assert spec.service is not None
    svc = spec.service
    assert (
        svc.retry_attempts,
        svc.retry_backoff_seconds,
        svc.connect_timeout_seconds,
        svc.max_time_seconds,
    ) == (
        3,
        1,
        5,
        30,
    )
    assert svc.token_secret_ref is None


def test_fleet_policy_defaults_match_registry_normalisation() -> None:
    spec = FleetPolicy.from_body({"kind": "FleetPolicy", "metadata": {"name": "p"}, "spec": {}}).spec
    auto = spec.autonomous
    assert spec.mode == "advisory"
    assert spec.suppressions == {}
    assert spec.noise_controls.dedupe_window_seconds == 300
    assert auto.allow.categories == ["reconcile_failed", "health_critical"]
    assert auto.allow.intents == ["cancel"]
    assert (auto.thresholds.min_severity, auto.thresholds.min_confidence) == ("critical", "high")
    safety = auto.safety
    assert (safety.max_actions_per_run, safety.max_actions_per_loop, safety.cooldown_seconds) == (1, 1, 300)
    assert safety.kill_switch is False
    assert auto.governance is None
    rollout = auto.rollout
    assert rollout.canary_percent == 100
    assert rollout.scope.loop_ids == []
    assert rollout.selector.salt == "fleet-autonomous-rollout-v1"
    assert rollout.pause.manual is False
    ap = rollout.auto_pause
    assert (ap.enabled, ap.lookback_executions, ap.min_sample_size) == (True, 5, 3)
    assert (ap.ambiguity_rate_threshold, ap.failure_rate_threshold) == (0.4, 0.4)


def test_zero_and_false_are_kept_not_defaulted() -> None:
    spec = FleetPolicySpec.model_validate(
        {"autonomous": {"rollout": {"canaryPercent": 0, "autoPause": {"enabled": False}}}}
    )
    assert spec.autonomous.rollout.canary_percent == 0
    assert spec.autonomous.rollout.auto_pause.enabled is False


def test_fleet_and_promotion_defaults() -> None:
    fleet = Fleet.from_body({"kind": "Fleet", "spec": {"loops": [{"loopId": "a", "loopRef": {"name": "a"}}]}})
    assert (fleet.spec.max_parallel, fleet.spec.deterministic_order, fleet.spec.fleet_id) == (2, False, None)
    assert fleet.spec.loops[0].enabled is True
    apply = PromotionApply.from_body(
        {
            "kind": "PromotionApply",
            "spec": {
                "fleetRef": {"name": "f"},
                "intent": "resume",
                "governance": {"by": "me", "approvalRef": "CAB", "rationale": "r", "reviewWithinDays": 7},
            },
        }
    )
    assert (apply.spec.expand_step, apply.spec.dry_run, apply.spec.idempotency_key) == (25, False, None)


def test_fleet_entry_honours_enabled_false() -> None:
    fleet = Fleet.from_body(
        {"kind": "Fleet", "spec": {"loops": [{"loopId": "a", "loopRef": {"name": "a"}, "enabled": False}]}}
    )
    assert fleet.spec.loops[0].enabled is False


# -- strictness and errors -------------------------------------------------------------------


def test_unknown_spec_field_is_an_invalid_spec_error_with_its_path() -> None:
    with pytest.raises(
        errors.InvalidSpecError, match=r"invalid Loop demo: spec\.bogus: Extra inputs"
    ) as info:
        Loop.from_body(loop_body(bogus=1))
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


@pytest.mark.parametrize(
    ("field", "value"),
    [("suspend", "yes"), ("reconcileIntervalSeconds", "60"), ("maxEvents", 1.5), ("loopId", 7)],
)
def test_wrong_json_types_are_refused_not_coerced(field: str, value: object) -> None:
    with pytest.raises(errors.InvalidSpecError, match=rf"spec\.{field}"):
        Loop.from_body(loop_body(**{field: value}))


def test_status_and_metadata_tolerate_unknown_keys() -> None:
    body = loop_body()
    body["status"] = {"healthStatus": "healthy", "addedByNewerOperator": {"x": 1}}
    assert Loop.from_body(body).status.health_status == "healthy"


def test_from_body_refuses_another_kind_or_version() -> None:
    body = loop_body()
    body["kind"] = "Fleet"
    with pytest.raises(errors.InvalidSpecError, match="kind is 'Fleet'"):
        Loop.from_body(body)
    body = loop_body()
    body["apiVersion"] = "ops.superloop.dev/v1"
    with pytest.raises(errors.InvalidSpecError, match=r"apiVersion must be ops\.superloop\.dev/v1alpha1"):
        Loop.from_body(body)


def test_from_body_joins_every_problem_on_one_line() -> None:
    with pytest.raises(errors.InvalidSpecError) as info:
        Loop.from_body(loop_body(transport="ftp", maxEvents=-1))
    msg = str(info.value)
    assert "spec.transport: Input should be 'local' or 'sprite_service'" in msg
    assert "; spec.maxEvents: Input should be greater than or equal to 0" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.crd.kind)
def test_missing_spec_is_reported(kind: type[common.KindModel]) -> None:
    # The CRD requires spec too, so the two sides agree.
    with pytest.raises(errors.InvalidSpecError, match="spec: Field required"):
        kind.from_body({"kind": kind.crd.kind, "metadata": {"name": "x"}})


# -- rule mirrors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"transport": "sprite_service", "source": None}, "sprite_service loops require service.baseUrl"),
        ({"source": None}, "local loops require source.pvc"),
        (
            {
                "thresholds": {
                    "overrides": {"degradedIngestLagSeconds": 1000, "criticalIngestLagSeconds": 900}
                }
            },
            "critical ingest lag threshold must be >= degraded threshold",
        ),
        (
            {"thresholds": {"degradedHeartbeatLagSeconds": 301}},
            "critical heartbeat lag threshold must be >= degraded threshold",
        ),
    ],
)
def test_loop_cross_field_rules(spec: dict[str, Any], message: str) -> None:
    body = loop_body(**spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    with pytest.raises(errors.InvalidSpecError, match=message):
        Loop.from_body(body)


def test_equal_critical_and_degraded_thresholds_are_fine() -> None:
    spec = loop_body(thresholds={"overrides": {"degradedIngestLagSeconds": 5, "criticalIngestLagSeconds": 5}})
    assert Loop.from_body(spec).spec.thresholds.overrides is not None


@pytest.mark.parametrize("missing", ["actor", "approvalRef", "rationale", "changedAt", "reviewBy"])
def test_guarded_auto_requires_each_governance_field(missing: str) -> None:
    gov = governance()
    del gov[missing]
    with pytest.raises(pydantic.ValidationError, match=f"governance.{missing} is required when policy.mode"):
        FleetPolicySpec.model_validate({"mode": "guarded_auto", "autonomous": {"governance": gov}})
    # Advisory mode accepts partial governance.
    FleetPolicySpec.model_validate({"mode": "advisory", "autonomous": {"governance": gov}})


def test_guarded_auto_without_governance_reports_one_message() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        FleetPolicySpec.model_validate({"mode": "guarded_auto"})
    assert [e["msg"] for e in info.value.errors()] == [
        "Value error, policy.autonomous.governance is required when policy.mode is guarded_auto"
    ]


@pytest.mark.parametrize(
    ("changed", "review", "ok"),
    [
        ("2026-02-23T00:00:00Z", "2026-02-23T00:00:01Z", True),
        ("2026-02-23T00:00:00Z", "2026-02-23T00:00:00Z", False),
        ("2026-02-23T00:00:00Z", "2026-02-22T23:59:59Z", False),
    ],
)
def test_review_by_must_follow_changed_at(changed: str, review: str, ok: bool) -> None:
    raw = {"changedAt": changed, "reviewBy": review}
    if ok:
        GovernanceSettings.model_validate(raw)
    else:
        with pytest.raises(pydantic.ValidationError, match="reviewBy must be after"):
            GovernanceSettings.model_validate(raw)


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-30T00:00:00Z",
        "2026-02-23T00:00:00.000Z",
        "2026-02-23T00:00:00+00:00",
        "2026-02-23",
        "2026-02-23t00:00:00z",
    ],
)
def test_timestamps_are_strict(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        GovernanceSettings.model_validate({"changedAt": value})
    with pytest.raises(ValueError, match="ISO-8601"):
        common.parse_timestamp(value)


def test_review_expiry_is_relative_to_now() -> None:
    gov = GovernanceSettings.model_validate(
        governance(reviewBy=common.format_timestamp(NOW + timedelta(days=1)))
    )
    assert gov.review_expired(NOW) is False
    assert gov.review_expired(NOW + timedelta(days=1)) is True
    assert GovernanceSettings().review_expired(NOW) is True


def test_suppression_keys_and_scope_duplicates() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"policy\.suppressions keys must be a loopId or"):
        FleetPolicySpec.model_validate({"suppressions": {"bad key": ["health_degraded"]}})
    FleetPolicySpec.model_validate({"suppressions": {"*": [], "loop-a": ["reconcile_failed"]}})
    with pytest.raises(pydantic.ValidationError, match=r"scope\.loopIds entries must be unique"):
        FleetPolicySpec.model_validate({"autonomous": {"rollout": {"scope": {"loopIds": ["a", "a"]}}}})


def test_fleet_loop_ids_must_be_unique() -> None:
    body = {"kind": "Fleet", "spec": {"loops": [{"loopId": "a", "loopRef": {"name": "x"}}] * 2}}
    with pytest.raises(errors.InvalidSpecError, match="loopId values must be unique"):
        Fleet.from_body(body)


def test_fleet_sprite_entry_accepts_either_base_url() -> None:
    entry = {"loopId": "a", "transport": "sprite_service", "sprite": {"serviceBaseUrl": "http://s"}}
    Fleet.from_body({"kind": "Fleet", "spec": {"loops": [entry]}})
    entry = {"loopId": "a", "transport": "sprite_service", "service": {"baseUrl": "http://s"}}
    Fleet.from_body({"kind": "Fleet", "spec": {"loops": [entry]}})


@pytest.mark.parametrize(
    "gov",
    [
        {"by": "me", "approvalRef": "CAB", "rationale": "r"},
        {
            "by": "me",
            "approvalRef": "CAB",
            "rationale": "r",
            "reviewWithinDays": 7,
            "reviewBy": "2026-04-01T00:00:00Z",
        },
    ],
)
def test_promotion_apply_needs_exactly_one_review_form(gov: dict[str, Any]) -> None:
    body = {
        "kind": "PromotionApply",
        "spec": {"fleetRef": {"name": "f"}, "intent": "expand", "governance": gov},
    }
    with pytest.raises(errors.InvalidSpecError, match="exactly one of reviewBy or reviewWithinDays"):
        PromotionApply.from_body(body)


def test_transition_rules_have_no_python_mirror_and_are_emitted() -> None:
    from superloop_ops.models.handoff_intent import HandoffIntentSpec

    rules = HandoffIntentSpec.cel_rules
    assert [(r.rule, r.check) for r in rules] == [("self == oldSelf", None)]
    schema = HandoffIntentSpec.model_json_schema(by_alias=True)
    assert schema["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


# -- conditions ------------------------------------------------------------------------------


def test_condition_type_constants() -> None:
    assert (conditions.READY, conditions.HEALTHY, conditions.DEGRADED, conditions.DIVERGED) == (
        "Ready",
        "Healthy",
        "Degraded",
        "Diverged",
    )
    assert (conditions.APPROVED, conditions.EXECUTED, conditions.APPLIED) == (
        "Approved",
        "Executed",
        "Applied",
    )


def test_from_body_accepts_read_only_mapping_views() -> None:
    from types import MappingProxyType

    body = loop_body(transport="sprite_service", service={"baseUrl": "http://svc"})
    body["spec"]["service"] = MappingProxyType(body["spec"]["service"])
    view = MappingProxyType({**body, "spec": MappingProxyType(body["spec"])})
    loop = Loop.from_body(view)
    assert loop.spec.service is not None
    assert loop.spec.service.base_url == "http://svc"


def test_json_object_is_defined_once_in_models_common() -> None:
    """The core's ``jsonutil.JsonObject`` is the models' alias, not a second definition."""
    assert jsonutil.JsonObject is common.JsonObject


# -- registry bridge -------------------------------------------------------------------------


def _sample(name: str) -> dict[str, Any]:
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "config" / "samples" / name
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(body, dict)
    return body


def test_samples_make_a_registry_the_core_validator_accepts() -> None:
    from superloop_ops.core.fleet import fleet_registry
    from superloop_ops.models.fleet import build_registry_document

    fleet = Fleet.from_body(_sample("fleet.yaml"))
    policy = FleetPolicy.from_body(_sample("fleetpolicy.yaml"))
    loop = Loop.from_body(_sample("loop.yaml"))
    doc = build_registry_document(
        fleet.spec, fleet_name="demo-fleet", policy=policy.spec, referenced={"demo-loop": loop.spec}
    )
    assert fleet_registry.compute_registry_errors(doc, NOW) == []
    assert [entry["transport"] for entry in doc["loops"]] == ["local", "sprite_service", "local"]
    assert doc["loops"][1]["service"] == {
        "baseUrl": "http://loop-blue-sprite.superloop.svc:8787",
        "retryAttempts": 3,
        "retryBackoffSeconds": 1,
    }
    assert doc["loops"][1]["sprite"] == {"id": "sprite-1", "assignment": "pool-x"}
    assert doc["policy"]["autonomous"]["rollout"]["canaryPercent"] == 25


def test_registry_document_applies_the_effective_posture_and_names_missing_refs() -> None:
    from superloop_ops.models.fleet import build_registry_document
    from superloop_ops.models.fleet_policy import EffectiveRollout

    fleet = Fleet.from_body(_sample("fleet.yaml"))
    policy = FleetPolicy.from_body(_sample("fleetpolicy.yaml"))
    with pytest.raises(errors.DependencyNotReadyError, match="Loop 'demo-loop'"):
        build_registry_document(fleet.spec, fleet_name="x", policy=policy.spec)
    effective = EffectiveRollout(canary_percent=50, manual_pause=True, governance=governance())
    loop = Loop.from_body(_sample("loop.yaml"))
    doc = build_registry_document(
        fleet.spec,
        fleet_name="x",
        policy=policy.spec,
        effective=effective,
        referenced={"demo-loop": loop.spec},
    )
    rollout = doc["policy"]["autonomous"]["rollout"]
    assert (rollout["canaryPercent"], rollout["pause"]["manual"]) == (50, True)
    assert doc["policy"]["autonomous"]["governance"] == governance()
    assert policy.spec.autonomous.rollout.canary_percent == 25  # the spec object is untouched
    no_policy = build_registry_document(
        fleet.spec, fleet_name="x", policy=None, referenced={"demo-loop": loop.spec}
    )
    assert "policy" not in no_policy
    assert no_policy["fleetId"] == "demo-fleet"
