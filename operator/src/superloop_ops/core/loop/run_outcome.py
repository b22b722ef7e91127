"""How a run stands, read the way the real runtime behaves (issue 11), and the reasons it gives.

The reference judges every loop by the lag since its last event. The real runtime writes
nothing once it has exited, so that rule pages for finished loops and for approvals waiting on
a person, and it reads a run whose runner died (``state.json`` still ``active``, its exit trap
deleted ``active-run.json``, no event) as running and healthy. Here the projected lifecycle is
refined with the runtime signals carried in the state (``signals``, see core.runtime_signals):

=====================  =========================================================================
``running``            active state for this loop and an active-run record: should be producing
``dead``               active state for this loop, no active-run record, no stop event
``complete``           completion recorded: healthy and quiet
``awaiting_approval``  a pending approval: quiet, with its own reason and age thresholds
``rate_limited``       ``rate_limit_stop`` (the runtime leaves ``active: true`` behind)
``max_iterations``     ``loop_stop`` with reason ``max_iterations``
``stuck``              ``loop_stop`` with reason ``stuck``
``stopped``            any other ``loop_stop`` / stop event
``timed_out``          ``role_timeout`` (status ``timeout``)
``failed``             another failure status on the last event
``cancelled``          state file and active-run record gone, last event mid-run (the runtime's
                       ``cancel`` deletes both and writes no event)
``idle`` / ``unknown`` as projected
=====================  =========================================================================

A state without ``signals`` (written before issue 11, or by a transport that gathered none)
keeps the projected lifecycle, and health keeps the reference's rules for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, parse_ts
from superloop_ops.core.loop.artifacts import STOP_EVENTS, jq_get
from superloop_ops.core.loop.threshold_profiles import LifecyclePolicy

__all__ = [
    "OUTCOME_REASONS",
    "PRODUCING",
    "build_reason",
    "compute_outcome",
    "compute_outcome_reasons",
    "compute_projected_lifecycle",
]

PRODUCING: frozenset[str] = frozenset({"running", "unknown"})
"""Outcomes for which staleness (ingest lag, heartbeat) is judged."""

OUTCOME_REASONS: Mapping[str, str] = {
    "dead": "run_dead",
    "failed": "run_failed",
    "timed_out": "run_timed_out",
    "rate_limited": "run_rate_limited",
    "stuck": "run_stuck",
    "max_iterations": "run_max_iterations",
    "stopped": "run_stopped",
    "cancelled": "run_cancelled",
}

# Last events after which the runtime has legitimately stopped writing (no cancel to infer).
_QUIET_EVENTS: frozenset[str] = frozenset(
    {*STOP_EVENTS, "loop_complete", "role_timeout", "approval_requested"}
)
_LOOP_STOP_REASONS: Mapping[str, str] = {"max_iterations": "max_iterations", "stuck": "stuck"}


def _present(value: object) -> bool:
    return value is not None and value is not False


def compute_projected_lifecycle(state: Mapping[str, Any]) -> Any:
    """``transition.currentState`` else ``projection.status`` else ``"unknown"``."""
    for value in (jq_get(state, "transition", "currentState"), jq_get(state, "projection", "status")):
        if _present(value):
            return value
    return "unknown"


def _stop_outcome(name: object, status: object, data: object) -> str | None:
    if name == "rate_limit_stop" or status == "rate_limited":
        return "rate_limited"
    if name == "loop_stop":
        return _LOOP_STOP_REASONS.get(str(jq_get(data, "reason")), "stopped")
    if name in STOP_EVENTS:
        return "stopped"
    if name == "role_timeout" or status == "timeout":
        return "timed_out"
    if status in ("error", "blocked"):
        return "failed"
    return None


def compute_outcome(state: Mapping[str, Any]) -> str:
    """The run's outcome (table above) from a projected state document."""
    projected = compute_projected_lifecycle(state)
    if projected in ("awaiting_approval", "complete"):
        return str(projected)
    signals = state.get("signals")
    if not isinstance(signals, Mapping):
        return str(projected)
    raw_last = signals.get("lastEvent")
    last: Mapping[str, Any] = raw_last if isinstance(raw_last, Mapping) else {}
    name = last.get("name")
    stop = _stop_outcome(name, last.get("status"), last.get("data"))
    if stop is not None:
        return stop
    if projected == "running":
        return "dead" if signals.get("activeRunPresent") is False else "running"
    if projected == "failed":
        return "failed"
    if signals.get("stateFilePresent") is False and isinstance(name, str) and name not in _QUIET_EVENTS:
        return "cancelled"
    return str(projected)


def build_reason(code: str, severity: str, metric: str, observed: object, threshold: object) -> JsonObject:
    """One health reason (loop-core §6.3 shape)."""
    return {
        "code": code,
        "severity": severity,
        "metric": metric,
        "observed": str(observed),
        "threshold": str(threshold),
    }


def _approval_age(state: Mapping[str, Any], now: dt.datetime) -> int | None:
    requested = parse_ts(jq_get(state, "signals", "approvalRequestedAt")) or parse_ts(
        jq_get(state, "projection", "lastEventAt")
    )
    return None if requested is None else max(int((now - requested).total_seconds()), 0)


def _approval_reason(age: int | None, policy: LifecyclePolicy) -> JsonObject:
    observed = "unknown" if age is None else age
    if age is not None and policy.approval_critical_seconds and age >= policy.approval_critical_seconds:
        return build_reason("approval_waiting", "critical", "approvalWaitSeconds", observed,
                       policy.approval_critical_seconds)
    if age is not None and age >= policy.approval_reminder_seconds:
        return build_reason("approval_waiting", "degraded", "approvalWaitSeconds", observed,
                       policy.approval_reminder_seconds)
    return build_reason("approval_waiting", "info", "approvalWaitSeconds", observed,
                   policy.approval_reminder_seconds)


def _stop_detail(outcome: str, state: Mapping[str, Any]) -> str:
    last = jq_get(state, "signals", "lastEvent")
    name = jq_get(last, "name")
    if outcome == "dead":
        return "active_without_active_run"
    if outcome == "cancelled":
        return "state_removed_mid_run"
    if outcome == "timed_out":
        seconds = jq_get(last, "data", "timeout_seconds")
        role = jq_get(last, "role") or jq_get(last, "data", "role")
        return f"{role or 'role'} after {seconds}s" if seconds is not None else str(name)
    if outcome == "rate_limited":
        role = jq_get(last, "role") or jq_get(last, "data", "role") or "role"
        resets = jq_get(last, "data", "info", "resets_in")
        return f"{role}, resets in {resets}s" if resets is not None else str(role)
    reason = jq_get(last, "data", "reason")
    return str(reason) if _present(reason) else str(name or outcome)


def compute_outcome_reasons(
    outcome: str, state: Mapping[str, Any], policy: LifecyclePolicy, now: dt.datetime
) -> list[JsonObject]:
    """The reasons an outcome contributes to health (none for running, complete, idle, unknown)."""
    if outcome == "awaiting_approval":
        return [_approval_reason(_approval_age(state, now), policy)]
    code = OUTCOME_REASONS.get(outcome)
    if code is None:
        return []
    severity = policy.stop_severity.get(code, "degraded")
    return [build_reason(code, severity, "runOutcome", _stop_detail(outcome, state), "running_or_complete")]
