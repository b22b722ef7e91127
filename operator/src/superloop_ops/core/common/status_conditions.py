"""metav1.Condition helpers: the one set every kind's status builder uses (types: ``models.conditions``).

Pure: the caller passes ``now``. ``lastTransitionTime`` only moves when the condition's
``status`` flips, as the Kubernetes API conventions ask, so an unchanged pass produces an
identical condition list and the "nothing changed" check can skip the write.

Every kind ends up with ``Ready`` and the kstatus pair ``Reconciling`` / ``Stalled`` (derived
here, in one place, from the kind's own conditions), so ``kubectl wait --for=condition=Ready``,
Flux's health checks and the kstatus library judge them right:

* ``Ready`` is the kind's own for Loop, Fleet and FleetPolicy; a HandoffIntent's follows
  ``Executed`` (an intent waiting for approval is not Ready, and is reconciling), a
  PromotionApply's follows ``Applied`` (a dry run is done, so Ready);
* ``Ready=True`` (or a deliberate ``Suspended``): neither reconciling nor stalled, so kstatus
  says Current;
* ``Ready`` Unknown, or False while waiting for something that can still appear
  (``WAITING_REASONS``): ``Reconciling=True`` (kstatus: InProgress);
* ``Ready=False`` for any other reason (a failing ingest, an invalid spec, a rejected step):
  ``Stalled=True`` with Ready's reason and message (kstatus: Failed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.models import conditions as model_conditions

__all__ = [
    "RECONCILING",
    "STALLED",
    "WAITING_REASONS",
    "ConditionSpec",
    "build_conditions",
    "camel_reason",
    "derive_kstatus",
    "find_condition",
    "summarize_reasons",
]

RECONCILING = "Reconciling"
STALLED = "Stalled"
#: Ready=False reasons that mean "waiting for something that may still appear": Reconciling.
WAITING_REASONS = frozenset(
    {
        "NotReconciled",
        "DependencyNotReady",
        "SourceNotFound",
        "SecretNotFound",
        "PolicyNotFound",
        "LoopNotFound",
        "AwaitingFleetPass",
        "AwaitingApproval",
        "Executing",
        "PromotionApplyPending",
    }
)
_DONE = frozenset({"Suspended"})


_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def camel_reason(code: str) -> str:
    """``transport_unreachable`` -> ``TransportUnreachable`` (condition reasons are CamelCase).

    Anything outside ``[A-Za-z0-9]`` separates words; an empty result is ``Unknown`` and a
    digit-leading one is prefixed with ``R``, so the value always satisfies metav1.Condition's
    reason pattern.
    """
    words = [word for word in _NON_ALNUM.split(code) if word]
    reason = "".join(word[:1].upper() + word[1:] for word in words)
    if not reason:
        return "Unknown"
    return reason if reason[0].isalpha() else "R" + reason


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """The desired value of one condition; timestamps are filled in by ``build_conditions``."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def find_condition(
    conditions: Iterable[Mapping[str, Any]] | None, cond_type: str
) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if isinstance(cond, Mapping) and cond.get("type") == cond_type:
            return cond
    return None


def summarize_reasons(status: Mapping[str, Any]) -> JsonObject:
    """``reasonSummary``: the status's reason codes as one readable list for ``kubectl get``
    (``ingest_stale, transport_unreachable``); empty when none. Nothing without ``reasonCodes``."""
    codes = status.get("reasonCodes")
    if not isinstance(codes, list):
        return {}
    return {"reasonSummary": ", ".join(str(code) for code in codes if str(code))}


def _ready_of(conditions: Sequence[Mapping[str, Any]]) -> ConditionSpec | None:
    """Ready as a HandoffIntent's ``Executed`` or a PromotionApply's ``Applied`` implies it;
    None for the kinds that state their own Ready."""
    executed = find_condition(conditions, model_conditions.EXECUTED)
    if executed is not None:
        reason, message = str(executed.get("reason")), str(executed.get("message") or "")
        if executed.get("status") == "True":
            return ConditionSpec(model_conditions.READY, "True", reason, message)
        if reason == "NotExecuted":
            return ConditionSpec(model_conditions.READY, "False", "AwaitingApproval", message)
        status = "Unknown" if reason == "Executing" else "False"
        return ConditionSpec(model_conditions.READY, status, reason, message)
    applied = find_condition(conditions, model_conditions.APPLIED)
    if applied is not None:
        reason, message = str(applied.get("reason")), str(applied.get("message") or "")
        done = applied.get("status") == "True" or reason == "DryRun"
        status = "True" if done else str(applied.get("status") or "Unknown")
        return ConditionSpec(model_conditions.READY, status, reason, message)
    return None  # Loop, Fleet, FleetPolicy: the kind's own Ready


def derive_kstatus(conditions: Sequence[Mapping[str, Any]]) -> list[ConditionSpec]:
    """Ready (when the kind has none of its own) and the kstatus pair, from the conditions."""
    derived = _ready_of(conditions)
    ready: Mapping[str, Any] | None = (
        dataclasses.asdict(derived) if derived else find_condition(conditions, model_conditions.READY)
    )
    if ready is None:
        return []
    status, reason = str(ready.get("status")), str(ready.get("reason") or "Unknown")
    message = str(ready.get("message") or "")
    reconciling = status == "Unknown" or (status == "False" and reason in WAITING_REASONS)
    stalled = status == "False" and not reconciling and reason not in _DONE
    settled = "Suspended" if reason in _DONE else "Reconciled"
    out = [derived] if derived else []
    out.append(
        ConditionSpec(RECONCILING, "True", reason, message)
        if reconciling
        else ConditionSpec(RECONCILING, "False", settled, "")
    )
    out.append(
        ConditionSpec(STALLED, "True", reason, message)
        if stalled
        else ConditionSpec(STALLED, "False", settled, "")
    )
    return out


def build_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[ConditionSpec],
    *,
    generation: int,
    now: dt.datetime,
) -> list[JsonObject]:
    """The new condition list: ``desired`` in order, previous conditions of other types, then
    Ready (when derived), Reconciling and Stalled (``derive_kstatus``)."""
    merged = _merge(previous, desired, generation=generation, now=now)
    kstatus = derive_kstatus(merged)
    if not kstatus:
        return merged
    kept = [c for c in merged if c.get("type") not in {k.type for k in kstatus}]
    return _merge(kept, kstatus, generation=generation, now=now, previous=previous, first=False)


def _merge(
    current: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[ConditionSpec],
    *,
    generation: int,
    now: dt.datetime,
    previous: Sequence[Mapping[str, Any]] | None = None,
    first: bool = True,
) -> list[JsonObject]:
    """``desired`` (transition times kept from ``previous`` when the status did not change)
    before (``first``) or after the conditions of ``current`` of other types."""
    history = current if previous is None else previous
    result: list[JsonObject] = []
    seen: set[str] = set()
    for spec in desired:
        seen.add(spec.type)
        old = find_condition(history, spec.type)
        changed = old is None or old.get("status") != spec.status
        transition = (
            format_ts(now) if changed or not old else str(old.get("lastTransitionTime") or format_ts(now))
        )
        result.append(
            {
                "type": spec.type,
                "status": spec.status,
                "observedGeneration": generation,
                "lastTransitionTime": transition,
                "reason": spec.reason,
                "message": spec.message,
            }
        )
    others = [dict(c) for c in current or () if isinstance(c, Mapping) and c.get("type") not in seen]
    return result + others if first else others + result
