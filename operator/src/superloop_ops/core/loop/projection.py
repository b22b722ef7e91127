"""Lifecycle projection (spec loop-core §4): truth table, divergence flags, transition, state.json.

The lifecycle status is a first-match table (``LIFECYCLE_RULES``), kept as data so the order is
the whole rule and the tests can check every row. The snapshot computes it once
(``run.status``); the projection never recomputes it, it only compares the snapshot with the
event batch just polled and with the previous state to flag divergence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.loop import artifacts, envelopes
from superloop_ops.core.loop.artifacts import jq_get
from superloop_ops.errors import ContractError

__all__ = [
    "LIFECYCLE_RULES",
    "RUN_STATUSES",
    "LifecycleFacts",
    "compute_divergence",
    "compute_projection",
    "compute_run_status",
]

RUN_STATUSES: tuple[str, ...] = (
    "awaiting_approval",
    "complete",
    "running",
    "stopped",
    "failed",
    "idle",
    "unknown",
)


@dataclass(frozen=True)
class LifecycleFacts:
    """The inputs of the truth table (§4.2); ``None`` means the artifact is absent."""

    loop_id: str
    approval: Any = None
    """A: approval.json."""
    latest_entry: Any = None
    """E: the latest run-summary entry."""
    state: Any = None
    """S: the repo-global state.json."""
    last_event: Any = None
    """L: the last line of events.jsonl (not the polled batch)."""


def _approval_pending(facts: LifecycleFacts) -> bool:
    return facts.approval is not None and jq_get(facts.approval, "status") == "pending"


def _completed(facts: LifecycleFacts) -> bool:
    return facts.latest_entry is not None and jq_get(facts.latest_entry, "completion_ok") is True


def _running_here(facts: LifecycleFacts) -> bool:
    return (
        facts.state is not None
        and jq_get(facts.state, "active") is True
        and jq_get(facts.state, "current_loop_id") == facts.loop_id
    )


def _stopped(facts: LifecycleFacts) -> bool:
    return artifacts.event_name_of(facts.last_event) in artifacts.STOP_EVENTS


def _failed(facts: LifecycleFacts) -> bool:
    status = artifacts.jq_alt(jq_get(facts.last_event, "status"), "")
    return isinstance(status, str) and status in artifacts.FAILURE_STATUSES


def _idle(facts: LifecycleFacts) -> bool:
    # ``(.active // false) == false``: only null, false or a missing key count as inactive.
    return (
        facts.state is not None
        and artifacts.jq_alt(jq_get(facts.state, "active"), False) is False
        and facts.latest_entry is not None
    )


LIFECYCLE_RULES: tuple[tuple[str, Callable[[LifecycleFacts], bool]], ...] = (
    ("awaiting_approval", _approval_pending),
    ("complete", _completed),
    ("running", _running_here),
    ("stopped", _stopped),
    ("failed", _failed),
    ("idle", _idle),
)
"""First match wins; when no rule matches the status is ``unknown``."""


def compute_run_status(facts: LifecycleFacts) -> str:
    """The snapshot's ``run.status`` (§4.2)."""
    for status, matches in LIFECYCLE_RULES:
        if matches(facts):
            return status
    return "unknown"


def _non_negative_int(value: Any) -> int | None:
    """The reference's ``^[0-9]+$`` test on jq ``-r`` text, as a number (or None)."""
    text = artifacts.jq_text(value)
    return int(text) if text.isascii() and text.isdigit() else None


def compute_divergence(
    snapshot: JsonObject, last_event_name: str, previous_state: JsonObject | None
) -> dict[str, bool]:
    """The three divergence flags of §4.4 plus ``any``."""
    runtime_state = jq_get(snapshot, "runtime", "superloopState")
    active_mismatch = (
        jq_get(runtime_state, "active") is not True
        and last_event_name in artifacts.ACTIVE_PHASE_EVENTS
    )
    approval = jq_get(snapshot, "runtime", "approval")
    conflict = (
        jq_get(approval, "status") == "pending"
        and _completion_ok(snapshot) is True
    )
    previous_offset = _non_negative_int(
        artifacts.jq_alt(jq_get(previous_state, "cursor", "eventLineOffset"), 0)
    )
    current_offset = _non_negative_int(
        artifacts.jq_alt(jq_get(snapshot, "cursor", "eventLineOffset"), 0)
    )
    regression = (
        previous_offset is not None and current_offset is not None and previous_offset > current_offset
    )
    return {
        "activeMismatch": active_mismatch,
        "approvalCompletionConflict": conflict,
        "cursorRegression": regression,
        "any": active_mismatch or conflict or regression,
    }


def _completion_ok(snapshot: JsonObject) -> bool:
    """``run.summary.completion_ok`` as a boolean; any other value cannot be projected (§4.6)."""
    value = jq_get(snapshot, "run", "summary", "completion_ok")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ContractError("cannot project state: run.summary.completion_ok is not a boolean")
    return value


