"""HandoffIntent controller, manual path: approval gate, exactly-once execution, crash rule.

Order of one execution (the crash rule depends on it):

1. gather everything that can fail harmlessly: the Loop, its directories, the service token;
2. record ``executing`` with the idempotency key and the approver, in status (a direct patch,
   not kopf's deferred one) and in the journal (``telemetry/handoff-intents.jsonl``);
3. run the intent once through the control engine (local or sprite path, confirmation polled);
4. record the outcome in status, conditions, Events, metrics and the journal.

A process killed between 2 and 4 leaves ``executing`` without an outcome. The next look at the
object (resume after restart) consults the journal for that key and otherwise declares
``execution_ambiguous``; it never runs the intent again without a new approval.
Intents executed by the autonomous path (``status.mode: autonomous``) are not touched by
``reconcile_intent``; when a person approves a retry-guarded one, ``hand_over_intent`` gives it to
the manual path. Every status write goes through ``controllers.handoff_intent_objects``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import loop_controller
from superloop_ops.controllers.approval_age import fetch_approval_max_age
from superloop_ops.controllers.handoff_intent_objects import write_intent_status
from superloop_ops.core.common.jsonutil import format_ts, parse_ts
from superloop_ops.core.handoff import approval_lapse, handoff_intent_resource, remediation_trail
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.handlers.context import (
    OperatorContext,
    counted_pass,
    fetch_context,
    owns_intent_loop,
    post_events,
    runs_fleet_kinds,
)
from superloop_ops.journal import crash_points, files
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectNotFoundError, ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.models.handoff_intent import HandoffIntent
from superloop_ops.models.loop import Loop

__all__ = [
    "IntentReport",
    "hand_over_intent",
    "intent_ref",
    "observe_waiting",
    "on_intent_approved",
    "on_intent_change",
    "on_intent_delete",
    "reconcile_intent",
]

log = logging.getLogger(__name__)
HANDOFF_LOG = "handoff-intents.jsonl"


@dataclasses.dataclass(frozen=True)
class IntentReport:
    phase: str | None
    executed: bool
    status: Mapping[str, Any]
    error: OperatorError | None = None


def intent_ref(body: Mapping[str, Any]) -> ObjectRef:
    meta = body.get("metadata") or {}
    return ObjectRef(
        kind="HandoffIntent",
        plural="handoffintents",
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
    )


def _post_events(
    ctx: OperatorContext,
    ref: ObjectRef,
    previous: Mapping[str, Any],
    new: Mapping[str, Any],
    trace_id: str | None,
) -> None:
    """The transition's Events, each message ending with the remediation's ``[trace <id>]``."""
    events = handoff_intent_resource.compute_intent_events(previous, new)
    events += approval_lapse.compute_lapse_events(previous, new)
    post_events(ctx.edge, ref, remediation_trail.tag_events(events, trace_id), log)


def _write(
    ctx: OperatorContext,
    ref: ObjectRef,
    previous: Mapping[str, Any],
    new: Mapping[str, Any],
    trace_id: str | None,
) -> None:
    write_intent_status(ctx.edge, ref, previous, new)
    _post_events(ctx, ref, previous, new, trace_id)


def _journal(target: loop_controller.LoopTarget | None, row: Mapping[str, Any]) -> None:
    if target is None:
        return
    files.append_jsonl(target.ops_dir / "telemetry" / HANDOFF_LOG, [dict(row)])


def _resolve_loop(
    intent: HandoffIntent, namespace: str, ctx: OperatorContext
) -> tuple[Loop, loop_controller.LoopTarget, str | None]:
    loop_name = intent.spec.loop_ref.name
    body = ctx.edge.fetch_object(ObjectRef(kind="Loop", plural="loops", namespace=namespace, name=loop_name))
    if body is None:
        raise ObjectNotFoundError(f"Loop {namespace}/{loop_name} not found", delay=15.0)
    loop = Loop.from_body(body)
    target = loop_controller.build_loop_target(loop, namespace, loop_name, ctx.settings)
    token = None
    service = loop.spec.service
    if (
        loop.spec.transport == "sprite_service"
        and service is not None
        and service.token_secret_ref is not None
    ):
        ref = service.token_secret_ref
        token = ctx.edge.fetch_secret_value(namespace, ref.name, ref.key)
    return loop, target, token


@counted_pass("HandoffIntent")
def reconcile_intent(body: Mapping[str, Any], ctx: OperatorContext) -> IntentReport:
    """One look at a HandoffIntent (synchronous; may block for the confirmation window)."""
    ref = intent_ref(body)
    with ctx.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = ctx.edge.fetch_object(ref)
        if fresh is not None:
            body = fresh
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 0)
        previous: dict[str, Any] = dict(body.get("status") or {})
        if previous.get("mode") == "autonomous":
            return IntentReport(previous.get("phase"), False, previous)
        intent = HandoffIntent.from_body(body)
        decision = handoff_intent_resource.decide_intent(
            status=previous,
            approval=handoff_intent_resource.parse_approval(meta.get("annotations") or {}),
            spec_key=intent.spec.idempotency_key,
            intent=intent.spec.intent,
            name=ref.name,
            uid=ref.uid,
        )
        if isinstance(decision, handoff_intent_resource.Finished):
            return IntentReport(previous.get("phase"), False, previous)
        if isinstance(decision, handoff_intent_resource.Await):
            new = handoff_intent_resource.build_pending_status(
                previous=previous, problem=decision.problem, generation=generation, now=ctx.clock.now()
            )
            _write(ctx, ref, previous, new, intent.spec.trace_id)
            return IntentReport(new.get("phase"), False, new)
        if isinstance(decision, handoff_intent_resource.Recover):
            return _recover(ctx, ref, intent, previous, decision, generation)
        lapse = _find_lapse(ctx, ref, intent, meta, decision)
        if lapse is not None:
            return _lapse(ctx, ref, intent, previous, lapse, generation)
        return _execute(ctx, ref, intent, previous, decision, generation)


def _find_lapse(
    ctx: OperatorContext,
    ref: ObjectRef,
    intent: HandoffIntent,
    meta: Mapping[str, Any],
    decision: handoff_intent_resource.Execute,
) -> approval_lapse.Lapse | None:
    """An approval older than the policy's age limit is not executed (issue 15)."""
    fleet = intent.spec.fleet_ref.name if intent.spec.fleet_ref else None
    return approval_lapse.compute_lapse(
        decision,
        approved_at=approval_lapse.compute_approved_at(decision.approval, meta.get("managedFields")),
        max_age_seconds=fetch_approval_max_age(ctx.edge, ref.namespace, fleet),
        now=ctx.clock.now(),
    )


