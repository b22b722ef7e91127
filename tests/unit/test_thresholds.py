"""Threshold profile catalog, resolver and per-field merge (tuning spec §1, loop-core §5.2/§5.3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.core.loop import threshold_profiles
from superloop_ops.errors import ContractError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "ops-manager-threshold-profiles.v1.json"


@pytest.fixture
def catalog() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SHIPPED.read_text())
    return document


def test_shipped_catalog_has_the_contract_profiles(catalog: dict[str, Any]) -> None:
    assert catalog["defaultProfile"] == "balanced"
    expected = {
        "strict": (120, 300, 1, 2),
        "balanced": (300, 900, 2, 4),
        "relaxed": (600, 1800, 3, 6),
    }
    for name, numbers in expected.items():
        profile = catalog["profiles"][name]
        assert tuple(profile[key] for key in threshold_profiles.PROFILE_KEYS) == numbers


def test_list_is_byte_sorted(catalog: dict[str, Any]) -> None:
    assert threshold_profiles.compute_profile_names(catalog) == ["balanced", "relaxed", "strict"]
    catalog["profiles"]["Zeta"] = {}
    # upper case sorts before lower case; list mode does not validate values
    assert threshold_profiles.compute_profile_names(catalog)[0] == "Zeta"


def test_resolver_defaults_to_balanced(catalog: dict[str, Any]) -> None:
    resolved = threshold_profiles.compute_profile(catalog, source_file="cat.json")
    document = resolved.to_document()
    assert document["profile"] == "balanced"
    assert document["values"]["criticalTransportFailureStreak"] == 4
    assert document["sourceFile"] == "cat.json"
    assert list(document) == ["schemaVersion", "sourceFile", "profile", "values", "description"]


def test_resolver_selects_named_profile(catalog: dict[str, Any]) -> None:
    resolved = threshold_profiles.compute_profile(catalog, source_file="x", profile="strict")
    assert resolved.profile == "strict"
    assert resolved.values["degradedIngestLagSeconds"] == 120


def test_description_is_optional(catalog: dict[str, Any]) -> None:
    del catalog["profiles"]["strict"]["description"]
    document = threshold_profiles.compute_profile(catalog, source_file="x", profile="strict").to_document()
    assert "description" not in document


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(schemaVersion="v2"), "threshold profiles file has invalid shape"),
        (lambda c: c.update(profiles={}), "threshold profiles file has invalid shape"),
        (lambda c: c.update(profiles=[]), "threshold profiles file has invalid shape"),
        (lambda c: c.pop("defaultProfile"), "profile name is required and defaultProfile is missing"),
        (lambda c: c.update(defaultProfile=""), "profile name is required and defaultProfile is missing"),
        (lambda c: c.update(defaultProfile="gone"), "unknown threshold profile: gone"),
        (
            lambda c: c["profiles"]["balanced"].update(criticalIngestLagSeconds="900"),
            "threshold profile values are invalid: balanced",
        ),
        (
            lambda c: c["profiles"]["balanced"].update(criticalIngestLagSeconds=10),
            "threshold profile values are invalid: balanced",
        ),
        (
            lambda c: c["profiles"]["balanced"].update(criticalTransportFailureStreak=1),
            "threshold profile values are invalid: balanced",
        ),
        (
            lambda c: c["profiles"]["balanced"].pop("degradedTransportFailureStreak"),
            "threshold profile values are invalid: balanced",
        ),
    ],
)
def test_resolver_fails_closed(catalog: dict[str, Any], mutate: Any, message: str) -> None:
    broken = copy.deepcopy(catalog)
    mutate(broken)
    with pytest.raises(ContractError, match=f"^{message}$"):
        threshold_profiles.compute_profile(broken, source_file="x")


def test_unknown_profile_name(catalog: dict[str, Any]) -> None:
    with pytest.raises(ContractError, match="unknown threshold profile: unknown"):
        threshold_profiles.compute_profile(catalog, source_file="x", profile="unknown")


def test_resolver_accepts_non_integers_but_merge_rejects_them(catalog: dict[str, Any]) -> None:
    catalog["profiles"]["balanced"]["degradedIngestLagSeconds"] = 1.5
    resolved = threshold_profiles.compute_profile(catalog, source_file="x")
    with pytest.raises(ContractError, match=r"^degraded-ingest-lag-seconds must be a non-negative integer$"):
        threshold_profiles.compute_thresholds(resolved)


def _resolved(catalog: dict[str, Any], name: str | None = None) -> threshold_profiles.ResolvedProfile:
    return threshold_profiles.compute_profile(catalog, source_file="x", profile=name)


def test_merge_uses_profile_values_and_heartbeat_defaults(catalog: dict[str, Any]) -> None:
    merged = threshold_profiles.compute_thresholds(_resolved(catalog, "strict"))
    assert merged.to_document() == {
        "profile": "strict",
        "degradedIngestLagSeconds": 120,
        "criticalIngestLagSeconds": 300,
        "degradedHeartbeatLagSeconds": 120,
        "criticalHeartbeatLagSeconds": 300,
        "degradedTransportFailureStreak": 1,
        "criticalTransportFailureStreak": 2,
    }


def test_explicit_values_win_per_field_and_profile_name_is_kept(catalog: dict[str, Any]) -> None:
    merged = threshold_profiles.compute_thresholds(
        _resolved(catalog, "strict"), {"criticalIngestLagSeconds": "777", "degradedIngestLagSeconds": None}
    )
    assert merged.profile == "strict"
    assert merged.critical_ingest_lag_seconds == 777
    assert merged.degraded_ingest_lag_seconds == 120


def test_explicit_value_equal_to_default_still_counts(catalog: dict[str, Any]) -> None:
    explicit = {key: "5" for key in threshold_profiles.PROFILE_KEYS}
    merged = threshold_profiles.compute_thresholds(_resolved(catalog, "relaxed"), explicit)
    assert merged.profile == "relaxed"
    assert merged.degraded_transport_failure_streak == 5


def test_degraded_override_above_profile_critical_fails(catalog: dict[str, Any]) -> None:
    with pytest.raises(ContractError, match=r"^critical ingest lag threshold must be >= degraded threshold$"):
        threshold_profiles.compute_thresholds(_resolved(catalog), {"degradedIngestLagSeconds": "999999"})


@pytest.mark.parametrize(
    ("explicit", "message"),
    [
        ({"degradedHeartbeatLagSeconds": "10", "criticalHeartbeatLagSeconds": "5"}, "critical heartbeat lag"),
        ({"criticalTransportFailureStreak": "1"}, "critical transport failure threshold"),
        ({"criticalHeartbeatLagSeconds": "-1"}, "critical-heartbeat-lag-seconds must be a non-negative"),
        ({"degradedTransportFailureStreak": "2.0"}, "degraded-transport-failure-streak must be"),
        ({"degradedIngestLagSeconds": " 5"}, "degraded-ingest-lag-seconds must be"),
    ],
)
def test_merge_validation(catalog: dict[str, Any], explicit: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        threshold_profiles.compute_thresholds(_resolved(catalog), explicit)


def test_zero_thresholds_are_allowed(catalog: dict[str, Any]) -> None:
    explicit = {key: "0" for key, _ in threshold_profiles.THRESHOLD_FIELDS}
    merged = threshold_profiles.compute_thresholds(_resolved(catalog), explicit)
    assert merged.critical_transport_failure_streak == 0


def test_without_profile_builtin_defaults_apply() -> None:
    merged = threshold_profiles.compute_thresholds(None)
    assert merged.profile is None
    assert (merged.degraded_ingest_lag_seconds, merged.critical_transport_failure_streak) == (300, 4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (7, 7),
        ("12", 12),
        (3.0, 3),
        (1.5, None),
        (-1, None),
        (True, None),
        ("1e3", None),
        (None, None),
    ],
)
def test_coerce_non_negative_int(value: object, expected: int | None) -> None:
    assert threshold_profiles.coerce_non_negative_int(value) == expected


def test_shipped_profiles_carry_a_lifecycle_policy() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config" / "ops-manager-threshold-profiles.v1.json"
    catalog = json.loads(shipped.read_text())
    for name in ("strict", "balanced", "relaxed"):
        policy = threshold_profiles.compute_profile(catalog, source_file="c", profile=name).lifecycle
        assert policy.approval_critical_seconds == 0  # an approval wait never pages by default
        assert policy.stop_severity["run_dead"] == "critical"
        assert policy.stop_severity["run_cancelled"] == "info"
    balanced = threshold_profiles.compute_profile(catalog, source_file="c", profile="balanced")
    assert threshold_profiles.compute_thresholds(balanced).lifecycle.approval_reminder_seconds == 900


@pytest.mark.parametrize(
    "lifecycle",
    [
        "soon",
        {"approvalReminderSeconds": -1},
        {"approvalReminderSeconds": 900, "approvalCriticalSeconds": 60},
        {"stopSeverity": {"run_dead": "page"}},
        {"stopSeverity": {"run_unheard_of": "info"}},
    ],
)
def test_a_bad_lifecycle_policy_fails_closed(lifecycle: object) -> None:
    catalog = {
        "schemaVersion": "v1",
        "profiles": {
            "p": {
                "degradedIngestLagSeconds": 1,
                "criticalIngestLagSeconds": 2,
                "degradedTransportFailureStreak": 1,
                "criticalTransportFailureStreak": 2,
                "lifecycle": lifecycle,
            }
        },
    }
    with pytest.raises(ContractError, match="lifecycle is invalid: p"):
        threshold_profiles.compute_profile(catalog, source_file="c", profile="p")
