"""A stand-in for the Superloop runtime: writes the artifact streams the real runtime writes.

The simulator plays the runtime's run process, shaped after artifacts recorded from the real
runtime (``superloop.sh`` at bdd4f9d driven by a stub agent, tests/data/real-runtime/; a test
checks the shape). Each :meth:`Simulator.step` advances every loop by one tick and writes what
the runtime writes at that moment: whole lines appended to ``events.jsonl`` (timestamps from
the injected clock), ``run-summary.json`` entries, ``usage.jsonl`` rows (tokens and cost per
role call), ``test-status.json``, the repo-global ``state.json`` and ``active-run.json``, and
``approval.json`` requests. Run ids are the run's start time (ISO timestamps); an iteration is
planner, implementer, tester and reviewer, then the promise check and the gates
(``promise_checked``, ``*_start``/``*_end`` per gate, ``gates_evaluated``, ``iteration_end``).
Like the runtime, it writes no ``heartbeat.v1.json`` unless asked (``heartbeat=True``, or the
``stale_heartbeat`` scenario). JSON files are replaced atomically (temp file + rename).

It also reacts to control, the way the runtime does:

* cancel (``superloop-ops simulate cancel``) deletes ``state.json`` and ``active-run.json``;
  the next step notices and the run stops emitting (a killed run writes nothing more);
* approve / reject write the decision into ``approval.json``; the next step is the runtime
  run again: a new run (``loop_start``), then approved -> ``approval_consumed``, a
  ``completion_ok`` summary entry, ``loop_complete``; rejected -> ``approval_rejected`` and a
  new iteration.

Scenarios (the runtime behaviour each one plays, and what the projection reads):

=====================  ====================================================================
``running``            iterations without a promise (``running``)
``awaiting_approval``  one iteration with a promise, then a pending approval request
``complete``           one iteration with a promise, then ``loop_complete`` (``complete``)
``failing``            the tester exceeds its role timeout: ``role_timeout`` (``failed``)
``stopped``            one iteration without a promise, then ``loop_stop`` max_iterations
``runner_failure``     the implementer's runner fails: the run dies, ``state.json`` stays
                       active, ``active-run.json`` is gone, no event (projected ``running``)
``rate_limited``       the implementer hits a rate limit: ``rate-limit.json``,
                       ``rate_limit_stop``, ``state.json`` left active
``stale_heartbeat``    running, with a heartbeat that never moves past its first, old stamp
``out_of_order``       running, but every few ticks events.jsonl is truncated (sequence regression)
``contradiction``      a pending approval while the summary says ``completion_ok`` (divergence)
=====================  ====================================================================

Each loop lives in its own repository ``<root>/<loop-id>/`` by default, because ``state.json``
is repo-global in the runtime (one run per repository). ``shared_repo=True`` puts all loops in
``<root>`` as a fleet registry does; then only the first running loop owns ``state.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from superloop_ops.clock import Clock
from superloop_ops.core.common.jsonutil import dumps_compact, format_ts

__all__ = [
    "SCENARIOS",
    "SimulatedLoop",
    "Simulator",
    "cancel_runtime",
]

SCENARIOS: Final[tuple[str, ...]] = (
    "running",
    "awaiting_approval",
    "complete",
    "failing",
    "stopped",
    "runner_failure",
    "rate_limited",
    "stale_heartbeat",
    "out_of_order",
    "contradiction",
)

ROLES: Final[tuple[str, ...]] = ("planner", "implementer", "tester", "reviewer")
PROMISE: Final = "SUPERLOOP_COMPLETE"
# Ticks of one iteration: iteration_start, role_start/role_end for each role, then the gates.
_ROLE_TICKS: Final = 2 * len(ROLES)
_GATES_TICK: Final = 1 + _ROLE_TICKS
_GATES: Final[tuple[str, ...]] = (
    "checklist",
    "tests",
    "validation",
    "prerequisites",
    "evidence",
    "lifecycle",
)
# Where a scenario's run ends mid-iteration: (role whose role_start is followed by the end, how).
_MID_ROLE_END: Final[dict[str, str]] = {
    "failing": "tester",
    "runner_failure": "implementer",
    "rate_limited": "implementer",
}
_PROMISING: Final = frozenset({"awaiting_approval", "complete", "contradiction"})
_TOKENS: Final[dict[str, tuple[int, int]]] = {
    "planner": (1200, 300),
    "implementer": (5400, 2100),
    "tester": (2600, 500),
    "reviewer": (3100, 400),
}
_MODEL: Final = "claude-sonnet-4-5-20250929"
_ROLE_TIMEOUT_SECONDS: Final = 300
_STALE_HEARTBEAT_AGE: Final = dt.timedelta(hours=6)
_TRUNCATE_EVERY: Final = 6
_RUNNING_LIKE: Final = frozenset({"running", "stale_heartbeat", "out_of_order"})


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(value, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _append_line(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (dumps_compact(row) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write of one whole line
    finally:
        os.close(fd)


def cancel_runtime(repo: Path) -> str:
    """The runtime's ``cancel``: remove state.json and active-run.json; report what it did."""
    state = repo / ".superloop" / "state.json"
    active = repo / ".superloop" / "active-run.json"
    had_state = state.is_file()
    had_active = active.is_file()
    active_doc = _read_json(active) if had_active else None
    if had_state:
        state.unlink()
    lines: list[str] = []
    if had_active:
        with contextlib.suppress(FileNotFoundError):
            active.unlink()
        if isinstance(active_doc, dict) and active_doc.get("loop_id"):
            lines.append(f"Cancelled loop: {active_doc['loop_id']}")
    if not had_state and not had_active:
        return "No active state file found."
    lines.append("Cancelled loop state.")
    return "\n".join(lines)


