"""One reconcile pass of one loop, in the contract's exact step order (loop-core §5.4).

The pass gathers (previous documents, artifacts through a transport), decides (the pure
builders of ``core``) and writes every file of §5.15 through ``journal.files``. The CLI and the
operator both call :func:`run_reconcile`; the operator injects its clock and a shared service
client. Profile drift (step 13) and alert dispatch (step 14) belong to other components and are
injected as :class:`ReconcileHooks`.

History reads are bounded: the previous documents are small JSON files, the intents log is
read from its end (last line only), and the event batch is the new events after the cursor.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from superloop_ops import clock as clock_mod
from superloop_ops.core.alerts import escalations
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.loop import health, heartbeat, pass_rules, projection, sequence
from superloop_ops.core.loop.threshold_profiles import Thresholds, coerce_non_negative_int
from superloop_ops.errors import ArtifactInvalidError, ContractError, JournalWriteError
from superloop_ops.journal import commit, crash_points, files, layout, locks, tail
from superloop_ops.transports import local
from superloop_ops.transports import service as service_mod

__all__ = [
    "TRANSPORTS",
    "AlertDispatchHook",
    "AlertSettings",
    "DriftOutcome",
    "DriftSettings",
    "PassContext",
    "ProfileDriftHook",
    "ReconcileHooks",
    "ReconcileOptions",
    "ReconcilePaths",
    "ReconcileResult",
    "ServiceSettings",
    "Transport",
    "generate_trace_id",
    "ops_dir_for",
    "run_reconcile",
]

log = logging.getLogger(__name__)

Transport = Literal["local", "sprite_service"]
TRANSPORTS: tuple[str, ...] = ("local", "sprite_service")


def generate_trace_id() -> str:
    """A lowercase random UUID, the contract's trace id when none is supplied."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ServiceSettings:
    """How to reach the sprite service (used only with ``transport='sprite_service'``)."""

    base_url: str | None = None
    token: str | None = field(default=None, repr=False)
    retry_attempts: int = 3
    retry_backoff_seconds: int = 1


@dataclass(frozen=True)
class DriftSettings:
    """Settings the profile-drift hook needs; reconcile itself only validates and forwards them."""

    min_confidence: str = "medium"
    required_streak: int = 3
    summary_window: int = 200
    state_file: Path | None = None
    history_file: Path | None = None


@dataclass(frozen=True)
class AlertSettings:
    """Settings the alert-dispatch hook needs."""

    enabled: bool = True
    config_file: Path | None = None
    state_file: Path | None = None
    telemetry_file: Path | None = None


@dataclass(frozen=True)
class ReconcilePaths:
    """Every file of one pass, absolute (defaults under ``<repo>/.superloop/ops-manager/<loop>``)."""

    repo: Path
    ops_dir: Path
    telemetry_dir: Path
    cursor_file: Path
    state_file: Path
    health_file: Path
    transport_health_file: Path
    intents_file: Path
    heartbeat_state_file: Path
    heartbeat_telemetry_file: Path
    sequence_state_file: Path
    sequence_telemetry_file: Path
    escalations_file: Path
    reconcile_telemetry_file: Path
    control_telemetry_file: Path
    drift_state_file: Path
    drift_history_file: Path
    alert_dispatch_state_file: Path
    alert_dispatch_telemetry_file: Path

    @classmethod
    def build(cls, options: ReconcileOptions) -> ReconcilePaths:
        repo = Path(options.repo).absolute()
        ops = Path(options.ops_dir).absolute() if options.ops_dir else ops_dir_for(repo, options.loop_id)
        tel = ops / "telemetry"

        def pick(override: Path | None, default: Path) -> Path:
            return Path(override).absolute() if override else default

        return cls(
            repo=repo,
            ops_dir=ops,
            telemetry_dir=tel,
            cursor_file=pick(options.cursor_file, ops / "cursor.json"),
            state_file=pick(options.state_file, ops / "state.json"),
            health_file=ops / "health.json",
            transport_health_file=tel / "transport-health.json",
            intents_file=ops / "intents.jsonl",
            heartbeat_state_file=pick(options.heartbeat_state_file, ops / "heartbeat.json"),
            heartbeat_telemetry_file=pick(options.heartbeat_telemetry_file, tel / "heartbeat.jsonl"),
            sequence_state_file=pick(options.sequence_state_file, ops / "sequence-state.json"),
            sequence_telemetry_file=pick(options.sequence_telemetry_file, tel / "sequence.jsonl"),
            escalations_file=ops / "escalations.jsonl",
            reconcile_telemetry_file=tel / "reconcile.jsonl",
            control_telemetry_file=tel / "control.jsonl",
            drift_state_file=pick(options.drift.state_file, ops / "profile-drift.json"),
            drift_history_file=pick(options.drift.history_file, tel / "profile-drift.jsonl"),
            alert_dispatch_state_file=pick(options.alerts.state_file, ops / "alert-dispatch-state.json"),
            alert_dispatch_telemetry_file=pick(options.alerts.telemetry_file, tel / "alerts.jsonl"),
        )


