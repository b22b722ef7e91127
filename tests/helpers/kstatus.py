"""kstatus' status computation for custom resources, as the kstatus library does it.

Written from kubernetes-sigs/cli-utils ``pkg/kstatus/status`` (``status.go`` ``Compute``,
``generic.go`` ``checkGenericProperties`` / ``checkGeneration``). For a kind that is not one of
the built-in types (every CRD), the rules are, in order:

1. ``metadata.deletionTimestamp`` set -> ``Terminating``;
2. ``metadata.generation`` present, ``status.observedGeneration`` present and different ->
   ``InProgress`` (reason ``LatestGenerationNotObserved``);
3. walking ``status.conditions`` in order, the first ``Reconciling=True`` -> ``InProgress``, the
   first ``Stalled=True`` -> ``Failed``;
4. otherwise ``Current`` (the absence of known conditions means current; ``Ready`` is not
   consulted for custom resources).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["compute"]


def compute(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(status, message)``: Current, InProgress, Failed or Terminating."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind", "")
        return (
            "InProgress",
            f"{kind} generation is {generation}, but latest observed generation is {observed}",
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return "InProgress", str(cond.get("message", ""))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return "Failed", str(cond.get("message", ""))
    return "Current", "Resource is current"
