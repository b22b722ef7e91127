"""The PromotionApply kind: one governed step of the autonomous rollout (promotion §3).

A PromotionApply asks the operator to move a fleet's *effective* rollout posture (held in
FleetPolicy status; spec stays GitOps-owned): ``expand`` widens the canary by ``expandStep``,
``resume`` clears a manual pause, ``rollback`` sets it. The spec is immutable so the applied
record always matches what was asked. The review date is given either as a timestamp
(``reviewBy``, as in the reference) or relative to the moment of apply (``reviewWithinDays``):
the latter never expires while sitting in Git, so a sample or a template stays valid.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from superloop_ops.models.common import (
    CelRule,
    ConditionedStatus,
    CrdInfo,
    JsonObject,
    KindModel,
    LocalObjectRef,
    PrinterColumn,
    ShortText,
    SpecModel,
    Timestamp,
)

__all__ = [
    "ApplyGovernance",
    "ApplyPhase",
    "PromotionApply",
    "PromotionApplySpec",
    "PromotionApplyStatus",
    "PromotionIntent",
]

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")]
PromotionIntent = Literal["expand", "resume", "rollback"]
ApplyPhase = Literal["pending", "applied", "replayed", "dry_run", "rejected"]


class ApplyGovernance(SpecModel):
    """Who approves the step and until when it stands (``--by``, ``--approval-ref``, ...)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="has(self.reviewBy) != has(self.reviewWithinDays)",
            message="governance needs exactly one of reviewBy or reviewWithinDays",
            api_message="spec.governance needs exactly one of reviewBy or reviewWithinDays",
            field_path=".reviewBy",
            check=lambda m: (m.review_by is None) != (m.review_within_days is None),
        ),
    )

    by: ShortText
    """Approver."""
    approval_ref: ShortText
    """Approval record."""
    rationale: Annotated[str, Field(min_length=1, max_length=4096)]
    """Why."""
    review_by: Timestamp | None = None
    """Review deadline (YYYY-MM-DDTHH:MM:SSZ); must be in the future at apply."""
    review_within_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    """Review deadline relative to the apply time, in days."""


class PromotionApplySpec(SpecModel):
    """The requested promotion step; immutable once created."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(rule="self == oldSelf", message="spec is immutable; create a new PromotionApply instead"),
    )

    fleet_ref: LocalObjectRef
    """Fleet whose effective rollout posture moves."""
    intent: PromotionIntent
    """`expand` widens the canary, `resume` clears the manual pause, `rollback` sets it."""
    expand_step: Annotated[int, Field(ge=1, le=100)] = 25
    """Canary points added by `expand` (capped at 100)."""
    governance: ApplyGovernance
    """Approval recorded as the policy governance on apply."""
    idempotency_key: IdempotencyKey | None = None
    """A second apply with the same key replays the first record."""
    dry_run: bool = False
    """Compute and report the decision without moving the posture."""


class PromotionApplyStatus(ConditionedStatus):
    """The decision seen and the apply record (before/after posture); frozen once applied.

    The transition rules make the freeze an API guarantee: once ``appliedAt`` and ``record`` are
    written, no later status write (a second operator instance, a manual patch) can change them.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(oldSelf.appliedAt) || (has(self.appliedAt) && self.appliedAt == oldSelf.appliedAt)",
            message="status.appliedAt is immutable once applied",
            field_path=".appliedAt",
        ),
        CelRule(
            rule="!has(oldSelf.record) || (has(self.record) && self.record == oldSelf.record)",
            message="status.record is immutable once applied",
            field_path=".record",
        ),
    )

    phase: ApplyPhase | None = None
    """`pending`, `applied`, `replayed`, `dry_run` or `rejected`."""
    decision: str | None = None
    """The promotion gates' decision: `promote` or `hold`."""
    reason_codes: list[str] = Field(default_factory=list)
    """Reason codes of the decision, sorted."""
    message: str | None = None
    """Why the step was applied or rejected."""
    applied_at: Timestamp | None = None
    """When the step was applied (YYYY-MM-DDTHH:MM:SSZ); immutable once set."""
    review_by: Timestamp | None = None
    """Review deadline recorded with the step."""
    record: JsonObject | None = None
    """The apply record with the posture before and after; immutable once set."""


class PromotionApply(KindModel):
    """A PromotionApply object as the apiserver returns it."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="PromotionApply",
        plural="promotionapplies",
        singular="promotionapply",
        short_names=("papply",),
        printer_columns=(
            PrinterColumn("Fleet", ".spec.fleetRef.name"),
            PrinterColumn("Intent", ".spec.intent"),
            PrinterColumn("Decision", ".status.decision"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Dry Run", ".spec.dryRun", type="boolean", priority=1),
        ),
    )

    kind: Literal["PromotionApply"] = "PromotionApply"
    spec: PromotionApplySpec
    status: PromotionApplyStatus = Field(default_factory=PromotionApplyStatus)