def _lapse(
    ctx: OperatorContext,
    ref: ObjectRef,
    intent: HandoffIntent,
    previous: Mapping[str, Any],
    lapse: approval_lapse.Lapse,
    generation: int,
) -> IntentReport:
    """Not executed: the intent keeps its phase and says the approval lapsed (one Warning Event, one
    journal row: the status forgets the lapse once a fresh approval executes, the trail does not)."""
    now = ctx.clock.now()
    new = approval_lapse.build_lapsed_status(previous=previous, lapse=lapse, generation=generation, now=now)
    if approval_lapse.compute_lapse_events(previous, new):
        _journal_lapse(ctx, ref, intent, lapse, now)
        ctx.metrics.record_approval_lapsed(ref.namespace, intent.spec.loop_ref.name)
    _write(ctx, ref, previous, new, intent.spec.trace_id)
    return IntentReport(new.get("phase"), False, new)


def _journal_lapse(
    ctx: OperatorContext, ref: ObjectRef, intent: HandoffIntent, lapse: approval_lapse.Lapse, now: dt.datetime
) -> None:
    try:
        _, target, _ = _resolve_loop(intent, ref.namespace, ctx)
    except OperatorError as exc:
        log.warning("cannot journal the lapsed approval of %s/%s: %s", ref.namespace, ref.name, exc)
        return
    extra = {
        "traceId": intent.spec.trace_id,
        "approvedAt": format_ts(lapse.approved_at),
        "maxAgeSeconds": lapse.max_age_seconds,
    }
    _journal(
        target,
        loop_controller.build_handoff_row(
            target, intent_name=ref.name, intent=intent.spec.intent, phase=approval_lapse.LAPSED_REASON_CODE,
            key=None, by=lapse.approval.by, now=format_ts(now), extra=extra,
        ),
    )  # fmt: skip


