"""Profile drift: is the applied threshold profile persistently different from the recommendation?

Drift is advisory only: nothing here ever switches the applied profile. A mismatch counts only
when the recommendation is confident enough (``confidenceOk``); ``requiredStreak`` consecutive
eligible mismatches activate drift, and any non-eligible evaluation resets the streak (which
also resolves an active drift). The activation edge (``transitioned.toActive``) is what raises
the ``profile_drift_detected`` escalation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, prune_nulls
from superloop_ops.errors import ContractError

__all__ = [
    "CONFIDENCE_RANKS",
    "DRIFT_ESCALATION_CATEGORY",
    "DriftInputs",
    "build_drift_escalation",
    "build_drift_history_row",
    "build_tuning_block",
    "compute_drift_state",
    "compute_previous_drift",
    "validate_drift_profiles",
]

CONFIDENCE_RANKS: dict[str, int] = {"low": 1, "medium": 2, "high": 3}

DRIFT_ESCALATION_CATEGORY = "profile_drift_detected"


@dataclass(frozen=True)
class DriftInputs:
    """One evaluation's inputs; empty profile names mean "none"."""

    loop_id: str
    applied_profile: str = ""
    recommended_profile: str = ""
    recommendation_confidence: str = "low"
    min_confidence: str = "medium"
    required_streak: int = 3
    summary_window: int = 200
    rationale: str = ""

    def __post_init__(self) -> None:
        if self.required_streak < 1:
            raise ContractError("--required-streak must be an integer >= 1")
        if self.summary_window < 1:
            raise ContractError("--summary-window must be an integer >= 1")
        if self.recommendation_confidence not in CONFIDENCE_RANKS:
            raise ContractError("--recommendation-confidence must be one of: low, medium, high")
        if self.min_confidence not in CONFIDENCE_RANKS:
            raise ContractError("--min-confidence must be one of: low, medium, high")


def validate_drift_profiles(
    inputs: DriftInputs,
    catalog_profiles: Collection[str],
    *,
    unknown_recommendation: Literal["fail", "ignore"] = "fail",
) -> DriftInputs:
    """Fail closed on an applied name the catalog lacks.

    A recommendation outside the catalog fails closed when a person typed it (CLI), but with
    ``unknown_recommendation="ignore"`` (the reconcile step, whose recommendation comes from
    the summary's fixed vocabulary) it is treated as no recommendation, so a custom catalog
    without ``strict``/``relaxed`` cannot break reconcile.
    """
    if inputs.applied_profile and inputs.applied_profile not in catalog_profiles:
        raise ContractError(f"unknown applied profile: {inputs.applied_profile}")
    if inputs.recommended_profile and inputs.recommended_profile not in catalog_profiles:
        if unknown_recommendation == "fail":
            raise ContractError(f"unknown recommended profile: {inputs.recommended_profile}")
        return DriftInputs(
            loop_id=inputs.loop_id,
            applied_profile=inputs.applied_profile,
            recommended_profile="",
            recommendation_confidence=inputs.recommendation_confidence,
            min_confidence=inputs.min_confidence,
            required_streak=inputs.required_streak,
            summary_window=inputs.summary_window,
            rationale=inputs.rationale,
        )
    return inputs


def compute_previous_drift(previous: object) -> tuple[int, bool]:
    """(streak, active) from the last state; anything malformed counts as a fresh start."""
    if not isinstance(previous, dict):
        return 0, False
    streak = previous.get("mismatchStreak")
    if isinstance(streak, bool) or not isinstance(streak, int) or streak < 0:
        streak = 0
    return streak, previous.get("driftActive") is True


