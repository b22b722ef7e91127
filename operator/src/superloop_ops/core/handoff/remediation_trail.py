"""One trail per remediation (issue 15): the trace id's format on Events, and the timeline.

A remediation's trace id is minted once, by the Loop pass whose health first turns unhealthy
(``core.loop.remediation``), and carried by every later step: the pass's escalations and alert
payloads, the fleet candidate, the HandoffIntent (``spec.traceId``), the control request and
its journal rows, the operator's HandoffIntent rows, the Events (``[trace <id>]`` at the end of
the message) and the Loop pass that shows the effect.

``assemble_trail`` puts the rows the boundary read (journal files, HandoffIntent objects,
Events) in order: by time, and for equal times by the step's place in a remediation. It reads
nothing itself; ``resolve_trace_id`` turns a Loop, a HandoffIntent or a trace id into the id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.handoff import handoff_intent_resource as intents

__all__ = [
    "STEPS",
    "TrailInputs",
    "assemble_trail",
    "build_fleet_trail_rows",
    "find_message_trace",
    "render_trail_text",
    "resolve_trace_id",
    "tag_events",
    "tag_message",
]

# The order of a remediation's steps: the tie-break for rows with the same timestamp. A lapse
# comes before an approval of the same second: an approval lapses only once it is older than the
# policy's age, so the approval in the same second as a lapse is the fresh one that follows it.
STEPS: tuple[str, ...] = (
    "health_signal",
    "alert",
    "alert_delivery",
    "fleet_candidate",
    "handoff_intent",
    "autonomous_decision",
    "approval_lapsed",
    "approval",
    "execution",
    "control",
    "outcome",
    "event",
    "health_pass",
    "effect",
    "resolved",
)
_MESSAGE_LIMIT = 1024
_TAG = re.compile(r" \[trace ([^\]\s]+)\]$")


# ---------------------------------------------------------------------------------------------
# the trace id on Events


def tag_message(message: str, trace_id: str | None) -> str:
    """``message [trace <id>]``, the message cut so the whole stays within an Event's limit."""
    if not trace_id:
        return message
    tag = f" [trace {trace_id}]"
    return f"{message[: _MESSAGE_LIMIT - len(tag)]}{tag}"


def find_message_trace(message: str | None) -> str | None:
    match = _TAG.search(message or "")
    return match.group(1) if match else None


def tag_events(events: Iterable[intents.IntentEvent], trace_id: str | None) -> list[intents.IntentEvent]:
    return [intents.IntentEvent(e.type, e.reason, tag_message(e.message, trace_id)) for e in events]


# ---------------------------------------------------------------------------------------------
# the fleet's part of a trail (journal rows the fleet pass writes)


