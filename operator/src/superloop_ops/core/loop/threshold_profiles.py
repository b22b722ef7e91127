"""Threshold profiles: catalog validation, profile resolution and the per-field merge.

A catalog names a few profiles (``strict``/``balanced``/``relaxed`` ship with the product), each
holding the four profile-driven thresholds. Reconcile resolves one profile (explicit name, else
the catalog's ``defaultProfile``) and then lets explicit values win field by field. Heartbeat
thresholds are not part of profiles. The resolver accepts any JSON numbers (as the reference
does); the merge then insists on non-negative integers, so a profile holding ``1.5`` fails there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.errors import ContractError

__all__ = [
    "DEFAULT_HEARTBEAT_THRESHOLDS",
    "DEFAULT_STOP_SEVERITY",
    "PROFILE_KEYS",
    "SEVERITIES",
    "THRESHOLD_FIELDS",
    "LifecyclePolicy",
    "ResolvedProfile",
    "Thresholds",
    "coerce_non_negative_int",
    "compute_lifecycle_policy",
    "compute_profile",
    "compute_profile_names",
    "compute_thresholds",
    "validate_catalog_shape",
]

PROFILE_KEYS: tuple[str, ...] = (
    "degradedIngestLagSeconds",
    "criticalIngestLagSeconds",
    "degradedTransportFailureStreak",
    "criticalTransportFailureStreak",
)

# health.json key -> CLI flag name (used in error messages), in the health document's order.
THRESHOLD_FIELDS: tuple[tuple[str, str], ...] = (
    ("degradedIngestLagSeconds", "degraded-ingest-lag-seconds"),
    ("criticalIngestLagSeconds", "critical-ingest-lag-seconds"),
    ("degradedHeartbeatLagSeconds", "degraded-heartbeat-lag-seconds"),
    ("criticalHeartbeatLagSeconds", "critical-heartbeat-lag-seconds"),
    ("degradedTransportFailureStreak", "degraded-transport-failure-streak"),
    ("criticalTransportFailureStreak", "critical-transport-failure-streak"),
)

DEFAULT_HEARTBEAT_THRESHOLDS: Mapping[str, int] = {
    "degradedHeartbeatLagSeconds": 120,
    "criticalHeartbeatLagSeconds": 300,
}

# Used only when no profile is involved at all (standalone health command).
_BUILTIN_DEFAULTS: Mapping[str, int] = {
    "degradedIngestLagSeconds": 300,
    "criticalIngestLagSeconds": 900,
    "degradedTransportFailureStreak": 2,
    "criticalTransportFailureStreak": 4,
    **DEFAULT_HEARTBEAT_THRESHOLDS,
}

_DIGITS = re.compile(r"\A[0-9]+\Z")

SEVERITIES: tuple[str, ...] = ("info", "degraded", "critical")
"""Reason severities; an ``info`` reason is reported but leaves the loop healthy."""

DEFAULT_STOP_SEVERITY: Mapping[str, str] = {
    "run_dead": "critical",
    "run_failed": "degraded",
    "run_timed_out": "degraded",
    "run_rate_limited": "degraded",
    "run_stuck": "degraded",
    "run_max_iterations": "degraded",
    "run_stopped": "degraded",
    "run_cancelled": "info",
}
"""Severity of each way a run ends other than completing (profiles may override, issue 11)."""


@dataclass(frozen=True)
class LifecyclePolicy:
    """How health judges runs that are not producing: an approval wait and the stops.

    The approval wait is ``info`` until ``approval_reminder_seconds`` (then ``degraded``, a
    reminder) and becomes ``critical`` only when ``approval_critical_seconds`` is non-zero.
    """

    approval_reminder_seconds: int = 900
    approval_critical_seconds: int = 0
    stop_severity: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STOP_SEVERITY))


def compute_lifecycle_policy(raw: object, *, name: str = "default") -> LifecyclePolicy:
    """A profile's optional ``lifecycle`` object over the defaults; bad values fail closed."""
    if raw is None:
        return LifecyclePolicy()
    if not isinstance(raw, Mapping):
        raise ContractError(f"threshold profile lifecycle is invalid: {name}")
    defaults = LifecyclePolicy()
    reminder = coerce_non_negative_int(raw.get("approvalReminderSeconds", defaults.approval_reminder_seconds))
    critical = coerce_non_negative_int(raw.get("approvalCriticalSeconds", defaults.approval_critical_seconds))
    severities = raw.get("stopSeverity", {})
    if reminder is None or critical is None or not isinstance(severities, Mapping):
        raise ContractError(f"threshold profile lifecycle is invalid: {name}")
    known = all(code in DEFAULT_STOP_SEVERITY and value in SEVERITIES for code, value in severities.items())
    if not known:
        raise ContractError(f"threshold profile lifecycle is invalid: {name}")
    if critical and critical < reminder:
        raise ContractError(f"threshold profile lifecycle is invalid: {name}")
    return LifecyclePolicy(
        approval_reminder_seconds=reminder,
        approval_critical_seconds=critical,
        stop_severity={**DEFAULT_STOP_SEVERITY, **severities},
    )

_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("degradedIngestLagSeconds", "criticalIngestLagSeconds", "critical ingest lag threshold"),
    ("degradedHeartbeatLagSeconds", "criticalHeartbeatLagSeconds", "critical heartbeat lag threshold"),
    (
        "degradedTransportFailureStreak",
        "criticalTransportFailureStreak",
        "critical transport failure threshold",
    ),
)


