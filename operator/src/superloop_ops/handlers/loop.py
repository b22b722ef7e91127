"""Loop controller: one ``reconcile_loop`` for create, resume, update and the periodic pass.

Each pass reacts to the current object, never to a diff: parse the body, gather (PVC directory
or Secret token, the alert sink catalog and its Secret, one reconcile pass through the engine,
the status surface), decide (the pure ``core.loop.loop_resource``), act (at most one status patch,
Events on transitions, metrics). A missing
source directory or Secret is not a crash: the status says so (Ready=False with the reason) and
the pass is retried after a delay. ``spec.suspend`` stops reconciling; the replay annotation is
handled once and recorded in ``status.replayHandled``.

The periodic passes are not kopf daemons or timers (one asyncio task and one live body per Loop,
and a fixed interval for timers): the Loop watch feeds one scheduler
(``controllers.loop_scheduler``) an entry per Loop this shard owns (``on_loop_event``), and the
scheduler runs each due pass (``run_periodic_pass``) on its bounded pool at the Loop's
``reconcileIntervalSeconds``. The per-object lock keeps a periodic pass and a create/update
handler of one Loop apart. No handler needs kopf's finalizer on a Loop (nothing to stop when it
goes), so kopf adds none and removes the one older versions added. With a pass pool
(``SUPERLOOP_LOOP_PASS_PROCESSES``), the file side of a pass with a large backlog runs in a worker
process (``controllers.loop_pass_pool``) while the handler's thread waits; the rest stays here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import loop_alerts, loop_controller, loop_pass_pool, remediation_journal
from superloop_ops.controllers.loop_scheduler import ScheduledLoop
from superloop_ops.core.common.jsonutil import as_mapping, as_number
from superloop_ops.core.loop import idle_pass, loop_resource, remediation
from superloop_ops.core.loop.idle_pass import FileStamp
from superloop_ops.engine.loop import reconcile_pass
from superloop_ops.errors import (
    DependencyNotReadyError,
    InvalidSpecError,
    JournalWriteError,
    OperatorError,
    SecretNotUsableError,
)
from superloop_ops.handlers.context import (
    OperatorContext,
    counted_pass,
    fetch_context,
    fetch_scheduler,
    owns_loop,
    post_events,
)
from superloop_ops.k8s.edge import GROUP, VERSION, ConflictError, ObjectNotFoundError, ObjectRef
from superloop_ops.metrics import LoopObservation
from superloop_ops.models.loop import Loop

__all__ = [
    "PassReport",
    "loop_ref",
    "on_loop_change",
    "on_loop_event",
    "reconcile_loop",
    "run_periodic_pass",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PassReport:
    """What a pass did; handlers turn ``error`` into kopf's retry semantics."""

    outcome: str
    status_written: bool
    status: Mapping[str, Any]
    error: OperatorError | None = None
    retry_after: float | None = None


def loop_ref(body: Mapping[str, Any]) -> ObjectRef:
    meta = body.get("metadata") or {}
    return ObjectRef(
        kind="Loop",
        plural="loops",
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
    )


def _token(loop: Loop, namespace: str, ctx: OperatorContext) -> str | None:
    service = loop.spec.service
    if loop.spec.transport != "sprite_service" or service is None or service.token_secret_ref is None:
        return None
    ref = service.token_secret_ref
    try:
        return ctx.edge.fetch_secret_value(namespace, ref.name, ref.key)
    except ObjectNotFoundError as exc:
        raise _SecretMissingError(
            f"token Secret {ref.name!r} key {ref.key!r} not found: {exc}", delay=15.0
        ) from exc


class _SecretMissingError(DependencyNotReadyError):
    pass


class _UnexpectedError(OperatorError):
    """An exception the pass did not anticipate: still a status, an Event and a metric, never silence."""


