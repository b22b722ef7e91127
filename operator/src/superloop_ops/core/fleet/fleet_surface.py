"""Fleet status: one read-only surface over the fleet, policy and handoff documents.

Nothing here writes or blocks. In particular an expired governance review is *reported*
(posture ``review_expired``, ``blocksAutonomous``) instead of making the command fail, which is
what the reference did: the surface an operator needs during a governance lapse must keep working.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.fleet.rollup import sorted_unique

__all__ = ["StatusInputs", "build_fleet_status", "compute_governance_posture"]

_PENDING = "pending_operator_confirmation"
_SEVERITY_ORDER = {"critical": 0, "warning": 1}
_DUE_SOON_SECONDS = 7 * 86400
_POLICY_GATED = (
    "policy_mode_not_guarded_auto",
    "policy_mode_shadow",
    "candidate_suppressed",
    "category_not_allowlisted",
    "intent_not_allowlisted",
    "no_recommended_intent",
    "severity_below_threshold",
    "confidence_below_threshold",
    "autonomous_kill_switch_enabled",
    "autonomous_cooldown_active",
    "autonomous_max_actions_per_run_exceeded",
    "autonomous_max_actions_per_loop_exceeded",
)
_ROLLOUT_GATED = (
    "autonomous_rollout_scope_excluded",
    "autonomous_rollout_canary_excluded",
    "autonomous_rollout_paused_manual",
    "autonomous_rollout_paused_auto",
    "autonomous_autopause_ambiguous_spike",
    "autonomous_autopause_failure_spike",
)
_SAFETY_BLOCKING = (
    *_ROLLOUT_GATED,
    "autonomous_kill_switch_enabled",
    "autonomous_cooldown_active",
    "autonomous_max_actions_per_run_exceeded",
    "autonomous_max_actions_per_loop_exceeded",
)


@dataclasses.dataclass(frozen=True)
class StatusInputs:
    """Everything the status surface reads; documents are None when absent."""

    repo_path: str
    registry: Mapping[str, Any]
    fleet_state: Mapping[str, Any]
    policy_state: Mapping[str, Any] | None
    handoff_state: Mapping[str, Any] | None
    latest_fleet_telemetry: Mapping[str, Any] | None
    latest_handoff_telemetry: Mapping[str, Any] | None
    files: Mapping[str, str]


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _prune(record: Mapping[str, Any]) -> JsonObject:
    return {key: value for key, value in record.items() if value is not None}


def _int(value: Any, default: int = 0) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _tally(values: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _fleet_block(
    state: Mapping[str, Any], results: list[Mapping[str, Any]], rollup: Mapping[str, int]
) -> JsonObject:
    def count(key: str, status: str | None) -> Any:
        if isinstance(state.get(key), (int, float)):
            return state[key]
        return len(results) if status is None else sum(1 for r in results if r.get("status") == status)

    loop_count = count("loopCount", None)
    success = count("successCount", "success")
    failed = count("failedCount", "failed")
    skipped = count("skippedCount", "skipped")
    reasons = [str(code) for code in _list(state.get("reasonCodes"))]
    if failed > 0 and success > 0:
        reasons.append("fleet_partial_failure")
    if rollup["critical"] > 0:
        reasons.append("fleet_health_critical")
    elif rollup["degraded"] > 0:
        reasons.append("fleet_health_degraded")
    return {
        "status": state.get("status") or "unknown",
        "reasonCodes": sorted_unique(reasons),
        "loopCount": loop_count,
        "successCount": success,
        "failedCount": failed,
        "skippedCount": skipped,
        "startedAt": state.get("startedAt"),
        "updatedAt": state.get("updatedAt"),
        "durationSeconds": state.get("durationSeconds"),
        "traceId": state.get("traceId"),
        # One count source for both (the reference mixed raw and fallback counts).
        "partialFailure": failed > 0 and success > 0,
    }


def _policy_block(policy: Mapping[str, Any] | None) -> JsonObject | None:
    if policy is None:
        return None
    candidates = [c for c in _list(policy.get("candidates")) if isinstance(c, Mapping)]
    ranked = sorted(candidates, key=lambda c: _SEVERITY_ORDER.get(str(c.get("severity")), 2))
    return _prune(
        {
            "mode": policy.get("mode") or "advisory",
            "candidateCount": _int(policy.get("candidateCount")),
            "unsuppressedCount": _int(policy.get("unsuppressedCount")),
            "suppressedCount": _int(policy.get("suppressedCount")),
            "reasonCodes": _list(policy.get("reasonCodes")),
            "topCandidates": ranked[:5],
            "traceId": policy.get("traceId"),
            "updatedAt": policy.get("updatedAt"),
        }
    )


def _outcome_rollup(handoff: Mapping[str, Any] | None, policy: Mapping[str, Any] | None) -> JsonObject:
    execution = _obj((handoff or {}).get("execution"))
    autonomous = execution.get("mode") == "autonomous"
    if handoff is not None:
        backlog = _pending_manual_only(handoff)
    elif policy is not None:
        backlog = _int(policy.get("manualOnlyCount"))
    else:
        backlog = 0
    return {
        "attempted": _int(execution.get("requestedIntentCount")) if autonomous else 0,
        "executed": _int(execution.get("executedCount")) if autonomous else 0,
        "ambiguous": _int(execution.get("ambiguousCount")) if autonomous else 0,
        "failed": _int(execution.get("failedCount")) if autonomous else 0,
        "manual_backlog": backlog,
    }


def _pending_manual_only(handoff: Mapping[str, Any]) -> int:
    return sum(
        1
        for intent in _list(handoff.get("intents"))
        if isinstance(intent, Mapping)
        and intent.get("status") == _PENDING
        and _obj(intent.get("autonomous")).get("manualOnly") is True
    )


def _handoff_block(handoff: Mapping[str, Any] | None, rollup: JsonObject) -> JsonObject | None:
    if handoff is None:
        return None
    summary = _obj(handoff.get("summary"))
    intents = [i for i in _list(handoff.get("intents")) if isinstance(i, Mapping)]
    raw_execution = _obj(handoff.get("execution"))
    execution = _prune(
        {
            "mode": raw_execution.get("mode"),
            "requestedBy": raw_execution.get("requestedBy"),
            "requestedAt": raw_execution.get("requestedAt"),
            "completedAt": raw_execution.get("completedAt"),
            "requestedIntentCount": _int(raw_execution.get("requestedIntentCount")),
            "executedIntentCount": _int(raw_execution.get("executedIntentCount")),
            "executedCount": _int(raw_execution.get("executedCount")),
            "ambiguousCount": _int(raw_execution.get("ambiguousCount")),
            "failedCount": _int(raw_execution.get("failedCount")),
            "byReasonCode": _tally(_obj(r).get("reasonCode") for r in _list(raw_execution.get("results"))),
        }
    )
    return _prune(
        {
            "mode": handoff.get("mode"),
            "reasonCodes": _list(handoff.get("reasonCodes")),
            "summary": {
                "intentCount": _int(summary.get("intentCount"), len(intents)),
                "autoEligibleIntentCount": _int(summary.get("autoEligibleIntentCount")),
                "manualOnlyIntentCount": _int(summary.get("manualOnlyIntentCount")),
                "pendingConfirmationCount": _int(summary.get("pendingConfirmationCount")),
                "executedCount": _int(summary.get("executedCount")),
                "ambiguousCount": _int(summary.get("ambiguousCount")),
                "failedCount": _int(summary.get("failedCount")),
                "autonomousOutcomeRollup": rollup,
            },
            "execution": execution,
            "byAutonomyReason": _tally(
                reason
                for intent in intents
                for reason in _list(_obj(intent.get("autonomous")).get("reasons"))
            ),
            "pendingManualOnlyCount": _pending_manual_only(handoff),
            "retryGuards": handoff.get("retryGuards") or None,
            "traceId": handoff.get("traceId"),
            "updatedAt": handoff.get("updatedAt"),
        }
    )


def compute_governance_posture(
    governance: Mapping[str, Any], mode: str, policy_present: bool, now: dt.datetime
) -> JsonObject:
    """Governance posture of the autonomous policy (reporting only; it never changes a decision)."""
    required = ("actor", "approvalRef", "rationale", "changedAt", "reviewBy")
    if "authorityContextPresent" in governance:
        authority = governance.get("authorityContextPresent") is True
    else:
        authority = all(governance.get(key) is not None for key in required)
    review_by = parse_ts(governance.get("reviewBy"))
    expired = review_by is not None and review_by <= now
    remaining = (review_by - now).total_seconds() if review_by is not None else 0
    due_soon = review_by is not None and 0 < remaining <= _DUE_SOON_SECONDS
    guarded = mode == "guarded_auto"
    reasons: list[str] = []
    if policy_present and guarded:
        if not authority:
            reasons.append("autonomous_governance_authority_missing")
        if governance.get("reviewBy") is None:
            reasons.append("autonomous_governance_review_deadline_missing")
        if expired:
            reasons.append("autonomous_governance_review_expired")
        if due_soon and not expired:
            reasons.append("autonomous_governance_review_due_soon")
    if not guarded:
        posture = "not_required"
    elif not authority:
        posture = "authority_missing"
    elif governance.get("reviewBy") is None:
        posture = "review_deadline_missing"
    elif expired:
        posture = "review_expired"
    elif due_soon:
        posture = "review_due_soon"
    else:
        posture = "active"
    # Due-soon is a warning, not a block (the reference counted it as blocking).
    blocking = [reason for reason in reasons if reason != "autonomous_governance_review_due_soon"]
    return _prune(
        {
            "changedBy": governance.get("actor"),
            "changedAt": governance.get("changedAt"),
            "approvalRef": governance.get("approvalRef"),
            "why": governance.get("rationale"),
            "until": governance.get("reviewBy"),
            "reviewWindowDays": governance.get("reviewWindowDays"),
            "authorityContextPresent": authority,
            "posture": posture,
            "reasonCodes": sorted_unique(reasons),
            "blocksAutonomous": guarded and bool(blocking),
        }
    )


def _gated_path(by_reason: Mapping[str, int], keys: Sequence[str]) -> JsonObject:
    selected = {key: count for key, count in by_reason.items() if key in keys}
    return {"blockedCount": sum(selected.values()), "byReason": selected}


def _safety_gate_decisions(
    policy: Mapping[str, Any] | None, handoff: Mapping[str, Any] | None, governance: JsonObject
) -> JsonObject:
    by_reason = dict(_obj(_obj((policy or {}).get("summary")).get("byAutonomyReason")))
    intents_by_id = {
        intent.get("intentId"): intent
        for intent in _list((handoff or {}).get("intents"))
        if isinstance(intent, Mapping)
    }
    transport: dict[str, int] = {}
    for result in _list(_obj((handoff or {}).get("execution")).get("results")):
        if not isinstance(result, Mapping) or result.get("status") not in ("failed", "ambiguous"):
            continue
        intent = _obj(intents_by_id.get(result.get("intentId")))
        if (intent.get("transport") or "local") != "sprite_service":
            continue
        key = str(result.get("reasonCode") or "transport_execution_blocked")
        transport[key] = transport.get(key, 0) + 1
    policy_gated = _gated_path(by_reason, _POLICY_GATED)
    rollout_gated = _gated_path(by_reason, _ROLLOUT_GATED)
    governance_gated: JsonObject = {
        "blockedCount": _int((policy or {}).get("unsuppressedCount"))
        if governance.get("blocksAutonomous")
        else 0,
        "reasonCodes": governance.get("reasonCodes", []),
    }
    transport_gated: JsonObject = {"blockedCount": sum(transport.values()), "byReason": transport}
    codes = []
    for name, path in (
        ("policy", policy_gated),
        ("rollout", rollout_gated),
        ("governance", governance_gated),
        ("transport", transport_gated),
    ):
        if path["blockedCount"] > 0:
            codes.append(f"autonomous_suppression_{name}_gated")
    return {
        "byReason": by_reason,
        "byPath": {
            "policyGated": policy_gated,
            "rolloutGated": rollout_gated,
            "governanceGated": governance_gated,
            "transportGated": transport_gated,
        },
        "suppressionReasonCodes": sorted_unique(codes),
        "blockedCount": sum(by_reason.get(key, 0) for key in _SAFETY_BLOCKING),
        "killSwitchActive": _obj(
            _obj(_obj((policy or {}).get("autonomous")).get("controls")).get("safety")
        ).get("killSwitch")
        is True,
    }


def _auto_pause_view(auto: Mapping[str, Any]) -> JsonObject:
    return {
        "enabled": auto.get("enabled", True),
        "active": auto.get("active"),
        "reasons": auto.get("reasons"),
        "lookbackExecutions": auto.get("lookbackExecutions"),
        "minSampleSize": auto.get("minSampleSize"),
        "ambiguityRateThreshold": auto.get("ambiguityRateThreshold"),
        "failureRateThreshold": auto.get("failureRateThreshold"),
        "metrics": auto.get("metrics") or {},
    }


def _rollout_block(policy: Mapping[str, Any] | None) -> JsonObject | None:
    if policy is None:
        return None
    rollout = _obj(_obj(policy.get("autonomous")).get("rollout"))
    pause = _obj(rollout.get("pause"))
    auto = _obj(pause.get("auto"))
    buckets = _obj(rollout.get("candidateBuckets"))
    return _prune(
        {
            "canaryPercent": rollout.get("canaryPercent"),
            "scopeLoopIds": _list(rollout.get("scopeLoopIds")),
            "selectorSalt": rollout.get("selectorSalt"),
            "candidateBuckets": {
                key: _int(buckets.get(key)) for key in ("inScopeCount", "inCohortCount", "outOfCohortCount")
            },
            "state": _prune(
                {
                    "active": pause.get("active"),
                    "manualPauseActive": pause.get("manual"),
                    "autoPauseActive": auto.get("active"),
                    "reasonCodes": pause.get("reasons"),
                }
            ),
            "autopause": _auto_pause_view(auto),
            "pause": _prune(
                {
                    "active": pause.get("active"),
                    "reasons": pause.get("reasons"),
                    "manual": pause.get("manual"),
                    "auto": _auto_pause_view(auto),
                }
            ),
        }
    )


def _latest_handoff_telemetry(row: Mapping[str, Any] | None, rollup: JsonObject) -> JsonObject | None:
    if row is None:
        return None
    execution = _obj(row.get("execution"))
    outer = _obj(row.get("summary"))
    inner = _obj(outer.get("summary"))
    autonomous = execution.get("mode") == "autonomous"
    summary_keys = (
        "intentCount",
        "autoEligibleIntentCount",
        "manualOnlyIntentCount",
        "pendingConfirmationCount",
        "pendingManualOnlyCount",
        "executedCount",
        "ambiguousCount",
        "failedCount",
    )
    return _prune(
        {
            "timestamp": row.get("timestamp"),
            "category": row.get("category"),
            "traceId": row.get("traceId"),
            "execution": _prune(
                {
                    key: execution.get(key)
                    for key in (
                        "mode",
                        "requestedIntentCount",
                        "executedCount",
                        "ambiguousCount",
                        "failedCount",
                    )
                }
            ),
            "summary": _prune({key: inner.get(key) for key in summary_keys}),
            "autonomousOutcomeRollup": {
                "attempted": _int(execution.get("requestedIntentCount")) if autonomous else 0,
                "executed": _int(execution.get("executedCount")) if autonomous else 0,
                "ambiguous": _int(execution.get("ambiguousCount")) if autonomous else 0,
                "failed": _int(execution.get("failedCount")) if autonomous else 0,
                "manual_backlog": _int(inner.get("pendingManualOnlyCount"), rollup["manual_backlog"]),
            },
            "reasonCodes": _list(outer.get("reasonCodes")),
        }
    )


def _loop_view(result: Mapping[str, Any]) -> JsonObject:
    files = _obj(result.get("files"))
    return _prune(
        {
            "loopId": result.get("loopId"),
            "status": result.get("status") or "unknown",
            "reasonCode": result.get("reasonCode"),
            "reconcileStatus": result.get("reconcileStatus"),
            "healthStatus": result.get("healthStatus") or "unknown",
            "healthReasonCodes": _list(result.get("healthReasonCodes")),
            "transitionState": result.get("transitionState"),
            "durationSeconds": result.get("durationSeconds"),
            "traceId": result.get("traceId"),
            "transport": result.get("transport") or "local",
            "sprite": result.get("sprite") or {},
            "artifacts": {
                key: files.get(key)
                for key in ("stateFile", "healthFile", "cursorFile", "reconcileTelemetryFile")
            },
        }
    )


def build_fleet_status(inputs: StatusInputs, now: dt.datetime) -> JsonObject:
    """The fleet status surface (§4 shape; top-level nulls kept)."""
    state = inputs.fleet_state
    policy = inputs.policy_state
    handoff = inputs.handoff_state
    results = [r for r in _list(state.get("results")) if isinstance(r, Mapping)]
    rollup = {
        status: sum(1 for r in results if (r.get("healthStatus") or "unknown") == status)
        for status in ("healthy", "degraded", "critical", "unknown")
    }

    def loops_where(key: str, value: str) -> list[str]:
        return sorted_unique([str(r.get("loopId")) for r in results if r.get(key) == value])

    outcome = _outcome_rollup(handoff, policy)
    policy_mode = (policy or {}).get("mode")
    mode = policy_mode or (handoff or {}).get("mode") or "advisory"
    governance_source = _obj(_obj((policy or {}).get("autonomous")).get("governance"))
    governance = compute_governance_posture(governance_source, mode, policy is not None, now)
    autonomous: JsonObject | None = None
    if policy is not None or handoff is not None:
        execution = _obj((handoff or {}).get("execution"))
        summary = _obj((handoff or {}).get("summary"))
        autonomous = _prune(
            {
                "mode": mode,
                "enabled": mode == "guarded_auto",
                "policyReasonCodes": _list((policy or {}).get("reasonCodes")),
                "handoffReasonCodes": _list((handoff or {}).get("reasonCodes")),
                "eligibleCandidateCount": _int((policy or {}).get("autoEligibleCount")),
                "manualOnlyCandidateCount": _int((policy or {}).get("manualOnlyCount")),
                "outcomeRollup": outcome,
                "governance": governance if policy is not None else None,
                "safetyGateDecisions": _safety_gate_decisions(policy, handoff, governance),
                "rollout": _rollout_block(policy),
                "handoff": None
                if handoff is None
                else _prune(
                    {
                        "autoEligibleIntentCount": _int(summary.get("autoEligibleIntentCount")),
                        "manualOnlyIntentCount": _int(summary.get("manualOnlyIntentCount")),
                        "pendingManualOnlyCount": _pending_manual_only(handoff),
                        "executionMode": execution.get("mode"),
                        "executedCount": _int(execution.get("executedCount")),
                        "ambiguousCount": _int(execution.get("ambiguousCount")),
                        "failedCount": _int(execution.get("failedCount")),
                        "outcomeRollup": outcome,
                        "outcomeReasonCodes": _tally(
                            _obj(r).get("reasonCode") for r in _list(execution.get("results"))
                        ),
                    }
                ),
            }
        )
    fleet_trace = state.get("traceId")
    loop_traces = sorted_unique([str(r["traceId"]) for r in results if r.get("traceId") is not None])
    shared = None
    if len(loop_traces) == 1 and loop_traces[0] and (not fleet_trace or fleet_trace == loop_traces[0]):
        shared = loop_traces[0]
    latest = inputs.latest_fleet_telemetry
    return {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {
            "repoPath": inputs.repo_path,
            "fleetId": state.get("fleetId") or inputs.registry.get("fleetId") or "default",
        },
        "fleet": _fleet_block(state, results, rollup),
        "healthRollup": rollup,
        "exceptions": {
            "reconcileFailures": loops_where("status", "failed"),
            "criticalLoops": loops_where("healthStatus", "critical"),
            "degradedLoops": loops_where("healthStatus", "degraded"),
            "skippedLoops": loops_where("status", "skipped"),
        },
        "policy": _policy_block(policy),
        "handoff": _handoff_block(handoff, outcome),
        "autonomous": autonomous,
        "loops": [_loop_view(result) for result in results],
        "traceLinkage": {
            "fleetTraceId": fleet_trace,
            "policyTraceId": (policy or {}).get("traceId"),
            "loopTraceIds": loop_traces,
            "sharedTraceId": shared,
        },
        "latestTelemetry": None
        if latest is None
        else _prune(
            {
                "timestamp": latest.get("timestamp"),
                "status": latest.get("status"),
                "reasonCodes": _list(latest.get("reasonCodes")),
            }
        ),
        "latestHandoffTelemetry": _latest_handoff_telemetry(inputs.latest_handoff_telemetry, outcome),
        "files": dict(inputs.files),
    }
