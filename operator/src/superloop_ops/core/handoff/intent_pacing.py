"""HandoffIntent pacing (issue 12): one Fleet pass proposes at most ``maxIntentsPerPass`` HandoffIntents.

The intents waiting for an object form one queue: those deferred by earlier passes whose
candidate still stands, and this plan's pending ones (one entry per intent id; the plan's
version replaces an older one). The queue is ordered by priority (most severe first, then by
loop, category and intent) and its first ``cap`` entries are proposed; the rest are deferred to
the following passes. The shell keeps the deferred ones in the Fleet's journal, so they are not
lost when the plan no longer lists them (the advisory dedupe window holds a candidate back after
the pass that planned it), and an intent that has an object is never queued, so none is
proposed twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet.fleet_registry import CATEGORIES
from superloop_ops.core.fleet.policy_rules import SEVERITY_RANK
from superloop_ops.core.handoff.handoff_plan import PENDING

__all__ = ["DEFERRED_REASON", "IntentPacing", "pace_intents"]

DEFERRED_REASON = "fleet_handoff_intents_deferred"
"""The handoff reason code while some planned intents wait for a later pass."""


@dataclasses.dataclass(frozen=True)
class IntentPacing:
    """What one pass proposes now and what it defers, in priority order."""

    propose: tuple[JsonObject, ...]
    deferred: tuple[JsonObject, ...]
    cap: int

    def build_status(self, proposed: int) -> JsonObject:
        """The Fleet status's ``handoff.pacing`` (counts only: bounded at any fleet size)."""
        block: JsonObject = {
            "maxIntentsPerPass": self.cap,
            "proposedThisPass": proposed,
            "deferredCount": len(self.deferred),
        }
        if self.deferred:
            block["reasonCode"] = DEFERRED_REASON
        return block


def _intent_id(intent: Mapping[str, Any]) -> str:
    return str(intent.get("intentId"))


def _priority(intent: Mapping[str, Any]) -> tuple[int, int, str, str]:
    category = intent.get("category")
    return (
        -SEVERITY_RANK.get(str(intent.get("severity")), 0),
        CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES),
        str(intent.get("loopId")),
        _intent_id(intent),
    )


def pace_intents(
    planned: Iterable[Mapping[str, Any]],
    carried: Iterable[Mapping[str, Any]],
    *,
    existing: Collection[str],
    live: Collection[str],
    cap: int,
) -> IntentPacing:
    """Split the intents waiting for an object into those proposed now (at most ``cap``) and the deferred.

    ``planned``: this pass's plan intents; ``carried``: the intents earlier passes deferred;
    ``existing``: intent ids that have a HandoffIntent; ``live``: intent ids whose candidate
    still stands (a carried intent whose candidate is gone or suppressed is dropped).
    """
    queue: dict[str, JsonObject] = {}
    for intent in carried:
        if _intent_id(intent) in live and _intent_id(intent) not in existing:
            queue[_intent_id(intent)] = dict(intent)
    for intent in planned:
        if intent.get("status") == PENDING and _intent_id(intent) not in existing:
            queue[_intent_id(intent)] = dict(intent)
    ordered = sorted(queue.values(), key=_priority)
    limit = max(cap, 0)
    return IntentPacing(propose=tuple(ordered[:limit]), deferred=tuple(ordered[limit:]), cap=cap)