def _blocked_reason(exc: OperatorError) -> str:
    if isinstance(exc, loop_controller.SourceNotFoundError):
        return "source_not_found"
    if isinstance(exc, _SecretMissingError):
        return "secret_not_found"
    if isinstance(exc, JournalWriteError):
        return "journal_unwritable"
    if isinstance(exc, _UnexpectedError | loop_pass_pool.PassWorkerLostError):
        return "internal_error"
    if isinstance(exc, SecretNotUsableError):
        return exc.reason_code
    if isinstance(exc, InvalidSpecError):
        return "invalid_spec"
    return "dependency_not_ready"


@dataclasses.dataclass(frozen=True)
class _Replay:
    """The replay annotation against the status: ``token`` is set when this pass must replay."""

    request: str | None
    pending: bool
    token: str | None

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> _Replay:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        request = loop_resource.compute_replay_token(annotations)
        handled = (body.get("status") or {}).get("replayHandled")
        pending = request is not None and request == handled
        return cls(request, pending, request if request is not None and not pending else None)


@dataclasses.dataclass(frozen=True)
class _Pass:
    """One full pass: the view, the engine's result (None when it did not run), the error, and
    the stamps of the files it read, taken before it read them."""

    view: loop_resource.LoopPassView
    result: reconcile_pass.ReconcileResult | None = None
    error: OperatorError | None = None
    stamps: tuple[tuple[str, FileStamp], ...] = ()
    target: loop_controller.LoopTarget | None = None


def _carry_remediation(
    done: _Pass, previous: Mapping[str, Any], started_at: dt.datetime, finished_at: dt.datetime
) -> tuple[Any, list[loop_resource.EventSpec]]:
    """The pass's ``status.remediation`` and its Event, decided (and journaled) once per pass,
    before the status write: a write retried after a conflict carries the same record."""
    target, view = done.target, done.view
    health = (view.surface or {}).get("health")
    return remediation_journal.carry_remediation(
        target.ops_dir if target else None, loop_id=target.loop_id if target else "",
        previous=previous, outcome=view.outcome, health=health if isinstance(health, Mapping) else {},
        trace_id=view.trace_id, started_at=started_at, finished_at=finished_at,
    )  # fmt: skip


@counted_pass("Loop")
def reconcile_loop(body: Mapping[str, Any], ctx: OperatorContext, *, force: bool = True) -> PassReport:
    """One pass for one Loop (synchronous: runs in kopf's thread pool).

    Works from the watched body (no GET per pass): the status patch carries its
    ``resourceVersion``, so a body older than the stored object is caught by a conflict, read
    again and the patch recomputed. An unhandled replay request is confirmed on a fresh read
    before it runs, so a stale body cannot replay twice; so is a remediation other than the one
    this process last wrote (``_predates_own_write``), so a stale body cannot open or resolve one
    twice. Unless ``force``, a pass that would find nothing new (``core.idle_pass``) is only a
    few stat() calls: no journal write, no API call.
    """
    ref = loop_ref(body)
    key = _key(ref)
    with ctx.lock_for(key):
        body = dict(body)
        replay = _Replay.read(body)
        if not force and _is_idle(ctx, key, body, replay):
            ctx.metrics.record_loop_pass(ref.namespace, ref.name, ctx.clock.now().timestamp(), idle=True)
            return PassReport("idle", False, dict(body.get("status") or {}))
        ctx.idle_memos.pop(key, None)
        if replay.token is not None or _predates_own_write(ctx, key, body):
            body = _fetch_fresh(ctx, ref, body)
            replay = _Replay.read(body)
        started = time.monotonic()
        pass_started_at = ctx.clock.now()  # a remediation opens at its pass's start, resolves at its end
        trace_id = remediation.find_open_trace(dict(body.get("status") or {})) or ctx.new_trace_id()
        done = _run_pass(body, ref, ctx, replay, trace_id)
        view, result, error = done.view, done.result, done.error
        record, remediation_events = _carry_remediation(
            done, dict(body.get("status") or {}), pass_started_at, ctx.clock.now()
        )
        previous, new_status, written = _write_status(ctx, ref, body, view, record)
        _remember_remediation(ctx, key, new_status)
        post_events(ctx.edge, ref, loop_resource.compute_loop_events(previous, new_status), log)
        post_events(ctx.edge, ref, remediation_events, log)
        _observe(ctx, ref, view, new_status, time.monotonic() - started, error, result is not None)
        if result is not None and isinstance(result.alert_result, loop_alerts.LoopDispatchReport):
            for delivery in result.alert_result.deliveries:
                ctx.metrics.record_alert_delivery(ref.namespace, delivery.sink_type, delivery.outcome)
        _remember(ctx, key, body, replay, done, new_status)
    retry = error.delay if isinstance(error, DependencyNotReadyError) else None
    return PassReport(view.outcome, written, new_status, error, retry)


