"""The Loop kind: one supervised loop run and how to reach its artifacts.

The spec carries what the reference passes as reconcile flags (loop-core §5.1): transport,
service retry/backoff/timeouts, threshold profile plus per-field overrides (§5.2), drift settings
(tuning §3.5), alert dispatch settings (tuning §5.9), plus the operator's own cadence and
``suspend``. Two reconcile flags are deliberately *not* spec fields: ``--from-start`` is the
one-shot annotation ``ops.superloop.dev/replay: from-start`` (a spec field would replay on every
pass), and the trace id is generated per pass. The status mirrors the reference's JSON surfaces
verbatim (free-form objects) next to a few typed fields that feed printer columns.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from superloop_ops.models.common import (
    DEFAULT_RECONCILE_INTERVAL_SECONDS,
    CelRule,
    ConditionedStatus,
    ConfigMapKeyRef,
    CrdInfo,
    JsonObject,
    KindModel,
    LocalObjectRef,
    LoopId,
    PrinterColumn,
    SecretKeyRef,
    SpecModel,
    Timestamp,
    nested,
)

__all__ = [
    "REPLAY_ANNOTATION",
    "AlertsSettings",
    "BaseUrl",
    "DriftSettings",
    "Loop",
    "LoopSource",
    "LoopSpec",
    "LoopStatus",
    "PvcSource",
    "ServiceSettings",
    "ThresholdOverrides",
    "ThresholdSettings",
    "Transport",
]

REPLAY_ANNOTATION = "ops.superloop.dev/replay"

Transport = Literal["local", "sprite_service"]
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""DNS-1123 subdomain: the rule for namespace and PersistentVolumeClaim names."""
BaseUrl = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]
NonNegInt = Annotated[int, Field(ge=0, le=2_147_483_647)]
ProfileName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def _pair_ok(degraded: int | None, critical: int | None) -> bool:
    return degraded is None or critical is None or critical >= degraded


def _pair_rule(degraded: str, critical: str, message: str) -> CelRule:
    return CelRule(
        rule=f"!has(self.{degraded}) || !has(self.{critical}) || self.{critical} >= self.{degraded}",
        message=message,
        field_path=f".{critical}",
        check=lambda m: _pair_ok(getattr(m, _snake(degraded)), getattr(m, _snake(critical))),
    )


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


class PvcSource(SpecModel):
    """Where the loop's repository (with its ``.superloop/`` directory) is mounted."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN)]
    """A PVC of the Loop's own namespace (a DNS-1123 name: never a path); the operator mounts it
    (chart value `loopClaims`)."""
    sub_path: Annotated[str, Field(max_length=1024, pattern=r"^[^/].*$|^$")] = ""
    """Directory inside the claim holding the repository (relative); empty means the claim's root."""


class LoopSource(SpecModel):
    """Artifact source of a ``local`` loop."""

    pvc: PvcSource
    """The PersistentVolumeClaim (and sub-path) holding the loop repository."""


class ServiceSettings(SpecModel):
    """The sprite service client settings (loop-core §9.6); the token comes from a Secret."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.maxTimeSeconds >= self.connectTimeoutSeconds",
            message="service.maxTimeSeconds must be >= service.connectTimeoutSeconds",
            api_message="maxTimeSeconds must be >= connectTimeoutSeconds",
            field_path=".maxTimeSeconds",
            check=lambda m: m.max_time_seconds >= m.connect_timeout_seconds,
        ),
    )

    base_url: BaseUrl | None = None
    """Base URL of the sprite service (http or https)."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding the service token (sent as a bearer token)."""
    retry_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    """Tries per request (transient statuses only)."""
    retry_backoff_seconds: Annotated[int, Field(ge=0, le=3600)] = 1
    """Linear backoff unit: sleep backoff x attempt between tries."""
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 5
    """Connect timeout per try."""
    max_time_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    """Total time limit per try."""


