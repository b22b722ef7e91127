"""Condition types of every kind, and the pure helpers that keep ``status.conditions`` tidy.

Conditions follow metav1.Condition: ``Ready`` summarises the others, a condition is set to
``Unknown`` on the first visit, ``lastTransitionTime`` moves only when ``status`` changes, and
``reason`` is the spec's snake_case reason code rendered in CamelCase (``health_degraded`` →
``HealthDegraded``) so that ``kubectl describe`` and the journal speak the same vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from superloop_ops.models.common import Condition, ConditionStatus, format_timestamp

__all__ = [
    "APPLIED",
    "APPROVED",
    "DEGRADED",
    "DIVERGED",
    "EXECUTED",
    "HEALTHY",
    "READY",
    "build_reason",
    "find_condition",
    "set_condition",
]

READY = "Ready"
"""Loop: set by the Loop controller after every pass (True when the last reconcile pass succeeded).
Fleet: set by the Fleet controller (True when every enabled loop produced a result this pass).
Both are summaries of the other conditions of the same object."""

HEALTHY = "Healthy"
"""Loop only: set by the Loop controller from the health document (True iff status is healthy;
reason = first health reason code, or ``Healthy``)."""

DEGRADED = "Degraded"
"""Loop: set by the Loop controller when health is degraded or critical (reason = the health reason).
Fleet: set by the Fleet controller when any loop failed or is degraded/critical (partial failure)."""

DIVERGED = "Diverged"
"""Loop only: set by the Loop controller from the projection's divergence flags and profile drift
(True while a divergence or an active drift is observed)."""

APPROVED = "Approved"
"""HandoffIntent only: set by the HandoffIntent controller when the approval annotation (manual
mode) or the policy's eligibility (autonomous mode) authorises execution; False with a reason
while waiting for confirmation or when the retry guard demands a manual approval."""

EXECUTED = "Executed"
"""HandoffIntent only: set by the HandoffIntent controller from the control outcome (True when
executed and confirmed; Unknown while executing or ambiguous; False when failed)."""

APPLIED = "Applied"
"""PromotionApply only: set by the PromotionApply controller (True once the apply record is
written or replayed; False with the blocking reason, e.g. the decision gate)."""

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def build_reason(code: str) -> str:
    """Render a snake_case reason code as a Condition reason (``health_degraded`` → ``HealthDegraded``).

    Anything outside ``[A-Za-z0-9]`` separates words; an empty or digit-leading result is
    prefixed so the value always satisfies metav1.Condition's reason pattern.
    """
    words = [w for w in _NON_ALNUM.split(code) if w]
    out = "".join(w[:1].upper() + w[1:] for w in words)
    if not out:
        return "Unknown"
    if not out[0].isalpha():
        out = "R" + out
    return out


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of this type, if present."""
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Return a new list with ``type_`` set; order is kept and a new type is appended.

    ``lastTransitionTime`` keeps its old value unless ``status`` changes, so a status write
    with nothing new is byte-identical to the previous one (and is skipped by the caller).
    ``reason`` may be a snake_case code; it is rendered with `build_reason`.
    """
    camel = reason if re.fullmatch(r"[A-Z][A-Za-z0-9]*", reason) else build_reason(reason)
    previous = find_condition(conditions, type_)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else format_timestamp(now)
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=camel,
        message=message,
        observed_generation=observed_generation,
        last_transition_time=transition,
    )
    out: list[Condition] = []
    replaced = False
    for cond in conditions:
        if cond.type == type_:
            out.append(updated)
            replaced = True
        else:
            out.append(cond)
    if not replaced:
        out.append(updated)
    return out
