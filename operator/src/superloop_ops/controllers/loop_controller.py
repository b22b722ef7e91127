"""Glue between a Loop object and the reconcile / status / control engines.

The operator keeps its journal under its own state directory, one tree per namespace in the
reference layout: ``<state>/<namespace>/.superloop/ops-manager/<loopId>/``. Seen from the
engines, ``<state>/<namespace>`` is the "repository" of the journal:

- ``local`` loops read their artifacts from the PVC directory (the settings map the claim
  name to a directory) and write the journal to the state tree (``ReconcileOptions.ops_dir``);
- ``sprite_service`` loops have no local artifacts: the state tree is both their repository
  and their journal.

Control journals the same way: ``ControlRequest.ops_dir`` points the control engine at the state
tree, so a local loop's PVC only ever holds runtime artifacts (and the runtime's own approval
decision), and each control row is written once, where health and the status surface read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.controllers import loop_alerts
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.loop import control_rules, loop_resource, threshold_profiles
from superloop_ops.core.loop.idle_pass import FileStamp
from superloop_ops.engine.loop import (
    control_run,
    pass_hooks,
    reconcile_pass,
    status_read,
    threshold_files,
)
from superloop_ops.errors import ContractError, DependencyNotReadyError, InvalidSpecError
from superloop_ops.journal import files
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings
from superloop_ops.transports import local
from superloop_ops.transports.local import LoopPaths

__all__ = [
    "LoopPassJob",
    "LoopTarget",
    "SourceNotFoundError",
    "build_handoff_row",
    "build_loop_target",
    "build_reconcile_options",
    "compute_backlog_bytes",
    "compute_input_paths",
    "compute_threshold_catalog_path",
    "fetch_journal_outcome",
    "run_loop_control",
    "run_loop_pass",
    "run_loop_pass_job",
    "stat_inputs",
]


class SourceNotFoundError(DependencyNotReadyError):
    """The PVC directory of a local loop is not there (yet)."""


@dataclasses.dataclass(frozen=True)
class LoopTarget:
    """Where one Loop's artifacts and journal live."""

    namespace: str
    name: str
    loop_id: str
    transport: str
    repo: Path  # artifacts (local) or the journal root (sprite_service)
    journal_root: Path  # <state>/<namespace>
    threshold_catalog: str | None = None
    """The threshold profile catalog; None is the CLI's precedence (env, then the shipped one)."""

    @property
    def ops_dir(self) -> Path:
        return reconcile_pass.ops_dir_for(self.journal_root, self.loop_id)


def compute_threshold_catalog_path(config_dir: Path | None, env: Mapping[str, str] | None = None) -> str:
    """The operator's threshold catalog: ``OPS_MANAGER_THRESHOLD_PROFILES_FILE`` when set, else the
    catalog the chart mounts under ``SUPERLOOP_CONFIG_DIR`` when it is there, else the shipped one.

    The mounted catalog takes the shipped default's place (as for the alert sink catalog), so an
    edit of the chart's ConfigMap reaches every Loop without a new image.
    """
    environ = os.environ if env is None else env
    if config_dir is not None and not environ.get(threshold_files.PROFILES_FILE_ENV, ""):
        mounted = config_dir / threshold_files.CATALOG_FILENAME
        if mounted.is_file():
            return str(mounted)
    return threshold_files.compute_catalog_path(None, environ)


def build_loop_target(loop: Loop, namespace: str, name: str, settings: Settings) -> LoopTarget:
    """Resolve the directories (and the threshold catalog) of a Loop; a missing PVC directory is
    a temporary condition."""
    journal_root = settings.namespace_state_dir(namespace).absolute()
    spec = loop.spec
    if spec.transport == "local":
        if spec.source is None:
            raise InvalidSpecError("local loops require source.pvc")
        pvc = spec.source.pvc
        repo = settings.resolve_pvc_dir(namespace, pvc.claim_name, pvc.sub_path or None).absolute()
        if not repo.is_dir():
            raise SourceNotFoundError(
                f"PVC {pvc.claim_name!r} is not mounted: directory {repo} not found", delay=15.0
            )
    else:
        repo = journal_root
    return LoopTarget(
        namespace=namespace,
        name=name,
        loop_id=spec.loop_id,
        transport=spec.transport,
        repo=repo,
        journal_root=journal_root,
        threshold_catalog=compute_threshold_catalog_path(settings.config_dir),
    )


def compute_input_paths(target: LoopTarget) -> tuple[Path, ...]:
    """What a local pass reads that others write: the runtime's artifacts (spec loop-core §1.1),
    the control journal (the HandoffIntent handler appends to it) and the threshold catalog.
    Empty for a sprite_service loop: its artifacts are only reachable over HTTP."""
    if target.transport != "local":
        return ()
    paths = LoopPaths.of(target.repo, target.loop_id)
    loop_dir = paths.loop_dir
    inputs = [
        paths.events,
        loop_dir / "run-summary.json",
        loop_dir / "heartbeat.v1.json",
        loop_dir / "approval.json",
        paths.superloop / "state.json",
        paths.superloop / "active-run.json",
        target.ops_dir / "intents.jsonl",
    ]
    if target.threshold_catalog:
        inputs.append(Path(target.threshold_catalog))
    return tuple(inputs)


