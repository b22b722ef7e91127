"""The HandoffIntent kind: one control action (cancel/approve/reject) on one loop.

Created by the Fleet controller from an unsuppressed policy candidate (fleet §5.2), or by a
person. Its spec is immutable (a CEL transition rule): the idempotency key and the facts it was
decided on must not change under an execution in flight; a different action is a new object.
Manual execution waits for the annotation ``ops.superloop.dev/approved: "true"``; the status
walks the reference's intent statuses (fleet §5.6, loop-core §8.5).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from superloop_ops.models.common import (
    CelRule,
    Condition,
    CrdInfo,
    JsonObject,
    KindModel,
    LocalObjectRef,
    PrinterColumn,
    SpecModel,
    StatusModel,
    Timestamp,
)
from superloop_ops.models.fleet_policy import Category

__all__ = [
    "APPROVED_ANNOTATION",
    "APPROVED_BY_ANNOTATION",
    "NOTE_ANNOTATION",
    "PHASES",
    "CandidateFacts",
    "ControlIntent",
    "ExecutionMode",
    "HandoffIntent",
    "HandoffIntentSpec",
    "HandoffIntentStatus",
    "Phase",
]

APPROVED_ANNOTATION = "ops.superloop.dev/approved"
APPROVED_BY_ANNOTATION = "ops.superloop.dev/approved-by"
NOTE_ANNOTATION = "ops.superloop.dev/note"

ControlIntent = Literal["cancel", "approve", "reject"]
ExecutionMode = Literal["manual", "autonomous"]
Phase = Literal[
    "pending_operator_confirmation",
    "executing",
    "executed",
    "executed_unconfirmed",
    "execution_ambiguous",
    "execution_failed",
]
PHASES: tuple[Phase, ...] = (
    "pending_operator_confirmation",
    "executing",
    "executed",
    "executed_unconfirmed",
    "execution_ambiguous",
    "execution_failed",
)
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")]


class CandidateFacts(SpecModel):
    """The policy candidate the intent was derived from (absent for a person's ad-hoc intent)."""

    candidate_id: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    category: Category | None = None
    reason_codes: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=64
    )
    severity: Literal["critical", "warning", "info"] | None = None
    confidence: Literal["high", "medium", "low"] | None = None
    rationale: Annotated[str, Field(max_length=4096)] | None = None
    autonomous_eligible: bool = False


class HandoffIntentSpec(SpecModel):
    """What to do, to which Loop, on which evidence; immutable once created."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(rule="self == oldSelf", message="spec is immutable; create a new HandoffIntent instead"),
    )

    loop_ref: LocalObjectRef
    intent: ControlIntent
    note: Annotated[str, Field(max_length=4096)] | None = None
    candidate: CandidateFacts | None = None
    idempotency_key: IdempotencyKey | None = None
    trace_id: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    fleet_ref: LocalObjectRef | None = None


class HandoffIntentStatus(StatusModel):
    """Execution progress and outcome; ``result`` mirrors the reference's intent execution record."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    phase: Phase | None = None
    mode: ExecutionMode | None = None
    approved_by: str | None = None
    idempotency_key: str | None = None
    reason_codes: list[str] = Field(default_factory=list)
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    result: JsonObject | None = None


class HandoffIntent(KindModel):
    """A HandoffIntent object as the apiserver returns it."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="HandoffIntent",
        plural="handoffintents",
        singular="handoffintent",
        short_names=("hi",),
        printer_columns=(
            PrinterColumn("Loop", ".spec.loopRef.name"),
            PrinterColumn("Intent", ".spec.intent"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Mode", ".status.mode"),
            PrinterColumn("Approved By", ".status.approvedBy", priority=1),
        ),
    )

    kind: Literal["HandoffIntent"] = "HandoffIntent"
    spec: HandoffIntentSpec
    status: HandoffIntentStatus = Field(default_factory=HandoffIntentStatus)