class ThresholdOverrides(SpecModel):
    """Per-field overrides of the four profile-driven thresholds (an override wins even if equal)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        _pair_rule(
            "degradedIngestLagSeconds",
            "criticalIngestLagSeconds",
            "critical ingest lag threshold must be >= degraded threshold",
        ),
        _pair_rule(
            "degradedTransportFailureStreak",
            "criticalTransportFailureStreak",
            "critical transport failure threshold must be >= degraded threshold",
        ),
    )

    degraded_ingest_lag_seconds: NonNegInt | None = None
    """Seconds without a runtime event before the loop is degraded (`ingest_stale`)."""
    critical_ingest_lag_seconds: NonNegInt | None = None
    """Seconds without a runtime event before the loop is critical; >= the degraded value."""
    degraded_transport_failure_streak: NonNegInt | None = None
    """Consecutive failed ingests before the loop is degraded (`transport_unreachable`)."""
    critical_transport_failure_streak: NonNegInt | None = None
    """Consecutive failed ingests before the loop is critical; >= the degraded value."""


class ThresholdSettings(SpecModel):
    """Threshold profile selection (absent = the catalog's ``defaultProfile``) and overrides.

    Heartbeat thresholds are not part of profiles; they are plain settings here.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.criticalHeartbeatLagSeconds >= self.degradedHeartbeatLagSeconds",
            message="critical heartbeat lag threshold must be >= degraded threshold",
            field_path=".criticalHeartbeatLagSeconds",
            check=lambda m: m.critical_heartbeat_lag_seconds >= m.degraded_heartbeat_lag_seconds,
        ),
    )

    profile: ProfileName | None = None
    """Threshold profile name; absent means the catalog default (`balanced`)."""
    overrides: ThresholdOverrides | None = None
    """Explicit values that win over the profile, field by field."""
    degraded_heartbeat_lag_seconds: NonNegInt = 120
    """Heartbeat age in seconds before the loop is degraded (`runtime_heartbeat_stale`)."""
    critical_heartbeat_lag_seconds: NonNegInt = 300
    """Heartbeat age in seconds before the loop is critical; >= the degraded value."""


class DriftSettings(SpecModel):
    """Profile-drift evaluation settings (tuning §3.5)."""

    min_confidence: Literal["low", "medium", "high"] = "medium"
    """Lowest confidence (`low`, `medium`, `high`) of a drift recommendation that counts towards the
    streak."""
    required_streak: Annotated[int, Field(ge=1, le=10_000)] = 3
    """Consecutive drifted evaluations before the drift is reported active."""
    summary_window: Annotated[int, Field(ge=1, le=100_000)] = 200
    """Recent telemetry rows the drift evaluation summarises."""


class AlertsSettings(SpecModel):
    """Alert dispatch settings (tuning §5.9).

    The sink catalog is read from a ConfigMap key (default key ``ops-manager-alert-sinks.v1.json``);
    without a reference the operator's default catalog applies (``SUPERLOOP_CONFIG_DIR``, else the
    packaged one, all sinks disabled). The catalog names its secrets as environment variable names
    (``urlEnv``, ``routingKeyEnv``...); in Kubernetes each name is a key of the Secret
    ``secretRef`` names. A missing Secret or key blocks only the sinks that need it.
    """

    enabled: bool = True
    """Dispatch new escalations to the catalog's sinks; false skips dispatch for this Loop."""
    sinks_config_map_ref: ConfigMapKeyRef | None = None
    """ConfigMap (and key) holding the alert sink catalog JSON."""
    secret_ref: LocalObjectRef | None = None
    """Secret whose keys are the catalog's secret env names (values: URLs, tokens, routing keys)."""


class LoopSpec(SpecModel):
    """Desired supervision of one loop run."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.transport != 'sprite_service' || (has(self.service) && has(self.service.baseUrl))",
            message="sprite_service loops require service.baseUrl",
            api_message="sprite_service loops require spec.service.baseUrl",
            field_path=".service",
            check=lambda m: m.transport != "sprite_service" or (m.service is not None and m.service.base_url),
        ),
        CelRule(
            rule="self.transport != 'local' || has(self.source)",
            message="local loops require source.pvc",
            api_message="local loops require spec.source.pvc",
            field_path=".source",
            check=lambda m: m.transport != "local" or m.source is not None,
        ),
    )

    loop_id: LoopId
    """Loop id in the runtime (`.superloop/loops/<loopId>/`); a label-safe name."""
    transport: Transport = "local"
    """How artifacts are read: `local` (a mounted PVC) or `sprite_service` (HTTP)."""
    source: LoopSource | None = None
    """Volume holding the loop repository; required for `local`."""
    service: ServiceSettings | None = None
    """Sprite service client settings; `baseUrl` is required for `sprite_service`."""
    thresholds: ThresholdSettings = nested(ThresholdSettings)
    """Health thresholds: a catalog profile plus per-field overrides."""
    drift: DriftSettings = nested(DriftSettings)
    """Profile-drift evaluation settings."""
    alerts: AlertsSettings = nested(AlertsSettings)
    """Alert dispatch settings."""
    max_events: NonNegInt = 0
    """Most events ingested per pass; 0 means all."""
    reconcile_interval_seconds: Annotated[int, Field(ge=1, le=86_400)] = DEFAULT_RECONCILE_INTERVAL_SECONDS
    """Seconds between reconcile passes."""
    suspend: bool = False
    """Stop reconciling this loop (status keeps its last values)."""


def _atomic() -> Any:
    """A mirrored journal document in the status: one unit for server-side field tracking
    (``x-kubernetes-map-type: atomic``), so the status writer's ``managedFields`` entry names the
    document, not each of its keys. Without it that entry was ~6 KB of a ~15 KB Loop, and kopf
    keeps every Loop's body in memory (issue 12: memory)."""
    return Field(default=None, json_schema_extra={"x-kubernetes-map-type": "atomic"})


