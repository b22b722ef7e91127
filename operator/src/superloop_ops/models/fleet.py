"""The Fleet kind: the registry (fleet §1.2-§1.4) as a custom resource.

Each ``loops`` entry is either inline (the registry.v1.json fields; the Fleet controller
materialises it as an owned Loop) or a ``loopRef`` to a Loop that already exists. The policy is
a separate FleetPolicy object named by ``policyRef`` so that GitOps can own it separately and a
PromotionApply can move its effective posture. Duplicate loop ids are refused by the apiserver
(``loops`` is a list-map keyed by ``loopId``).

Deliberate differences from the reference registry: ``enabled: false`` is honoured (the
reference normalises it back to true); a ``local`` entry names its volume (``source.pvc``)
because the operator has no implicit repository directory; the service token comes from a
Secret (``tokenSecretRef``) instead of an environment variable name (``tokenEnv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Protocol

from pydantic import Field

from superloop_ops import errors
from superloop_ops.models.common import (
    DEFAULT_RECONCILE_INTERVAL_SECONDS,
    CelRule,
    ConditionedStatus,
    CrdInfo,
    JsonObject,
    KindModel,
    LocalObjectRef,
    LoopId,
    PrinterColumn,
    SpecModel,
)
from superloop_ops.models.fleet_policy import EffectiveRollout, FleetPolicySpec
from superloop_ops.models.loop import BaseUrl, LoopSource, ServiceSettings, Transport

__all__ = [
    "Fleet",
    "FleetLoopEntry",
    "FleetSpec",
    "FleetStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "RegistryLoopSource",
    "SpriteInfo",
    "build_registry_document",
]

_INLINE = ("transport", "source", "service", "sprite")


class SpriteInfo(SpecModel):
    """Which sprite hosts the loop (informational, echoed in status and intents)."""

    id: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Sprite id hosting the loop."""
    assignment: Annotated[str, Field(max_length=253)] | None = None
    """Free-form assignment label of the sprite."""
    service_base_url: BaseUrl | None = None
    """Base URL of the sprite service, when it is not in `service.baseUrl`."""


def _has_base_url(m: FleetLoopEntry) -> bool:
    return (m.service is not None and m.service.base_url is not None) or (
        m.sprite is not None and m.sprite.service_base_url is not None
    )


class FleetLoopEntry(SpecModel):
    """One registry entry: inline loop settings, or a reference to an existing Loop."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.loopRef) || (" + " && ".join(f"!has(self.{f})" for f in _INLINE) + ")",
            message="loopRef entries must not declare transport, source, service or sprite",
            field_path=".loopRef",
            check=lambda m: m.loop_ref is None or all(getattr(m, f) is None for f in _INLINE),
        ),
        CelRule(
            rule=(
                "!has(self.transport) || self.transport != 'sprite_service'"
                " || (has(self.service) && has(self.service.baseUrl))"
                " || (has(self.sprite) && has(self.sprite.serviceBaseUrl))"
            ),
            message="sprite_service loops require service.baseUrl or sprite.serviceBaseUrl",
            field_path=".transport",
            check=lambda m: m.transport != "sprite_service" or _has_base_url(m),
        ),
        CelRule(
            rule=(
                "has(self.loopRef) || (has(self.transport) && self.transport == 'sprite_service')"
                " || has(self.source)"
            ),
            message="local loops require source.pvc (or loopRef to an existing Loop)",
            field_path=".source",
            check=lambda m: m.loop_ref is not None or m.transport == "sprite_service" or m.source is not None,
        ),
    )

    loop_id: LoopId
    """Loop id; unique within the fleet."""
    enabled: bool = True
    """False skips the loop in fleet passes."""
    loop_ref: LocalObjectRef | None = None
    """Adopt an existing Loop instead of declaring one inline."""
    transport: Transport | None = None
    """Inline loops: `local` (needs source.pvc) or `sprite_service`."""
    source: LoopSource | None = None
    """Inline `local` loops: the PersistentVolumeClaim holding the loop repository."""
    sprite: SpriteInfo | None = None
    """Which sprite hosts the loop (informational, echoed in status and intents)."""
    service: ServiceSettings | None = None
    """Inline `sprite_service` loops: the service client settings."""
    metadata: JsonObject = Field(default_factory=dict)
    """Free-form labels echoed into intents and status (e.g. team)."""


LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class LabelSelectorRequirement(SpecModel):
    """One ``matchExpressions`` term, as in a Kubernetes label selector."""

    key: LabelKey
    """The label key the term is about."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """In / NotIn: the value is / is not one of values; Exists / DoesNotExist: the key is / is not set."""
    values: list[LabelValue] = Field(default_factory=list, max_length=64)
    """The values In and NotIn compare with (empty for Exists and DoesNotExist)."""


class LabelSelector(SpecModel):
    """Which Loops of the namespace belong to the Fleet (every term must hold)."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict)
    """Labels a Loop must carry with exactly these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=16)
    """Terms a Loop's labels must all satisfy."""