@dataclass(frozen=True)
class ResolvedProfile:
    """One profile picked from a catalog; ``values`` are the raw JSON numbers of the four keys."""

    source_file: str
    profile: str
    values: Mapping[str, int | float]
    description: str | None = None
    lifecycle: LifecyclePolicy = field(default_factory=LifecyclePolicy)

    def to_document(self) -> JsonObject:
        """The resolver's output document (top-level nulls dropped)."""
        document: JsonObject = {
            "schemaVersion": "v1",
            "sourceFile": self.source_file,
            "profile": self.profile,
            "values": {key: self.values[key] for key in PROFILE_KEYS},
        }
        if self.description is not None:
            document["description"] = self.description
        return document


@dataclass(frozen=True)
class Thresholds:
    """The six effective thresholds of one pass plus the applied profile name."""

    profile: str | None
    degraded_ingest_lag_seconds: int
    critical_ingest_lag_seconds: int
    degraded_heartbeat_lag_seconds: int
    critical_heartbeat_lag_seconds: int
    degraded_transport_failure_streak: int
    critical_transport_failure_streak: int
    lifecycle: LifecyclePolicy = field(default_factory=LifecyclePolicy)

    def to_document(self) -> JsonObject:
        """The ``thresholds`` object of health.json (profile first, then the six values)."""
        return {
            "profile": self.profile,
            "degradedIngestLagSeconds": self.degraded_ingest_lag_seconds,
            "criticalIngestLagSeconds": self.critical_ingest_lag_seconds,
            "degradedHeartbeatLagSeconds": self.degraded_heartbeat_lag_seconds,
            "criticalHeartbeatLagSeconds": self.critical_heartbeat_lag_seconds,
            "degradedTransportFailureStreak": self.degraded_transport_failure_streak,
            "criticalTransportFailureStreak": self.critical_transport_failure_streak,
        }


def coerce_non_negative_int(value: object) -> int | None:
    """A non-negative integer from an int, an integral float or a digit string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    return None


def validate_catalog_shape(catalog: object) -> Mapping[str, Any]:
    """The ``profiles`` mapping of a v1 catalog; anything else fails closed."""
    if not isinstance(catalog, Mapping) or catalog.get("schemaVersion") != "v1":
        raise ContractError("threshold profiles file has invalid shape")
    profiles = catalog.get("profiles")
    if not isinstance(profiles, Mapping) or not profiles:
        raise ContractError("threshold profiles file has invalid shape")
    return profiles


def compute_profile_names(catalog: object) -> list[str]:
    """Profile names in byte order (``--list``); profile values are not checked here."""
    return sorted(validate_catalog_shape(catalog), key=lambda name: name.encode("utf-8"))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compute_profile(catalog: object, *, source_file: str, profile: str | None = None) -> ResolvedProfile:
    """Resolve ``profile`` (or the catalog default) against a parsed catalog."""
    profiles = validate_catalog_shape(catalog)
    assert isinstance(catalog, Mapping)
    name = profile or None
    if name is None:
        default = catalog.get("defaultProfile")
        name = default if isinstance(default, str) and default else None
    if name is None:
        raise ContractError("profile name is required and defaultProfile is missing")
    entry = profiles.get(name)
    if name not in profiles:
        raise ContractError(f"unknown threshold profile: {name}")
    if not isinstance(entry, Mapping) or not all(_is_number(entry.get(key)) for key in PROFILE_KEYS):
        raise ContractError(f"threshold profile values are invalid: {name}")
    values: dict[str, int | float] = {key: entry[key] for key in PROFILE_KEYS}
    if (
        values["criticalIngestLagSeconds"] < values["degradedIngestLagSeconds"]
        or values["criticalTransportFailureStreak"] < values["degradedTransportFailureStreak"]
    ):
        raise ContractError(f"threshold profile values are invalid: {name}")
    description = entry.get("description")
    return ResolvedProfile(
        source_file=source_file,
        profile=name,
        values=values,
        description=description if isinstance(description, str) else None,
        lifecycle=compute_lifecycle_policy(entry.get("lifecycle"), name=name),
    )


def compute_thresholds(
    profile: ResolvedProfile | None,
    explicit: Mapping[str, object] | None = None,
) -> Thresholds:
    """Merge per field: explicit value > profile value > built-in default; then validate.

    ``explicit`` maps health.json keys to the values given on the command line (strings or
    numbers); a key that is absent or None means "not given". The profile name is recorded
    even when every value is overridden.
    """
    given = {key: value for key, value in (explicit or {}).items() if value is not None}
    merged: dict[str, int] = {}
    for key, flag in THRESHOLD_FIELDS:
        raw: object
        if key in given:
            raw = given[key]
        elif profile is not None and key in profile.values:
            raw = profile.values[key]
        else:
            raw = _BUILTIN_DEFAULTS[key]
        number = coerce_non_negative_int(raw)
        if number is None:
            raise ContractError(f"{flag} must be a non-negative integer")
        merged[key] = number
    for degraded, critical, label in _PAIRS:
        if merged[critical] < merged[degraded]:
            raise ContractError(f"{label} must be >= degraded threshold")
    return Thresholds(
        profile=profile.profile if profile is not None else None,
        degraded_ingest_lag_seconds=merged["degradedIngestLagSeconds"],
        critical_ingest_lag_seconds=merged["criticalIngestLagSeconds"],
        degraded_heartbeat_lag_seconds=merged["degradedHeartbeatLagSeconds"],
        critical_heartbeat_lag_seconds=merged["criticalHeartbeatLagSeconds"],
        degraded_transport_failure_streak=merged["degradedTransportFailureStreak"],
        critical_transport_failure_streak=merged["criticalTransportFailureStreak"],
        lifecycle=profile.lifecycle if profile is not None else LifecyclePolicy(),
    )
