"""Drill evidence records: what ``kubectl superloop drill record`` writes (promotion §1.2.3).

The runbook has operators write ``drills/promotion.v1.json`` by hand after running the three
incident drills. In a cluster that document lives in a ConfigMap the FleetPolicy names, so
recording one drill is a merge into whatever is there: the entry with the same id is replaced
(the gates read the *first* entry of an id, so duplicates of it are dropped too), the required
drills come first in the required order, and entries of other ids keep their relative order
after them. Existing content that the gates would call invalid is refused rather than
overwritten: the person recording evidence should see that someone else's document is broken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.promotion.promotion_gates import REQUIRED_DRILLS
from superloop_ops.errors import ContractError

__all__ = [
    "DRILL_STATUSES",
    "DrillRecord",
    "build_drill_document",
    "compute_config_map_source",
    "format_drill_document",
]

DRILL_STATUSES = ("pass", "fail")


@dataclasses.dataclass(frozen=True)
class DrillRecord:
    """One drill run: its id (one of the required three), its outcome and when it completed."""

    drill_id: str
    status: str
    completed_at: str

    def __post_init__(self) -> None:
        if self.drill_id not in REQUIRED_DRILLS:
            raise ContractError(f"--drill must be one of: {', '.join(REQUIRED_DRILLS)}")
        if self.status not in DRILL_STATUSES:
            raise ContractError(f"--status must be one of: {', '.join(DRILL_STATUSES)}")
        if parse_ts(self.completed_at) is None:
            raise ContractError("--completed-at must be an ISO timestamp (YYYY-MM-DDTHH:MM:SSZ)")

    def to_json(self) -> JsonObject:
        return {"id": self.drill_id, "status": self.status, "completedAt": self.completed_at}


def _existing_document(text: str | None, where: str) -> Mapping[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        document = json.loads(text)
    except ValueError:
        raise ContractError(f"{where} is not valid JSON; fix or delete it before recording") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ContractError(f"{where} is not a JSON object; fix or delete it before recording")
    drills = document.get("drills")
    if drills is not None and not isinstance(drills, list):
        raise ContractError(f"{where} has a drills value that is not an array; fix or delete it")
    return document


def _drill_id(entry: Any) -> Any:
    return entry.get("id") if isinstance(entry, Mapping) else None


def build_drill_document(
    text: str | None, record: DrillRecord, *, now: dt.datetime, where: str
) -> JsonObject:
    """The evidence document after recording ``record`` into ``text`` (None: nothing yet).

    ``where`` names the source in error messages. Other top-level keys are kept; later
    duplicates of a required id are dropped (the gates only ever read the first).
    """
    existing = _existing_document(text, where)
    entries = [e for e in existing.get("drills") or [] if _drill_id(e) != record.drill_id]
    entries.append(record.to_json())
    required = [
        next(e for e in entries if _drill_id(e) == drill_id)
        for drill_id in REQUIRED_DRILLS
        if any(_drill_id(e) == drill_id for e in entries)
    ]
    others = [e for e in entries if _drill_id(e) not in REQUIRED_DRILLS]
    document: JsonObject = {"schemaVersion": "v1", "updatedAt": format_ts(now), "drills": required + others}
    for key, value in existing.items():
        if key not in document:
            document[key] = value
    return document


def format_drill_document(document: Mapping[str, Any]) -> str:
    """Two-space JSON plus a newline: readable in ``kubectl get configmap -o yaml`` and diffs."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def compute_config_map_source(namespace: str, name: str, key: str) -> str:
    """How a ConfigMap source is echoed as ``source.drillStateFile`` in the decision document."""
    return f"configmap://{namespace}/{name}/{key}"