def ops_dir_for(repo: Path, loop_id: str) -> Path:
    """``<repo>/.superloop/ops-manager/<loop>``, the reference layout."""
    return layout.loop_ops_dir(Path(repo).absolute(), loop_id)


@dataclass(frozen=True)
class PassContext:
    """What the step-13/14 hooks get: the pass's identity, results, files and instant."""

    options: ReconcileOptions
    paths: ReconcilePaths
    trace_id: str
    ingest_ok: bool
    failure_code: str | None
    health: JsonObject
    state: JsonObject | None
    now: dt.datetime
    journal: commit.JournalWrites = commit.DIRECT
    """Where the step-13 hook puts its journal writes: the pass commits them with its own."""

    @property
    def ops_dir(self) -> Path:
        return self.paths.ops_dir

    @property
    def loop_id(self) -> str:
        return self.options.loop_id

    @property
    def applied_profile(self) -> str | None:
        """The resolved profile name, else the health document's ``thresholds.profile``."""
        if self.options.thresholds.profile:
            return self.options.thresholds.profile
        thresholds = self.health.get("thresholds")
        profile = thresholds.get("profile") if isinstance(thresholds, dict) else None
        return profile if isinstance(profile, str) and profile else None


@dataclass(frozen=True)
class DriftOutcome:
    """What the profile-drift hook returns.

    ``drift`` is the evaluator's document and ``summary`` the telemetry summary it used (None
    when there was none). ``tuning``, when given, replaces the block reconcile would build from
    the summary. ``escalation_written`` tells reconcile that the hook already appended the
    ``profile_drift_detected`` row, so reconcile must not append another.
    """

    drift: JsonObject
    summary: JsonObject | None = None
    tuning: JsonObject | None = None
    escalation_written: bool = False


# Step 13: evaluate profile drift (the hook writes profile-drift.json / profile-drift.jsonl itself).
# Return None for "no drift result". Raising is treated as a non-fatal failure (see divergences).
ProfileDriftHook = Callable[[PassContext], DriftOutcome | None]
# Step 14: dispatch new escalation rows (the hook owns the dispatch state and alerts.jsonl).
# Raising records an ``alert_dispatch_failed`` row; the pass result is unaffected.
AlertDispatchHook = Callable[[PassContext], object]


@dataclass(frozen=True)
class ReconcileHooks:
    """Injected components for steps 13 and 14; None skips the step."""

    profile_drift: ProfileDriftHook | None = None
    alert_dispatch: AlertDispatchHook | None = None