def _predates_own_write(ctx: OperatorContext, key: str, body: Mapping[str, Any]) -> bool:
    """The body's remediation is not the one this process last wrote: the body may be older than
    that write (a pass's status event reaches the scheduler's entry, and the handlers' bodies,
    only after kopf's handler of the previous event returns)."""
    written = ctx.remediation_marks.get(key)
    return written is not None and written != remediation.mark_of(body.get("status"))


def _remember_remediation(ctx: OperatorContext, key: str, status: Mapping[str, Any]) -> None:
    mark = remediation.mark_of(status)
    if mark is not None:
        ctx.remediation_marks[key] = mark


def _is_idle(ctx: OperatorContext, key: str, body: Mapping[str, Any], replay: _Replay) -> bool:
    memo = ctx.idle_memos.get(key)
    if memo is None:
        return False
    return idle_pass.is_idle(
        memo,
        generation=int((body.get("metadata") or {}).get("generation") or 0),
        replay_request=replay.request,
        stamps=loop_controller.stat_inputs(tuple(path for path, _ in memo.stamps)),
        now=ctx.clock.now(),
    )


def _remember(
    ctx: OperatorContext,
    key: str,
    body: Mapping[str, Any],
    replay: _Replay,
    done: _Pass,
    status: Mapping[str, Any],
) -> None:
    """Keep what a clean full pass of a local loop read, so the next one can tell it is idle."""
    if done.view.outcome != "success" or done.error is not None or not done.stamps:
        return
    alerts = done.result.alert_result if done.result is not None else None
    if isinstance(alerts, loop_alerts.LoopDispatchReport) and any(
        delivery.outcome != "success" for delivery in alerts.deliveries
    ):
        return  # a failed delivery is retried by the next full pass
    ctx.idle_memos[key] = idle_pass.IdleMemo(
        generation=int((body.get("metadata") or {}).get("generation") or 0),
        replay_request=replay.request,
        stamps=done.stamps,
        due=idle_pass.compute_next_due(
            status, now=ctx.clock.now(), refresh_seconds=ctx.settings.status_refresh_seconds
        ),
    )


def _fetch_fresh(ctx: OperatorContext, ref: ObjectRef, body: dict[str, Any]) -> dict[str, Any]:
    """The object as stored now; the given body when it cannot be read (the write will tell)."""
    try:
        fresh = ctx.edge.fetch_object(ref)
    except OperatorError:
        fresh = None
    return fresh if fresh is not None else body