def _candidate_keys(policy_state: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    candidates = (policy_state or {}).get("candidates")
    return {
        (str(c.get("candidateId")), str(c.get("traceId")))
        for c in (candidates if isinstance(candidates, list) else [])
        if isinstance(c, Mapping)
    }  # fmt: skip


def _candidate_row(fleet: str, candidate: Mapping[str, Any], at: str) -> JsonObject:
    autonomous = _obj(candidate.get("autonomous"))
    if candidate.get("suppressed") is True:
        posture = f"suppressed ({candidate.get('suppressionScope') or 'policy'})"
    elif autonomous.get("eligible") is True:
        posture = "eligible for guarded_auto"
    else:
        posture = f"manual ({', '.join(str(r) for r in autonomous.get('reasons') or []) or 'advisory'})"
    summary = (
        f"fleet {fleet} candidate {candidate.get('candidateId')} ({candidate.get('severity')}, "
        f"recommends {candidate.get('recommendedIntent') or 'cancel'}): {posture}"
    )
    return {
        "timestamp": at, "traceId": candidate.get("traceId"), "step": "fleet_candidate", "fleet": fleet,
        "loopId": candidate.get("loopId"), "candidateId": candidate.get("candidateId"), "summary": summary,
    }  # fmt: skip


def _proposed_row(fleet: str, body: Mapping[str, Any], at: str) -> JsonObject:
    meta, spec = _obj(body.get("metadata")), _obj(body.get("spec"))
    candidate = _obj(spec.get("candidate"))
    summary = (
        f"HandoffIntent {meta.get('name')} proposes {spec.get('intent')} on "
        f"{_obj(spec.get('loopRef')).get('name')} ({candidate.get('category') or 'ad hoc'})"
    )
    return {
        "timestamp": at, "traceId": spec.get("traceId"), "step": "handoff_intent", "fleet": fleet,
        "handoffIntent": meta.get("name"), "summary": summary,
    }  # fmt: skip


def build_fleet_trail_rows(
    *,
    fleet: str,
    prior_policy: Mapping[str, Any] | None,
    policy_state: Mapping[str, Any],
    created: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> list[JsonObject]:
    """``trail.jsonl`` rows: each candidate new in this pass (by id and trace id), each intent proposed."""
    at = format_ts(now)
    seen = _candidate_keys(prior_policy)
    candidates = policy_state.get("candidates")
    rows = [
        _candidate_row(fleet, c, at)
        for c in (candidates if isinstance(candidates, list) else [])
        if isinstance(c, Mapping) and c.get("traceId")
        and (str(c.get("candidateId")), str(c.get("traceId"))) not in seen
    ]  # fmt: skip
    rows.extend(_proposed_row(fleet, body, at) for body in created if _obj(body.get("spec")).get("traceId"))
    return rows


# ---------------------------------------------------------------------------------------------
# the timeline


@dataclasses.dataclass(frozen=True)
class TrailInputs:
    """What the boundary read: journal rows by file kind, Loops, HandoffIntents and Events.

    ``journal`` maps a file kind (``remediations``, ``escalations``, ``alert_dispatch``,
    ``fleet_trail``, ``handoff_intents``, ``control``, ``reconcile``) to its rows. Loops give
    their ``status.remediation`` (opened, resolved) when the journal is out of reach. Events are
    ``{"object", "type", "reason", "message", "timestamp"}`` records.
    """

    journal: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    loops: Sequence[Mapping[str, Any]] = ()
    intents: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _step(at: Any, step: str, source: str, summary: str, **detail: Any) -> JsonObject:
    row: JsonObject = {"at": at, "step": step, "source": source, "summary": summary}
    row.update({k: v for k, v in detail.items() if v not in (None, "", [])})
    return row


def _remediation_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    codes = list(row.get("reasonCodes") or [])
    if row.get("event") == "opened":
        summary = f"loop {row.get('loopId')} turned {row.get('healthStatus')}: {', '.join(codes) or '-'}"
        return [_step(row.get("timestamp"), "health_signal", "journal", summary, loopId=row.get("loopId"))]
    summary = f"loop {row.get('loopId')} is {row.get('healthStatus')} again: the remediation is resolved"
    return [_step(row.get("timestamp"), "resolved", "journal", summary, loopId=row.get("loopId"))]


def _escalation_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    codes = ", ".join(str(c) for c in row.get("reasonCodes") or [])
    summary = f"escalation {row.get('category')}" + (f": {codes}" if codes else "")
    return [_step(row.get("timestamp"), "alert", "journal", summary, loopId=row.get("loopId"))]


def _dispatch_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    sink = _obj(row.get("sink")).get("id")
    target = f" to sink {sink}" if sink else ""
    reason = f" ({row.get('reasonCode')})" if row.get("reasonCode") else ""
    summary = f"alert {row.get('escalationCategory') or '-'}{target}: {row.get('status') or '-'}{reason}"
    return [_step(row.get("timestamp"), "alert_delivery", "journal", summary, loopId=row.get("loopId"))]


def _fleet_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    step = str(row.get("step") or "fleet_candidate")
    return [
        _step(
            row.get("timestamp"), step, "journal", str(row.get("summary") or step),
            loopId=row.get("loopId"), fleet=row.get("fleet"), handoffIntent=row.get("handoffIntent"),
        )
    ]  # fmt: skip


def _handoff_row_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    phase = str(row.get("phase") or "")
    by = row.get("approvedBy")
    if phase == "approval_lapsed":
        summary = (
            f"approval by {by} at {row.get('approvedAt')} lapsed (older than {row.get('maxAgeSeconds')}s): "
            f"{row.get('intent')} not executed"
        )
        step = "approval_lapsed"
    elif phase == intents.EXECUTING:
        mode = "autonomously" if row.get("mode") == "autonomous" else f"approved by {by}"
        summary = f"{row.get('intent')} executing ({mode}) with key {row.get('idempotencyKey')}"
        step = "execution"
        if row.get("approvedAt") and by:  # a person's approval, kept by the journal past its object
            approval = _step(
                row["approvedAt"],
                "approval",
                "journal",
                f"approved by {by}",
                handoffIntent=row.get("handoffIntent"),
            )
            return [approval, *_handoff_step(row, step, summary, phase)]
    else:
        summary = f"{row.get('intent')} {phase} (key {row.get('idempotencyKey')})"
        step = "outcome"
    return _handoff_step(row, step, summary, phase)


def _handoff_step(row: Mapping[str, Any], step: str, summary: str, phase: str) -> list[JsonObject]:
    return [
        _step(
            row.get("timestamp"), step, "journal", summary,
            loopId=row.get("loopId"), handoffIntent=row.get("handoffIntent"), phase=phase,
        )
    ]  # fmt: skip


def _control_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    summary = f"control {row.get('intent')} by {row.get('requestedBy')}: {row.get('status')}"
    return [_step(row.get("timestamp"), "control", "journal", summary, loopId=row.get("loopId"))]


def _reconcile_steps(row: Mapping[str, Any]) -> list[JsonObject]:
    codes = ", ".join(str(c) for c in row.get("healthReasonCodes") or []) or "no reason codes"
    summary = f"health pass ({row.get('status')}): {row.get('healthStatus')}, {codes}"
    return [_step(row.get("timestamp"), "health_pass", "journal", summary, loopId=row.get("loopId"))]


_JOURNAL_STEPS: Mapping[str, Callable[[Mapping[str, Any]], list[JsonObject]]] = {
    "remediations": _remediation_steps,
    "escalations": _escalation_steps,
    "alert_dispatch": _dispatch_steps,
    "fleet_trail": _fleet_steps,
    "handoff_intents": _handoff_row_steps,
    "control": _control_steps,
    "reconcile": _reconcile_steps,
}


def _row_trace(kind: str, row: Mapping[str, Any]) -> Any:
    if kind == "alert_dispatch":
        return row.get("escalationTraceId") or row.get("traceId")
    return row.get("traceId")


def _intent_steps(body: Mapping[str, Any]) -> list[JsonObject]:
    """The HandoffIntent as the API holds it: proposed, approved (or lapsed), decided autonomously."""
    meta, spec, status = _obj(body.get("metadata")), _obj(body.get("spec")), _obj(body.get("status"))
    name = meta.get("name")
    loop = _obj(spec.get("loopRef")).get("name")
    candidate = _obj(spec.get("candidate"))
    steps = [
        _step(
            meta.get("creationTimestamp"), "handoff_intent", "api",
            f"HandoffIntent {name} proposes {spec.get('intent')} on {loop}"
            + (f" ({candidate.get('category')})" if candidate.get("category") else ""),
            handoffIntent=name, loop=loop,
        )
    ]  # fmt: skip
    result = _obj(status.get("result"))
    approval = _obj(result.get("approval"))
    if status.get("mode") == "autonomous" or result.get("autonomous") is True:
        summary = f"guarded_auto policy executes {spec.get('intent')} without a person"
        steps.append(
            _step(status.get("startedAt"), "autonomous_decision", "api", summary, handoffIntent=name)
        )
    elif approval.get("by"):
        at = approval.get("at") or status.get("startedAt")
        steps.append(_step(at, "approval", "api", f"approved by {approval['by']}", handoffIntent=name))
    lapsed = _obj(result.get("lapsedApproval"))
    if lapsed:
        summary = f"approval by {lapsed.get('by')} lapsed (older than {lapsed.get('maxAgeSeconds')}s)"
        steps.append(_step(lapsed.get("at"), "approval_lapsed", "api", summary, handoffIntent=name))
    return steps


def _loop_steps(body: Mapping[str, Any]) -> list[JsonObject]:
    """The Loop's remediation record: when it opened and, if so, resolved (the journal says more)."""
    record = _obj(_obj(body.get("status")).get("remediation"))
    loop_id = _obj(body.get("spec")).get("loopId")
    steps = [
        _step(
            record.get("openedAt"),
            "health_signal",
            "api",
            f"loop {loop_id}: remediation opened",
            loopId=loop_id,
        )
    ]
    if record.get("state") == "resolved":
        summary = f"loop {loop_id} is {record.get('healthStatus')} again: the remediation is resolved"
        steps.append(_step(record.get("resolvedAt"), "resolved", "api", summary, loopId=loop_id))
    return steps


def _event_steps(event: Mapping[str, Any]) -> list[JsonObject]:
    summary = f"{event.get('type')} {event.get('reason')}: {event.get('message')}"
    return [_step(event.get("timestamp"), "event", "api", summary, object=event.get("object"))]


def _sort_key(step: Mapping[str, Any]) -> tuple[str, int]:
    moment = parse_ts(step.get("at"))
    return (format_ts(moment) if moment else "9999", STEPS.index(str(step["step"])))


def _drop_repeats(ordered: list[JsonObject]) -> list[JsonObject]:
    """A health pass that says what the last one said adds nothing, the first one after an outcome
    is the effect, and a HandoffIntent step both the journal and the object show (its proposal, a
    lapsed approval) is shown once, from the journal."""
    kept: list[JsonObject] = []
    last_health: str | None = None
    after_outcome = False
    journaled = {(s["step"], s.get("handoffIntent")) for s in ordered if s["source"] == "journal"}
    for step in ordered:
        if step["source"] == "api" and (step["step"], step.get("handoffIntent")) in journaled:
            continue
        if step["step"] == "outcome":
            after_outcome = True
        if step["step"] == "health_pass":
            health = str(step["summary"])
            if after_outcome:
                step = {**step, "step": "effect", "summary": f"after the action: {health}"}
                after_outcome = False
            elif health == last_health:
                continue
            last_health = health
        kept.append(step)
    return kept


def assemble_trail(trace_id: str, inputs: TrailInputs) -> JsonObject:
    """The remediation's timeline: every step that carries ``trace_id``, in order."""
    steps: list[JsonObject] = []
    for kind, rows in inputs.journal.items():
        build = _JOURNAL_STEPS.get(kind)
        for row in rows if build else ():
            if isinstance(row, Mapping) and _row_trace(kind, row) == trace_id:
                steps.extend(build(row) if build else [])
    for body in inputs.loops:
        if _obj(_obj(body.get("status")).get("remediation")).get("traceId") == trace_id:
            steps.extend(_loop_steps(body))
    for body in inputs.intents:
        if _obj(body.get("spec")).get("traceId") == trace_id:
            steps.extend(_intent_steps(body))
    for event in inputs.events:
        if find_message_trace(str(event.get("message") or "")) == trace_id:
            steps.extend(_event_steps(event))
    ordered = _drop_repeats(sorted((s for s in steps if s.get("at")), key=_sort_key))
    return {
        "traceId": trace_id,
        "steps": ordered,
        "stepKinds": sorted({str(s["step"]) for s in ordered}, key=STEPS.index),
    }


def resolve_trace_id(
    target: str,
    *,
    intents_by_name: Mapping[str, Mapping[str, Any]],
    loops: Mapping[str, Mapping[str, Any]],
    remediations: Sequence[Any],
    handoff_rows: Sequence[Any] = (),
) -> str:
    """The trace id ``target`` names: a HandoffIntent's, a Loop's latest remediation's, or itself.

    ``loops`` maps a Loop's object name and its loopId to the Loop body (``status.remediation``);
    ``handoff_rows`` (the operator's HandoffIntent journal) name intents the API no longer has.
    """
    intent = intents_by_name.get(target)
    if intent is not None and _obj(intent.get("spec")).get("traceId"):
        return str(intent["spec"]["traceId"])
    rows = [r for r in handoff_rows if isinstance(r, Mapping) and r.get("handoffIntent") == target]
    if rows and rows[-1].get("traceId"):
        return str(rows[-1]["traceId"])
    loop = loops.get(target)
    loop_id = str(_obj(_obj(loop).get("spec")).get("loopId") or target)
    from_status = _obj(_obj(_obj(loop).get("status")).get("remediation")).get("traceId")
    if from_status:
        return str(from_status)
    opened = [
        r
        for r in remediations
        if isinstance(r, Mapping) and r.get("loopId") == loop_id and r.get("event") == "opened"
    ]
    return str(opened[-1]["traceId"]) if opened else target


def render_trail_text(trail: Mapping[str, Any]) -> str:
    """One line per step: time, step, source, summary."""
    lines = [f"trace {trail.get('traceId')}"]
    for step in trail.get("steps") or []:
        lines.append(f"{step['at']}  {step['step']:<20} {step['source']:<8} {step['summary']}")
    if len(lines) == 1:
        lines.append("no steps found for this trace id")
    return "\n".join(lines)