def stat_inputs(paths: tuple[Path, ...] | tuple[str, ...]) -> tuple[tuple[str, FileStamp], ...]:
    """(path, (size, mtime_ns, inode)) of each file, None for a missing one: one stat() each."""
    stamps: list[tuple[str, FileStamp]] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps.append((str(path), None))
            continue
        stamps.append((str(path), (info.st_size, info.st_mtime_ns, info.st_ino)))
    return tuple(stamps)


def compute_backlog_bytes(
    target: LoopTarget, stamps: tuple[tuple[str, FileStamp], ...], *, replay: bool
) -> int:
    """The event bytes a pass of a local loop will ingest: the events file's size (from the
    pass's ``stamps``) past the cursor's byte position; the whole file for a replay or a cursor
    without a byte position. 0 for a sprite_service loop (its events come over HTTP)."""
    if target.transport != "local":
        return 0
    events = str(LoopPaths.of(target.repo, target.loop_id).events)
    stamp = dict(stamps).get(events)
    if stamp is None:
        return 0
    size = stamp[0]
    if replay:
        return size
    try:
        position = local.read_cursor(target.ops_dir / "cursor.json")
    except (ContractError, OSError):
        return size
    return max(0, size - (position.byte_offset or 0))


def build_reconcile_options(
    loop: Loop,
    target: LoopTarget,
    *,
    token: str | None,
    from_start: bool,
    hooks: reconcile_pass.ReconcileHooks | None = None,
) -> reconcile_pass.ReconcileOptions:
    """The reconcile flags of §5.1, taken from the Loop spec instead of the command line."""
    spec = loop.spec
    catalog_path = target.threshold_catalog or threshold_files.compute_catalog_path(None)
    try:
        profile = threshold_files.fetch_profile(catalog_path, spec.thresholds.profile)
        overrides = spec.thresholds.overrides
        explicit: dict[str, object] = {
            "degradedHeartbeatLagSeconds": spec.thresholds.degraded_heartbeat_lag_seconds,
            "criticalHeartbeatLagSeconds": spec.thresholds.critical_heartbeat_lag_seconds,
        }
        if overrides is not None:
            explicit.update(
                {
                    "degradedIngestLagSeconds": overrides.degraded_ingest_lag_seconds,
                    "criticalIngestLagSeconds": overrides.critical_ingest_lag_seconds,
                    "degradedTransportFailureStreak": overrides.degraded_transport_failure_streak,
                    "criticalTransportFailureStreak": overrides.critical_transport_failure_streak,
                }
            )
        thresholds = threshold_profiles.compute_thresholds(profile, explicit)
    except ContractError as exc:
        raise InvalidSpecError(f"thresholds: {exc}") from exc
    service = spec.service
    target.ops_dir.mkdir(parents=True, exist_ok=True)
    return reconcile_pass.ReconcileOptions(
        repo=target.repo,
        loop_id=target.loop_id,
        thresholds=thresholds,
        transport="sprite_service" if spec.transport == "sprite_service" else "local",
        service=reconcile_pass.ServiceSettings(
            base_url=service.base_url if service else None,
            token=token or None,
            retry_attempts=service.retry_attempts if service else 3,
            retry_backoff_seconds=service.retry_backoff_seconds if service else 1,
        ),
        from_start=from_start,
        max_events=spec.max_events,
        ops_dir=target.ops_dir,
        thresholds_file=Path(catalog_path),
        drift=reconcile_pass.DriftSettings(
            min_confidence=spec.drift.min_confidence,
            required_streak=spec.drift.required_streak,
            summary_window=spec.drift.summary_window,
        ),
        alerts=reconcile_pass.AlertSettings(enabled=spec.alerts.enabled),
        hooks=hooks if hooks is not None else pass_hooks.build_standard_hooks({}),
    )


