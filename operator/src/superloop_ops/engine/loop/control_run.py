"""Run one control intent end to end: execute, confirm from fresh evidence, journal.

Two paths (§8):

* ``local``: approve/reject write the runtime's approval decision in-process, exactly as the
  runtime's own ``approve`` command does (approval.json, decisions.jsonl/decisions.md, an
  ``approval_decision`` event); cancel runs the configured runtime command
  (``SUPERLOOP_RUNTIME_COMMAND`` argv, or ``SUPERLOOP_BIN``). Success is then confirmed by
  polling snapshots (§8.3) with an injected clock and sleep.
* ``sprite_service``: POST ``/ops/control`` through :class:`ServiceClient`; the service is the
  idempotency authority, so re-sending the same key is safe and never re-executes.

Idempotency on the local path survives restarts: the key is claimed in
``<ops>/control-claims.jsonl`` *before* the side effect, and the result lands in
``intents.jsonl``. A key with a recorded result is replayed (no side effect); a key that was
claimed but never finished (the process died mid-action) is never executed again: it is resolved
from fresh runtime evidence, ``confirmed`` if the evidence shows the effect, else ``ambiguous``.
The lookup, the claim and the result row run under an exclusive ``flock`` on the loop's journal
(``<ops>/.control.lock``), so two processes with one key cannot both execute. An approval
decision checks "still pending?" and writes under a lock on the loop's runtime directory, so of
an approve and a reject racing, exactly one is recorded; the other fails as not pending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact, format_ts, prune_nulls
from superloop_ops.core.loop import control_rules
from superloop_ops.errors import ContractError
from superloop_ops.journal import crash_points, files, layout, locks
from superloop_ops.transports import local as local_transport
from superloop_ops.transports.service import ServiceClient, ServiceError

__all__ = [
    "ControlOutcome",
    "ControlRequest",
    "SnapshotFn",
    "apply_approval_decision",
    "execute_control",
    "plan_approval_decision",
    "poll_confirmation",
    "resolve_runtime_command",
    "write_approval_decision",
]

DEFAULT_RUNTIME_COMMAND: Final = ("superloop.sh",)
COMMAND_TIMEOUT_SECONDS: Final = 300.0
CLAIMS_FILE: Final = "control-claims.jsonl"
CONTROL_LOCK_FILE: Final = ".control.lock"
_DECISION_FILES: Final = ("approval.json", "decisions.jsonl", "decisions.md", "events.jsonl")

_system_clock = SystemClock()


class SnapshotFn(Protocol):
    def __call__(self, repo: Path, loop_id: str, *, trace_id: str | None, now: dt.datetime) -> JsonObject: ...


def _default_fetch_snapshot(
    repo: Path, loop_id: str, *, trace_id: str | None, now: dt.datetime
) -> JsonObject:
    from superloop_ops.transports import local as local_transport

    return local_transport.fetch_snapshot(repo, loop_id, trace_id=trace_id, now=now)


def resolve_runtime_command(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Runtime CLI prefix: ``SUPERLOOP_RUNTIME_COMMAND`` (shell words), else ``SUPERLOOP_BIN`` (a path)."""
    env = os.environ if env is None else env
    command = env.get("SUPERLOOP_RUNTIME_COMMAND", "").strip()
    if command:
        return tuple(shlex.split(command))
    binary = env.get("SUPERLOOP_BIN", "").strip()
    if binary:
        return (binary,)
    return DEFAULT_RUNTIME_COMMAND


@dataclasses.dataclass(frozen=True)
class ControlRequest:
    """One control intent as the CLI, the service or the operator asks for it."""

    repo: Path
    loop_id: str
    intent: control_rules.Intent
    transport: str = "local"
    by: str = "unknown"
    note: str = ""
    idempotency_key: str = ""
    trace_id: str = ""
    do_confirm: bool = True
    timeout_seconds: int = 30
    interval_seconds: int = 2
    retry_attempts: int = 3
    retry_backoff_seconds: int = 1
    runtime_command: tuple[str, ...] = DEFAULT_RUNTIME_COMMAND
    service_base_url: str = ""
    service_token: str = dataclasses.field(default="", repr=False)
    forward_confirmation_window: bool = True
    ops_dir: Path | None = None
    """Where the journal rows (and local claims) go; None is the reference layout under ``repo``.

    The operator sets its own state tree here, so the loop's repository (a PVC it only reads
    runtime evidence from) never receives manager rows.
    """


