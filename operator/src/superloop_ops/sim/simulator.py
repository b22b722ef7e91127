"""A stand-in for the Superloop runtime: writes realistic artifact streams for N loops.

The simulator plays the runtime's run process. Each :meth:`Simulator.step` advances every loop
by one tick of its scenario and writes what the runtime would write at that moment, with the
runtime's shapes: whole lines appended to ``events.jsonl`` (timestamps from the injected clock,
so sequence numbers are the growing line numbers), ``run-summary.json`` entries, the repo-global
``state.json`` and ``active-run.json``, ``approval.json`` requests and ``heartbeat.v1.json``.
JSON files are replaced atomically (temp file + rename).

It also reacts to control, the way the runtime does:

* cancel (``superloop-ops simulate cancel``) deletes ``state.json`` and ``active-run.json``;
  the next step notices and the run stops emitting (a killed run writes nothing more);
* approve / reject write the decision into ``approval.json``; the next step consumes it:
  approved -> ``approval_consumed``, a ``completion_ok`` summary entry, ``loop_complete``;
  rejected -> ``approval_rejected`` and a new iteration.

Scenarios (the lifecycle projection each one is meant to produce):

=====================  ====================================================================
``running``            iterations of planner/implementer/tester/reviewer (``running``)
``awaiting_approval``  one iteration, then a pending approval request (``awaiting_approval``)
``complete``           one iteration, then ``completion_ok`` and ``loop_complete`` (``complete``)
``failing``            one iteration, then a ``role_timeout`` with status ``timeout`` (``failed``)
``stopped``            one iteration, then ``loop_stop`` (``stopped``)
``stale_heartbeat``    running, but the heartbeat never moves past its first, old timestamp
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
    "stale_heartbeat",
    "out_of_order",
    "contradiction",
)

# One iteration, as the runtime logs it (event, role, status).
_ITERATION: Final[tuple[tuple[str, str | None, str | None], ...]] = (
    ("iteration_start", None, None),
    ("role_start", "planner", None),
    ("role_end", "planner", "ok"),
    ("role_start", "implementer", None),
    ("role_end", "implementer", "ok"),
    ("tests_start", None, None),
    ("tests_end", None, "ok"),
    ("role_start", "reviewer", None),
    ("role_end", "reviewer", "ok"),
    ("iteration_end", None, None),
)
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
    run_id: str
    iteration: int = 1
    phase: int = 0
    ticks: int = 0
    started: bool = False
    finished: bool = False
    cancelled: bool = False
    awaiting: bool = False
    heartbeat_at: dt.datetime | None = None

    @property
    def loop_dir(self) -> Path:
        return self.repo / ".superloop" / "loops" / self.loop_id

    @property
    def events_file(self) -> Path:
        return self.loop_dir / "events.jsonl"


class Simulator:
    """Drive N simulated loops; ``step()`` is one tick for every loop."""

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
            repo = root if shared_repo else root / loop_id
            self.loops.append(
                SimulatedLoop(
                    loop_id=loop_id,
                    scenario=chosen[index % len(chosen)],
                    repo=repo,
                    loop_index=index if shared_repo else 0,
                    run_id=f"run-{loop_id}",
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
            self._start(loop)
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

    def _event(
        self,
        loop: SimulatedLoop,
        event: str,
        *,
        role: str | None = None,
        status: str | None = None,
        data: Any = None,
        message: str | None = None,
    ) -> None:
        row: dict[str, Any] = {
            "timestamp": self._now(),
            "event": event,
            "loop_id": loop.loop_id,
            "run_id": loop.run_id,
            "iteration": loop.iteration,
        }
        if role:
            row["role"] = role
        if status:
            row["status"] = status
        if message:
            row["message"] = message
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

    def _stop_run(self, loop: SimulatedLoop) -> None:
        self._write_state(loop, active=False)
        if self._owns_state(loop):
            with contextlib.suppress(FileNotFoundError):
                (loop.repo / ".superloop" / "active-run.json").unlink()

    def _heartbeat(self, loop: SimulatedLoop, status: str, stage: str) -> None:
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

    def _start(self, loop: SimulatedLoop) -> None:
        loop.started = True
        loop.loop_dir.mkdir(parents=True, exist_ok=True)
        loop.events_file.touch()
        self._write_active_run(loop, "loop_start")
        self._write_state(loop, active=True)
        self._event(
            loop,
            "loop_start",
            data={
                "max_iterations": self.max_iterations,
                "roles": ["planner", "implementer", "tester", "reviewer"],
            },
        )
        self._heartbeat(loop, "running", "loop_start")

    def _advance(self, loop: SimulatedLoop) -> None:
        if loop.scenario == "out_of_order" and loop.ticks % _TRUNCATE_EVERY == 0:
            self._truncate_events(loop)
        event, role, status = _ITERATION[loop.phase]
        if event == "iteration_start":
            self._write_state(loop, active=True)
            self._write_active_run(loop, "iteration")
            self._event(loop, event, data={"started_at": self._now()})
        elif event == "role_end" or event == "tests_end":
            self._event(loop, event, role=role, status=status, data={"duration_ms": 1000 + 250 * loop.phase})
        else:
            self._event(loop, event, role=role, status=status)
        self._heartbeat(loop, "running", role or event)
        loop.phase += 1
        if loop.phase < len(_ITERATION):
            return
        loop.phase = 0
        self._end_iteration(loop)

    def _end_iteration(self, loop: SimulatedLoop) -> None:
        scenario = loop.scenario
        if scenario == "complete":
            self._append_summary(loop, completion_ok=True, approval="none")
            self._event(loop, "loop_complete", data={"iteration": loop.iteration, "run_id": loop.run_id})
            self._finish(loop, "complete")
        elif scenario == "failing":
            self._append_summary(loop, completion_ok=False, approval="none", tests="failed")
            self._event(
                loop, "role_timeout", role="tester", status="timeout", message="role exceeded its time budget"
            )
            self._finish(loop, "failed")
        elif scenario == "stopped":
            self._append_summary(loop, completion_ok=False, approval="none")
            self._event(
                loop, "loop_stop", data={"reason": "max_iterations", "max_iterations": loop.iteration}
            )
            self._finish(loop, "stopped")
        elif scenario in ("awaiting_approval", "contradiction"):
            self._append_summary(loop, completion_ok=scenario == "contradiction", approval="pending")
            self._request_approval(loop)
        else:
            self._append_summary(loop, completion_ok=False, approval="none")
            if self.max_iterations and loop.iteration >= self.max_iterations:
                self._event(
                    loop, "loop_stop", data={"reason": "max_iterations", "max_iterations": loop.iteration}
                )
                self._finish(loop, "stopped")
                return
            loop.iteration += 1

    def _finish(self, loop: SimulatedLoop, status: str) -> None:
        loop.finished = True
        self._heartbeat(loop, status, "loop_end")
        self._stop_run(loop)

    def _gates(self, *, tests: str, approval: str) -> dict[str, str]:
        return {
            "tests": tests,
            "validation": "ok",
            "prerequisites": "ok",
            "checklist": "ok",
            "evidence": "skipped",
            "lifecycle": "skipped",
            "approval": approval,
        }

    def _append_summary(
        self, loop: SimulatedLoop, *, completion_ok: bool, approval: str, tests: str = "ok"
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
                "started_at": now,
                "ended_at": now,
                "promise": {"expected": "SUPERLOOP_COMPLETE", "text": None, "matched": completion_ok},
                "tests_mode": "on_promise",
                "gates": self._gates(tests=tests, approval=approval),
                "stuck": {"streak": 0, "threshold": 3},
                "completion_ok": completion_ok,
            }
        )
        _write_json_atomic(path, summary)

    def _request_approval(self, loop: SimulatedLoop) -> None:
        now = self._now()
        approval_rel = f".superloop/loops/{loop.loop_id}/approval.json"
        _write_json_atomic(
            loop.loop_dir / "approval.json",
            {
                "status": "pending",
                "loop_id": loop.loop_id,
                "run_id": loop.run_id,
                "iteration": loop.iteration,
                "requested_at": now,
                "iteration_started_at": now,
                "iteration_ended_at": now,
                "candidate": {
                    "promise": {
                        "expected": "SUPERLOOP_COMPLETE",
                        "text": "SUPERLOOP_COMPLETE",
                        "matched": True,
                    },
                    "gates": self._gates(tests="ok", approval="pending"),
                },
                "files": {"gate_summary": f".superloop/loops/{loop.loop_id}/gate-summary.txt"},
            },
        )
        self._event(loop, "approval_requested", data={"approval_file": approval_rel, "promise": True})
        loop.awaiting = True
        self._heartbeat(loop, "awaiting_approval", "approval")
        self._stop_run(loop)

    def _check_approval(self, loop: SimulatedLoop) -> None:
        approval_file = loop.loop_dir / "approval.json"
        approval = _read_json(approval_file)
        status = approval.get("status") if isinstance(approval, dict) else None
        if status == "pending" or status is None:
            return
        decision = approval.get("decision") if isinstance(approval, dict) else None
        decision = decision if isinstance(decision, dict) else {}
        loop.awaiting = False
        if status == "approved":
            self._event(
                loop,
                "approval_consumed",
                data={
                    "status": "approved",
                    "by": decision.get("by"),
                    "note": decision.get("note"),
                    "at": decision.get("at"),
                },
            )
            self._append_summary(loop, completion_ok=True, approval="approved")
            self._event(
                loop,
                "loop_complete",
                data={"iteration": loop.iteration, "run_id": loop.run_id, "approval": True},
            )
            with contextlib.suppress(FileNotFoundError):
                approval_file.unlink()
            self._finish(loop, "complete")
            return
        # Rejected: the runtime logs it, drops the request and starts the next iteration.
        self._event(
            loop,
            "approval_rejected",
            data={"status": "rejected", "approval_file": str(approval_file.relative_to(loop.repo))},
        )
        with contextlib.suppress(FileNotFoundError):
            approval_file.unlink()
        loop.iteration += 1
        loop.phase = 0
        if loop.scenario == "contradiction":
            loop.scenario = "awaiting_approval"
        self._write_state(loop, active=True)
        self._write_active_run(loop, "iteration")

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
