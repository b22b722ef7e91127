"""Telemetry summary: turn a window of reconcile/control telemetry into a profile recommendation.

The recommendation is advisory input for the profile-drift evaluator (``core.tuning.drift``). The rules
(rates, confidence by attempt count, first-match recommendation, literal rationales) are the
contract's; this module only sees already-read records, so a torn or garbage line the shell
could not parse simply never reaches it (see docs/divergences.md).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from superloop_ops.core.common.jsonutil import JsonObject, format_ts

__all__ = [
    "DEFAULT_SUMMARY_WINDOW",
    "RATIONALES",
    "RECOMMENDABLE_PROFILES",
    "SummarySource",
    "WindowObservation",
    "build_summary_document",
    "build_telemetry_summary",
    "compute_confidence",
    "compute_percentile",
    "compute_recommendation",
    "compute_window_observation",
    "json_number",
]

DEFAULT_SUMMARY_WINDOW = 200

RECOMMENDABLE_PROFILES = ("strict", "balanced", "relaxed")

RATIONALES: dict[str, str] = {
    "empty": "No telemetry window yet; keep balanced defaults",
    "relaxed": "Observed high critical/failure rates; reduce alert noise while stabilizing",
    "strict": "Observed stable healthy runs; tighten thresholds for faster detection",
    "balanced": "Observed mixed signals; keep balanced thresholds",
}


@dataclass(frozen=True)
class SummarySource:
    """Where the window came from; echoed verbatim in the summary's ``source`` block."""

    repo_path: str
    loop_id: str
    reconcile_telemetry_file: str
    control_telemetry_file: str
    window: int


def json_number(value: float) -> int | float:
    """Integral values print without a fraction, as jq does (``1`` not ``1.0``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ratio(numerator: int, denominator: int) -> int | float:
    if denominator == 0:
        return 0
    return json_number(numerator / denominator)


def _as_duration(value: object) -> float | None:
    """Numbers, or strings holding a number, count; booleans and anything else do not."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def compute_percentile(values: Sequence[float], fraction: float) -> int | float | None:
    """Nearest-rank-below percentile: element ``floor((n - 1) * p)`` of the sorted list."""
    if not values:
        return None
    ordered = sorted(values)
    return json_number(ordered[math.floor((len(ordered) - 1) * fraction)])


def compute_confidence(attempts: int) -> str:
    if attempts >= 100:
        return "high"
    if attempts >= 30:
        return "medium"
    return "low"


def compute_recommendation(
    attempts: int, critical_rate: float, degraded_rate: float, failed_rate: float, ambiguous_count: int
) -> str:
    """First matching rule wins; always one of the three shipped profile names."""
    if attempts == 0:
        return "balanced"
    if critical_rate >= 0.20 or failed_rate >= 0.25:
        return "relaxed"
    if critical_rate == 0 and degraded_rate <= 0.05 and failed_rate <= 0.02 and ambiguous_count == 0:
        return "strict"
    return "balanced"


def _reason_code_frequency(records: Sequence[JsonObject]) -> list[JsonObject]:
    counts: Counter[str] = Counter()
    for record in records:
        codes = record.get("healthReasonCodes")
        if isinstance(codes, list):
            counts.update(code for code in codes if isinstance(code, str))
    ranked = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return [{"code": code, "count": count} for code, count in ranked]


@dataclass(frozen=True)
class WindowObservation:
    """What a window of telemetry shows: the summary without its ``source`` and instant."""

    attempts: int
    observed: JsonObject
    recommended: str


def compute_window_observation(
    reconcile_records: Sequence[object], control_records: Sequence[object]
) -> WindowObservation:
    """Counts, rates, reason codes, durations and the recommendation of one window.

    Non-object records are ignored rather than fatal.
    """
    reconcile = [record for record in reconcile_records if isinstance(record, dict)]
    control = [record for record in control_records if isinstance(record, dict)]
    attempts = len(reconcile)
    success = sum(1 for record in reconcile if record.get("status") == "success")
    failed = sum(1 for record in reconcile if record.get("status") == "failed")
    degraded = sum(1 for record in reconcile if record.get("healthStatus") == "degraded")
    critical = sum(1 for record in reconcile if record.get("healthStatus") == "critical")
    ambiguous = sum(
        1
        for record in control
        if record.get("status") == "ambiguous" or record.get("reasonCode") == "control_ambiguous"
    )
    durations = [
        d for d in (_as_duration(record.get("durationSeconds")) for record in reconcile) if d is not None
    ]
    degraded_rate = _ratio(degraded, attempts)
    critical_rate = _ratio(critical, attempts)
    failed_rate = _ratio(failed, attempts)
    observed: JsonObject = {
        "reconcileAttempts": attempts,
        "reconcileSuccessCount": success,
        "reconcileFailedCount": failed,
        "health": {
            "degradedCount": degraded,
            "criticalCount": critical,
            "degradedRate": degraded_rate,
            "criticalRate": critical_rate,
            "reasonCodeFrequency": _reason_code_frequency(reconcile),
        },
        "control": {"ambiguousCount": ambiguous},
        "durationSeconds": {
            "p50": compute_percentile(durations, 0.50),
            "p95": compute_percentile(durations, 0.95),
            "max": json_number(max(durations)) if durations else None,
        },
    }
    recommended = compute_recommendation(attempts, critical_rate, degraded_rate, failed_rate, ambiguous)
    return WindowObservation(attempts=attempts, observed=observed, recommended=recommended)


def build_summary_document(
    observation: WindowObservation, *, source: SummarySource, now: dt.datetime
) -> JsonObject:
    """The summary document (§2.6) of an observed window; its ``observed`` block is a fresh copy."""
    rationale = RATIONALES["empty"] if observation.attempts == 0 else RATIONALES[observation.recommended]
    return {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {
            "repoPath": source.repo_path,
            "loopId": source.loop_id,
            "reconcileTelemetryFile": source.reconcile_telemetry_file,
            "controlTelemetryFile": source.control_telemetry_file,
            "window": source.window,
        },
        "observed": copy.deepcopy(observation.observed),
        "recommendedProfile": observation.recommended,
        "confidence": compute_confidence(observation.attempts),
        "rationale": rationale,
    }


def build_telemetry_summary(
    reconcile_records: Sequence[object],
    control_records: Sequence[object],
    *,
    source: SummarySource,
    now: dt.datetime,
) -> JsonObject:
    """The summary document (§2.6). Non-object records are ignored rather than fatal."""
    observation = compute_window_observation(reconcile_records, control_records)
    return build_summary_document(observation, source=source, now=now)
