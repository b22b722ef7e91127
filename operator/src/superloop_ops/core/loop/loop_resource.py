"""Loop status: what one reconcile pass makes of the Loop object's ``status``.

Pure rules, no I/O and no clock. The operator gathers the JSON surfaces a pass produced (the
status snapshot of the runbook, plus the heartbeat, sequence and transport-health documents and
the projected state), hands them here as a ``LoopPassView``, and gets back:

- the new status document (``build_loop_status``): the surfaces mirrored under stable keys,
  conditions Ready / Healthy / Degraded / Diverged with ``observedGeneration`` and the spec's
  reason codes in CamelCase as reasons, the replay bookkeeping;
- the Events to post (``compute_loop_events``): only on transitions, never on every pass;
- whether the write can be skipped (``needs_status_write``): a status that differs only in
  values that age by themselves (timestamps, lags, trace ids) is not rewritten, except every
  ``refresh_seconds`` so those values do not go stale forever.

A pass that could not run (source directory or Secret missing, suspended, bad spec) keeps every
mirrored surface from the previous status and only changes the Ready condition: the last known
posture stays visible while the reason it is not being refreshed is stated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.common.merge_patch import apply_merge_patch, compute_merge_patch
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    find_condition,
    summarize_reasons,
)
from superloop_ops.core.loop import run_outcome
from superloop_ops.core.loop.artifacts import jq_get
from superloop_ops.models import conditions as model_conditions

__all__ = [
    "ANNOTATION_REPLAY",
    "ANNOTATION_REPLAY_REQUESTED_AT",
    "COND_DEGRADED",
    "COND_DIVERGED",
    "COND_HEALTHY",
    "COND_READY",
    "MIRRORED_KEYS",
    "OWNED_KEYS",
    "REPLAY_FROM_START",
    "EventSpec",
    "LoopPassView",
    "build_loop_status",
    "compute_loop_events",
    "compute_replay_token",
    "compute_status_fingerprint",
    "compute_status_patch",
    "needs_status_write",
]

COND_READY = model_conditions.READY
COND_HEALTHY = model_conditions.HEALTHY
COND_DEGRADED = model_conditions.DEGRADED
COND_DIVERGED = model_conditions.DIVERGED

ANNOTATION_REPLAY = "ops.superloop.dev/replay"
ANNOTATION_REPLAY_REQUESTED_AT = "ops.superloop.dev/replay-requested-at"
REPLAY_FROM_START = "from-start"

# Every status key the Loop controller owns besides conditions / observedGeneration / replayHandled.
MIRRORED_KEYS: tuple[str, ...] = (
    "transport",
    "lifecycle",
    "healthStatus",
    "reasonCodes",
    "traceId",
    "lastReconcileAt",
    "state",
    "cursor",
    "health",
    "heartbeat",
    "sequence",
    "transportHealth",
    "visibility",
    "latestControl",
    "drift",
    "tuning",
    "alerts",
)

# Every status key the Loop controller writes; stale ones are removed, other writers' are kept.
OWNED_KEYS: tuple[str, ...] = (*MIRRORED_KEYS, "replayHandled", "conditions", "observedGeneration")

# Values that change on every pass without anything having happened.
# Blocks of the projected state that the status also mirrors at the top level (the same
# documents): kept once, at the top level, which made the status about 30 % smaller.
_STATE_KEYS_MIRRORED_AT_TOP = ("health", "sequence", "drift", "tuning")

_VOLATILE_KEYS = frozenset(
    {
        "updatedAt",
        "generatedAt",
        "timestamp",
        "lastTimestamp",
        "lastReconcileAt",
        "lastSuccessAt",
        "observedAt",
        "traceId",
        "lastTraceId",
        "reconcileTraceId",
        "heartbeatTraceId",
        "sequenceTraceId",
        "alertTraceId",
        "sharedTraceId",
        "controlTraceId",
        "controlInvocationTraceId",
        "ingestLagSeconds",
        "heartbeatLagSeconds",
        "lastDurationSeconds",
        "lastEventAt",
        "sequenceUpdatedAt",
        "lastTransitionTime",
        "observed",
        "snapshotFile",
        "eventsFile",
        "durationSeconds",
        "telemetrySummary",
    }
)


@dataclasses.dataclass(frozen=True)
class LoopPassView:
    """What the shell observed in one pass.

    ``outcome`` is ``success`` / ``failed`` (the reconcile pass ran; ``failure_code`` says why it
    failed) or ``blocked`` (it could not run; ``blocked_reason`` is a snake_case reason code such
    as ``source_not_found``) or ``suspended``.
    """

    outcome: str
    transport: str | None = None
    trace_id: str | None = None
    surface: Mapping[str, Any] | None = None
    state: Mapping[str, Any] | None = None
    heartbeat: Mapping[str, Any] | None = None
    sequence: Mapping[str, Any] | None = None
    transport_health: Mapping[str, Any] | None = None
    failure_code: str | None = None
    failure_message: str = ""
    blocked_reason: str | None = None
    blocked_message: str = ""
    replay_token: str | None = None  # the replay request handled by this pass, if any
    replay_pending: bool = False  # annotation present and already handled earlier


@dataclasses.dataclass(frozen=True)
class EventSpec:
    """A Kubernetes Event to post: ``type`` is ``Normal`` or ``Warning``."""

    type: str
    reason: str
    message: str


def compute_replay_token(annotations: Mapping[str, str] | None) -> str | None:
    """The replay request carried by the annotations, or None.

    The token combines the annotation value with the optional ``replay-requested-at``
    annotation, so ``kubectl superloop replay`` (which stamps a new time) can ask again while
    the request stays one-shot: the status records the token it handled.
    """
    if not annotations:
        return None
    value = str(annotations.get(ANNOTATION_REPLAY, "")).strip()
    if value != REPLAY_FROM_START:
        return None
    requested_at = str(annotations.get(ANNOTATION_REPLAY_REQUESTED_AT, "")).strip()
    return f"{value}@{requested_at}"


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _lead_reason(health: Mapping[str, Any]) -> str:
    """The reason code that best names the health: a critical one first, else the first code."""
    reasons = health.get("reasons")
    if isinstance(reasons, list):
        for reason in reasons:
            if isinstance(reason, Mapping) and reason.get("severity") == "critical" and reason.get("code"):
                return str(reason["code"])
    codes = health.get("reasonCodes")
    if isinstance(codes, list) and codes:
        return str(codes[0])
    return "reconcile_failed"


def _health_conditions(health: Mapping[str, Any] | None) -> list[ConditionSpec]:
    status = health.get("status") if health else None
    if health is None or status not in ("healthy", "degraded", "critical"):
        return [
            ConditionSpec(COND_HEALTHY, "Unknown", "HealthUnknown", "no health computed yet"),
            ConditionSpec(COND_DEGRADED, "Unknown", "HealthUnknown", "no health computed yet"),
        ]
    if status == "healthy":
        return [
            ConditionSpec(COND_HEALTHY, "True", "Healthy", "no health reason codes"),
            ConditionSpec(COND_DEGRADED, "False", "Healthy", "no health reason codes"),
        ]
    codes = health.get("reasonCodes")
    listed = ", ".join(str(code) for code in codes) if isinstance(codes, list) else ""
    reason = camel_reason(_lead_reason(health))
    message = f"{status}: {listed}" if listed else str(status)
    return [
        ConditionSpec(COND_HEALTHY, "False", reason, message),
        ConditionSpec(COND_DEGRADED, "True", reason, message),
    ]


def _divergence_condition(state: Mapping[str, Any] | None, drift: Mapping[str, Any] | None) -> ConditionSpec:
    divergence = _as_mapping((state or {}).get("divergence"))
    if divergence is not None and divergence.get("any") is True:
        flags = _as_mapping(divergence.get("flags")) or {}
        raised = ", ".join(sorted(name for name, value in flags.items() if value is True))
        return ConditionSpec(
            COND_DIVERGED, "True", "DivergenceDetected", f"runtime artifacts disagree: {raised}"
        )
    if drift is not None and drift.get("status") == "drift_active":
        applied, recommended = drift.get("appliedProfile"), drift.get("recommendedProfile")
        return ConditionSpec(
            COND_DIVERGED,
            "True",
            "ProfileDriftDetected",
            f"threshold profile {applied} drifts from the recommended {recommended}",
        )
    if divergence is None:
        return ConditionSpec(COND_DIVERGED, "Unknown", "NoProjection", "no lifecycle projection yet")
    return ConditionSpec(COND_DIVERGED, "False", "NoDivergence", "runtime artifacts agree")


def _ready_condition(view: LoopPassView) -> ConditionSpec:
    if view.outcome == "suspended":
        return ConditionSpec(COND_READY, "False", "Suspended", "spec.suspend is true: reconciling is stopped")
    if view.outcome == "blocked":
        reason = camel_reason(view.blocked_reason or "dependency_not_ready")
        return ConditionSpec(COND_READY, "False", reason, view.blocked_message)
    if view.outcome == "failed":
        code = view.failure_code or "reconcile_failed"
        text = view.failure_message.strip()
        message = text.splitlines()[-1] if text else code
        return ConditionSpec(
            COND_READY, "False", camel_reason(code), f"ingest failed ({code}): {message}"[:1024]
        )
    return ConditionSpec(
        COND_READY, "True", "ReconcileSucceeded", "last reconcile pass ingested the artifacts"
    )


def build_loop_status(
    *,
    previous: Mapping[str, Any] | None,
    view: LoopPassView,
    generation: int,
    now: dt.datetime,
) -> JsonObject:
    """The complete new ``status`` of a Loop (every key the operator owns, CRD field names)."""
    prev = dict(previous or {})
    status: JsonObject = {"observedGeneration": generation}
    ran = view.outcome in ("success", "failed")
    if ran:
        surface = view.surface or {}
        health = _as_mapping(surface.get("health")) or {}
        lifecycle = _as_mapping(surface.get("lifecycle")) or {}
        reconcile = _as_mapping(surface.get("reconcile")) or {}
        mirrored: JsonObject = {
            "transport": view.transport,
            "lifecycle": lifecycle.get("state"),
            "healthStatus": health.get("status"),
            "reasonCodes": list(health.get("reasonCodes") or []),
            "traceId": reconcile.get("lastTraceId") or view.trace_id,
            "lastReconcileAt": format_ts(now),
            "state": _slim_state(view.state),
            "cursor": surface.get("cursor"),
            "health": dict(health) if health else None,
            "heartbeat": dict(view.heartbeat) if view.heartbeat else None,
            "sequence": dict(view.sequence) if view.sequence else None,
            "transportHealth": dict(view.transport_health) if view.transport_health else None,
            "visibility": surface.get("visibility"),
            "latestControl": surface.get("control"),
            "drift": surface.get("drift"),
            "tuning": surface.get("tuning"),
            "alerts": surface.get("alerts"),
        }
        status.update({key: value for key, value in mirrored.items() if value is not None})
    else:
        for key in MIRRORED_KEYS:
            if key in prev:
                status[key] = prev[key]

    if view.replay_token is not None:
        status["replayHandled"] = view.replay_token
    elif view.replay_pending and prev.get("replayHandled") is not None:
        status["replayHandled"] = prev["replayHandled"]
    # otherwise the annotation is gone: forget the token so the same request can be made again

    desired: list[ConditionSpec] = [_ready_condition(view)]
    if ran:
        desired.extend(_health_conditions(_as_mapping(status.get("health"))))
        desired.append(
            _divergence_condition(_as_mapping(status.get("state")), _as_mapping(status.get("drift")))
        )
    else:
        prev_conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
        for cond_type in (COND_HEALTHY, COND_DEGRADED, COND_DIVERGED):
            old = find_condition(prev_conditions, cond_type)
            if old is None:
                desired.append(
                    ConditionSpec(cond_type, "Unknown", "NotReconciled", "no reconcile pass has run")
                )
            else:
                desired.append(
                    ConditionSpec(
                        cond_type, str(old.get("status")), str(old.get("reason")), str(old.get("message", ""))
                    )
                )
    conditions_prev = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status.update(summarize_reasons(status))
    status["conditions"] = build_conditions(conditions_prev, desired, generation=generation, now=now)
    return status


def _slim_state(state: Mapping[str, Any] | None) -> JsonObject | None:
    """The projected state without the blocks the status mirrors at the top level."""
    if not state:
        return None
    return {key: value for key, value in state.items() if key not in _STATE_KEYS_MIRRORED_AT_TOP}


def _strip_volatile(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _strip_volatile(item) for key, item in value.items() if key not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip_volatile(item) for item in value]
    return value


def compute_status_fingerprint(status: Mapping[str, Any] | None) -> Any:
    """The status without the values that age by themselves; equal fingerprints = nothing happened."""
    return _strip_volatile(dict(status or {}))


def needs_status_write(
    previous: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    now: dt.datetime,
    refresh_seconds: float,
) -> bool:
    """True when the new status says something new, or the old one is older than the refresh
    period (``refresh_seconds`` > 0; 0 = never)."""
    if compute_status_fingerprint(previous) != compute_status_fingerprint(new):
        return True
    return _refresh_due(previous, new, now=now, refresh_seconds=refresh_seconds)


def _refresh_due(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any], *, now: dt.datetime, refresh_seconds: float
) -> bool:
    if previous is None:
        return True
    if refresh_seconds <= 0:
        return False  # no refresh: written on change only
    written = parse_ts(previous.get("lastReconcileAt"))
    if written is None:
        return new.get("lastReconcileAt") is not None
    return (now - written).total_seconds() >= refresh_seconds


def _says_something_new(stored: Any, patch: Mapping[str, Any]) -> bool:
    """Whether applying ``patch`` changes ``stored`` beyond the self-ageing values: the
    fingerprint comparison of ``needs_status_write``, walking only the patch."""
    for key, value in patch.items():
        if key in _VOLATILE_KEYS:
            continue
        old = stored.get(key) if isinstance(stored, Mapping) else None
        if value is None:
            return True
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if _says_something_new(old, value):
                return True
        elif _strip_volatile(old) != _strip_volatile(apply_merge_patch(None, value)):
            return True
    return False


def compute_status_patch(
    previous: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    now: dt.datetime,
    refresh_seconds: float,
) -> JsonObject | None:
    """The merge patch to send, or None when the write can be skipped.

    Compares what the server would store after the patch (nested nulls dropped, stale owned
    keys removed explicitly) with what it stores now, so an unchanged pass writes nothing; a
    patch of self-ageing values only waits for the refresh period.
    """
    stored = dict(previous or {})
    patch = compute_merge_patch(stored, new, owned=OWNED_KEYS)
    if not patch:
        return None
    if _says_something_new(stored, patch) or _refresh_due(
        previous, new, now=now, refresh_seconds=refresh_seconds
    ):
        return patch
    return None


def compute_loop_events(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[EventSpec]:
    """Events for the transitions between two statuses (lifecycle, health, divergence, ...)."""
    events: list[EventSpec] = []
    old_ready = find_condition(jq_get(previous, "conditions"), COND_READY)
    new_ready = find_condition(jq_get(new, "conditions"), COND_READY)
    if new_ready is not None:
        was = (old_ready or {}).get("status"), (old_ready or {}).get("reason")
        now_ = new_ready.get("status"), new_ready.get("reason")
        if now_[0] == "False" and was != now_:
            events.append(EventSpec("Warning", str(now_[1]), str(new_ready.get("message", ""))))
        elif now_[0] == "True" and was[0] == "False":
            events.append(EventSpec("Normal", "ReconcileRecovered", "reconcile passes succeed again"))

    old_state = jq_get(previous, "lifecycle")
    new_state = jq_get(new, "lifecycle")
    if new_state is not None and new_state != old_state:
        events.append(
            EventSpec("Normal", "LifecycleChanged", f"lifecycle {old_state or 'none'} -> {new_state}")
        )

    old_health = jq_get(previous, "healthStatus")
    new_health = jq_get(new, "healthStatus")
    new_codes = jq_get(new, "reasonCodes")
    codes_text = ", ".join(str(c) for c in new_codes) if isinstance(new_codes, list) and new_codes else "none"
    if new_health is not None and new_health != old_health:
        if new_health == "healthy":
            if old_health is not None:
                events.append(EventSpec("Normal", "HealthRecovered", f"health {old_health} -> healthy"))
        else:
            reason = "HealthCritical" if new_health == "critical" else "HealthDegraded"
            events.append(
                EventSpec("Warning", reason, f"health {old_health or 'none'} -> {new_health}: {codes_text}")
            )
    elif new_health in ("degraded", "critical") and jq_get(previous, "reasonCodes") != new_codes:
        events.append(EventSpec("Warning", "HealthReasonsChanged", f"health {new_health}: {codes_text}"))

    events.extend(_run_outcome_events(previous, new))

    old_div = jq_get(previous, "state", "divergence", "any") is True
    new_div = jq_get(new, "state", "divergence", "any") is True
    if new_div and not old_div:
        flags = jq_get(new, "state", "divergence", "flags")
        raised = (
            ", ".join(sorted(k for k, v in flags.items() if v is True)) if isinstance(flags, Mapping) else ""
        )
        events.append(EventSpec("Warning", "DivergenceDetected", f"runtime artifacts disagree: {raised}"))
    elif old_div and not new_div and jq_get(new, "state", "divergence") is not None:
        events.append(EventSpec("Normal", "DivergenceCleared", "runtime artifacts agree again"))

    old_drift = jq_get(previous, "sequence", "driftActive") is True
    new_drift = jq_get(new, "sequence", "driftActive") is True
    if new_drift and not old_drift:
        violations = jq_get(new, "sequence", "violations")
        listed = ", ".join(str(v) for v in violations) if isinstance(violations, list) else ""
        events.append(EventSpec("Warning", "OrderingDriftDetected", f"sequence violations: {listed}"))
    elif old_drift and not new_drift and jq_get(new, "sequence") is not None:
        events.append(EventSpec("Normal", "OrderingDriftCleared", "event sequence is monotonic again"))

    old_token = jq_get(previous, "replayHandled")
    new_token = jq_get(new, "replayHandled")
    if new_token is not None and new_token != old_token:
        events.append(
            EventSpec("Normal", "ReplayedFromStart", "cursor reset: replayed the events from the start")
        )
    return events


_OUTCOME_MESSAGES: Mapping[str, str] = {
    "dead": "the run died: state.json still active, active-run.json gone, no stop event",
    "cancelled": "the run was cancelled: state.json and active-run.json removed mid-run",
    "timed_out": "a role exceeded its time budget",
    "failed": "the run ended with a failure",
    "max_iterations": "the run stopped at its iteration limit without completing",
    "stuck": "the runtime's stuck detection stopped the run",
    "rate_limited": "the runner hit a rate limit; the run stopped and waits to be resumed",
    "stopped": "the run stopped without completing",
}


def _run_outcome_events(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[EventSpec]:
    """One Event when the run outcome becomes a stop (a dead run is seen on the pass that finds it)."""
    old_outcome = jq_get(previous, "health", "metrics", "runOutcome")
    outcome = jq_get(new, "health", "metrics", "runOutcome")
    code = run_outcome.OUTCOME_REASONS.get(str(outcome))
    if code is None or outcome == old_outcome:
        return []
    reasons = jq_get(new, "health", "reasons")
    found = next((r for r in reasons or [] if isinstance(r, Mapping) and r.get("code") == code), {})
    severity, detail = found.get("severity"), found.get("observed")
    message = _OUTCOME_MESSAGES[str(outcome)] + (f" ({detail})" if detail else "")
    return [EventSpec("Normal" if severity == "info" else "Warning", camel_reason(code), message)]

