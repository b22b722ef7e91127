"""Approvals that are never acted on lapse (issue 15).

An approval is a person's decision about the facts at one moment. Acted on much later (the
operator was down, the Loop or its PVC was missing for a while), it would execute on facts
nobody looked at. So an approval older than the policy's age limit
(``FleetPolicy spec.approvals.maxAgeSeconds``) is not executed: the HandoffIntent keeps its phase,
says why (``Approved=False``, reason ``ApprovalLapsed``, reason code ``approval_lapsed``, a
Warning Event) and needs a fresh approval. A fresh approval has a new ``approved-at`` stamp,
hence a new fingerprint: the exactly-once rules of ``handoff_intent_resource`` are unchanged,
a lapse only ever turns an ``Execute`` into "do nothing".

The approval's moment is its ``approved-at`` annotation (the kubectl plugin writes it); without
one, the time the apiserver recorded for the manager that wrote the ``approved`` annotation
(``metadata.managedFields``). With neither (a bare annotation on a store without managed
fields), the age is unknown and the approval does not lapse.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.common.status_conditions import ConditionSpec, build_conditions, find_condition
from superloop_ops.core.handoff import handoff_intent_resource as intents

__all__ = [
    "LAPSED_REASON",
    "LAPSED_REASON_CODE",
    "Lapse",
    "build_lapsed_status",
    "compute_approved_at",
    "compute_lapse",
    "compute_lapse_events",
]

LAPSED_REASON = "ApprovalLapsed"
LAPSED_REASON_CODE = "approval_lapsed"
_APPROVED_FIELD = f"f:{intents.ANNOTATION_APPROVED}"


@dataclasses.dataclass(frozen=True)
class Lapse:
    """An approval too old to act on: who gave it, when, and the limit it broke."""

    approval: intents.Approval
    approved_at: dt.datetime
    max_age_seconds: int

    @property
    def message(self) -> str:
        return (
            f"approval by {self.approval.by} at {format_ts(self.approved_at)} lapsed: older than "
            f"{self.max_age_seconds}s (FleetPolicy spec.approvals.maxAgeSeconds); approve again to execute"
        )


def _managed_time(managed_fields: Sequence[Any] | None) -> dt.datetime | None:
    """When a manager last wrote the ``approved`` annotation (latest entry that owns it)."""
    times: list[dt.datetime] = []
    for entry in managed_fields or []:
        if not isinstance(entry, Mapping):
            continue
        fields = entry.get("fieldsV1")
        notes = (fields.get("f:metadata") or {}).get("f:annotations") if isinstance(fields, Mapping) else None
        moment = parse_ts(entry.get("time"))
        if isinstance(notes, Mapping) and _APPROVED_FIELD in notes and moment is not None:
            times.append(moment)
    return max(times) if times else None


def compute_approved_at(
    approval: intents.Approval, managed_fields: Sequence[Any] | None
) -> dt.datetime | None:
    """The approval's moment: its ``approved-at`` stamp, else the apiserver's managed-fields time."""
    stamped = parse_ts(approval.at) if approval.at else None
    return stamped if stamped is not None else _managed_time(managed_fields)


def compute_lapse(
    decision: intents.Decision,
    *,
    approved_at: dt.datetime | None,
    max_age_seconds: int,
    now: dt.datetime,
) -> Lapse | None:
    """A ``Lapse`` when ``decision`` would execute an approval older than ``max_age_seconds``."""
    if not isinstance(decision, intents.Execute) or approved_at is None:
        return None
    if (now - approved_at).total_seconds() <= max_age_seconds:
        return None
    return Lapse(decision.approval, approved_at, max_age_seconds)


def build_lapsed_status(
    *, previous: Mapping[str, Any] | None, lapse: Lapse, generation: int, now: dt.datetime
) -> JsonObject:
    """The intent keeps its phase (pending, or a retryable outcome) and says the approval lapsed."""
    prev = dict(previous or {})
    status: JsonObject = dict(prev)
    status["observedGeneration"] = generation
    status["phase"] = prev.get("phase") or intents.PENDING
    codes = [c for c in prev.get("reasonCodes") or [] if c != LAPSED_REASON_CODE]
    status["reasonCodes"] = [*codes, LAPSED_REASON_CODE]
    result: JsonObject = dict(prev["result"]) if isinstance(prev.get("result"), Mapping) else {}
    result["lapsedApproval"] = {
        "by": lapse.approval.by,
        "at": format_ts(lapse.approved_at),
        "fingerprint": lapse.approval.fingerprint,
        "maxAgeSeconds": lapse.max_age_seconds,
    }
    status["result"] = result
    desired = [ConditionSpec(intents.COND_APPROVED, "False", LAPSED_REASON, lapse.message)]
    if status["phase"] == intents.PENDING:
        desired.append(
            ConditionSpec(
                intents.COND_EXECUTED, "False", "NotExecuted", "the approval lapsed before execution"
            )
        )
    conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status["conditions"] = build_conditions(conditions, desired, generation=generation, now=now)
    return status


def compute_lapse_events(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[intents.IntentEvent]:
    """One Warning per lapsed approval (the same stale annotations seen again post nothing)."""
    old = (previous or {}).get("result")
    old_lapse = old.get("lapsedApproval") if isinstance(old, Mapping) else None
    new_lapse = (new.get("result") or {}).get("lapsedApproval")
    cond = find_condition(new.get("conditions"), intents.COND_APPROVED) or {}
    if new_lapse is None or new_lapse == old_lapse or cond.get("reason") != LAPSED_REASON:
        return []
    return [intents.IntentEvent("Warning", LAPSED_REASON, str(cond.get("message") or ""))]