def _run_pass(
    body: Mapping[str, Any], ref: ObjectRef, ctx: OperatorContext, replay: _Replay, trace_id: str
) -> _Pass:
    """Gather and reconcile."""
    try:
        # The pass reads spec and metadata only: the status (~7 KB) is not parsed every pass.
        loop = Loop.from_body({key: value for key, value in body.items() if key != "status"})
        if loop.spec.suspend:
            return _Pass(
                loop_resource.LoopPassView(outcome="suspended", replay_pending=replay.request is not None)
            )
        target = loop_controller.build_loop_target(loop, ref.namespace, ref.name, ctx.settings)
        stamps = loop_controller.stat_inputs(loop_controller.compute_input_paths(target))
        token = _token(loop, ref.namespace, ctx)
        alert_config = loop_alerts.fetch_loop_alert_config(
            loop,
            ref.namespace,
            ctx.edge,
            default_catalog=loop_alerts.compute_default_catalog_path(ctx.settings.config_dir),
        )
        job = loop_controller.LoopPassJob(
            loop=loop,
            target=target,
            token=token,
            replay_token=replay.token,
            replay_pending=replay.pending,
            clock=ctx.clock,
            alert_config=alert_config,
            pagerduty_url=ctx.settings.alert_pagerduty_url,
            trace_id=trace_id,
        )
        view, result = _run_job(ctx, _key(ref), job, stamps)
        return _Pass(view, result, None, stamps, target)
    except Exception as exc:
        if not isinstance(exc, OperatorError):
            log.exception("reconcile of Loop %s/%s failed unexpectedly", ref.namespace, ref.name)
            exc = _UnexpectedError(f"internal error: {type(exc).__name__}: {exc}")
        blocked = loop_resource.LoopPassView(
            outcome="blocked",
            blocked_reason=_blocked_reason(exc),
            blocked_message=str(exc),
            replay_pending=replay.request is not None and replay.pending,
        )
        return _Pass(blocked, None, exc)


def _run_job(
    ctx: OperatorContext,
    key: str,
    job: loop_controller.LoopPassJob,
    stamps: tuple[tuple[str, FileStamp], ...],
) -> loop_pass_pool.PassOutcome:
    """The pass's file side: in a worker process when there is a pass pool and the pass has a
    large enough backlog to ingest (``controllers.loop_pass_pool``), else in this thread."""
    pool = ctx.pass_pool
    if pool is not None and pool.takes(
        loop_controller.compute_backlog_bytes(job.target, stamps, replay=job.replay_token is not None)
    ):
        return pool.run(key, job)
    return loop_controller.run_loop_pass_job(job)


_PRECONDITIONED_ATTEMPTS = 2