@dataclasses.dataclass
class SimulatedLoop:
    """One loop's progress through its scenario."""

    loop_id: str
    scenario: str
    repo: Path
    loop_index: int
    run_id: str = ""
    iteration: int = 1
    phase: int = 0
    ticks: int = 0
    started: bool = False
    finished: bool = False
    cancelled: bool = False
    awaiting: bool = False
    heartbeat: bool = False
    heartbeat_at: dt.datetime | None = None
    iteration_started_at: str = ""

    @property
    def loop_dir(self) -> Path:
        return self.repo / ".superloop" / "loops" / self.loop_id

    @property
    def events_file(self) -> Path:
        return self.loop_dir / "events.jsonl"

    @property
    def rel_dir(self) -> str:
        return f".superloop/loops/{self.loop_id}"

    @property
    def promises(self) -> bool:
        return self.scenario in _PROMISING


class Simulator:
    """Drive N simulated loops; ``step()`` is one tick for every loop.

    ``heartbeat=True`` makes every loop also write ``heartbeat.v1.json`` (the real runtime
    writes none; the ``stale_heartbeat`` scenario always writes one).
    """

    def __init__(
        self,
        root: Path,
        clock: Clock,
        *,
        loops: int = 1,
        scenarios: Sequence[str] | None = None,
        loop_prefix: str = "sim-loop",
        shared_repo: bool = False,
        max_iterations: int = 0,
        heartbeat: bool = False,
        loop_ids: Sequence[str] | None = None,
    ) -> None:
        chosen = list(scenarios or ["running"])
        for scenario in chosen:
            if scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario: {scenario} (expected one of: {', '.join(SCENARIOS)})")
        if loops < 1:
            raise ValueError("loops must be >= 1")
        if loop_ids is not None and len(loop_ids) != loops:
            raise ValueError("loop_ids must name every loop")
        self.root = root
        self.clock = clock
        self.shared_repo = shared_repo
        self.max_iterations = max_iterations
        self.loops: list[SimulatedLoop] = []
        for index in range(loops):
            loop_id = loop_ids[index] if loop_ids else f"{loop_prefix}-{index + 1}"
            scenario = chosen[index % len(chosen)]
            self.loops.append(
                SimulatedLoop(
                    loop_id=loop_id,
                    scenario=scenario,
                    repo=root if shared_repo else root / loop_id,
                    loop_index=index if shared_repo else 0,
                    heartbeat=heartbeat or scenario == "stale_heartbeat",
                )
            )
        self._state_owner: str | None = None
        if shared_repo:
            owner = next((loop for loop in self.loops if loop.scenario in _RUNNING_LIKE), None)
            self._state_owner = owner.loop_id if owner else None

    def loop(self, loop_id: str) -> SimulatedLoop:
        for loop in self.loops:
            if loop.loop_id == loop_id:
                return loop
        raise KeyError(loop_id)

    def repo_of(self, loop_id: str) -> Path:
        return self.loop(loop_id).repo

    # -- ticking --------------------------------------------------------------------------

    def step(self) -> None:
        for loop in self.loops:
            self._tick(loop)

    def run(self, iterations: int) -> None:
        for _ in range(iterations):
            self.step()

    def _now(self) -> str:
        return format_ts(self.clock.now())

    def _tick(self, loop: SimulatedLoop) -> None:
        loop.ticks += 1
        if not loop.started:
            self._start_run(loop)
            return
        if loop.cancelled:
            return
        if self._was_cancelled(loop):
            loop.cancelled = True
            return
        if loop.awaiting:
            self._check_approval(loop)
            return
        if loop.finished:
            return
        self._advance(loop)

    def _owns_state(self, loop: SimulatedLoop) -> bool:
        return not self.shared_repo or self._state_owner == loop.loop_id

    def _was_cancelled(self, loop: SimulatedLoop) -> bool:
        # The runtime's cancel removes state.json; a live run always has one while it runs.
        if not self._owns_state(loop) or loop.finished or loop.awaiting:
            return False
        return not (loop.repo / ".superloop" / "state.json").is_file()

    # -- what the runtime writes ----------------------------------------------------------

    def _event(
        self,
        loop: SimulatedLoop,
        event: str,
        *,
        role: str | None = None,
        status: str | None = None,
        data: Any = None,
        run_id: str | None = None,
        iteration: int | None = None,
    ) -> None:
        row: dict[str, Any] = {
            "timestamp": self._now(),
            "event": event,
            "loop_id": loop.loop_id,
            "run_id": run_id or loop.run_id,
            "iteration": loop.iteration if iteration is None else iteration,
        }
        if role:
            row["role"] = role
        if status:
            row["status"] = status
        row["data"] = data
        _append_line(loop.events_file, row)

    def _write_state(self, loop: SimulatedLoop, *, active: bool) -> None:
        if not self._owns_state(loop):
            return
        _write_json_atomic(
            loop.repo / ".superloop" / "state.json",
            {
                "active": active,
                "loop_index": loop.loop_index,
                "iteration": loop.iteration,
                "current_loop_id": loop.loop_id,
                "updated_at": self._now(),
            },
        )

    def _write_active_run(self, loop: SimulatedLoop, stage: str) -> None:
        if not self._owns_state(loop):
            return
        pid = os.getpid()
        _write_json_atomic(
            loop.repo / ".superloop" / "active-run.json",
            {
                "repo": str(loop.repo),
                "pid": pid,
                "pgid": pid,
                "loop_id": loop.loop_id,
                "iteration": loop.iteration,
                "stage": stage,
                "updated_at": self._now(),
            },
        )

    def _remove_active_run(self, loop: SimulatedLoop) -> None:
        """The runtime's exit trap: the active-run record goes, whatever state.json says."""
        if self._owns_state(loop):
            with contextlib.suppress(FileNotFoundError):
                (loop.repo / ".superloop" / "active-run.json").unlink()

    def _exit(self, loop: SimulatedLoop, *, active: bool = False) -> None:
        self._write_state(loop, active=active)
        self._remove_active_run(loop)

    def _heartbeat(self, loop: SimulatedLoop, status: str, stage: str) -> None:
        if not loop.heartbeat:
            return
        if loop.scenario == "stale_heartbeat":
            if loop.heartbeat_at is None:
                loop.heartbeat_at = self.clock.now() - _STALE_HEARTBEAT_AGE
            stamp = loop.heartbeat_at
        else:
            stamp = self.clock.now()
        _write_json_atomic(
            loop.loop_dir / "heartbeat.v1.json",
            {
                "schemaVersion": "v1",
                "timestamp": format_ts(stamp),
                "source": "runtime",
                "status": status,
                "stage": stage,
                "loopId": loop.loop_id,
                "runId": loop.run_id,
                "iteration": loop.iteration,
            },
        )

    def _usage(self, loop: SimulatedLoop, role: str) -> None:
        tokens_in, tokens_out = _TOKENS[role]
        cost = round((tokens_in * 3 + tokens_out * 15 + tokens_in // 2 * 0.3) / 1_000_000, 6)
        _append_line(
            loop.loop_dir / "usage.jsonl",
            {
                "timestamp": self._now(),
                "iteration": loop.iteration,
                "role": role,
                "duration_ms": 1000,
                "runner": "claude",
                "model": _MODEL,
                "cost_usd": cost,
                "session_id": None,
                "thread_id": None,
                "usage": {
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "thinking_tokens": 0,
                    "cache_read_input_tokens": tokens_in // 2,
                    "cache_creation_input_tokens": 0,
                },
                "session_file": None,
            },
        )

    # -- the run --------------------------------------------------------------------------

    def _loop_start_data(self, loop: SimulatedLoop) -> dict[str, Any]:
        return {
            "spec_file": f".superloop/specs/{loop.loop_id}.md",
            "max_iterations": self.max_iterations,
            "tests_mode": "every",
            "test_commands": ["make test"],
            "checklists": [],
            "prerequisites": {"enabled": "false", "require_on_completion": "false"},
            "delegation": {"enabled": False},
            "rlms": {"enabled": False, "mode": "hybrid"},
            "lifecycle": {
                "feature_prefix": "feat/",
                "main_ref": "main",
                "no_fetch": "false",
                "strict": "true",
                "block_on_failure": "true",
            },
            "git": {"commit_strategy": "never"},
        }

    def _start_run(self, loop: SimulatedLoop, *, first: bool = True) -> None:
        """``superloop.sh run``: a new run id (its start time), state and active-run records."""
        loop.started = True
        loop.run_id = self._now()
        if first:
            loop.loop_dir.mkdir(parents=True, exist_ok=True)
            loop.events_file.touch()
        self._write_active_run(loop, "loop_start")
        self._write_state(loop, active=True)
        self._event(loop, "loop_start", data=self._loop_start_data(loop))
        self._heartbeat(loop, "running", "loop_start")

    def _advance(self, loop: SimulatedLoop) -> None:
        if loop.scenario == "out_of_order" and loop.ticks % _TRUNCATE_EVERY == 0:
            self._truncate_events(loop)
        phase = loop.phase
        loop.phase += 1
        if phase == 0:
            self._iteration_start(loop)
        elif phase <= _ROLE_TICKS:
            self._role_tick(loop, ROLES[(phase - 1) // 2], starting=phase % 2 == 1)
        else:
            loop.phase = 0
            self._gates_and_end(loop)

    def _iteration_start(self, loop: SimulatedLoop) -> None:
        loop.iteration_started_at = self._now()
        self._write_state(loop, active=True)
        self._event(loop, "iteration_start", data={"started_at": loop.iteration_started_at})
        self._heartbeat(loop, "running", "iteration_start")

    def _role_files(self, loop: SimulatedLoop, role: str) -> dict[str, str]:
        base = loop.repo / ".superloop" / "loops" / loop.loop_id
        return {
            "log_file": str(base / "logs" / f"iter-{loop.iteration}" / f"{role}.log"),
            "last_message_file": str(base / "last_messages" / f"{role}.txt"),
        }

    def _role_tick(self, loop: SimulatedLoop, role: str, *, starting: bool) -> None:
        files = self._role_files(loop, role)
        if starting:
            prompt = str(loop.loop_dir / "prompts" / f"{role}.md")
            self._event(loop, "role_start", role=role, data={"prompt_file": prompt, **files})
            self._heartbeat(loop, "running", role)
            return
        if _MID_ROLE_END.get(loop.scenario) == role:
            self._end_mid_role(loop, role)
            return
        self._usage(loop, role)
        self._event(loop, "role_end", role=role, data=files)
        self._heartbeat(loop, "running", role)

    def _end_mid_role(self, loop: SimulatedLoop, role: str) -> None:
        loop.finished = True
        if loop.scenario == "runner_failure":
            # The runtime dies: its exit trap removes active-run.json, state.json stays active.
            self._remove_active_run(loop)
            return
        self._usage(loop, role)
        if loop.scenario == "rate_limited":
            info = {"message": "Rate limit error detected", "type": "json", "resets_in": 120}
            record = {
                "loop_id": loop.loop_id,
                "run_id": loop.run_id,
                "iteration": loop.iteration,
                "role": role,
                "occurred_at": self._now(),
                "info": info,
            }
            _write_json_atomic(loop.loop_dir / "rate-limit.json", record)
            self._event(loop, "rate_limit_stop", role=role, status="rate_limited", data=record)
            self._heartbeat(loop, "rate_limited", role)
            self._exit(loop, active=True)  # the runtime leaves state.json active to resume
            return
        self._event(
            loop,
            "role_timeout",
            role=role,
            status="timeout",
            data={"role": role, "timeout_seconds": _ROLE_TIMEOUT_SECONDS},
        )
        self._heartbeat(loop, "failed", role)
        self._exit(loop)

    def _gate_results(self, loop: SimulatedLoop) -> dict[str, str]:
        return {
            "tests": "ok",
            "validation": "skipped",
            "prerequisites": "skipped",
            "checklist": "ok",
            "evidence": "skipped",
            "lifecycle": "ok",
        }

    def _gates_and_end(self, loop: SimulatedLoop) -> None:
        """Promise check, the gates, ``gates_evaluated`` and ``iteration_end`` in one tick."""
        promised = loop.promises
        promise = {"expected": PROMISE, "text": PROMISE if promised else None, "matched": promised}
        self._event(loop, "promise_checked", data=promise)
        self._run_gates(loop)
        gates = self._gate_results(loop)
        approval = "pending" if promised and loop.scenario != "complete" else "skipped"
        completion = promised and approval == "skipped"
        self._event(
            loop, "gates_evaluated", data={"promise": promised, **gates, "approval": approval, "stuck": "n/a"}
        )
        self._event(
            loop,
            "iteration_end",
            data={
                "started_at": loop.iteration_started_at,
                "ended_at": self._now(),
                "completion": completion,
                "promise": promised,
                **gates,
                "approval": approval,
            },
        )
        self._append_summary(
            loop,
            promise=promise,
            gates={**gates, "approval": approval},
            completion_ok=completion or loop.scenario == "contradiction",
        )
        self._end_iteration(loop, approval=approval)

    def _run_gates(self, loop: SimulatedLoop) -> None:
        rel = loop.rel_dir
        now = self._now()
        tests = {"ok": True, "exit_code": 0, "generated_at": now}
        _write_json_atomic(loop.loop_dir / "test-status.json", tests)
        lifecycle = {"feature_prefix": "feat/", "main_ref": "main", "strict": "true", "no_fetch": "false"}
        gates: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
            (
                "checklist",
                {"patterns": []},
                {"status": "ok", "ok": True, "details": {"ok": True, "remaining": 0, "generated_at": now}},
            ),
            ("tests", {"mode": "every", "commands": ["make test"]}, {"status": "ok", "details": tests}),
            ("validation", {"enabled": "false", "mode": "every"}, {"status": "skipped", "results_file": ""}),
            (
                "prerequisites",
                {"enabled": "false", "require_on_completion": "false"},
                {"status": "skipped", "results_file": ""},
            ),
            (
                "evidence",
                {"enabled": "false"},
                {"status": "skipped", "evidence_file": f"{rel}/evidence.json"},
            ),
            (
                "lifecycle",
                {**lifecycle, "require_on_completion": "true", "block_on_failure": "true"},
                {
                    "status": "ok",
                    "ok": True,
                    "audit_file": f"{rel}/lifecycle-audit.json",
                    "output_file": f"{rel}/lifecycle-audit.txt",
                },
            ),
        )
        for gate, start, end in gates:
            self._event(loop, f"{gate}_start", data=start)
            self._event(loop, f"{gate}_end", data=end)

    def _end_iteration(self, loop: SimulatedLoop, *, approval: str) -> None:
        if approval == "pending":
            self._request_approval(loop)
        elif loop.scenario == "complete":
            self._event(loop, "loop_complete", data={"iteration": loop.iteration, "run_id": loop.run_id})
            self._finish(loop, "complete")
        elif loop.scenario == "stopped" or (self.max_iterations and loop.iteration >= self.max_iterations):
            maximum = self.max_iterations or loop.iteration
            loop.iteration += 1  # the runtime logs loop_stop with the iteration it would start
            self._event(loop, "loop_stop", data={"reason": "max_iterations", "max_iterations": maximum})
            self._finish(loop, "stopped")
        else:
            loop.iteration += 1

    def _finish(self, loop: SimulatedLoop, status: str) -> None:
        loop.finished = True
        self._heartbeat(loop, status, "loop_end")
        self._exit(loop)

    def _append_summary(
        self, loop: SimulatedLoop, *, promise: dict[str, Any], gates: dict[str, str], completion_ok: bool
    ) -> None:
        path = loop.loop_dir / "run-summary.json"
        summary = _read_json(path)
        if not isinstance(summary, dict) or not isinstance(summary.get("entries"), list):
            summary = {"version": 1, "loop_id": loop.loop_id, "entries": []}
        now = self._now()
        summary["updated_at"] = now
        summary["entries"].append(
            {
                "run_id": loop.run_id,
                "iteration": loop.iteration,
                "started_at": loop.iteration_started_at or now,
                "ended_at": now,
                "promise": promise,
                "gates": gates,
                "tests_mode": "every",
                "stuck": {"streak": 0, "threshold": 3},
                "delegation": {},
                "completion_ok": completion_ok,
                "artifacts": {
                    "events": {"path": f"{loop.rel_dir}/events.jsonl", "exists": True},
                    "test_status": {"path": f"{loop.rel_dir}/test-status.json", "exists": True},
                },
            }
        )
        _write_json_atomic(path, summary)

    def _request_approval(self, loop: SimulatedLoop) -> None:
        now = self._now()
        gates = self._gate_results(loop)
        _write_json_atomic(
            loop.loop_dir / "approval.json",
            {
                "status": "pending",
                "loop_id": loop.loop_id,
                "run_id": loop.run_id,
                "iteration": loop.iteration,
                "requested_at": now,
                "iteration_started_at": loop.iteration_started_at or now,
                "iteration_ended_at": now,
                "candidate": {
                    "promise": {"expected": PROMISE, "text": PROMISE, "matched": True},
                    "gates": gates,
                },
                "files": {"gate_summary": f"{loop.rel_dir}/gate-summary.txt"},
            },
        )
        self._event(
            loop,
            "approval_requested",
            data={"approval_file": f"{loop.rel_dir}/approval.json", "promise": True, **gates},
        )
        loop.awaiting = True
        self._heartbeat(loop, "awaiting_approval", "approval")
        self._exit(loop)

    def _check_approval(self, loop: SimulatedLoop) -> None:
        """The runtime, run again after a decision: a new run that consumes it."""
        approval_file = loop.loop_dir / "approval.json"
        approval = _read_json(approval_file)
        status = approval.get("status") if isinstance(approval, dict) else None
        if status == "pending" or status is None:
            return
        assert isinstance(approval, dict)
        decision = approval.get("decision")
        decision = decision if isinstance(decision, dict) else {}
        requested_run = str(approval.get("run_id") or loop.run_id)
        loop.awaiting = False
        self._start_run(loop, first=False)
        if status == "approved":
            self._approved(loop, decision, requested_run)
        else:
            self._rejected(loop, approval_file, requested_run)
        with contextlib.suppress(FileNotFoundError):
            approval_file.unlink()

    def _approved(self, loop: SimulatedLoop, decision: dict[str, Any], requested_run: str) -> None:
        data = {
            "status": "approved",
            "by": decision.get("by"),
            "note": decision.get("note"),
            "at": decision.get("at"),
        }
        self._event(loop, "approval_consumed", data=data, run_id=requested_run)
        gates = {**self._gate_results(loop), "approval": "approved"}
        promise = {"expected": PROMISE, "text": PROMISE, "matched": True}
        current = loop.run_id
        loop.run_id = requested_run  # the entry and loop_complete belong to the approved run
        self._append_summary(loop, promise=promise, gates=gates, completion_ok=True)
        self._event(
            loop,
            "loop_complete",
            data={"iteration": loop.iteration, "run_id": requested_run, "approval": True},
        )
        loop.run_id = current
        self._finish(loop, "complete")

    def _rejected(self, loop: SimulatedLoop, approval_file: Path, requested_run: str) -> None:
        # Rejected: the runtime logs it and starts over (a fresh run begins at iteration 1).
        self._event(
            loop,
            "approval_rejected",
            data={"status": "rejected", "approval_file": str(approval_file.relative_to(loop.repo))},
            run_id=requested_run,
        )
        loop.iteration = 1
        loop.phase = 0
        if loop.scenario == "contradiction":
            loop.scenario = "awaiting_approval"

    def _truncate_events(self, loop: SimulatedLoop) -> None:
        """Rotation gone wrong: keep only the first line, so line numbers (sequences) go back."""
        try:
            lines = loop.events_file.read_bytes().split(b"\n")
        except FileNotFoundError:
            return
        keep = lines[0] + b"\n" if lines and lines[0] else b""
        fd, tmp = tempfile.mkstemp(prefix=".events.", suffix=".tmp", dir=loop.loop_dir)
        with os.fdopen(fd, "wb") as handle:
            handle.write(keep)
        os.replace(tmp, loop.events_file)