def _has_members(m: FleetSpec) -> bool:
    return bool(m.loops) or m.selector is not None


def _unique_loop_ids(m: FleetSpec) -> bool:
    ids = [e.loop_id for e in m.loops]
    return len(ids) == len(set(ids))


class FleetSpec(SpecModel):
    """Desired fleet: its loops, its policy, and how a fleet pass fans out."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        # The apiserver enforces uniqueness through the list-map; this mirror gives the reference text.
        CelRule(
            rule=None,
            message="loopId values must be unique",
            check=_unique_loop_ids,
        ),
        CelRule(
            rule="(has(self.loops) && size(self.loops) > 0) || has(self.selector)",
            message="spec.loops or spec.selector must name the Fleet's loops",
            check=_has_members,
            field_path=".loops",
        ),
    )

    fleet_id: LoopId | None = None
    """Fleet id used in journals and telemetry; absent means the object name."""
    loops: list[FleetLoopEntry] = Field(
        default_factory=list,
        max_length=500,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["loopId"]},
    )
    """The fleet registry: inline loops (materialised as owned Loops) or loopRefs (at most 500)."""
    selector: LabelSelector | None = None
    """Loops of the namespace whose labels match also belong to the Fleet (any number; their
    registry loopId is the Loop's spec.loopId; a loops entry with the same loopId wins)."""
    policy_ref: LocalObjectRef | None = None
    """FleetPolicy governing candidates and autonomous execution."""
    max_parallel: Annotated[int, Field(ge=1, le=64)] = 2
    """Loops reconciled concurrently in one fleet pass."""
    deterministic_order: bool = False
    """Process loops sorted by loopId instead of registry order."""
    max_events: Annotated[int, Field(ge=0, le=2_147_483_647)] = 0
    """Most events per loop per pass; 0 means all."""
    reconcile_interval_seconds: Annotated[int, Field(ge=1, le=86_400)] = DEFAULT_RECONCILE_INTERVAL_SECONDS
    """Seconds between fleet passes."""
    suspend: bool = False
    """Stop fleet passes (policy, handoff) for this fleet."""


class FleetStatus(ConditionedStatus):
    """Fleet rollups; ``state`` and ``fleetStatus`` mirror the reference's fleet surfaces."""

    fleet_id: str | None = None
    """Fleet id used in journals and telemetry."""
    loop_count: int | None = None
    """Loops in the fleet (enabled and disabled)."""
    skipped_loop_count: int | None = None
    """Loops skipped by the last pass (disabled, suspended or not ready)."""
    failed_loop_count: int | None = None
    """Loops whose reconcile failed in the last pass."""
    health_status: str | None = None
    """Rollup: `success`, `partial_failure` or `failed`."""
    promotion_decision: str | None = None
    """What the promotion gates last said: `promote` or `hold`."""
    reason_codes: list[str] = Field(default_factory=list)
    """Reason codes of the rollup, sorted."""
    trace_id: str | None = None
    """Trace id of the last fleet pass."""
    last_reconcile_at: str | None = None
    """When the last fleet pass ran (YYYY-MM-DDTHH:MM:SSZ)."""
    state: JsonObject | None = None
    """The fleet state document (the reference's fleet state.json), as-is."""
    fleet_status: JsonObject | None = None
    """The fleet status surface (per-loop results and counts), as-is."""
    handoff: JsonObject | None = None
    """The handoff state: candidates turned into HandoffIntents, as-is."""
    promotion: JsonObject | None = None
    """The promotion gates' evaluation, as-is."""


class Fleet(KindModel):
    """A Fleet object as the apiserver returns it."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Fleet",
        plural="fleets",
        singular="fleet",
        short_names=("sfleet",),
        printer_columns=(
            PrinterColumn("Loops", ".status.loopCount", type="integer"),
            PrinterColumn("Failed", ".status.failedLoopCount", type="integer"),
            PrinterColumn("Critical", ".status.fleetStatus.healthRollup.critical", type="integer"),
            PrinterColumn("Degraded", ".status.fleetStatus.healthRollup.degraded", type="integer"),
            PrinterColumn("Last Pass", ".status.healthStatus"),
            PrinterColumn("Promotion", ".status.promotionDecision"),
            PrinterColumn("Policy", ".spec.policyRef.name", priority=1),
        ),
    )

    kind: Literal["Fleet"] = "Fleet"
    spec: FleetSpec
    status: FleetStatus = Field(default_factory=FleetStatus)


class RegistryLoopSource(Protocol):
    """What a ``loopRef`` entry's registry row takes from the Loop (a ``LoopSpec`` or a fleet member)."""

    @property
    def transport(self) -> str: ...

    @property
    def service(self) -> ServiceSettings | None: ...


def _registry_service(service: ServiceSettings | None) -> JsonObject | None:
    if service is None:
        return None
    out: JsonObject = {
        "retryAttempts": service.retry_attempts,
        "retryBackoffSeconds": service.retry_backoff_seconds,
    }
    if service.base_url is not None:
        out = {"baseUrl": service.base_url, **out}
    return out


def _registry_entry(
    index: int, entry: FleetLoopEntry, referenced: Mapping[str, RegistryLoopSource]
) -> JsonObject:
    transport: str = entry.transport or "local"
    service = entry.service
    if entry.loop_ref is not None:
        loop = referenced.get(entry.loop_ref.name)
        if loop is None:
            raise errors.DependencyNotReadyError(
                f"loops[{index}]: Loop {entry.loop_ref.name!r} (loopRef of {entry.loop_id!r}) not found"
            )
        transport, service = loop.transport, loop.service
    out: JsonObject = {"loopId": entry.loop_id, "enabled": entry.enabled, "transport": transport}
    if entry.sprite is not None:
        out["sprite"] = entry.sprite.model_dump(by_alias=True, exclude_none=True)
    registry_service = _registry_service(service)
    if registry_service is not None:
        out["service"] = registry_service
    out["metadata"] = dict(entry.metadata)
    return out


def build_registry_document(
    fleet: FleetSpec,
    *,
    fleet_name: str,
    policy: FleetPolicySpec | None,
    effective: EffectiveRollout | None = None,
    referenced: Mapping[str, RegistryLoopSource] | None = None,
) -> JsonObject:
    """The registry.v1.json document the reference would read for this Fleet and FleetPolicy.

    Lets the core's registry validator and normaliser run unchanged on Kubernetes objects.
    ``referenced`` maps a ``loopRef`` name to that Loop's transport and service (a missing one raises
    DependencyNotReadyError). ``effective`` is the posture a PromotionApply moved (FleetPolicy
    status): its canary, manual pause and governance replace the spec's. The token is not part
    of the document: it comes from ``tokenSecretRef`` at use.
    """
    refs = referenced or {}
    doc: JsonObject = {
        "schemaVersion": "v1",
        "fleetId": fleet.fleet_id or fleet_name,
        "loops": [_registry_entry(i, entry, refs) for i, entry in enumerate(fleet.loops)],
    }
    if policy is None:
        return doc
    policy_doc = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
    policy_doc.pop("promotion", None)  # operator-only evidence sources, not a registry field
    policy_doc.pop("approvals", None)  # operator-only approval age, not a registry field
    policy_doc.pop("handoff", None)  # operator-only intent pacing, not a registry field
    if effective is not None:
        rollout = policy_doc["autonomous"]["rollout"]
        if effective.canary_percent is not None:
            rollout["canaryPercent"] = effective.canary_percent
        if effective.manual_pause is not None:
            rollout["pause"]["manual"] = effective.manual_pause
        if effective.governance is not None:
            policy_doc["autonomous"]["governance"] = dict(effective.governance)
    doc["policy"] = policy_doc
    return doc