def _write_status(
    ctx: OperatorContext,
    ref: ObjectRef,
    body: Mapping[str, Any],
    view: loop_resource.LoopPassView,
    remediation_record: Any,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(status it was based on, new status, whether a patch was sent).

    The patch is made on the body's resourceVersion; after a conflict the object is read again
    and the patch recomputed. When it keeps changing under the pass (kopf's own annotation
    patches while it handles a create), the last attempt is computed on a fresh read and sent
    without the precondition: the status keys are this controller's alone.
    """
    now = ctx.clock.now()
    for _ in range(_PRECONDITIONED_ATTEMPTS):
        try:
            return _write_once(ctx, ref, body, view, remediation_record, now, preconditioned=True)
        except ConflictError:
            body = _fetch_fresh(ctx, ref, dict(body))
    return _write_once(ctx, ref, body, view, remediation_record, now, preconditioned=False)


def _write_once(
    ctx: OperatorContext,
    ref: ObjectRef,
    body: Mapping[str, Any],
    view: loop_resource.LoopPassView,
    remediation_record: Any,
    now: dt.datetime,
    *,
    preconditioned: bool,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """A patch only when the stored status would change, made on the body's resourceVersion."""
    meta = body.get("metadata") or {}
    previous = dict(body.get("status") or {})
    new_status = loop_resource.build_loop_status(
        previous=previous, view=view, generation=int(meta.get("generation") or 0), now=now
    )
    if remediation_record is not None:
        new_status["remediation"] = remediation_record
    patch = loop_resource.compute_status_patch(
        previous, new_status, now=now, refresh_seconds=ctx.settings.status_refresh_seconds
    )
    if patch is None:
        return previous, new_status, False
    version = (str(meta.get("resourceVersion") or "") or None) if preconditioned else None
    ctx.edge.patch_status(ref, patch, resource_version=version)
    return previous, new_status, True


def _observe(
    ctx: OperatorContext,
    ref: ObjectRef,
    view: loop_resource.LoopPassView,
    status: Mapping[str, Any],
    seconds: float,
    error: OperatorError | None,
    ran: bool,
) -> None:
    metrics = ctx.metrics
    metrics.record_loop_pass(ref.namespace, ref.name, ctx.clock.now().timestamp())
    if ran:
        metrics.observe_reconcile_duration(ref.namespace, seconds)
    health = as_mapping(status.get("health"))
    health_metrics = as_mapping(health.get("metrics"))
    transport = as_mapping(status.get("transportHealth"))
    divergence = as_mapping(status.get("state")).get("divergence")
    streak = transport.get("failureStreak")
    metrics.observe_loop(
        LoopObservation(
            namespace=ref.namespace,
            loop=ref.name,
            health_status=status.get("healthStatus"),
            reason_codes=tuple(str(c) for c in status.get("reasonCodes") or ()),
            lifecycle_state=status.get("lifecycle"),
            ingest_lag_seconds=as_number(health_metrics.get("ingestLagSeconds")),
            heartbeat_lag_seconds=as_number(health_metrics.get("heartbeatLagSeconds")),
            transport_failure_streak=streak if isinstance(streak, int) else None,
            diverged=(divergence.get("any") is True) if isinstance(divergence, Mapping) else None,
            run_outcome=_text(health_metrics.get("runOutcome")),
            usage=as_mapping(as_mapping(as_mapping(status.get("state")).get("signals")).get("usage")) or None,
        )
    )
    if error is not None:
        metrics.record_reconcile_error(ref.namespace, ref.name, _blocked_reason(error))
    elif view.outcome == "failed":
        metrics.record_reconcile_error(ref.namespace, ref.name, view.failure_code or "reconcile_failed")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _raise_for_kopf(report: PassReport) -> None:
    """Only handlers map the error tree to kopf's: permanent for bad specs, temporary otherwise."""
    if isinstance(report.error, InvalidSpecError):
        raise kopf.PermanentError(str(report.error))
    if isinstance(report.error, DependencyNotReadyError):
        raise kopf.TemporaryError(str(report.error), delay=report.retry_after or 15.0)


@kopf.on.create(GROUP, VERSION, "loops", when=owns_loop)
@kopf.on.resume(GROUP, VERSION, "loops", when=owns_loop)
@kopf.on.update(GROUP, VERSION, "loops", when=owns_loop)
def on_loop_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create, resume and any change of spec or annotations: the same full pass."""
    _raise_for_kopf(reconcile_loop(dict(body), fetch_context(memo)))


@kopf.on.event(GROUP, VERSION, "loops")
async def on_loop_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The periodic passes follow the watch: every event of a Loop this shard owns refreshes its
    entry in the scheduler (body, interval); a deleted Loop, one being deleted or one that left
    the shard leaves the schedule, and its per-Loop gauges and idle memo go with it.

    Runs on the event loop's thread (the scheduler's schedule is not locked), for every Loop
    event, including those of other shards' Loops: they cost an ownership check.
    """
    ctx = fetch_context(memo)
    scheduler = fetch_scheduler(ctx)
    ref = loop_ref(body)
    key = _key(ref)
    owned = owns_loop(body, memo)
    deleted = event.get("type") == "DELETED"
    if deleted or (body.get("metadata") or {}).get("deletionTimestamp") or not owned:
        if scheduler.remove(key) or (deleted and owned):
            ctx.idle_memos.pop(key, None)
            ctx.remediation_marks.pop(key, None)
            ctx.metrics.forget_loop(ref.namespace, ref.name)
        return
    scheduler.upsert(ScheduledLoop.from_body(key, _interval(body, ctx), body))


def run_periodic_pass(entry: ScheduledLoop, ctx: OperatorContext) -> float | None:
    """One scheduled pass (in the scheduler's pool): only a few stat() calls when nothing it
    reads changed; its ``retry_after`` (a dependency not ready) brings the next one forward."""
    return reconcile_loop(entry.load_body(), ctx, force=False).retry_after


def _key(ref: ObjectRef) -> str:
    return ref.uid or f"{ref.namespace}/{ref.name}"


def _interval(body: Mapping[str, Any], ctx: OperatorContext) -> float:
    spec = body.get("spec") or {}
    value = spec.get("reconcileIntervalSeconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return float(value)
    return ctx.settings.default_reconcile_interval_seconds