class LoopStatus(ConditionedStatus):
    """Observed posture of a loop; the reference's JSON surfaces are mirrored as-is."""

    transport: str | None = None
    """Transport used by the last pass (`local` or `sprite_service`)."""
    lifecycle: str | None = None
    """Projected lifecycle state: `idle`, `running`, `awaiting_approval`, `complete`, `failed`, `stopped` or
    `unknown`."""
    health_status: str | None = None
    """Health of the loop: `healthy`, `degraded` or `critical`."""
    reason_codes: list[str] = Field(default_factory=list)
    """Reason codes of the current health, sorted (docs/runbook.md explains each)."""
    trace_id: str | None = None
    """Trace id of the last pass (also in the journal and the alert payloads)."""
    last_reconcile_at: Timestamp | None = None
    """When the last pass ran (YYYY-MM-DDTHH:MM:SSZ)."""
    replay_handled: str | None = None
    """The value of the replay annotation the operator last acted on (a replay runs once per value)."""
    state: JsonObject | None = _atomic()
    """The projected loop state (the reference's state.json), as-is."""
    cursor: JsonObject | None = _atomic()
    """Ingest cursor (the reference's cursor.json), as-is."""
    health: JsonObject | None = _atomic()
    """Health document with reasons, metrics and thresholds (the reference's health.json), as-is."""
    heartbeat: JsonObject | None = _atomic()
    """Heartbeat freshness (the reference's heartbeat.json), as-is."""
    sequence: JsonObject | None = _atomic()
    """Event ordering state (the reference's sequence-state.json), as-is."""
    transport_health: JsonObject | None = _atomic()
    """Transport health with the failure streak (the reference's transport-health.json), as-is."""
    visibility: JsonObject | None = _atomic()
    """What the last pass could see of the runtime (snapshot, events), as-is."""
    latest_control: JsonObject | None = _atomic()
    """The last control intent's outcome, as-is."""
    drift: JsonObject | None = _atomic()
    """Threshold profile drift state (the reference's profile-drift.json), as-is."""
    tuning: JsonObject | None = _atomic()
    """Effective threshold profile and overrides, as-is."""
    alerts: JsonObject | None = _atomic()
    """Alert dispatch state: last escalation and per-sink outcomes, as-is."""
    remediation: JsonObject | None = None
    """The Loop's current or last remediation: traceId (minted by the pass that opened it), state
    open/resolved, openedAt, resolvedAt, healthStatus, reasonCodes (issue 15)."""


class Loop(KindModel):
    """A Loop object as the apiserver returns it."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Loop",
        plural="loops",
        singular="loop",
        short_names=("sloop",),
        printer_columns=(
            PrinterColumn("Loop ID", ".spec.loopId"),
            PrinterColumn("Transport", ".spec.transport"),
            PrinterColumn("Lifecycle", ".status.lifecycle"),
            PrinterColumn("Health", ".status.healthStatus"),
            PrinterColumn("Reasons", ".status.reasonSummary"),
            PrinterColumn("Suspended", ".spec.suspend", type="boolean", priority=1),
        ),
    )

    kind: Literal["Loop"] = "Loop"
    spec: LoopSpec
    status: LoopStatus = Field(default_factory=LoopStatus)
