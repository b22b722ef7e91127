"""Envelope sequence integrity (§7.2): detect ordering drift between and within batches.

Each envelope carries ``sequence.value`` (the events-file line number). A pass compares the
snapshot's value with the previous pass's snapshot, the batch's values with each other, and the
batch's first value with the previous batch's last. Equal values are fine; only a strict
decrease, or a missing value, is a violation. Nothing is carried across an empty batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, prune_nulls
from superloop_ops.core.loop.threshold_profiles import coerce_non_negative_int

__all__ = ["SequenceDiagnostics", "compute_sequence_diagnostics"]

STATUS_OK = "ok"
DRIFT = "ordering_drift_detected"


@dataclass(frozen=True)
class SequenceDiagnostics:
    """The new sequence-state.json and its telemetry row."""

    state: JsonObject
    row: JsonObject

    @property
    def status(self) -> str:
        return str(self.state["status"])

    @property
    def reason_code(self) -> str | None:
        code = self.state.get("reasonCode")
        return str(code) if code else None

    @property
    def transitioned_to_drift(self) -> bool:
        return bool(self.state["transition"]["transitionedToDrift"])


def _sequence_value(document: object) -> int | None:
    if not isinstance(document, Mapping):
        return None
    sequence = document.get("sequence")
    if not isinstance(sequence, Mapping):
        return None
    return coerce_non_negative_int(sequence.get("value"))


def _nested_int(document: Mapping[str, Any], section: str, key: str) -> int | None:
    part = document.get(section)
    if not isinstance(part, Mapping):
        return None
    return coerce_non_negative_int(part.get(key))


def compute_sequence_diagnostics(
    previous: Mapping[str, Any] | None,
    snapshot: Mapping[str, Any],
    events: Sequence[object],
    *,
    loop_id: str,
    trace_id: str | None,
    transport: str,
    now: dt.datetime,
) -> SequenceDiagnostics:
    """Compare this pass's snapshot and batch with the previous sequence state."""
    prior = previous if isinstance(previous, Mapping) else {}
    prev_snapshot = _nested_int(prior, "snapshot", "current")
    prev_last = _nested_int(prior, "events", "last")
    prev_drift = prior.get("driftActive") is True

    current = _sequence_value(snapshot)
    snapshot_missing = current is None
    snapshot_regressed = current is not None and prev_snapshot is not None and current < prev_snapshot

    first: int | None = None
    last: int | None = None
    events_missing = False
    within_ok = True
    for event in events:
        value = _sequence_value(event)
        if value is None:
            events_missing = True
            continue
        if first is None:
            first = value
        if last is not None and value < last:
            within_ok = False
        last = value
    across_ok = not (first is not None and prev_last is not None and first < prev_last)

    violations: list[str] = []
    if snapshot_missing:
        violations.append("snapshot_sequence_missing")
    if snapshot_regressed:
        violations.append("snapshot_sequence_regression")
    if events_missing:
        violations.append("event_sequence_missing")
    if not within_ok:
        violations.append("event_sequence_non_monotonic")
    if not across_ok:
        violations.append("event_sequence_regression")
    violations.sort()
    drift = bool(violations)
    status = DRIFT if drift else STATUS_OK
    reason = DRIFT if drift else None
    snapshot_part = {
        "previous": prev_snapshot,
        "current": current,
        "monotonic": not (snapshot_missing or snapshot_regressed),
        "regressed": snapshot_regressed,
        "missing": snapshot_missing,
    }
    events_part = {
        "ingestedCount": len(events),
        "previousLast": prev_last,
        "first": first,
        "last": last,
        "monotonicWithinBatch": within_ok,
        "monotonicAcrossBatches": across_ok,
        "regressed": not (within_ok and across_ok),
        "missing": events_missing,
    }
    transition = {
        "previousDriftActive": prev_drift,
        "transitionedToDrift": drift and not prev_drift,
        "recoveredFromDrift": prev_drift and not drift,
    }
    stamp = format_ts(now)
    identity = {"loopId": loop_id, "traceId": trace_id or None, "transport": transport}
    # The state file and the telemetry row carry the same verdict; only their heads differ.
    verdict = {
        "status": status,
        "reasonCode": reason,
        "driftActive": drift,
        "violations": violations,
        "snapshot": snapshot_part,
        "events": events_part,
        "transition": transition,
    }
    state = prune_nulls({"schemaVersion": "v1", "updatedAt": stamp, **identity, **verdict})
    row = prune_nulls({"timestamp": stamp, **identity, "category": "envelope_sequence", **verdict})
    return SequenceDiagnostics(state=state, row=row)