def run_loop_pass(
    loop: Loop,
    target: LoopTarget,
    *,
    token: str | None,
    replay_token: str | None,
    replay_pending: bool,
    clock: Clock,
    hooks: reconcile_pass.ReconcileHooks | None = None,
    trace_id: str | None = None,
) -> tuple[loop_resource.LoopPassView, reconcile_pass.ReconcileResult]:
    """One reconcile pass, then the surfaces the Loop status mirrors.

    The pass's own documents (state, heartbeat, sequence, transport health) come from its result
    in memory; only the status surface is gathered from the journal the pass just wrote.
    """
    options = build_reconcile_options(
        loop, target, token=token, from_start=replay_token is not None, hooks=hooks
    )
    if trace_id:  # the Loop's open remediation's id, so every step of it carries one id (issue 15)
        options = dataclasses.replace(options, trace_id=trace_id)
    try:
        result = reconcile_pass.run_reconcile(options, clock=clock)
    except ContractError as exc:
        raise InvalidSpecError(str(exc)) from exc
    paths = status_read.StatusPaths.build(target.journal_root, target.loop_id)
    try:
        surface = status_read.fetch_status(
            target.journal_root,
            target.loop_id,
            now=clock.now(),
            paths=paths,
            summary_window=loop.spec.drift.summary_window,
            summarize=status_read.build_summary_fn(clock.now),
        )
    except ContractError:
        surface = {}
    view = loop_resource.LoopPassView(
        outcome="success" if result.ingest_ok else "failed",
        transport=loop.spec.transport,
        trace_id=result.trace_id,
        surface=surface,
        state=result.state,
        heartbeat=result.heartbeat_state,
        sequence=result.sequence_state,
        transport_health=result.transport_health,
        failure_code=result.failure_code,
        failure_message=result.failure_message or "",
        replay_token=replay_token,
        replay_pending=replay_pending,
    )
    return view, result


@dataclasses.dataclass(frozen=True)
class LoopPassJob:
    """Everything one pass's file side needs, all picklable, so a worker process can run it
    (``controllers.loop_pass_pool``): the hooks are rebuilt where the pass runs, from the alert
    config, and the clock travels by value (``SystemClock``, or a ``FrozenClock`` in tests)."""

    loop: Loop
    target: LoopTarget
    token: str | None = dataclasses.field(repr=False)
    replay_token: str | None
    replay_pending: bool
    clock: Clock
    alert_config: loop_alerts.LoopAlertConfig
    pagerduty_url: str = ""
    trace_id: str | None = None


def run_loop_pass_job(job: LoopPassJob) -> tuple[loop_resource.LoopPassView, reconcile_pass.ReconcileResult]:
    """``run_loop_pass`` of one job, in this thread or in a worker process alike."""
    return run_loop_pass(
        job.loop,
        job.target,
        token=job.token,
        replay_token=job.replay_token,
        replay_pending=job.replay_pending,
        clock=job.clock,
        hooks=loop_alerts.build_operator_hooks(job.alert_config, pagerduty_url=job.pagerduty_url),
        trace_id=job.trace_id,
    )


def fetch_journal_outcome(target: LoopTarget, idempotency_key: str) -> JsonObject | None:
    """The intents.jsonl row recorded for a key in the state journal (the crash rule reads it)."""
    for row in reversed(files.read_jsonl(target.ops_dir / "intents.jsonl")):
        if isinstance(row, dict) and row.get("idempotencyKey") == idempotency_key:
            return row
    return None


def run_loop_control(
    loop: Loop,
    target: LoopTarget,
    *,
    intent: str,
    by: str,
    note: str,
    idempotency_key: str,
    trace_id: str,
    token: str | None,
    settings: Settings,
    now_fn: Callable[[], dt.datetime],
    sleep: Callable[[float], None] = time.sleep,
    runtime_command: tuple[str, ...] | None = None,
) -> control_run.ControlOutcome:
    """Execute one control intent through the Loop's transport, then journal it in the state tree."""
    spec = loop.spec
    service = spec.service
    request = control_run.ControlRequest(
        repo=target.repo,
        loop_id=target.loop_id,
        intent=control_rules.validate_intent(intent),
        transport=spec.transport,
        by=by,
        note=note,
        idempotency_key=idempotency_key,
        trace_id=trace_id,
        do_confirm=True,
        timeout_seconds=settings.control_confirm_timeout_seconds,
        interval_seconds=settings.control_confirm_interval_seconds,
        retry_attempts=service.retry_attempts if service else 3,
        retry_backoff_seconds=service.retry_backoff_seconds if service else 1,
        runtime_command=runtime_command or control_run.resolve_runtime_command(),
        service_base_url=(service.base_url or "") if service else "",
        service_token=token or "",
        ops_dir=target.ops_dir,
    )
    try:
        outcome = control_run.execute_control(request, now_fn=now_fn, sleep=sleep)
    except ContractError as exc:
        raise InvalidSpecError(str(exc)) from exc
    return outcome


def build_handoff_row(
    target: LoopTarget,
    *,
    intent_name: str,
    intent: str,
    phase: str,
    key: str | None,
    by: str | None,
    now: str,
    extra: dict[str, Any] | None = None,
) -> JsonObject:
    """One row of ``<ops>/telemetry/handoff-intents.jsonl``: the operator's own intent audit."""
    row: JsonObject = {
        "timestamp": now,
        "loopId": target.loop_id,
        "namespace": target.namespace,
        "handoffIntent": intent_name,
        "intent": intent,
        "phase": phase,
        "idempotencyKey": key,
        "approvedBy": by,
    }
    row.update(extra or {})
    return {k: v for k, v in row.items() if v is not None}