def _recover(
    ctx: OperatorContext,
    ref: ObjectRef,
    intent: HandoffIntent,
    previous: Mapping[str, Any],
    decision: handoff_intent_resource.Recover,
    generation: int,
) -> IntentReport:
    """Found ``executing`` without an outcome: the journal's record of the key, else ambiguous."""
    target = None
    row = None
    try:
        _, target, _ = _resolve_loop(intent, ref.namespace, ctx)
        if decision.idempotency_key:
            row = loop_controller.fetch_journal_outcome(target, decision.idempotency_key)
    except OperatorError as exc:
        log.warning("cannot read the journal of %s/%s: %s", ref.namespace, ref.name, exc)
    now = ctx.clock.now()
    if row is not None:
        outcome = handoff_intent_resource.compute_outcome_from_control(str(row.get("status") or ""))
        message = f"recovered from the journal after a restart: control status {row.get('status')}"
    else:
        outcome = handoff_intent_resource.EXECUTION_AMBIGUOUS
        message = "interrupted between executing and its outcome (operator restart); not re-run"
    new = handoff_intent_resource.build_outcome_status(
        previous=previous, outcome=outcome, execution=row, message=message, generation=generation, now=now
    )
    if target is not None:
        _journal(
            target,
            loop_controller.build_handoff_row(
                target,
                intent_name=ref.name,
                intent=intent.spec.intent,
                phase=outcome,
                key=decision.idempotency_key,
                by=str(previous.get("approvedBy") or "") or None,
                now=format_ts(now),
                extra={"recovered": True, "traceId": intent.spec.trace_id},
            ),
        )
    _write(ctx, ref, previous, new, intent.spec.trace_id)
    ctx.metrics.record_control_outcome(ref.namespace, intent.spec.loop_ref.name, intent.spec.intent, outcome)
    return IntentReport(outcome, False, new)


def _execute(
    ctx: OperatorContext,
    ref: ObjectRef,
    intent: HandoffIntent,
    previous: Mapping[str, Any],
    decision: handoff_intent_resource.Execute,
    generation: int,
) -> IntentReport:
    key = decision.idempotency_key
    if key in ctx.completed_keys:  # a stale event after our own outcome patch: never twice
        return IntentReport(previous.get("phase"), False, previous)
    loop, target, token = _resolve_loop(intent, ref.namespace, ctx)
    trace_id = intent.spec.trace_id or f"handoff-{ref.uid[:8] or ref.name}-{decision.attempt}"
    now = ctx.clock.now()
    executing = handoff_intent_resource.build_executing_status(
        previous=previous, decision=decision, generation=generation, now=now
    )
    by = decision.approval.by
    _journal(
        target,
        loop_controller.build_handoff_row(
            target, intent_name=ref.name, intent=intent.spec.intent, phase=handoff_intent_resource.EXECUTING,
            key=key, by=by, now=format_ts(now),
            extra={"traceId": trace_id, "approvedAt": decision.approval.at},
        ),
    )  # fmt: skip
    crash_points.reach("handoff.executing_status")
    write_intent_status(ctx.edge, ref, previous, executing)  # must succeed before the side effect
    _post_events(ctx, ref, previous, executing, trace_id)
    pause = ctx.settings.test_pause_after_executing_seconds
    if pause > 0:
        log.warning("test hook: pausing %.1fs after recording executing for %s", pause, key)
        time.sleep(pause)
    note = decision.approval.note or intent.spec.note or ""
    outcome_record = loop_controller.run_loop_control(
        loop,
        target,
        intent=intent.spec.intent,
        by=by,
        note=note,
        idempotency_key=key,
        trace_id=trace_id,
        token=token,
        settings=ctx.settings,
        now_fn=ctx.clock.now,
        sleep=ctx.sleep or time.sleep,
        runtime_command=ctx.runtime_command,
    )
    ctx.completed_keys.add(key)
    outcome = handoff_intent_resource.compute_outcome_from_control(outcome_record.status)
    done_at = ctx.clock.now()
    new = handoff_intent_resource.build_outcome_status(
        previous=executing,
        outcome=outcome,
        execution=outcome_record.intent_row,
        message=f"control status {outcome_record.status}",
        generation=generation,
        now=done_at,
    )
    _journal(
        target,
        loop_controller.build_handoff_row(
            target, intent_name=ref.name, intent=intent.spec.intent, phase=outcome, key=key, by=by,
            now=format_ts(done_at), extra={"controlStatus": outcome_record.status, "traceId": trace_id},
        ),
    )  # fmt: skip
    crash_points.reach("handoff.outcome_status")
    write_intent_status(ctx.edge, ref, executing, new)
    _post_events(ctx, ref, executing, new, trace_id)
    ctx.metrics.record_control_outcome(ref.namespace, intent.spec.loop_ref.name, intent.spec.intent, outcome)
    return IntentReport(outcome, True, new)