@dataclasses.dataclass(frozen=True)
class ControlOutcome:
    """What happened; ``intent_row`` is the CLI's stdout and the service's ``result``."""

    record: control_rules.ControlRecord
    intent_row: JsonObject
    error_message: str = ""

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def exit_code(self) -> int:
        return self.record.exit_status

    @property
    def replayed(self) -> bool:
        return self.record.replayed


@dataclasses.dataclass
class _Draft:
    """Mutable working copy of the record while the intent runs."""

    status: str = "failed_command"
    execution_status: str = "not_started"
    exit_code: int = 0
    command: str = ""
    command_output: str = ""
    replayed: bool = False
    confirmation_status: str = "not_attempted"
    confirmation_attempted: bool = False
    confirm: Any = None
    confirm_exit_code: int = 0
    confirmed: bool = False
    error_message: str = ""


def execute_control(
    request: ControlRequest,
    *,
    now_fn: Callable[[], dt.datetime] = _system_clock.now,
    sleep: Callable[[float], None] = time.sleep,
    service_client: ServiceClient | None = None,
    fetch_snapshot: SnapshotFn | None = None,
) -> ControlOutcome:
    """Run one intent and append its three journal rows; never raises for runtime failures."""
    control_rules.validate_intent(request.intent)
    if not control_rules.is_safe_loop_id(request.loop_id):
        raise ContractError(f"invalid loop id: {request.loop_id!r}")
    if request.transport not in control_rules.TRANSPORTS:
        raise ContractError("--transport must be local or sprite_service")
    if request.transport == "sprite_service" and not request.service_base_url and service_client is None:
        raise ContractError("--service-base-url is required when --transport sprite_service")
    if request.timeout_seconds < 0 or request.interval_seconds < 0:
        raise ContractError("timeout and interval must be non-negative integers")
    if request.retry_attempts < 1:
        raise ContractError("--retry-attempts must be an integer >= 1")
    if request.retry_backoff_seconds < 0:
        raise ContractError("--retry-backoff-seconds must be a non-negative integer")
    key = request.idempotency_key or control_rules.build_default_idempotency_key(
        request.intent, int(now_fn().timestamp()), os.getpid(), secrets.token_hex(4)
    )
    request = dataclasses.replace(request, idempotency_key=key)
    snapshot_fn = fetch_snapshot or _default_fetch_snapshot
    ops_dir = request.ops_dir
    if ops_dir is None:
        ops_dir = layout.loop_ops_dir(request.repo, request.loop_id)
    started_at = now_fn()
    if request.transport == "sprite_service":
        # The service is the idempotency authority: re-sending a key is answered as a replay.
        draft = _run_sprite(request, service_client, sleep)
        return _finish(request, ops_dir, started_at, now_fn(), draft)
    # Local: the lookup, the claim and the result row must not interleave, in or across processes.
    with locks.file_lock(ops_dir / CONTROL_LOCK_FILE):
        draft = _run_local(request, ops_dir, started_at, now_fn, sleep, snapshot_fn)
        return _finish(request, ops_dir, started_at, now_fn(), draft)