def compute_drift_state(previous: object, inputs: DriftInputs, *, now: dt.datetime) -> JsonObject:
    """The new ``profile-drift.json`` document (top-level nulls stripped, contract field order)."""
    previous_streak, previous_active = compute_previous_drift(previous)
    recommendation_rank = CONFIDENCE_RANKS[inputs.recommendation_confidence]
    minimum_rank = CONFIDENCE_RANKS[inputs.min_confidence]
    confidence_ok = recommendation_rank >= minimum_rank
    mismatch = bool(
        inputs.applied_profile
        and inputs.recommended_profile
        and inputs.applied_profile != inputs.recommended_profile
    )
    eligible = mismatch and confidence_ok
    streak = previous_streak + 1 if eligible else 0
    active = streak >= inputs.required_streak
    if not inputs.recommended_profile:
        status = "no_recommendation"
    elif not mismatch:
        status = "aligned"
    elif not confidence_ok:
        status = "insufficient_confidence"
    elif active:
        status = "drift_active"
    else:
        status = "mismatch_pending"
    action: str | None
    if active:
        action = "review_threshold_profile"
    elif status == "mismatch_pending":
        action = "monitor_additional_windows"
    elif status == "insufficient_confidence":
        action = "collect_more_confident_telemetry"
    else:
        action = None
    return prune_nulls(
        {
            "schemaVersion": "v1",
            "updatedAt": format_ts(now),
            "loopId": inputs.loop_id,
            "status": status,
            "reasonCode": DRIFT_ESCALATION_CATEGORY if status == "drift_active" else None,
            "appliedProfile": inputs.applied_profile or None,
            "recommendedProfile": inputs.recommended_profile or None,
            "recommendationConfidence": inputs.recommendation_confidence,
            "minimumConfidence": inputs.min_confidence,
            "recommendationRank": recommendation_rank,
            "minimumRank": minimum_rank,
            "requiredStreak": inputs.required_streak,
            "summaryWindow": inputs.summary_window,
            "mismatch": mismatch,
            "confidenceOk": confidence_ok,
            "eligibleMismatch": eligible,
            "mismatchStreak": streak,
            "driftActive": active,
            "transitioned": {
                "toActive": active and not previous_active,
                "toResolved": previous_active and not active,
            },
            "rationale": inputs.rationale or None,
            "action": action,
        }
    )


def build_drift_history_row(drift: JsonObject, *, now: dt.datetime) -> JsonObject:
    """One ``profile-drift.jsonl`` row per evaluation."""
    return {
        "timestamp": format_ts(now),
        "loopId": drift.get("loopId"),
        "category": "profile_drift_evaluation",
        "drift": drift,
    }


def build_drift_escalation(
    drift: JsonObject,
    *,
    loop_id: str,
    trace_id: str | None,
    transport: str,
    state_file: str,
    drift_state_file: str,
    drift_history_file: str,
    now: dt.datetime,
) -> JsonObject | None:
    """The ``profile_drift_detected`` escalation row, only on the activation edge."""
    transitioned = drift.get("transitioned")
    if not (isinstance(transitioned, dict) and transitioned.get("toActive") is True):
        return None
    streak = drift.get("mismatchStreak")
    required = drift.get("requiredStreak")
    return prune_nulls(
        {
            "timestamp": format_ts(now),
            "loopId": loop_id,
            "traceId": trace_id or None,
            "category": DRIFT_ESCALATION_CATEGORY,
            "transport": transport,
            "stateFile": state_file,
            "driftStateFile": drift_state_file,
            "driftHistoryFile": drift_history_file,
            "reasonCode": drift.get("reasonCode") or DRIFT_ESCALATION_CATEGORY,
            "drift": {
                "status": drift.get("status") or "unknown",
                "appliedProfile": drift.get("appliedProfile"),
                "recommendedProfile": drift.get("recommendedProfile"),
                "recommendationConfidence": drift.get("recommendationConfidence"),
                "mismatchStreak": streak if isinstance(streak, int) else 0,
                "requiredStreak": required if isinstance(required, int) else 0,
                "action": drift.get("action"),
                "rationale": drift.get("rationale"),
            },
        }
    )


def build_tuning_block(summary: JsonObject | None, applied_profile: str | None) -> JsonObject | None:
    """The ``tuning`` object reconcile merges into state.json (nulls kept); None without a summary."""
    if summary is None:
        return None
    source = summary.get("source")
    return {
        "appliedProfile": applied_profile or None,
        "recommendedProfile": summary.get("recommendedProfile"),
        "confidence": summary.get("confidence"),
        "rationale": summary.get("rationale"),
        "summaryWindow": source.get("window") if isinstance(source, dict) else None,
        "telemetrySummary": {"observed": summary.get("observed"), "source": source},
    }
