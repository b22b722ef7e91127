"""metav1.Condition helpers: the one set every kind's status builder uses (types: ``models.conditions``).

Pure: the caller passes ``now``. ``lastTransitionTime`` only moves when the condition's
``status`` flips, as the Kubernetes API conventions ask, so an unchanged pass produces an
identical condition list and the "nothing changed" check can skip the write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts

__all__ = ["ConditionSpec", "build_conditions", "camel_reason", "find_condition"]


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


def build_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[ConditionSpec],
    *,
    generation: int,
    now: dt.datetime,
) -> list[JsonObject]:
    """The new condition list: ``desired`` in order, then previous conditions of other types."""
    result: list[JsonObject] = []
    seen: set[str] = set()
    for spec in desired:
        seen.add(spec.type)
        old = find_condition(previous, spec.type)
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
    for cond in previous or ():
        if isinstance(cond, Mapping) and cond.get("type") not in seen:
            result.append(dict(cond))
    return result