@dataclass(frozen=True)
class ReconcileOptions:
    """Validated inputs of one pass (the CLI parses flags and env into this)."""

    repo: Path
    loop_id: str
    thresholds: Thresholds
    transport: Transport = "local"
    service: ServiceSettings = field(default_factory=ServiceSettings)
    from_start: bool = False
    max_events: int = 0
    trace_id: str | None = None
    ops_dir: Path | None = None
    cursor_file: Path | None = None
    state_file: Path | None = None
    heartbeat_state_file: Path | None = None
    heartbeat_telemetry_file: Path | None = None
    sequence_state_file: Path | None = None
    sequence_telemetry_file: Path | None = None
    thresholds_file: Path | None = None
    drift: DriftSettings = field(default_factory=DriftSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    hooks: ReconcileHooks = field(default_factory=ReconcileHooks)


@dataclass(frozen=True)
class ReconcileResult:
    """Everything one pass decided; ``output`` is the stdout document, ``exit_code`` 0 or 1.

    ``heartbeat_state`` and ``sequence_state`` are the documents health used (this pass's, or the
    previous ones after a failed ingest; ``{}`` when none exist); ``alert_result`` is whatever the
    alert-dispatch hook returned. The operator mirrors these into Loop status.
    """

    exit_code: int
    output: JsonObject
    trace_id: str
    ingest_ok: bool
    failure_code: str | None
    failure_message: str | None
    health: JsonObject
    state: JsonObject | None
    transport_health: JsonObject
    sequence_status: str
    telemetry_row: JsonObject
    escalations: tuple[JsonObject, ...]
    drift: JsonObject | None
    drift_error: str | None
    alert_error: str | None
    paths: ReconcilePaths
    heartbeat_state: JsonObject = field(default_factory=dict)
    sequence_state: JsonObject = field(default_factory=dict)
    alert_result: object = None


@dataclass
class _Ingest:
    """Step 5's outcome (step 6 may still turn ``ok`` off)."""

    ok: bool = True
    failure_code: str | None = None
    failure_message: str | None = None
    snapshot: JsonObject | None = None
    events: Sequence[Any] = ()
    cursor: JsonObject | None = None
    """The cursor document to commit once the state of these events is written."""


@dataclass(frozen=True)
class _PassStart:
    """Steps 1-4: where the pass writes, who it is, and what it knew before ingesting."""

    options: ReconcileOptions
    paths: ReconcilePaths
    trace_id: str
    previous_health: escalations.PreviousHealth
    offset_before: int
    started: dt.datetime
    journal: commit.JournalBatch = field(default_factory=commit.JournalBatch)
    """The pass's staged writes, committed in two phases (see ``_run_pass``)."""


@dataclass(frozen=True)
class _RuntimeObservation:
    """Step 8: the heartbeat and sequence documents health reads (this pass's, else the previous)."""

    heartbeat_state: JsonObject
    sequence_state: JsonObject
    sequence_status: str = "skipped_ingest_failed"
    diagnostics: sequence.SequenceDiagnostics | None = None

    @property
    def sequence_reason(self) -> str | None:
        return self.diagnostics.reason_code if self.diagnostics else None


def _read_object(path: Path) -> JsonObject:
    """A JSON object from ``path``; missing or unusable documents read as ``{}``."""
    document = files.read_json(path)
    return document if isinstance(document, dict) else {}


def _cursor_offset_lenient(document: object) -> int:
    """A cursor document's ``eventLineOffset``; anything unusable is 0."""
    if not isinstance(document, dict):
        return 0
    offset = coerce_non_negative_int(document.get("eventLineOffset"))
    return 0 if offset is None else offset


def _read_cursor_offset_lenient(path: Path) -> int:
    return _cursor_offset_lenient(files.read_json(path))


def _ingest_local(
    options: ReconcileOptions, paths: ReconcilePaths, trace_id: str, now: dt.datetime
) -> _Ingest:
    try:
        snapshot = local.fetch_snapshot(paths.repo, options.loop_id, trace_id=trace_id, now=now)
    except ArtifactInvalidError as exc:
        return _Ingest(False, "artifact_invalid", pass_rules.stderr_tail(str(exc)))
    except (ContractError, OSError) as exc:
        return _Ingest(False, "snapshot_unavailable", pass_rules.stderr_tail(str(exc)))
    try:
        # The cursor's byte hint lets the poller read only the new tail of events.jsonl.
        position = None if options.from_start else local.read_cursor(paths.cursor_file)
    except (ContractError, OSError) as exc:
        return _Ingest(False, "cursor_invalid", pass_rules.stderr_tail(str(exc)), snapshot)
    try:
        batch = local.fetch_events(
            paths.repo,
            options.loop_id,
            offset=0 if position is None else position.line_offset,
            max_events=options.max_events,
            trace_id=trace_id,
            now=now,
            byte_hint=position,
        )
    except ArtifactInvalidError as exc:
        return _Ingest(False, "artifact_invalid", pass_rules.stderr_tail(str(exc)), snapshot)
    except (ContractError, OSError) as exc:
        return _Ingest(False, "events_unavailable", pass_rules.stderr_tail(str(exc)), snapshot)
    cursor = local.build_cursor_document(paths.repo, options.loop_id, batch, now)
    return _Ingest(True, snapshot=snapshot, events=list(batch.events), cursor=cursor)


def _ingest_service(
    options: ReconcileOptions,
    paths: ReconcilePaths,
    trace_id: str,
    now: dt.datetime,
    client: service_mod.ServiceClient,
    start: int,
) -> _Ingest:
    """``start`` is the pass's lenient cursor offset (0 for a replay from the start)."""
    try:
        snapshot = client.fetch_snapshot(options.loop_id, trace_id=trace_id)
    except service_mod.ServiceResponseInvalidError as exc:
        return _Ingest(False, "service_response_invalid", pass_rules.tail_lines(exc.message))
    except service_mod.ServiceError as exc:
        return _Ingest(False, "service_request_failed", pass_rules.stderr_tail(exc.message))
    if not isinstance(snapshot, dict):
        return _Ingest(False, "service_response_invalid", "service /ops/snapshot response is not an object")
    try:
        response = client.fetch_events(
            options.loop_id, cursor=start, max_events=options.max_events, trace_id=trace_id
        )
    except service_mod.ServiceResponseInvalidError as exc:
        return _Ingest(False, "service_response_invalid", pass_rules.tail_lines(exc.message), snapshot)
    except service_mod.ServiceError as exc:
        return _Ingest(False, "service_request_failed", pass_rules.stderr_tail(exc.message), snapshot)
    events = response.get("events") if isinstance(response, dict) else None
    cursor = response.get("cursor") if isinstance(response, dict) else None
    if (
        not isinstance(response, dict)
        or response.get("ok") is not True
        or not isinstance(events, list)
        or not isinstance(cursor, dict)
    ):
        return _Ingest(
            False, "service_response_invalid", "service /ops/events response shape invalid", snapshot
        )
    offset = _cursor_number(cursor.get("eventLineOffset"))
    count = _cursor_number(cursor.get("eventLineCount"))
    if offset is None or count is None:
        return _Ingest(
            False, "service_response_invalid", "service cursor values are invalid", snapshot, events
        )
    cursor_document = pass_rules.build_cursor_document(
        repo_path=str(paths.repo), loop_id=options.loop_id, offset=offset, line_count=count, now=now
    )
    return _Ingest(True, snapshot=snapshot, events=events, cursor=cursor_document)


def _cursor_number(value: object) -> int | None:
    if value is None or value is False:
        return 0
    return coerce_non_negative_int(value)


def _read_previous_state(path: Path) -> JsonObject | None:
    """The state file as the pass found it: None when missing, ``{}`` when unusable (read once)."""
    if not path.exists():
        return None
    return _read_object(path)


def _append(
    journal: commit.JournalWrites, path: Path, row: JsonObject | None, sink: list[JsonObject] | None = None
) -> None:
    if row is None:
        return
    journal.add_rows(path, [row])
    if sink is not None:
        sink.append(row)


RECONCILE_LOCK_FILE = ".reconcile.lock"


def run_reconcile(
    options: ReconcileOptions,
    *,
    clock: clock_mod.Clock | None = None,
    service_client: service_mod.ServiceClient | None = None,
) -> ReconcileResult:
    """Run one pass. Raises ContractError only for input errors found before anything is written.

    ``clock`` gives the start and completion instants (a FrozenClock makes the pass
    deterministic); ``service_client`` is used as is (not closed) for the sprite transport,
    otherwise one is built from ``options.service`` and closed afterwards. A journal file that
    cannot be written (disk full, a directory in the way) raises ``JournalWriteError``; the
    cursor is committed only after the state, so the events of a failed pass are read again.
    The pass holds an exclusive lock on its journal: passes never interleave, in or across
    processes (a second pass starts from the first one's cursor).
    """
    try:
        with locks.file_lock(ReconcilePaths.build(options).ops_dir / RECONCILE_LOCK_FILE):
            return _run_pass(options, clock, service_client)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise JournalWriteError(f"journal write failed: {exc.strerror or exc}{where}") from exc


def _run_pass(
    options: ReconcileOptions,
    clock: clock_mod.Clock | None,
    service_client: service_mod.ServiceClient | None,
) -> ReconcileResult:
    """Each step of §5.4 is one phase; the documents a step produces go to the next in memory.

    The journal writes are staged in ``start.journal`` and made durable in two commits, so the
    cursor is still committed after the state of its events (issue 12: one fsync per changed
    file and per directory and commit, unchanged documents not rewritten):

    1. the state commit: steps 7-10 (transport health, heartbeat and sequence documents and rows,
       health, state);
    2. the cursor commit: the cursor is renamed first; then step 11's and 12's rows are written
       (step 13 reads them), step 13 stages its documents and rows (and the state with drift
       merged), and one commit makes all of it durable, before step 14 dispatches the new rows.
    """
    clk: clock_mod.Clock = clock or clock_mod.SystemClock()
    start = _start_pass(options, clk)  # steps 1-4
    ingest = _ingest(start, clk, service_client)  # step 5
    previous_state = _read_previous_state(start.paths.state_file)
    projected = _project(start, ingest, previous_state, clk)  # step 6
    now = clk.now()
    transport_health = _update_transport_health(start, ingest, now)  # step 7
    observed = _observe_runtime(start, ingest, now)  # step 8
    health_doc = _write_health(  # step 9
        start, ingest, projected, previous_state, observed, transport_health, now
    )
    state = _write_state(start, projected, previous_state, observed, health_doc)  # step 10
    start.journal.commit()  # the state commit
    crash_points.reach("reconcile.cursor")
    _commit_cursor(start, ingest)
    crash_points.reach("reconcile.rows")
    context = escalations.EscalationContext(options.loop_id, start.trace_id, options.transport, now)
    written = _write_pass_escalations(start, context, ingest, observed, state, health_doc)  # step 11
    completed = clk.now()
    telemetry_row = _append_reconcile_telemetry(  # step 12
        start, ingest, observed, transport_health, health_doc, completed
    )
    start.journal.write_rows()
    crash_points.reach("reconcile.cursor_commit")
    pass_context = PassContext(
        options=options,
        paths=start.paths,
        trace_id=start.trace_id,
        ingest_ok=ingest.ok,
        failure_code=ingest.failure_code,
        health=health_doc,
        state=state,
        now=completed,
        journal=start.journal,
    )
    state, drift_doc, drift_error = _run_profile_drift(pass_context, context, state, written)  # step 13
    start.journal.commit()  # the cursor commit
    alert_result, alert_error = _run_alert_dispatch(pass_context)  # step 14
    return ReconcileResult(  # step 15
        exit_code=0 if ingest.ok else 1,
        output=_output_document(ingest, state, health_doc),
        trace_id=start.trace_id,
        ingest_ok=ingest.ok,
        failure_code=ingest.failure_code,
        failure_message=ingest.failure_message,
        health=health_doc,
        state=state,
        transport_health=transport_health,
        sequence_status=observed.sequence_status,
        telemetry_row=telemetry_row,
        escalations=tuple(written),
        drift=drift_doc,
        drift_error=drift_error,
        alert_error=alert_error,
        paths=start.paths,
        heartbeat_state=observed.heartbeat_state,
        sequence_state=observed.sequence_state,
        alert_result=alert_result,
    )


def _start_pass(options: ReconcileOptions, clk: clock_mod.Clock) -> _PassStart:
    """Steps 1-4: paths and directories, the previous health verdict, the cursor before, the start."""
    if options.transport not in TRANSPORTS:
        raise ContractError("--transport must be local or sprite_service")
    paths = ReconcilePaths.build(options)
    trace_id = options.trace_id or generate_trace_id()
    _make_journal_dirs(paths)
    # Step 2: previous health verdict, for escalation de-duplication.
    previous_health = escalations.compute_previous_health(files.read_json(paths.health_file))
    # Step 3: cursor before (telemetry only; unreadable -> 0).
    offset_before = 0 if options.from_start else _read_cursor_offset_lenient(paths.cursor_file)
    return _PassStart(options, paths, trace_id, previous_health, offset_before, started=clk.now())


def _make_journal_dirs(paths: ReconcilePaths) -> None:
    """Step 1's directories; a path that is a file (or unwritable) is an input error, not a crash."""
    for directory in (
        paths.ops_dir,
        paths.telemetry_dir,
        paths.heartbeat_state_file.parent,
        paths.heartbeat_telemetry_file.parent,
        paths.sequence_state_file.parent,
        paths.sequence_telemetry_file.parent,
    ):
        files.ensure_dir(directory)


def _ingest(
    start: _PassStart, clk: clock_mod.Clock, service_client: service_mod.ServiceClient | None
) -> _Ingest:
    """Step 5: snapshot and event batch through the selected transport (the cursor is not written yet)."""
    options, paths = start.options, start.paths
    if options.transport != "sprite_service":
        return _ingest_local(options, paths, start.trace_id, start.started)
    if not options.service.base_url:
        raise ContractError("--service-base-url is required when --transport sprite_service")
    owned_client = service_client is None
    client = service_client or service_mod.ServiceClient(
        options.service.base_url,
        token=options.service.token or None,
        retry_attempts=options.service.retry_attempts,
        retry_backoff_seconds=float(options.service.retry_backoff_seconds),
        sleep=clk.sleep,
    )
    try:
        return _ingest_service(options, paths, start.trace_id, start.started, client, start.offset_before)
    finally:
        if owned_client:
            client.close()


def _project(
    start: _PassStart, ingest: _Ingest, previous_state: JsonObject | None, clk: clock_mod.Clock
) -> JsonObject | None:
    """Step 6: the lifecycle projection (successful ingest only); a failure fails the ingest."""
    if not ingest.ok:
        return None
    assert ingest.snapshot is not None
    try:
        return projection.compute_projection(
            ingest.snapshot,
            list(ingest.events),
            previous_state,
            clk.now(),
            repo_path=str(start.paths.repo),
            loop_id=start.options.loop_id,
        )
    except (ContractError, ValueError, TypeError, KeyError, AttributeError) as exc:
        ingest.ok = False
        ingest.failure_code = "projection_failed"
        ingest.failure_message = pass_rules.stderr_tail(str(exc))
        return None


def _update_transport_health(start: _PassStart, ingest: _Ingest, now: dt.datetime) -> JsonObject:
    """Step 7: the transport health document, from the previous one and this pass's outcome."""
    transport_health = pass_rules.compute_transport_health(
        _read_object(start.paths.transport_health_file),
        success=ingest.ok,
        failure_code=ingest.failure_code,
        trace_id=start.trace_id,
        transport=start.options.transport,
        now=now,
    )
    start.journal.put_json(start.paths.transport_health_file, transport_health)
    return transport_health


def _observe_runtime(start: _PassStart, ingest: _Ingest, now: dt.datetime) -> _RuntimeObservation:
    """Step 8: heartbeat, then sequence diagnostics (success only; otherwise the previous documents)."""
    options, paths = start.options, start.paths
    if not ingest.ok:
        return _RuntimeObservation(
            heartbeat_state=_read_object(paths.heartbeat_state_file),
            sequence_state=_read_object(paths.sequence_state_file),
        )
    assert ingest.snapshot is not None
    observation = heartbeat.compute_heartbeat_observation(
        ingest.snapshot,
        loop_id=options.loop_id,
        trace_id=start.trace_id,
        transport=options.transport,
        degraded_seconds=options.thresholds.degraded_heartbeat_lag_seconds,
        critical_seconds=options.thresholds.critical_heartbeat_lag_seconds,
        now=now,
    )
    if observation.state is not None:
        start.journal.put_json(paths.heartbeat_state_file, observation.state)
    _append(start.journal, paths.heartbeat_telemetry_file, observation.row)
    diagnostics = sequence.compute_sequence_diagnostics(
        _read_object(paths.sequence_state_file),
        ingest.snapshot,
        list(ingest.events),
        loop_id=options.loop_id,
        trace_id=start.trace_id,
        transport=options.transport,
        now=now,
    )
    start.journal.put_json(paths.sequence_state_file, diagnostics.state)
    _append(start.journal, paths.sequence_telemetry_file, diagnostics.row)
    # No heartbeat artifact: health reads the previous heartbeat document, as on a failed ingest.
    heartbeat_state = observation.state
    if heartbeat_state is None:
        heartbeat_state = _read_object(paths.heartbeat_state_file)
    return _RuntimeObservation(
        heartbeat_state=heartbeat_state,
        sequence_state=diagnostics.state,
        sequence_status=diagnostics.status,
        diagnostics=diagnostics,
    )


def _write_health(
    start: _PassStart,
    ingest: _Ingest,
    projected: JsonObject | None,
    previous_state: JsonObject | None,
    observed: _RuntimeObservation,
    transport_health: JsonObject,
    now: dt.datetime,
) -> JsonObject:
    """Step 9: the health document, from this pass's documents (the projection, else the state file)."""
    options = start.options
    health_doc = health.compute_health(
        health.HealthInputs(
            state=projected if projected is not None else (previous_state or {}),
            heartbeat_state=observed.heartbeat_state,
            sequence_state=observed.sequence_state,
            transport_health=transport_health,
            last_intent=_last_intent(start.paths.intents_file),
            trace_id=start.trace_id,
            transport=options.transport,
            thresholds=options.thresholds,
            ingest_ok=ingest.ok,
            failure_code=ingest.failure_code,
        ),
        now,
    )
    start.journal.put_json(start.paths.health_file, health_doc)
    return health_doc


def _write_state(
    start: _PassStart,
    projected: JsonObject | None,
    previous_state: JsonObject | None,
    observed: _RuntimeObservation,
    health_doc: JsonObject,
) -> JsonObject | None:
    """Step 10: the success state (projection), else the previous state marked failed, else none."""
    state: JsonObject | None = None
    if projected is not None:
        state = pass_rules.build_success_state(
            projected,
            health=health_doc,
            sequence=observed.diagnostics.state if observed.diagnostics else None,
            trace_id=start.trace_id,
        )
    elif previous_state is not None:
        state = pass_rules.build_failed_state(previous_state, health=health_doc, trace_id=start.trace_id)
    if state is not None:
        start.journal.put_json(start.paths.state_file, state)
    return state


def _commit_cursor(start: _PassStart, ingest: _Ingest) -> None:
    """The cursor last (divergence: the reference wrote it at ingest): a failure before this point
    leaves it where it was, and the next pass reads the same events again. A projection failure
    still advances it, as in the reference. Renamed at once; its directory is fsynced with the
    cursor commit."""
    if ingest.cursor is not None:
        start.journal.put_json(start.paths.cursor_file, ingest.cursor)
        start.journal.commit(sync_dirs=False)


def _append_reconcile_telemetry(
    start: _PassStart,
    ingest: _Ingest,
    observed: _RuntimeObservation,
    transport_health: JsonObject,
    health_doc: JsonObject,
    completed: dt.datetime,
) -> JsonObject:
    """Step 12: one row of telemetry/reconcile.jsonl (the cursor after is the one just committed)."""
    options = start.options
    offset_after = (
        _cursor_offset_lenient(ingest.cursor)
        if ingest.cursor is not None
        else _read_cursor_offset_lenient(start.paths.cursor_file)
    )
    telemetry_row = pass_rules.build_telemetry_row(
        pass_rules.TelemetryInputs(
            loop_id=options.loop_id,
            trace_id=start.trace_id,
            transport=options.transport,
            started_at=start.started,
            completed_at=completed,
            ingest_ok=ingest.ok,
            failure_code=ingest.failure_code,
            failure_message=ingest.failure_message,
            cursor_offset_before=start.offset_before,
            cursor_offset_after=offset_after,
            events_ingested=len(ingest.events),
            max_events=options.max_events,
            from_start=options.from_start,
            retry_attempts=options.service.retry_attempts,
            retry_backoff_seconds=options.service.retry_backoff_seconds,
            threshold_profile=options.thresholds.profile,
            transport_failure_streak=pass_rules.compute_failure_streak(transport_health),
            sequence_status=observed.sequence_status,
            sequence_reason_code=observed.sequence_reason,
            health_status=str(health_doc["status"]),
            health_reason_codes=list(health_doc["reasonCodes"]),
        )
    )
    start.journal.add_rows(start.paths.reconcile_telemetry_file, [telemetry_row])
    return telemetry_row


def _output_document(ingest: _Ingest, state: JsonObject | None, health_doc: JsonObject) -> JsonObject:
    """Step 15: the state document after a successful pass, the health document otherwise."""
    if ingest.ok:
        assert state is not None
        return state
    return health_doc


def _write_pass_escalations(
    start: _PassStart,
    context: escalations.EscalationContext,
    ingest: _Ingest,
    observed: _RuntimeObservation,
    state: JsonObject | None,
    health_doc: JsonObject,
) -> list[JsonObject]:
    """Step 11: divergence (successful passes only), ordering drift, then health; returns the rows."""
    paths = start.paths
    written: list[JsonObject] = []
    success_state = state if ingest.ok else None
    if success_state is not None:
        _append(
            start.journal,
            paths.escalations_file,
            escalations.build_divergence_escalation(
                context, success_state, state_file=str(paths.state_file), cursor_file=str(paths.cursor_file)
            ),
            written,
        )
    if observed.diagnostics is not None:
        _append(
            start.journal,
            paths.escalations_file,
            escalations.build_ordering_drift_escalation(
                context,
                observed.diagnostics.state,
                state_file=str(paths.state_file),
                sequence_state_file=str(paths.sequence_state_file),
                sequence_telemetry_file=str(paths.sequence_telemetry_file),
            ),
            written,
        )
    _append(
        start.journal,
        paths.escalations_file,
        escalations.build_health_escalation(
            context,
            health_doc,
            start.previous_health,
            ingest_ok=ingest.ok,
            failure_code=ingest.failure_code,
            state_file=str(paths.state_file),
            cursor_file=str(paths.cursor_file),
            health_file=str(paths.health_file),
        ),
        written,
    )
    return written


def _run_profile_drift(
    ctx: PassContext,
    context: escalations.EscalationContext,
    state: JsonObject | None,
    written: list[JsonObject],
) -> tuple[JsonObject | None, JsonObject | None, str | None]:
    """Step 13: the drift hook, the drift/tuning merge and the drift escalation.

    Returns the (possibly merged) state, the drift document and the hook's error. A failing
    hook is logged and skipped (divergence: the reference aborted the pass).
    """
    hook = ctx.options.hooks.profile_drift
    if hook is None:
        return state, None, None
    paths = ctx.paths
    try:
        outcome = hook(ctx)
    except Exception as exc:  # a broken evaluator must not stop the pass
        error = str(exc) or type(exc).__name__
        log.warning("profile drift evaluation failed for loop %s: %s", ctx.loop_id, error)
        return state, None, error
    if outcome is None:
        return state, None, None
    if state is not None and paths.state_file.exists():
        state = pass_rules.build_drift_merged_state(
            state, drift=outcome.drift, summary=outcome.summary, trace_id=ctx.trace_id
        )
        if outcome.tuning is not None:
            state["tuning"] = outcome.tuning
        ctx.journal.put_json(paths.state_file, state)
    if not outcome.escalation_written:
        _append(
            ctx.journal,
            paths.escalations_file,
            escalations.build_profile_drift_escalation(
                context,
                outcome.drift,
                state_file=str(paths.state_file),
                drift_state_file=str(paths.drift_state_file),
                drift_history_file=str(paths.drift_history_file),
            ),
            written,
        )
    return state, outcome.drift, None


def _run_alert_dispatch(ctx: PassContext) -> tuple[object, str | None]:
    """Step 14: the dispatch hook; a failure becomes an ``alert_dispatch_failed`` row, never an error."""
    hook = ctx.options.hooks.alert_dispatch
    if not ctx.options.alerts.enabled or hook is None:
        return None, None
    try:
        return hook(ctx), None
    except Exception as exc:  # alerting never changes the pass result
        message = pass_rules.tail_lines(str(exc) or type(exc).__name__)
        row = pass_rules.build_alert_failure_row(
            loop_id=ctx.loop_id, trace_id=ctx.trace_id, message=message, now=ctx.now
        )
        files.append_jsonl(ctx.paths.alert_dispatch_telemetry_file, [row])
        return None, message


def _last_intent(path: Path) -> JsonObject | None:
    row = tail.fetch_last_jsonl_row(path)
    return row if isinstance(row, dict) else None
