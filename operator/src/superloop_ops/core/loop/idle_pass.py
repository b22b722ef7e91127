"""When a Loop's periodic pass can be skipped: nothing it reads has changed and nothing is due.

A full pass reads the runtime's artifacts, writes the journal and may patch the status. When no
artifact changed since the last full pass, the spec and the replay request are the same, and no
health threshold will have been crossed by the mere passing of time, a new full pass would only
rewrite the journal with the same facts. The shell stats the artifacts (size, modification
time, inode: an in-place append changes the first two, an atomic replace the last) and asks
``is_idle``; the memo of the last full pass says when the next full pass is due anyway: the
first moment an ageing lag (ingest, liveness or heartbeat) or an approval wait crosses a
threshold, or the status refresh period when one is set, whichever comes first; ``None`` when
nothing is ahead (every threshold crossed, no refresh): only a change brings a full pass back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import as_mapping, as_number

__all__ = ["FileStamp", "IdleMemo", "compute_next_due", "is_idle"]

FileStamp = tuple[int, int, int] | None  # (size, mtime_ns, inode); None when the file is absent

# (lag metric in health.metrics, its degraded and critical thresholds in health.thresholds);
# a running run's staleness is judged on its liveness lag against the ingest thresholds
_AGEING_LAGS: tuple[tuple[str, str, str], ...] = (
    ("ingestLagSeconds", "degradedIngestLagSeconds", "criticalIngestLagSeconds"),
    ("livenessLagSeconds", "degradedIngestLagSeconds", "criticalIngestLagSeconds"),
    ("heartbeatLagSeconds", "degradedHeartbeatLagSeconds", "criticalHeartbeatLagSeconds"),
)
# health reasons whose observed value is an age in seconds, next to the threshold it ages toward
_AGEING_REASONS = frozenset({"approvalWaitSeconds"})


@dataclasses.dataclass(frozen=True)
class IdleMemo:
    """What the last clean full pass of one Loop depended on, and when the next one is due."""

    generation: int
    replay_request: str | None
    stamps: tuple[tuple[str, FileStamp], ...]
    due: dt.datetime | None  # None: nothing due by the mere passing of time


def compute_next_due(
    status: Mapping[str, Any], *, now: dt.datetime, refresh_seconds: float
) -> dt.datetime | None:
    """The first moment a full pass is needed although no artifact changes: a lag reaching a
    threshold it is still below, or the status refresh (``refresh_seconds`` > 0), whichever is
    first; ``None`` when neither is ahead."""
    health = as_mapping(status.get("health"))
    metrics, thresholds = as_mapping(health.get("metrics")), as_mapping(health.get("thresholds"))
    waits = [float(refresh_seconds)] if refresh_seconds > 0 else []
    for lag_key, *threshold_keys in _AGEING_LAGS:
        lag = as_number(metrics.get(lag_key))
        if lag is None:
            continue
        for key in threshold_keys:
            threshold = as_number(thresholds.get(key))
            if threshold is not None and threshold >= lag:
                waits.append(threshold - lag + 1.0)  # one second past it: crossed either way
    for reason in health.get("reasons") or []:
        reason = as_mapping(reason)
        if reason.get("metric") not in _AGEING_REASONS:
            continue
        observed, threshold = _seconds(reason.get("observed")), _seconds(reason.get("threshold"))
        if observed is not None and threshold is not None and threshold >= observed:
            waits.append(threshold - observed + 1.0)
    return now + dt.timedelta(seconds=max(min(waits), 0.0)) if waits else None


def _seconds(value: Any) -> float | None:
    """A reason's observed value or threshold (strings in the health document)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_idle(
    memo: IdleMemo | None,
    *,
    generation: int,
    replay_request: str | None,
    stamps: tuple[tuple[str, FileStamp], ...],
    now: dt.datetime,
) -> bool:
    """True when a full pass would find nothing new: same spec, same replay request, every
    artifact unchanged, and nothing due yet."""
    if memo is None:
        return False
    return (
        memo.generation == generation
        and memo.replay_request == replay_request
        and memo.stamps == stamps
        and (memo.due is None or now < memo.due)
    )