@kopf.on.create(GROUP, VERSION, "handoffintents", when=owns_intent_loop)
@kopf.on.resume(GROUP, VERSION, "handoffintents", when=owns_intent_loop)
@kopf.on.update(GROUP, VERSION, "handoffintents", when=owns_intent_loop)
def on_intent_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every look at an intent is the same decision from its current annotations and status."""
    ctx = fetch_context(memo)
    try:
        report = reconcile_intent(dict(body), ctx)
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    observe_waiting(ctx, body, report.phase)


def observe_waiting(ctx: OperatorContext, body: Mapping[str, Any], phase: str | None) -> None:
    """Export whether the intent waits for a person (since its creation) for the approval alert."""
    meta = body.get("metadata") or {}
    loop = str(((body.get("spec") or {}).get("loopRef") or {}).get("name", ""))
    created = parse_ts(meta.get("creationTimestamp"))
    since = None
    if phase == handoff_intent_resource.PENDING:
        since = created.timestamp() if created is not None else ctx.clock.now().timestamp()
    ctx.metrics.observe_intent(str(meta.get("namespace", "")), str(meta.get("name", "")), loop, since)


@kopf.on.delete(GROUP, VERSION, "handoffintents", optional=True)
def on_intent_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A deleted intent no longer waits."""
    observe_waiting(fetch_context(memo), body, None)


# ---------------------------------------------------------------------------------------------
# the retry guard hand-over (autonomous -> manual)


def hand_over_intent(body: Mapping[str, Any], ctx: OperatorContext, edge: FleetEdge) -> IntentReport | None:
    """A person approved a retry-guarded autonomous intent: give it to the manual path, then run it.

    The manual handler leaves autonomous intents alone; once handed over
    (``core.handoff.handoff_intent_resource.build_manual_handover_status``) it is an ordinary manual one.
    """
    ref = intent_ref(body)
    approval = handoff_intent_resource.parse_approval((body.get("metadata") or {}).get("annotations") or {})
    if approval.approval is None:
        return None
    with ctx.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = edge.fetch_object(ref)
        if fresh is None:
            return None
        previous = dict(fresh.get("status") or {})
        handed = handoff_intent_resource.build_manual_handover_status(previous)
        if handed is None:
            return None
        write_intent_status(edge, ref, previous, handed)
    return reconcile_intent(fresh | {"status": handed}, ctx)


def _autonomous_retryable(status: Any, memo: Any, **_: Any) -> bool:
    return (
        runs_fleet_kinds(memo)
        and isinstance(status, Mapping)
        and status.get("mode") == "autonomous"
        and status.get("phase") in handoff_intent_resource.RETRYABLE_OUTCOMES
    )


@kopf.on.update(GROUP, VERSION, "handoffintents", field="metadata.annotations", when=_autonomous_retryable)
def on_intent_approved(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Approval annotations on a retry-guarded autonomous intent (the manual handler skips those)."""
    try:
        ctx = fetch_context(memo)
        hand_over_intent(dict(body), ctx, ctx.edge)
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
