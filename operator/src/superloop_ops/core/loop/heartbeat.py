"""Runtime heartbeat freshness (§7.1): one observation per successful ingest.

The snapshot carries the runtime's ``heartbeat.v1.json`` as ``runtime.heartbeat``. A missing
heartbeat changes nothing (the previous heartbeat.json keeps feeding health); a heartbeat
without a usable timestamp is recorded as a ``failed`` telemetry row but never overwrites the
last good state.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts, prune_nulls

__all__ = ["HeartbeatObservation", "compute_heartbeat_observation"]

CATEGORY = "runtime_heartbeat"


@dataclass(frozen=True)
class HeartbeatObservation:
    """What to write: a new heartbeat.json (or None) and a telemetry row (or None)."""

    state: JsonObject | None
    row: JsonObject | None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def compute_heartbeat_observation(
    snapshot: Mapping[str, Any],
    *,
    loop_id: str,
    trace_id: str | None,
    transport: str,
    degraded_seconds: int,
    critical_seconds: int,
    now: dt.datetime,
) -> HeartbeatObservation:
    """Classify the snapshot's heartbeat against the two heartbeat thresholds."""
    runtime = snapshot.get("runtime")
    heartbeat = runtime.get("heartbeat") if isinstance(runtime, Mapping) else None
    if heartbeat is None or heartbeat is False:
        return HeartbeatObservation(state=None, row=None)
    stamp = format_ts(now)
    base: JsonObject = {
        "timestamp": stamp,
        "loopId": loop_id,
        "traceId": trace_id or None,
        "transport": transport,
        "category": CATEGORY,
    }
    raw_at: object = None
    if isinstance(heartbeat, Mapping):
        for key in ("timestamp", "updatedAt"):
            candidate = heartbeat.get(key)
            if candidate is not None and candidate is not False:
                raw_at = candidate
                break
    if raw_at is None or raw_at == "":
        row = {
            **base,
            "status": "failed",
            "reasonCode": "missing_heartbeat_timestamp",
            "heartbeat": heartbeat,
        }
        return HeartbeatObservation(state=None, row=prune_nulls(row))
    heartbeat_at = _text(raw_at)
    parsed = parse_ts(heartbeat_at)
    if parsed is None:
        row = {
            **base,
            "status": "failed",
            "reasonCode": "invalid_heartbeat_timestamp",
            "heartbeatAt": heartbeat_at,
            "heartbeat": heartbeat,
        }
        return HeartbeatObservation(state=None, row=prune_nulls(row))
    lag = max(int((now - parsed).total_seconds()), 0)
    if lag >= critical_seconds:
        freshness = "critical"
    elif lag >= degraded_seconds:
        freshness = "degraded"
    else:
        freshness = "fresh"
    reason = None if freshness == "fresh" else "runtime_heartbeat_stale"
    state = prune_nulls(
        {
            "schemaVersion": "v1",
            "updatedAt": stamp,
            "loopId": loop_id,
            "traceId": trace_id or None,
            "transport": transport,
            "lastHeartbeatAt": heartbeat_at,
            "heartbeatLagSeconds": lag,
            "freshnessStatus": freshness,
            "reasonCode": reason,
            "thresholds": {
                "degradedHeartbeatLagSeconds": degraded_seconds,
                "criticalHeartbeatLagSeconds": critical_seconds,
            },
            "heartbeat": heartbeat,
        }
    )
    row = prune_nulls(
        {
            **base,
            "status": freshness,
            "reasonCode": reason,
            "heartbeatAt": heartbeat_at,
            "heartbeatLagSeconds": lag,
            "heartbeat": heartbeat,
        }
    )
    return HeartbeatObservation(state=state, row=row)
