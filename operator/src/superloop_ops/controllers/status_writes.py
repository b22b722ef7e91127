"""The one status write mechanism of the Fleet, FleetPolicy, HandoffIntent and PromotionApply kinds.

Each changed top-level status field is replaced whole by a JSON patch (``add`` replaces an
existing member) and each field no longer set is removed; nothing is sent when nothing changed.
A JSON merge patch would drop the explicit ``null`` values of the mirrored journal documents
(policy, handoff and promotion records), so every writer of these kinds goes through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge

__all__ = ["write_status"]


def write_status(
    edge: FleetEdge, ref: ObjectRef, previous: Mapping[str, Any], new: Mapping[str, Any]
) -> bool:
    """Replace the changed top-level status fields, drop the ones no longer set; False when unchanged."""
    changed = {key: value for key, value in new.items() if previous.get(key) != value}
    removed = [key for key in previous if key not in new]
    if not changed and not removed:
        return False
    edge.replace_status_fields(ref, changed, remove=removed, has_status=bool(previous))
    return True