def _finish(
    request: ControlRequest, ops_dir: Path, started_at: dt.datetime, completed_at: dt.datetime, draft: _Draft
) -> ControlOutcome:
    record = control_rules.ControlRecord(
        loop_id=request.loop_id,
        intent=request.intent,
        transport=request.transport,
        trace_id=request.trace_id,
        requested_by=request.by,
        note=request.note,
        idempotency_key=request.idempotency_key,
        started_at=started_at,
        completed_at=completed_at,
        status=draft.status,
        execution_status=draft.execution_status,
        exit_code=draft.exit_code,
        command=draft.command,
        command_output=draft.command_output,
        replayed=draft.replayed,
        confirmation_status=draft.confirmation_status,
        confirmation_attempted=draft.confirmation_attempted,
        confirm=draft.confirm,
        confirm_exit_code=draft.confirm_exit_code,
        confirmed=draft.confirmed,
        do_confirm=request.do_confirm,
        timeout_seconds=request.timeout_seconds,
        interval_seconds=request.interval_seconds,
        retry_attempts=request.retry_attempts,
        retry_backoff_seconds=request.retry_backoff_seconds,
    )
    intent_row = control_rules.build_intent_row(record)
    # The intents row is the result a retry replays: written last, so no audit row is ever missing
    # behind it (a crash before it is resolved by the next run with the same key).
    crash_points.reach("control.invocation_row")
    files.append_jsonl(
        ops_dir / "telemetry" / "control-invocations.jsonl", [control_rules.build_invocation_row(record)]
    )
    crash_points.reach("control.control_row")
    files.append_jsonl(ops_dir / "telemetry" / "control.jsonl", [control_rules.build_control_row(record)])
    crash_points.reach("control.intent_row")
    files.append_jsonl(ops_dir / "intents.jsonl", [intent_row])
    return ControlOutcome(record=record, intent_row=intent_row, error_message=draft.error_message)


# --- local path ------------------------------------------------------------------------------


def _find_recorded(ops_dir: Path, key: str, transport: str) -> JsonObject | None:
    for row in reversed(files.read_jsonl(ops_dir / "intents.jsonl")):
        if isinstance(row, dict) and row.get("idempotencyKey") == key and row.get("transport") == transport:
            return row
    return None


def _find_claim(ops_dir: Path, key: str) -> JsonObject | None:
    """The claim row of ``key`` (an approval's plan row, written after it, is not the claim)."""
    for row in reversed(files.read_jsonl(ops_dir / CLAIMS_FILE)):
        if isinstance(row, dict) and row.get("idempotencyKey") == key and "approvalPlan" not in row:
            return row
    return None


def _replay_from_row(row: Mapping[str, Any]) -> _Draft:
    status = str(row.get("status") or "failed_command")
    exit_code = row.get("exitCode")
    confirm_exit = row.get("confirmExitCode")
    confirm = row.get("confirm")
    execution = "failed_command" if status == "failed_command" else "succeeded"
    confirmation = {
        "confirmed": "confirmed",
        "ambiguous": "ambiguous",
        "executed_unconfirmed": "skipped",
    }.get(status, "attempted_unknown" if confirm is not None else "not_attempted")
    return _Draft(
        status=status,
        execution_status=execution,
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else 0,
        command=str(row.get("command") or ""),
        command_output=str(row.get("commandOutput") or ""),
        replayed=True,
        confirmation_status=confirmation,
        confirmation_attempted=confirm is not None,
        confirm=confirm,
        confirm_exit_code=confirm_exit
        if isinstance(confirm_exit, int) and not isinstance(confirm_exit, bool)
        else 0,
        confirmed=row.get("confirmed") is True,
    )


