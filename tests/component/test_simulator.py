"""The runtime simulator: each scenario yields the artifacts the projection needs, and control works."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.clock import FrozenClock
from superloop_ops.core.common import jsonutil
from superloop_ops.engine.loop import control_run
from superloop_ops.sim import simulator as sim_mod
from superloop_ops.transports import local as local_transport

START = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)


def _run(root: Path, scenario: str, ticks: int = 14, **kwargs: Any) -> tuple[sim_mod.Simulator, FrozenClock]:
    clock = FrozenClock(START)
    sim = sim_mod.Simulator(root, clock, scenarios=[scenario], **kwargs)
    for _ in range(ticks):
        clock.advance(5)
        sim.step()
    return sim, clock


def _snapshot(sim: sim_mod.Simulator, clock: FrozenClock, index: int = 0) -> dict[str, Any]:
    loop = sim.loops[index]
    return local_transport.fetch_snapshot(loop.repo, loop.loop_id, trace_id=None, now=clock.now())


def _events(loop: sim_mod.SimulatedLoop) -> list[dict[str, Any]]:
    return [json.loads(line) for line in loop.events_file.read_text().splitlines()]


@pytest.mark.parametrize(
    ("scenario", "status", "last_event"),
    [
        ("running", "running", None),
        ("awaiting_approval", "awaiting_approval", "approval_requested"),
        ("complete", "complete", "loop_complete"),
        ("failing", "failed", "role_timeout"),
        ("stopped", "stopped", "loop_stop"),
        # what the reference projects; health reads these as dead and rate_limited (issue 11)
        ("runner_failure", "running", "role_start"),
        ("rate_limited", "running", "rate_limit_stop"),
        ("stale_heartbeat", "running", None),
        ("out_of_order", "running", None),
        ("contradiction", "awaiting_approval", "approval_requested"),
    ],
)
def test_scenarios_project_their_lifecycle(
    tmp_path: Path, scenario: str, status: str, last_event: str | None
) -> None:
    sim, clock = _run(tmp_path, scenario)
    snapshot = _snapshot(sim, clock)
    assert snapshot["run"]["status"] == status
    if last_event:
        assert snapshot["health"]["lastEventName"] == last_event


def test_events_are_whole_lines_with_increasing_timestamps(tmp_path: Path) -> None:
    sim, _ = _run(tmp_path, "running", ticks=21)
    raw = sim.loops[0].events_file.read_text()
    assert raw.endswith("\n")
    events = _events(sim.loops[0])
    stamps = [jsonutil.parse_ts(e["timestamp"]) for e in events]
    assert all(s is not None for s in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert events[0]["event"] == "loop_start"
    assert {e["loop_id"] for e in events} == {"sim-loop-1"}
    assert {e["run_id"] for e in events} == {jsonutil.format_ts(START + dt.timedelta(seconds=5))}
    # loop_start, then two iterations of ten ticks (the gates tick writes 15 events)
    assert events[-1]["event"] == "iteration_end"
    assert events[-1]["iteration"] == 2
    assert [e["role"] for e in events if e["event"] == "role_start"] == [
        "planner", "implementer", "tester", "reviewer"
    ] * 2
    summary = json.loads((sim.loops[0].loop_dir / "run-summary.json").read_text())
    assert [entry["iteration"] for entry in summary["entries"]] == [1, 2]
    assert summary["entries"][-1]["completion_ok"] is False
    assert summary["entries"][-1]["promise"]["matched"] is False
    state = json.loads((sim.loops[0].repo / ".superloop" / "state.json").read_text())
    assert state == {
        "active": True,
        "loop_index": 0,
        "iteration": 2,
        "current_loop_id": "sim-loop-1",
        "updated_at": state["updated_at"],
    }
    active_run = json.loads((sim.loops[0].repo / ".superloop" / "active-run.json").read_text())
    assert active_run["loop_id"] == "sim-loop-1"
    assert active_run["stage"] == "loop_start"
    assert not (sim.loops[0].loop_dir / "heartbeat.v1.json").exists()  # the runtime writes none


def test_poll_sees_increasing_sequences(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "running", ticks=5)
    loop = sim.loops[0]
    first = local_transport.fetch_events(loop.repo, loop.loop_id, offset=0, trace_id=None, now=clock.now())
    clock.advance(5)
    sim.step()
    second = local_transport.fetch_events(
        loop.repo, loop.loop_id, offset=first.offset_after, trace_id=None, now=clock.now()
    )
    values = [e["sequence"]["value"] for e in [*first.events, *second.events]]
    assert values == [1, 2, 3, 4, 5, 6]


def test_heartbeat_is_fresh_when_running_and_asked_for(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "running", heartbeat=True)
    heartbeat = _snapshot(sim, clock)["runtime"]["heartbeat"]
    assert heartbeat["timestamp"] == jsonutil.format_ts(clock.now())
    assert heartbeat["schemaVersion"] == "v1"
    assert heartbeat["source"] == "runtime"


def test_stale_heartbeat_never_moves(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "stale_heartbeat")
    heartbeat = _snapshot(sim, clock)["runtime"]["heartbeat"]
    stamp = jsonutil.parse_ts(heartbeat["timestamp"])
    assert stamp is not None
    assert clock.now() - stamp > dt.timedelta(hours=5)
    first = heartbeat["timestamp"]
    clock.advance(60)
    sim.step()
    assert _snapshot(sim, clock)["runtime"]["heartbeat"]["timestamp"] == first


def test_out_of_order_truncates_so_sequence_regresses(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "out_of_order", ticks=5)
    before = _snapshot(sim, clock)["sequence"]["value"]
    clock.advance(5)
    sim.step()  # tick 6 truncates, then appends
    after = _snapshot(sim, clock)["sequence"]["value"]
    assert before == 5
    assert after == 2


def test_contradiction_pending_approval_with_completion(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "contradiction")
    snapshot = _snapshot(sim, clock)
    assert snapshot["runtime"]["approval"]["status"] == "pending"
    assert snapshot["run"]["summary"]["completion_ok"] is True
    assert snapshot["health"]["hasPendingApproval"] is True


def test_approval_request_shape(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "awaiting_approval")
    approval = json.loads((sim.loops[0].loop_dir / "approval.json").read_text())
    assert approval["status"] == "pending"
    assert approval["run_id"] == jsonutil.format_ts(START + dt.timedelta(seconds=5))
    assert set(approval) >= {
        "requested_at",
        "iteration_started_at",
        "iteration_ended_at",
        "candidate",
        "files",
    }
    state = json.loads((sim.loops[0].repo / ".superloop" / "state.json").read_text())
    assert state["active"] is False
    assert not (sim.loops[0].repo / ".superloop" / "active-run.json").exists()
    # waiting: no new events until a decision
    count = len(_events(sim.loops[0]))
    clock.advance(5)
    sim.step()
    assert len(_events(sim.loops[0])) == count


def test_approve_is_consumed_to_completion(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "awaiting_approval")
    loop = sim.loops[0]
    control_run.write_approval_decision(
        loop.repo, loop.loop_id, decision="approved", by="ann", note="", now=clock.now()
    )
    clock.advance(5)
    sim.step()
    events = _events(loop)
    names = [e["event"] for e in events][-4:]
    assert names == ["approval_decision", "loop_start", "approval_consumed", "loop_complete"]
    # the runtime runs again (a new run id); the consumed approval belongs to the requesting run
    assert events[-3]["run_id"] != events[-2]["run_id"] == events[-4]["run_id"]
    assert not (loop.loop_dir / "approval.json").exists()
    assert _snapshot(sim, clock)["run"]["status"] == "complete"


def test_reject_resumes_with_a_new_iteration(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "awaiting_approval")
    loop = sim.loops[0]
    control_run.write_approval_decision(
        loop.repo, loop.loop_id, decision="rejected", by="ann", note="", now=clock.now()
    )
    clock.advance(5)
    sim.step()
    names = [e["event"] for e in _events(loop)][-3:]
    assert names == ["approval_decision", "loop_start", "approval_rejected"]
    clock.advance(5)
    sim.step()
    last = _events(loop)[-1]
    assert (last["event"], last["iteration"]) == ("iteration_start", 1)  # a fresh run starts over
    assert _snapshot(sim, clock)["run"]["status"] == "running"


def test_cancel_command_stops_the_run(tmp_path: Path) -> None:
    sim, clock = _run(tmp_path, "running")
    loop = sim.loops[0]
    done = subprocess.run(
        [sys.executable, "-m", "superloop_ops.cli.main", "simulate", "cancel", "--repo", str(loop.repo)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == ["Cancelled loop: sim-loop-1", "Cancelled loop state."]
    assert not (loop.repo / ".superloop" / "state.json").exists()
    assert not (loop.repo / ".superloop" / "active-run.json").exists()
    count = len(_events(loop))
    clock.advance(5)
    sim.step()
    assert len(_events(loop)) == count
    snapshot = _snapshot(sim, clock)
    assert snapshot["runtime"]["superloopState"] is None
    assert snapshot["run"]["status"] != "running"
    assert sim_mod.cancel_runtime(loop.repo) == "No active state file found."


def test_simulate_approve_entry_point_matches_the_runtime(tmp_path: Path) -> None:
    sim, _ = _run(tmp_path, "awaiting_approval")
    loop = sim.loops[0]
    argv = [
        sys.executable,
        "-m",
        "superloop_ops.cli.main",
        "simulate",
        "approve",
        "--repo",
        str(loop.repo),
        "--loop",
        loop.loop_id,
        "--by",
        "dan",
        "--reject",
        "--note",
        "Not yet",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Recorded approval decision (rejected) for loop 'sim-loop-1'."
    again = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: approval request is not pending (status=rejected)"


def test_many_loops_in_separate_repos(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    sim = sim_mod.Simulator(tmp_path, clock, loops=3, scenarios=["running", "complete"])
    sim.run(12)
    assert [loop.scenario for loop in sim.loops] == ["running", "complete", "running"]
    assert [loop.repo for loop in sim.loops] == [tmp_path / f"sim-loop-{i}" for i in (1, 2, 3)]
    statuses = [_snapshot(sim, clock, i)["run"]["status"] for i in range(3)]
    assert statuses == ["running", "complete", "running"]


def test_shared_repo_has_one_state_owner(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    sim = sim_mod.Simulator(
        tmp_path, clock, loops=3, scenarios=["running", "failing", "running"], shared_repo=True
    )
    sim.run(12)
    assert {loop.repo for loop in sim.loops} == {tmp_path}
    statuses = [_snapshot(sim, clock, i)["run"]["status"] for i in range(3)]
    # state.json is repo-global: only the first running loop owns it; the other running loop is unknown
    assert statuses == ["running", "failed", "unknown"]


def test_cli_run_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "superloop_ops.cli.main",
            "simulate",
            "--repo",
            str(tmp_path),
            "--loops",
            "2",
            "--scenario",
            "stopped",
            "--once",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        f"sim-loop-1\tstopped\t{tmp_path.resolve() / 'sim-loop-1'}",
        f"sim-loop-2\tstopped\t{tmp_path.resolve() / 'sim-loop-2'}",
    ]
    assert (tmp_path / "sim-loop-2" / ".superloop" / "loops" / "sim-loop-2" / "events.jsonl").is_file()


def test_unknown_scenario_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scenario: exploding"):
        sim_mod.Simulator(tmp_path, FrozenClock(START), scenarios=["exploding"])
