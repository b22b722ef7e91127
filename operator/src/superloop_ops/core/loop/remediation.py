"""A Loop's remediation: opened by the pass whose health first turns bad, resolved by the pass that
shows it healthy again (issue 15, one trail per remediation).

The remediation's trace id is the trace id of the pass that opened it, minted once. While the
remediation is open every later pass of the Loop runs with that same trace id
(``find_open_trace``), so its health rows, escalations and alert payloads, the fleet candidate
built from its status, the HandoffIntent, the control request and the pass that shows the
effect all carry one id. The record lives in the Loop's ``status.remediation``; the journal
gets one ``telemetry/remediations.jsonl`` row when it opens and one when it resolves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.common.open_remediation import OPEN, RESOLVED, find_open_trace
from superloop_ops.core.loop.loop_resource import EventSpec

__all__ = [
    "OPEN",
    "RESOLVED",
    "RemediationMark",
    "RemediationUpdate",
    "compute_remediation",
    "find_open_trace",
    "mark_of",
]

_UNHEALTHY = frozenset({"degraded", "critical"})


@dataclasses.dataclass(frozen=True)
class RemediationUpdate:
    """The new ``status.remediation`` (None: none yet), the journal row and the Event, if any."""

    record: JsonObject | None
    row: JsonObject | None = None
    event: EventSpec | None = None


RemediationMark = tuple[str, str]
"""A remediation record's trace id and state: what tells one version of the record from the next."""


def mark_of(status: Mapping[str, Any] | None) -> RemediationMark | None:
    """The mark of a Loop status's remediation (None: the status has none)."""
    record = _record((status or {}).get("remediation"))
    return (str(record.get("traceId")), str(record.get("state"))) if record else None


def _record(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_unhealthy(outcome: str, health_status: Any) -> bool:
    return outcome == "failed" or health_status in _UNHEALTHY


def compute_remediation(
    previous: Mapping[str, Any] | None,
    *,
    loop_id: str,
    outcome: str,
    health_status: Any,
    reason_codes: list[str],
    trace_id: str,
    started_at: dt.datetime,
    finished_at: dt.datetime,
) -> RemediationUpdate:
    """Open, carry or resolve the remediation after one pass (``outcome`` success or failed).

    ``trace_id`` is the pass's own: it becomes the remediation's id when this pass opens one.
    A remediation opens at its pass's start and resolves at its pass's end, so every row its
    passes wrote lies between the two: a trail shows the signal before the pass's escalations and
    the resolution after the health pass that found the Loop healthy, whatever a pass took.
    """
    prev = dict(_record(previous)) or None
    is_open = prev is not None and prev.get("state") == OPEN
    bad = _is_unhealthy(outcome, health_status)
    health = health_status if isinstance(health_status, str) else "unknown"
    codes = [str(c) for c in reason_codes]
    if bad and is_open:
        assert prev is not None
        return RemediationUpdate({**prev, "healthStatus": health, "reasonCodes": codes})
    if bad:
        record: JsonObject = {
            "traceId": trace_id, "state": OPEN, "openedAt": format_ts(started_at), "healthStatus": health,
            "reasonCodes": codes,
        }  # fmt: skip
        message = f"{health} ({', '.join(codes) or outcome}): remediation opened"
        return RemediationUpdate(
            record,
            _row(loop_id, "opened", record, started_at),
            EventSpec("Warning", "RemediationOpened", message),
        )
    if is_open:
        assert prev is not None
        record = {
            **prev,
            "state": RESOLVED,
            "resolvedAt": format_ts(finished_at),
            "healthStatus": health,
            "reasonCodes": codes,
        }
        message = f"{health} again after {prev.get('openedAt')}: remediation resolved"
        return RemediationUpdate(
            record,
            _row(loop_id, "resolved", record, finished_at),
            EventSpec("Normal", "RemediationResolved", message),
        )
    return RemediationUpdate(prev)


def _row(loop_id: str, event: str, record: Mapping[str, Any], now: dt.datetime) -> JsonObject:
    return {
        "timestamp": format_ts(now),
        "loopId": loop_id,
        "traceId": record["traceId"],
        "event": event,
        "healthStatus": record["healthStatus"],
        "reasonCodes": list(record["reasonCodes"]),
    }