def _run_local(
    request: ControlRequest,
    ops_dir: Path,
    started_at: dt.datetime,
    now_fn: Callable[[], dt.datetime],
    sleep: Callable[[float], None],
    snapshot_fn: SnapshotFn,
) -> _Draft:
    key = request.idempotency_key
    fingerprint = control_rules.build_request_fingerprint(
        loop_id=request.loop_id, intent=request.intent, by=request.by, note=request.note
    )
    recorded = _find_recorded(ops_dir, key, "local")
    claim = _find_claim(ops_dir, key)
    used_for = (recorded or claim or {}).get("intent")
    if used_for is not None and used_for != request.intent:
        # A reused key for another intent is a caller bug; replaying the wrong outcome would hide it.
        raise ContractError(f"idempotency key {key!r} was already used for intent {used_for!r}")
    conflict = control_rules.compute_key_conflict(key, claim, fingerprint)
    if conflict:
        raise ContractError(conflict)
    if recorded is not None:
        return _replay_from_row(recorded)
    if claim is not None and not _never_started_approval(request, ops_dir):
        return _resolve_interrupted(request, ops_dir, now_fn, sleep, snapshot_fn)
    crash_points.reach("control.claim")
    files.append_jsonl(
        ops_dir / CLAIMS_FILE,
        [
            prune_nulls(
                {
                    "timestamp": format_ts(started_at),
                    "idempotencyKey": key,
                    "loopId": request.loop_id,
                    "intent": request.intent,
                    "traceId": request.trace_id or None,
                    "pid": os.getpid(),
                    control_rules.FINGERPRINT_FIELD: fingerprint,
                }
            )
        ],
    )
    draft = _Draft()
    if request.intent == "cancel":
        argv = control_rules.build_runtime_argv(
            request.runtime_command,
            request.intent,
            repo=str(request.repo),
            loop_id=request.loop_id,
            by=request.by,
            note=request.note,
        )
        draft.command = control_rules.format_command(argv)
        code, output = _run_command(argv)
    else:
        draft.command = _approval_command_display(request)
        code, output = _run_approval(request, ops_dir, now_fn())
    draft.command_output = control_rules.tail_lines(output)
    if code != 0:
        draft.status = "failed_command"
        draft.execution_status = "failed_command"
        draft.exit_code = code
        return draft
    draft.execution_status = "succeeded"
    if not request.do_confirm:
        draft.status = "executed_unconfirmed"
        draft.confirmation_status = "skipped"
        return draft
    draft.confirmation_attempted = True
    result = poll_confirmation(
        request.repo,
        request.loop_id,
        request.intent,
        timeout_seconds=request.timeout_seconds,
        interval_seconds=request.interval_seconds,
        now_fn=now_fn,
        sleep=sleep,
        fetch_snapshot=snapshot_fn,
    )
    draft.confirm = result.document
    return _judge_confirmation(draft, result)


def _judge_confirmation(draft: _Draft, result: control_rules.ConfirmationResult) -> _Draft:
    """Fresh evidence decides: ``confirmed``, else ``ambiguous`` with the poll's exit code."""
    if result.confirmed:
        draft.status = draft.confirmation_status = "confirmed"
        draft.confirmed = True
    else:
        draft.status = draft.confirmation_status = "ambiguous"
        draft.confirm_exit_code = result.exit_code
    return draft


def _find_approval_plan(ops_dir: Path, key: str) -> JsonObject | None:
    for row in reversed(files.read_jsonl(ops_dir / CLAIMS_FILE)):
        plan = row.get("approvalPlan") if isinstance(row, dict) else None
        if isinstance(plan, dict) and row.get("idempotencyKey") == key:
            return dict(plan)
    return None


def _never_started_approval(request: ControlRequest, ops_dir: Path) -> bool:
    """An approve/reject claimed but killed before its plan was recorded wrote nothing: run it."""
    return request.intent != "cancel" and _find_approval_plan(ops_dir, request.idempotency_key) is None


def _complete_approval(request: ControlRequest, ops_dir: Path) -> str | None:
    """Finish an interrupted approve/reject from its recorded plan; None when it cannot be finished."""
    plan = _find_approval_plan(ops_dir, request.idempotency_key)
    if plan is None:
        return None
    with decision_lock(request.repo, request.loop_id):
        current = files.read_json(request.repo / ".superloop" / "loops" / request.loop_id / "approval.json")
        status = current.get("status") if isinstance(current, dict) else None
        if current != plan.get("approval") and status not in (None, False, "pending"):
            return None  # decided by someone else meanwhile: record, do not overwrite
        apply_approval_decision(request.repo, request.loop_id, plan, resume=True)
    return (
        "a previous execution with this idempotency key was interrupted; its recorded decision was completed"
    )


