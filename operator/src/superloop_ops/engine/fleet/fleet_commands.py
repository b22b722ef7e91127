"""Fleet engine: gather the fleet journal, call the pure fleet core, persist what it decided.

Files live in the reference layout under ``<repo>/.superloop/ops-manager/fleet/`` (every path
overridable). The loop-level reconcile and control steps run **in-process** through two
injectable callables (``LoopReconciler`` and ``ControlRunner``); the defaults call
``engine.loop.reconcile_pass.run_reconcile`` and ``engine.loop.control_run.execute_control``. Tests and the
operator replace them with fakes or pre-configured variants.

Write order follows the contract so that a crash leaves the journal consistent: state
documents are replaced atomically, rows are appended whole, and the handoff plan row is
appended before any control action is taken.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from superloop_ops import clock as clock_mod
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import fleet_registry, fleet_surface, policy_rules, rollup
from superloop_ops.core.handoff import handoff_plan
from superloop_ops.errors import ContractError
from superloop_ops.journal import files, tail

__all__ = [
    "POLICY_READS_FILE",
    "TRACE_ENV",
    "ControlCall",
    "ControlRunner",
    "FleetPaths",
    "HandoffOptions",
    "LoopReconcileRequest",
    "LoopReconciler",
    "build_default_control_runner",
    "build_default_reconciler",
    "build_status_surface",
    "evaluate_policy",
    "fetch_handoff_state",
    "fetch_registry",
    "generate_trace_id",
    "plan_handoff",
    "reconcile_registry",
    "run_fleet_handoff",
    "run_fleet_policy",
    "run_fleet_reconcile",
    "run_fleet_status",
    "validate_registry",
]

TRACE_ENV = "OPS_MANAGER_TRACE_ID"


def generate_trace_id() -> str:
    """A lowercase random UUID (the contract's generated trace id)."""
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class FleetPaths:
    """Every fleet artifact path; ``for_repo`` gives the reference defaults."""

    repo: Path
    registry_file: Path
    fleet_state_file: Path
    fleet_telemetry_file: Path
    policy_state_file: Path
    policy_telemetry_file: Path
    policy_history_file: Path
    governance_audit_file: Path
    handoff_state_file: Path
    handoff_telemetry_file: Path

    @classmethod
    def for_repo(cls, repo: Path, **overrides: Path | str | None) -> FleetPaths:
        root = Path(repo).absolute()
        fleet = root / ".superloop" / "ops-manager" / "fleet"
        tel = fleet / "telemetry"
        defaults = {
            "registry_file": fleet / "registry.v1.json",
            "fleet_state_file": fleet / "state.json",
            "fleet_telemetry_file": tel / "reconcile.jsonl",
            "policy_state_file": fleet / "policy-state.json",
            "policy_telemetry_file": tel / "policy.jsonl",
            "policy_history_file": tel / "policy-history.jsonl",
            "governance_audit_file": tel / "policy-governance.jsonl",
            "handoff_state_file": fleet / "handoff-state.json",
            "handoff_telemetry_file": tel / "handoff.jsonl",
        }
        chosen = {
            key: Path(value).absolute() if (value := overrides.get(key)) else default
            for key, default in defaults.items()
        }
        return cls(repo=root, **chosen)


@dataclasses.dataclass(frozen=True)
class LoopReconcileRequest:
    """One loop-level reconcile pass requested by the fan-out (the token never reaches local loops)."""

    repo: Path
    loop_id: str
    transport: str
    trace_id: str
    max_events: int | None = None
    from_start: bool = False
    service_base_url: str | None = None
    retry_attempts: int = 3
    retry_backoff_seconds: int = 1
    service_token: str | None = dataclasses.field(default=None, repr=False)


LoopReconciler = Callable[[LoopReconcileRequest], rollup.LoopRunOutcome]


@dataclasses.dataclass(frozen=True)
class ControlCall:
    """One control intent issued by handoff execution."""

    repo: Path
    loop_id: str
    intent: str
    transport: str
    trace_id: str
    idempotency_key: str
    by: str
    note: str
    timeout_seconds: int
    interval_seconds: int
    runtime_confirm: bool
    service_base_url: str | None = None
    retry_attempts: int = 3
    retry_backoff_seconds: int = 1
    service_token: str | None = dataclasses.field(default=None, repr=False)


ControlRunner = Callable[[ControlCall], handoff_plan.ControlOutcome]


@dataclasses.dataclass(frozen=True)
class HandoffOptions:
    """Flags of one handoff run."""

    trace_id: str | None = None
    idempotency_prefix: str = "fleet-handoff"
    execute: bool = False
    autonomous_execute: bool = False
    confirm: bool = False
    loops: tuple[str, ...] = ()
    intent_ids: tuple[str, ...] = ()
    by: str = "unknown"
    note: str | None = None
    timeout_seconds: int = 30
    interval_seconds: int = 2
    runtime_confirm: bool = True


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def build_default_reconciler(thresholds_file: str | None = None) -> LoopReconciler:
    """The in-process loop reconciler (``engine.loop.reconcile_pass``), thresholds resolved once per run."""
    from superloop_ops.core.loop import threshold_profiles
    from superloop_ops.engine.loop import reconcile_pass, threshold_files

    catalog = threshold_files.compute_catalog_path(thresholds_file)
    profile = threshold_files.fetch_profile(catalog, os.environ.get(threshold_files.PROFILE_ENV) or None)
    resolved = threshold_profiles.compute_thresholds(profile)

    def reconcile_one(request: LoopReconcileRequest) -> rollup.LoopRunOutcome:
        options = reconcile_pass.ReconcileOptions(
            repo=request.repo,
            loop_id=request.loop_id,
            thresholds=resolved,
            transport="sprite_service" if request.transport == "sprite_service" else "local",
            service=reconcile_pass.ServiceSettings(
                base_url=request.service_base_url,
                token=request.service_token,
                retry_attempts=_as_int(request.retry_attempts, 3),
                retry_backoff_seconds=_as_int(request.retry_backoff_seconds, 1),
            ),
            from_start=request.from_start,
            max_events=request.max_events or 0,
            trace_id=request.trace_id,
        )
        try:
            result = reconcile_pass.run_reconcile(options)
        except ContractError as exc:
            return rollup.LoopRunOutcome(exit_code=1, output=f"error: {exc}")
        return rollup.LoopRunOutcome(
            exit_code=result.exit_code, document=result.output, output=result.failure_message or ""
        )

    return reconcile_one


def build_default_control_runner() -> ControlRunner:
    """The in-process control step (``engine.loop.control_run``); its intent row is the control output."""
    from superloop_ops.engine.loop import control_run

    runtime_command = control_run.resolve_runtime_command()

    def control_one(call: ControlCall) -> handoff_plan.ControlOutcome:
        request = control_run.ControlRequest(
            repo=call.repo,
            loop_id=call.loop_id,
            intent=call.intent,  # type: ignore[arg-type]  # validated by execute_control
            transport=call.transport,
            by=call.by,
            note=call.note,
            idempotency_key=call.idempotency_key,
            trace_id=call.trace_id,
            do_confirm=call.runtime_confirm,
            timeout_seconds=call.timeout_seconds,
            interval_seconds=call.interval_seconds,
            retry_attempts=_as_int(call.retry_attempts, 3),
            retry_backoff_seconds=_as_int(call.retry_backoff_seconds, 1),
            runtime_command=runtime_command,
            service_base_url=call.service_base_url or "",
            service_token=call.service_token or "",
        )
        try:
            outcome = control_run.execute_control(request)
        except ContractError as exc:
            return handoff_plan.ControlOutcome(exit_code=1, document={"error": str(exc)})
        return handoff_plan.ControlOutcome(exit_code=outcome.exit_code, document=outcome.intent_row)

    return control_one


# ---------------------------------------------------------------------------------------------
# gathering


def _read_required_json(path: Path, missing: str, invalid: str) -> Any:
    if not path.is_file():
        raise ContractError(f"{missing}: {path}")
    value = files.read_json(path)
    if value is None:
        raise ContractError(f"{invalid}: {path}")
    return value


def _read_optional_json(path: Path, invalid: str) -> tuple[bool, Any]:
    if not path.is_file():
        return False, None
    value = files.read_json(path)
    if value is None:
        raise ContractError(f"{invalid}: {path}")
    return True, value


def _read_jsonl(path: Path, invalid: str) -> list[Any]:
    try:
        return files.read_jsonl(path, strict_middle=True)
    except files.CorruptJournalError as exc:
        raise ContractError(f"{invalid}: {path}") from exc


_LAST_ROW_LINES = 4  # a few, so blank lines at the end are skipped as before


def _read_last_row(path: Path) -> Mapping[str, Any] | None:
    """The last non-blank line only, when it is a JSON object (status never fails on telemetry).

    Read from the end (``journal.tail``): the log grows by a row every pass, and only its latest
    row matters; an old part that does not decode is never read.
    """
    try:
        lines = [line for line in tail.fetch_last_lines(path, _LAST_ROW_LINES) if line.strip()]
    except OSError:
        return None
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def fetch_registry(
    path: Path, now: dt.datetime, *, enforce_review_deadline: bool = True, loop_id: str | None = None
) -> JsonObject:
    """Read, validate (fail closed, every message) and normalise the registry file."""
    if not path.is_file():
        raise ContractError(f"fleet registry file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"invalid fleet registry JSON: {path}") from exc
    return validate_registry(raw, path, now, enforce_review_deadline=enforce_review_deadline, loop_id=loop_id)


def validate_registry(
    raw: Any,
    path: Path,
    now: dt.datetime,
    *,
    enforce_review_deadline: bool = True,
    loop_id: str | None = None,
) -> JsonObject:
    """Validate (fail closed, every message) and normalise a registry document kept at ``path``.

    With ``enforce_review_deadline=False`` an expired guarded_auto review is not an error: the
    fleet keeps working, and the policy/handoff layers block autonomy instead.
    """
    errors = fleet_registry.compute_registry_errors(raw, now)
    if not enforce_review_deadline:
        errors = [
            error
            for error in errors
            if not error.endswith("must be in the future when policy.mode is guarded_auto")
        ]
    if errors:
        raise ContractError(
            "\n".join([f"invalid fleet registry: {path}", *(f" - {error}" for error in errors)])
        )
    registry = fleet_registry.build_normalized_registry(raw, str(path))
    if loop_id is not None:
        try:
            return fleet_registry.select_registry_loop(registry, loop_id)
        except fleet_registry.LoopNotFoundError as exc:
            raise ContractError(str(exc)) from exc
    return registry


def fetch_handoff_state(paths: FleetPaths) -> Mapping[str, Any] | None:
    """The journal's last handoff state (the plan's prior), None when there is none yet."""
    _, prior = _read_optional_json(paths.handoff_state_file, "invalid existing handoff state JSON")
    return prior if isinstance(prior, Mapping) else None


def _resolve_trace(*candidates: Any) -> str:
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
    return generate_trace_id()


# ---------------------------------------------------------------------------------------------
# commands


def run_fleet_reconcile(
    paths: FleetPaths,
    *,
    settings: rollup.FanOutSettings,
    trace_id: str | None = None,
    reconciler: LoopReconciler | None = None,
    clock: clock_mod.Clock | None = None,
    env: Mapping[str, str] | None = None,
) -> JsonObject:
    """Reconcile every loop of the registry (bounded parallelism, results in start order)."""
    if settings.max_parallel < 1:
        raise ContractError("--max-parallel must be an integer >= 1")
    clk = clock or clock_mod.SystemClock()
    environ = os.environ if env is None else env
    fleet_trace = _resolve_trace(trace_id, environ.get(TRACE_ENV))
    for path in (paths.fleet_state_file, paths.fleet_telemetry_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    registry = fetch_registry(paths.registry_file, clk.now(), enforce_review_deadline=False)
    return reconcile_registry(
        paths,
        registry,
        settings=settings,
        trace_id=fleet_trace,
        reconciler=reconciler,
        clock=clk,
        env=environ,
    )


def reconcile_registry(
    paths: FleetPaths,
    registry: Mapping[str, Any],
    *,
    settings: rollup.FanOutSettings,
    trace_id: str | None,
    reconciler: LoopReconciler | None,
    clock: clock_mod.Clock,
    env: Mapping[str, str],
    in_memory: bool = False,
) -> JsonObject:
    """``run_fleet_reconcile`` over a registry already validated: fan out, then write state and telemetry.

    ``in_memory``: the reconciler only reads results already at hand (the operator's Loop
    statuses), so the loops are read in order on this thread; no pool (issue 12: a pool's
    hand-offs cost more than 5,000 such reads)."""
    clk, environ = clock, env
    fleet_trace = _resolve_trace(trace_id, environ.get(TRACE_ENV))
    for path in (paths.fleet_state_file, paths.fleet_telemetry_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    run = reconciler or build_default_reconciler()
    repo = str(paths.repo)
    started_at = clk.now()

    def one(loop: JsonObject) -> JsonObject:
        loop_id = str(loop["loopId"])
        loop_trace = rollup.compute_loop_trace_id(fleet_trace, loop_id)
        begun = clk.now()
        reason = rollup.compute_preflight_reason(loop, environ)
        outcome: rollup.LoopRunOutcome | None = None
        if reason is None:
            service = loop.get("service") or {}
            sprite = loop.get("transport") == "sprite_service"
            token_env = service.get("tokenEnv")
            request = LoopReconcileRequest(
                repo=paths.repo,
                loop_id=loop_id,
                transport=str(loop.get("transport")),
                trace_id=loop_trace,
                max_events=settings.max_events,
                from_start=settings.from_start,
                service_base_url=service.get("baseUrl") if sprite else None,
                retry_attempts=service.get("retryAttempts", 3),
                retry_backoff_seconds=service.get("retryBackoffSeconds", 1),
                service_token=environ.get(token_env) if (sprite and token_env) else None,
            )
            try:
                outcome = run(request)
            except Exception as exc:  # one loop's crash must not abort the fleet pass
                outcome = rollup.LoopRunOutcome(exit_code=1, output=f"{type(exc).__name__}: {exc}")
        return rollup.build_loop_result(
            loop,
            repo=repo,
            trace_id=loop_trace,
            started_at=begun,
            ended_at=clk.now(),
            preflight_reason=reason,
            outcome=outcome,
        )

    ordered = rollup.compute_loop_order(registry["loops"], settings.deterministic_order)
    if in_memory:
        results = [one(loop) for loop in ordered]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_parallel) as pool:
            futures = [pool.submit(one, loop) for loop in ordered]
            results = [future.result() for future in futures]
    state = rollup.build_fleet_state(
        fleet_id=str(registry["fleetId"]),
        trace_id=fleet_trace,
        started_at=started_at,
        updated_at=clk.now(),
        results=results,
        settings=settings,
    )
    files.write_json_atomic(paths.fleet_state_file, state)
    files.append_jsonl(paths.fleet_telemetry_file, [rollup.build_fleet_telemetry_row(state)])
    return state


def run_fleet_policy(
    paths: FleetPaths,
    *,
    trace_id: str | None = None,
    dedupe_window_seconds: int | None = None,
    clock: clock_mod.Clock | None = None,
    env: Mapping[str, str] | None = None,
) -> JsonObject:
    """Evaluate policy over the last fleet reconcile and persist state, audit, history and telemetry."""
    clk = clock or clock_mod.SystemClock()
    environ = os.environ if env is None else env
    now = clk.now()
    if not paths.fleet_state_file.is_file():
        raise ContractError(f"fleet state file not found: {paths.fleet_state_file}")
    registry = fetch_registry(paths.registry_file, now, enforce_review_deadline=False)
    fleet_state = _read_required_json(
        paths.fleet_state_file, "fleet state file not found", "invalid fleet state JSON"
    )
    if not isinstance(fleet_state, Mapping):
        raise ContractError(f"invalid fleet state JSON: {paths.fleet_state_file}")
    return evaluate_policy(
        paths, registry, fleet_state, trace_id=trace_id, dedupe_window_seconds=dedupe_window_seconds,
        now=now, env=environ,
    )  # fmt: skip


def evaluate_policy(
    paths: FleetPaths,
    registry: Mapping[str, Any],
    fleet_state: Mapping[str, Any],
    *,
    trace_id: str | None,
    dedupe_window_seconds: int | None,
    now: dt.datetime,
    env: Mapping[str, str],
) -> JsonObject:
    """``run_fleet_policy`` over a validated registry and the fleet state of this pass."""
    trace = _resolve_trace(trace_id, fleet_state.get("traceId"), env.get(TRACE_ENV))
    window = dedupe_window_seconds
    if window is None:
        window = int(registry["policy"]["noiseControls"]["dedupeWindowSeconds"])
    for path in (
        paths.policy_state_file,
        paths.governance_audit_file,
        paths.policy_telemetry_file,
        paths.policy_history_file,
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
    had_previous, previous = _read_optional_json(
        paths.policy_state_file, "invalid existing policy state JSON"
    )
    needs = policy_rules.compute_history_needs(
        registry=registry, fleet_state=fleet_state,
        previous_state=previous if isinstance(previous, Mapping) else None,
        dedupe_window_seconds=window, trace_id=trace, now=now,
    )  # fmt: skip
    try:
        history = tail.fetch_rows_after(paths.policy_history_file, needs.is_older)
    except ValueError as exc:
        raise ContractError(f"invalid policy history JSONL: {paths.policy_history_file}") from exc
    lookback = policy_rules.compute_execution_lookback(registry)
    evaluation = policy_rules.build_policy_evaluation(
        registry=registry,
        fleet_state=fleet_state,
        history=history,
        carried_hidden=needs.carried_hidden,
        handoff_telemetry=_read_execution_window(paths, lookback),
        previous_state=previous if isinstance(previous, Mapping) else None,
        had_previous_state=had_previous,
        dedupe_window_seconds=window,
        trace_id=trace,
        paths=policy_rules.PolicyPaths(
            registry_file=str(paths.registry_file),
            fleet_state_file=str(paths.fleet_state_file),
            policy_state_file=str(paths.policy_state_file),
            policy_history_file=str(paths.policy_history_file),
            handoff_telemetry_file=str(paths.handoff_telemetry_file),
            governance_audit_file=str(paths.governance_audit_file),
        ),
        now=now,
    )
    files.write_json_atomic(paths.policy_state_file, evaluation.state)
    if evaluation.governance_event is not None:
        files.append_jsonl(paths.governance_audit_file, [evaluation.governance_event])
    paths.policy_history_file.touch(exist_ok=True)
    files.append_jsonl(paths.policy_history_file, evaluation.history_rows)
    files.append_jsonl(paths.policy_telemetry_file, [evaluation.telemetry_row])
    return evaluation.state


POLICY_READS_FILE = "policy-reads.json"
"""Where the policy stage's last read of the handoff telemetry ended, and the autonomous executions
it keeps for auto-pause (next to the policy state; issue 12)."""


def _read_execution_window(paths: FleetPaths, lookback: int) -> list[JsonObject]:
    """The latest ``lookback`` autonomous executions, reading only the handoff telemetry appended
    since the last evaluation (all of it when the log was replaced or the lookback grew)."""
    cursor_file = paths.policy_state_file.parent / POLICY_READS_FILE
    stored = files.read_json(cursor_file)
    cursor = stored.get("handoffTelemetry") if isinstance(stored, Mapping) else None
    try:
        inode: int | None = paths.handoff_telemetry_file.stat().st_ino
    except OSError:
        inode = None
    resume = isinstance(cursor, Mapping) and (
        cursor.get("inode") == inode
        and isinstance(cursor.get("keep"), int) and cursor["keep"] >= lookback
        and isinstance(cursor.get("offset"), int) and isinstance(cursor.get("executions"), list)
    )  # fmt: skip
    offset = int(cursor["offset"]) if resume and isinstance(cursor, Mapping) else 0
    try:
        rows, end = tail.fetch_rows_from(paths.handoff_telemetry_file, offset)
    except ValueError as exc:
        raise ContractError(f"invalid handoff telemetry JSONL: {paths.handoff_telemetry_file}") from exc
    kept = cursor["executions"] if resume and isinstance(cursor, Mapping) else []
    window = policy_rules.extend_execution_window(kept, rows, lookback)
    if not resume or end != offset:
        record = {"inode": inode, "offset": end, "keep": lookback, "executions": window}
        files.write_json_atomic(cursor_file, {"schemaVersion": "v1", "handoffTelemetry": record})
    return window


def run_fleet_status(paths: FleetPaths, *, clock: clock_mod.Clock | None = None) -> JsonObject:
    """The read-only fleet status surface; writes nothing."""
    clk = clock or clock_mod.SystemClock()
    now = clk.now()
    if not paths.fleet_state_file.is_file():
        raise ContractError(f"fleet state file not found: {paths.fleet_state_file}")
    registry = fetch_registry(paths.registry_file, now, enforce_review_deadline=False)
    fleet_state = _read_required_json(
        paths.fleet_state_file, "fleet state file not found", "invalid fleet state JSON"
    )
    if not isinstance(fleet_state, Mapping):
        raise ContractError(f"invalid fleet state JSON: {paths.fleet_state_file}")
    return build_status_surface(paths, registry, fleet_state, now=now)


def build_status_surface(
    paths: FleetPaths,
    registry: Mapping[str, Any],
    fleet_state: Mapping[str, Any],
    *,
    now: dt.datetime,
    policy_state: Mapping[str, Any] | None = None,
    handoff_state: Mapping[str, Any] | None = None,
    latest_fleet_telemetry: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The status surface over a validated registry; the policy and handoff states not given
    (their stage did not run in this pass) are the journal's, and so is the latest fleet
    telemetry row unless the caller has the one it just appended (megabytes at 5,000 loops)."""
    policy: Any = policy_state
    if policy is None:
        _, policy = _read_optional_json(paths.policy_state_file, "invalid policy state JSON")
    if handoff_state is None:
        _, handoff_state = _read_optional_json(paths.handoff_state_file, "invalid handoff state JSON")
    inputs = fleet_surface.StatusInputs(
        repo_path=str(paths.repo),
        registry=registry,
        fleet_state=fleet_state,
        policy_state=policy if isinstance(policy, Mapping) else None,
        handoff_state=handoff_state if isinstance(handoff_state, Mapping) else None,
        latest_fleet_telemetry=latest_fleet_telemetry or _read_last_row(paths.fleet_telemetry_file),
        latest_handoff_telemetry=_read_last_row(paths.handoff_telemetry_file),
        files={
            "registryFile": str(paths.registry_file),
            "fleetStateFile": str(paths.fleet_state_file),
            "policyStateFile": str(paths.policy_state_file),
            "fleetTelemetryFile": str(paths.fleet_telemetry_file),
            "handoffStateFile": str(paths.handoff_state_file),
            "handoffTelemetryFile": str(paths.handoff_telemetry_file),
        },
    )
    return fleet_surface.build_fleet_status(inputs, now)


def _validate_handoff_options(options: HandoffOptions) -> None:
    if not options.idempotency_prefix:
        raise ContractError("--idempotency-prefix must be non-empty")
    if options.timeout_seconds < 0 or options.interval_seconds < 0:
        raise ContractError("timeout and interval must be non-negative integers")
    if options.execute and options.autonomous_execute:
        raise ContractError("--execute and --autonomous-execute are mutually exclusive")
    if options.confirm and not options.execute:
        raise ContractError("--confirm can only be used with --execute")
    if options.execute and not options.confirm:
        raise ContractError("--execute requires --confirm to enforce explicit operator confirmation")
    if any(not loop for loop in options.loops):
        raise ContractError("--loop requires a non-empty value")
    if any(not intent_id for intent_id in options.intent_ids):
        raise ContractError("--intent-id requires a non-empty value")


def _control_call(
    intent: Mapping[str, Any],
    paths: FleetPaths,
    options: HandoffOptions,
    *,
    mode: str,
    trace_id: str,
    key: str,
    environ: Mapping[str, str],
) -> ControlCall:
    note = f"fleet_handoff:{mode}:{intent['intentId']}"
    if options.note:
        note = f"{options.note} | {note}"
    service = intent.get("service") or {}
    sprite = intent.get("transport") == "sprite_service"
    token_env = service.get("tokenEnv")
    token = environ.get(token_env) if (sprite and token_env) else None
    return ControlCall(
        repo=paths.repo,
        loop_id=str(intent["loopId"]),
        intent=str(intent["intent"]),
        transport=str(intent.get("transport") or "local"),
        trace_id=trace_id,
        idempotency_key=key,
        by=options.by,
        note=note,
        timeout_seconds=options.timeout_seconds,
        interval_seconds=options.interval_seconds,
        runtime_confirm=options.runtime_confirm,
        service_base_url=service.get("baseUrl") if sprite else None,
        retry_attempts=service.get("retryAttempts", 3),
        retry_backoff_seconds=service.get("retryBackoffSeconds", 1),
        service_token=token or None,
    )


def run_fleet_handoff(
    paths: FleetPaths,
    options: HandoffOptions,
    *,
    control: ControlRunner | None = None,
    clock: clock_mod.Clock | None = None,
    env: Mapping[str, str] | None = None,
) -> JsonObject:
    """Plan intents from the policy state; optionally execute them (confirmed manual, or autonomous)."""
    _validate_handoff_options(options)
    clk = clock or clock_mod.SystemClock()
    environ = os.environ if env is None else env
    now = clk.now()
    if not paths.policy_state_file.is_file():
        raise ContractError(f"policy state file not found: {paths.policy_state_file}")
    for path in (paths.handoff_state_file, paths.handoff_telemetry_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    registry = fetch_registry(paths.registry_file, now, enforce_review_deadline=False)
    policy = _read_required_json(
        paths.policy_state_file, "policy state file not found", "invalid policy state JSON"
    )
    if not isinstance(policy, Mapping):
        raise ContractError(f"invalid policy state JSON: {paths.policy_state_file}")
    _, prior = _read_optional_json(paths.handoff_state_file, "invalid existing handoff state JSON")
    return plan_handoff(
        paths, registry, policy, prior if isinstance(prior, Mapping) else None, options,
        control=control, clock=clk, env=environ,
    )  # fmt: skip


def plan_handoff(
    paths: FleetPaths,
    registry: Mapping[str, Any],
    policy: Mapping[str, Any],
    prior: Mapping[str, Any] | None,
    options: HandoffOptions,
    *,
    control: ControlRunner | None,
    clock: clock_mod.Clock,
    env: Mapping[str, str],
) -> JsonObject:
    """``run_fleet_handoff`` over a validated registry, the policy state and the prior handoff state
    (``options`` already validated)."""
    clk, environ = clock, env
    now = clk.now()
    for path in (paths.handoff_state_file, paths.handoff_telemetry_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    mode = policy.get("mode") or "advisory"
    if mode not in ("advisory", policy_rules.SHADOW, policy_rules.GUARDED_AUTO):
        raise ContractError(f"unsupported policy mode: {mode}")
    if options.autonomous_execute and mode != policy_rules.GUARDED_AUTO:
        raise ContractError("--autonomous-execute requires policy mode guarded_auto")
    trace = _resolve_trace(options.trace_id, policy.get("traceId"), environ.get(TRACE_ENV))
    registry_policy = registry["policy"]
    plan = handoff_plan.build_handoff_plan(
        policy_state=policy,
        registry=registry,
        prior_state=prior,
        trace_id=trace,
        prefix=options.idempotency_prefix,
        registry_file=str(paths.registry_file),
        policy_state_file=str(paths.policy_state_file),
        governance_expired=policy_rules.compute_governance_expired(
            registry_policy["autonomous"]["governance"], registry_policy["mode"], now
        ),
        now=now,
    )
    files.append_jsonl(paths.handoff_telemetry_file, [handoff_plan.build_plan_telemetry_row(plan)])
    state = plan
    if options.execute or options.autonomous_execute:
        exec_mode = "autonomous" if options.autonomous_execute else "manual"
        try:
            targets = handoff_plan.select_execution_targets(
                plan, mode=exec_mode, loops=options.loops, intent_ids=options.intent_ids
            )
        except handoff_plan.UnmatchedFilterError as exc:
            raise ContractError(str(exc)) from exc
        request = handoff_plan.ExecutionRequest(
            mode=exec_mode, requested_by=options.by, requested_at=clk.now(), note=options.note
        )
        run_control = control or build_default_control_runner()
        guards = plan.get("retryGuards") or {}
        results = [
            _execute_one(intent, paths, options, request, trace, run_control, clk, environ, guards)
            for intent in targets
        ]
        state = handoff_plan.build_executed_state(
            plan, results, request=request, requested_count=len(targets), completed_at=clk.now()
        )
        files.append_jsonl(paths.handoff_telemetry_file, [handoff_plan.build_execute_telemetry_row(state)])
    files.write_json_atomic(paths.handoff_state_file, state)
    return state


def _execute_one(
    intent: Mapping[str, Any],
    paths: FleetPaths,
    options: HandoffOptions,
    request: handoff_plan.ExecutionRequest,
    trace: str,
    run_control: ControlRunner,
    clk: clock_mod.Clock,
    environ: Mapping[str, str],
    guards: Mapping[str, Any],
) -> JsonObject:
    attempt = handoff_plan.compute_attempt(guards.get(intent["intentId"]))
    key = handoff_plan.compute_attempt_key(
        intent.get("idempotencyKey") or f"{options.idempotency_prefix}-{intent['loopId']}-{intent['intent']}",
        attempt,
    )
    precheck = handoff_plan.compute_precheck_failure(intent, request.mode)
    outcome: handoff_plan.ControlOutcome | None = None
    if precheck is None:
        call = _control_call(
            intent, paths, options, mode=request.mode, trace_id=trace, key=key, environ=environ
        )
        try:
            outcome = run_control(call)
        except Exception as exc:  # a crashed control step is a failed execution, never a silent one
            outcome = handoff_plan.ControlOutcome(
                exit_code=1, document={"error": f"{type(exc).__name__}: {exc}"}
            )
    return handoff_plan.build_execution_result(
        intent,
        request=request,
        trace_id=trace,
        idempotency_key=key,
        executed_at=clk.now(),
        outcome=outcome,
        precheck_reason=precheck,
        attempt=attempt,
    )