def _signals(runtime: Any) -> JsonObject:
    """The runtime signals health reads (issue 11): what the runtime wrote besides the contract.

    ``stateFilePresent``/``activeRunPresent`` tell a cancelled run (both deleted) and a dead one
    (active state, no active-run record) from a live one; the rest is the snapshot's
    ``runtime.signals`` when the transport gathered them.
    """
    gathered = jq_get(runtime, "signals")
    return {
        "stateFilePresent": jq_get(runtime, "superloopState") is not None,
        "activeRunPresent": jq_get(runtime, "activeRun") is not None,
        "approvalRequestedAt": artifacts.jq_alt(jq_get(runtime, "approval", "requested_at"), None),
        **(gathered if isinstance(gathered, dict) else {}),
    }


def _number_or_zero(value: Any) -> Any:
    """``value // 0`` for the copied cursor numbers."""
    return artifacts.jq_alt(value, 0)


def compute_projection(
    snapshot: JsonObject,
    events: Sequence[JsonObject],
    previous_state: JsonObject | None,
    now: dt.datetime,
    *,
    repo_path: str,
    loop_id: str,
    snapshot_file: str | None = None,
    events_file: str | None = None,
) -> JsonObject:
    """The state.json document of §4.6 (before reconcile enrichment).

    Inputs: ``snapshot`` is the loop_run_snapshot envelope; ``events`` the loop_run_event
    envelopes just polled (only the last one matters; empty when nothing was polled);
    ``previous_state`` the previous state.json (``None`` when absent, ``{}`` when unparseable);
    ``repo_path``/``loop_id`` the target; ``snapshot_file``/``events_file`` are recorded as
    evidence only. Both envelope kinds pass the schemaVersion gate and the loop-scope guard
    first (§2.5); a non-boolean ``completion_ok`` fails (reconcile's ``projection_failed``).
    """
    envelopes.check_snapshot_envelope(snapshot, loop_id)
    for event in events:
        envelopes.check_event_envelope(event, loop_id)
    last_envelope = events[-1] if events else None
    last_event_name = artifacts.jq_text_or_empty(jq_get(last_envelope, "event", "name"))

    run = jq_get(snapshot, "run")
    health = jq_get(snapshot, "health")
    runtime = jq_get(snapshot, "runtime")
    cursor = jq_get(snapshot, "cursor")
    current_state = artifacts.jq_text(artifacts.jq_alt(jq_get(run, "status"), "unknown"))
    previous = "none"
    if isinstance(previous_state, dict):
        previous = artifacts.jq_text(
            artifacts.jq_alt(jq_get(previous_state, "transition", "currentState"), "none")
        )
    flags = compute_divergence(snapshot, last_event_name, previous_state)
    has_pending = jq_get(runtime, "approval", "status") == "pending"
    completion_ok = _completion_ok(snapshot)
    if flags["any"]:
        confidence = "low"
    elif not last_event_name:
        confidence = "medium"
    else:
        confidence = "high"
    trigger = f"event:{last_event_name}" if last_event_name else f"snapshot_status:{current_state}"

    return {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {"repoPath": repo_path, "loopId": loop_id},
        "run": {
            "runId": artifacts.jq_text(artifacts.jq_alt(jq_get(run, "runId"), "unknown")),
            "iteration": artifacts.jq_number(jq_get(run, "iteration")),
        },
        "transition": {
            "previousState": previous,
            "triggeringSignal": trigger,
            "currentState": current_state,
            "confidence": confidence,
        },
        "projection": {
            "status": current_state,
            "hasPendingApproval": has_pending,
            "completionOk": completion_ok,
            "gates": artifacts.jq_alt(jq_get(health, "gates"), None),
            "stuck": artifacts.jq_alt(jq_get(health, "stuck"), None),
            # jq's ``active // null`` turns false into null; kept (see docs/divergences.md).
            "active": artifacts.jq_alt(jq_get(runtime, "superloopState", "active"), None),
            "lastEventName": artifacts.jq_alt(jq_get(health, "lastEventName"), None),
            "lastEventAt": artifacts.jq_alt(jq_get(health, "lastEventAt"), None),
        },
        "cursor": {
            "eventLineOffset": _number_or_zero(jq_get(cursor, "eventLineOffset")),
            "eventLineCount": _number_or_zero(jq_get(cursor, "eventLineCount")),
        },
        "divergence": {
            "any": flags["any"],
            "flags": {
                "activeMismatch": flags["activeMismatch"],
                "approvalCompletionConflict": flags["approvalCompletionConflict"],
                "cursorRegression": flags["cursorRegression"],
            },
        },
        "evidence": {
            "snapshotFile": snapshot_file,
            "eventsFile": events_file or None,
            "snapshotEnvelope": {
                "runStatus": current_state,
                "lastEventName": artifacts.jq_alt(jq_get(health, "lastEventName"), None),
                "hasPendingApproval": has_pending,
            },
            "lastEventEnvelope": last_envelope,
        },
        "signals": _signals(runtime),
    }