def _resolve_interrupted(
    request: ControlRequest,
    ops_dir: Path,
    now_fn: Callable[[], dt.datetime],
    sleep: Callable[[float], None],
    snapshot_fn: SnapshotFn,
) -> _Draft:
    """A claimed key without a result: never execute again, judge from fresh evidence once.

    An approve/reject whose plan was recorded is completed from that plan first (each of its
    records written once), since nothing outside the journal and the loop's files was done.
    """
    completed = _complete_approval(request, ops_dir) if request.intent != "cancel" else None
    result = poll_confirmation(
        request.repo,
        request.loop_id,
        request.intent,
        timeout_seconds=0,
        interval_seconds=request.interval_seconds,
        now_fn=now_fn,
        sleep=sleep,
        fetch_snapshot=snapshot_fn,
    )
    draft = _Draft(
        execution_status="interrupted",
        command="(not re-executed)",
        command_output=completed
        or "a previous execution with this idempotency key was interrupted before its result "
        "was recorded; it was not executed again",
        confirmation_attempted=True,
        confirm=result.document,
    )
    return _judge_confirmation(draft, result)


def _run_command(argv: Sequence[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        return 127, f"runtime command not found: {argv[0]}"
    except PermissionError:
        return 126, f"runtime command not executable: {argv[0]}"
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else ""
        return 124, output + f"\nruntime command timed out after {COMMAND_TIMEOUT_SECONDS:.0f}s"
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _approval_command_display(request: ControlRequest) -> str:
    argv = ["approve", "--repo", str(request.repo), "--loop", request.loop_id, "--by", request.by]
    if request.intent == "reject":
        argv.append("--reject")
    if request.note:
        argv += ["--note", request.note]
    return "(in-process) " + control_rules.format_command(argv)


def _run_approval(request: ControlRequest, ops_dir: Path, now: dt.datetime) -> tuple[int, str]:
    """Plan the decision, record the plan with the claim, then write it (resumable after a crash)."""
    decision = "rejected" if request.intent == "reject" else "approved"
    with decision_lock(request.repo, request.loop_id):
        try:
            plan = plan_approval_decision(
                request.repo, request.loop_id, decision=decision, by=request.by, note=request.note, now=now
            )
        except ContractError as exc:
            return 1, f"error: {exc}"
        crash_points.reach("approval.plan")
        row = {"idempotencyKey": request.idempotency_key, "intent": request.intent, "approvalPlan": plan}
        files.append_jsonl(ops_dir / CLAIMS_FILE, [row])
        return 0, apply_approval_decision(request.repo, request.loop_id, plan)


# --- the runtime's approve command, in-process ----------------------------------------------


def plan_approval_decision(
    repo: Path, loop_id: str, *, decision: str, by: str, note: str, now: dt.datetime
) -> JsonObject:
    """Everything an approval decision writes, decided before any of it is written.

    Fails (``ContractError``) unless ``approval.json`` exists with status ``pending``
    (a missing status counts as pending, as in the runtime). The plan holds the new approval
    document, the ``decisions.jsonl`` row, the ``decisions.md`` block and the
    ``approval_decision`` event (role ``human``, status = the decision).
    """
    if decision not in ("approved", "rejected"):
        raise ContractError("decision must be approved or rejected")
    if not loop_id:
        raise ContractError("--loop is required for approve")
    loop_dir = repo / ".superloop" / "loops" / loop_id
    if not (loop_dir / "approval.json").is_file():
        raise ContractError(f"no approval request found for loop '{loop_id}'")
    # Every file written below must stay inside the repository, links included.
    for target in (loop_dir, *(loop_dir / name for name in _DECISION_FILES)):
        local_transport.confine_to_repo(repo, target)
    return _plan_pending_decision(repo, loop_id, loop_dir, decision=decision, by=by, note=note, now=now)


@contextlib.contextmanager
def decision_lock(repo: Path, loop_id: str) -> Iterator[None]:
    """Hold the loop directory's lock from "still pending?" to the last write of the decision.

    A racing decision (another process, another operator replica) waits, then finds it decided.
    Without a loop directory there is nothing to lock (planning then fails with a contract error).
    """
    loop_dir = repo / ".superloop" / "loops" / loop_id
    local_transport.confine_to_repo(repo, loop_dir)
    if not loop_dir.is_dir():
        yield
        return
    with locks.file_lock(loop_dir):
        yield


def _plan_pending_decision(
    repo: Path, loop_id: str, loop_dir: Path, *, decision: str, by: str, note: str, now: dt.datetime
) -> JsonObject:
    approval_file = loop_dir / "approval.json"
    approval = files.read_json(approval_file)
    if not isinstance(approval, dict):
        raise ContractError(f"invalid JSON in {approval_file}")
    status = approval.get("status")
    status_text = "pending" if status is None or status is False else str(status)
    if status_text != "pending":
        raise ContractError(f"approval request is not pending (status={status_text})")
    run_id = approval.get("run_id")
    run_id = str(run_id) if run_id not in (None, False, "") else "unknown"
    iteration = approval.get("iteration")
    iteration = iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else 0
    decided_by = by or os.environ.get("USER", "unknown")
    decided_at = format_ts(now)
    note_value = note or None
    decision_block = {"status": decision, "by": decided_by, "note": note_value, "at": decided_at}
    approval["status"] = decision
    approval["decision"] = decision_block
    approval["decided_at"] = decided_at
    approval["decided_by"] = decided_by
    approval["decided_note"] = note_value
    relative_approval = str(approval_file.relative_to(repo))
    row = prune_nulls(
        {
            "timestamp": decided_at,
            "loop_id": loop_id,
            "run_id": run_id,
            "iteration": iteration,
            "decision": decision,
            "by": decided_by,
            "note": note_value,
            "approval_file": relative_approval,
        }
    )
    markdown = [
        f"## {decided_at} {decision}",
        "",
        f"- Loop: {loop_id}",
        f"- Run: {run_id}",
        f"- Iteration: {iteration}",
        f"- Decision: {decision}",
        f"- By: {decided_by}",
    ]
    if note:
        markdown.append(f"- Note: {note}")
    markdown += [f"- Approval file: {relative_approval}", "", ""]
    event = prune_nulls(
        {
            "timestamp": decided_at,
            "event": "approval_decision",
            "loop_id": loop_id,
            "run_id": run_id,
            "iteration": iteration,
            "role": "human",
            "status": decision,
            "data": decision_block,
        }
    )
    return {"approval": approval, "decisionRow": row, "markdown": "\n".join(markdown), "event": event}


_EVENTS_TAIL_BYTES = 4 << 20


def apply_approval_decision(
    repo: Path, loop_id: str, plan: Mapping[str, Any], *, resume: bool = False
) -> str:
    """Write a planned decision: approval.json, the decisions row and block, then the event.

    With ``resume`` (a run interrupted after its plan was recorded), each piece already written is
    left alone and only the missing ones are written, so every record exists exactly once.
    """
    loop_dir = repo / ".superloop" / "loops" / loop_id
    approval_file = loop_dir / "approval.json"
    if not resume or files.read_json(approval_file) != plan["approval"]:
        crash_points.reach("approval.approval_file")
        files.write_json_atomic(approval_file, plan["approval"], pretty=True)
    decisions = loop_dir / "decisions.jsonl"
    if not resume or plan["decisionRow"] not in files.read_jsonl(decisions):
        crash_points.reach("approval.decisions_row")
        files.append_jsonl(decisions, [plan["decisionRow"]])
    markdown_file = loop_dir / "decisions.md"
    if not resume or plan["markdown"] not in _read_text(markdown_file):
        crash_points.reach("approval.decisions_md")
        md_fd = os.open(markdown_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(md_fd, "a", encoding="utf-8") as handle:
            handle.write(plan["markdown"])
    events = loop_dir / "events.jsonl"
    if not resume or plan["event"] not in _tail_rows(events):
        crash_points.reach("approval.event")
        files.append_jsonl(events, [plan["event"]])
    decision = plan["decisionRow"].get("decision")
    return f"Recorded approval decision ({decision}) for loop '{loop_id}'."


def write_approval_decision(
    repo: Path, loop_id: str, *, decision: str, by: str, note: str, now: dt.datetime
) -> str:
    """Record an approval decision the way the runtime's ``approve`` command does (plan, then apply)."""
    with decision_lock(repo, loop_id):
        plan = plan_approval_decision(repo, loop_id, decision=decision, by=by, note=note, now=now)
        return apply_approval_decision(repo, loop_id, plan)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _tail_rows(path: Path) -> list[Any]:
    """The rows of the last few MiB of a JSONL file (where an interrupted run appended)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _EVENTS_TAIL_BYTES))
            data = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return []
    rows = []
    for line in data.splitlines()[1 if size > _EVENTS_TAIL_BYTES else 0 :]:
        try:
            rows.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return rows


# --- confirmation ----------------------------------------------------------------------------


def poll_confirmation(
    repo: Path,
    loop_id: str,
    intent: control_rules.Intent,
    *,
    timeout_seconds: int = 30,
    interval_seconds: int = 2,
    now_fn: Callable[[], dt.datetime] = _system_clock.now,
    sleep: Callable[[float], None] = time.sleep,
    fetch_snapshot: SnapshotFn | None = None,
) -> control_rules.ConfirmationResult:
    """Poll fresh snapshots until the intent is observed or ``timeout_seconds`` elapse (≥ 1 attempt)."""
    snapshot_fn = fetch_snapshot or _default_fetch_snapshot
    interval = interval_seconds if interval_seconds > 0 else 1
    start = int(now_fn().timestamp())
    attempts = 0
    observation = control_rules.Observation()
    confirmed, reason = False, "timeout"
    while True:
        attempts += 1
        try:
            snapshot = snapshot_fn(repo, loop_id, trace_id=None, now=now_fn())
        except (ContractError, OSError, ValueError):
            snapshot = None  # a failed snapshot is "not confirmed yet", as in the reference
        if snapshot is not None:
            observation = control_rules.build_observation(snapshot)
            confirmed, reason = control_rules.compute_confirmation(intent, observation)
        if confirmed or int(now_fn().timestamp()) - start >= timeout_seconds:
            break
        sleep(interval)
    return control_rules.build_confirmation_result(
        intent,
        confirmed=confirmed,
        reason=reason,
        attempts=attempts,
        timeout_seconds=timeout_seconds,
        observation=observation,
        now=now_fn(),
    )


# --- sprite_service path ---------------------------------------------------------------------


def _run_sprite(
    request: ControlRequest, service_client: ServiceClient | None, sleep: Callable[[float], None]
) -> _Draft:
    client = service_client or ServiceClient(
        request.service_base_url,
        token=request.service_token or None,
        retry_attempts=request.retry_attempts,
        retry_backoff_seconds=float(request.retry_backoff_seconds),
        sleep=sleep,
    )
    draft = _Draft(command=f"POST {client.display_url}/ops/control")
    body = control_rules.build_service_control_body(
        loop_id=request.loop_id,
        intent=request.intent,
        by=request.by,
        note=request.note,
        trace_id=request.trace_id,
        idempotency_key=request.idempotency_key,
        no_confirm=not request.do_confirm,
        timeout_seconds=request.timeout_seconds if request.forward_confirmation_window else None,
        interval_seconds=request.interval_seconds if request.forward_confirmation_window else None,
    )
    try:
        _, response = client.post_control(
            body, trace_id=request.trace_id or None, idempotency_key=request.idempotency_key
        )
    except ServiceError as exc:
        draft.status = draft.execution_status = "failed_command"
        draft.exit_code = 1
        draft.command_output = "{}"
        draft.error_message = exc.message
        return draft
    finally:
        if service_client is None:
            client.close()
    reading = control_rules.read_service_response(response)
    draft.status = reading.status
    draft.execution_status = reading.execution_status
    draft.exit_code = reading.exit_code
    draft.confirmed = reading.confirmed
    draft.confirm = reading.confirm
    draft.confirm_exit_code = reading.confirm_exit_code
    draft.confirmation_attempted = reading.confirmation_attempted
    draft.confirmation_status = reading.confirmation_status
    draft.replayed = reading.replayed
    draft.command_output = dumps_compact(response)
    return draft
