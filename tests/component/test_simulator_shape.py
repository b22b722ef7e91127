"""The simulator writes what the real runtime writes (issue 11).

Each case drives the simulator through one scenario and compares its artifacts with the ones
recorded from the real runtime (tests/data/real-runtime/): the set of files the operator reads,
the event names in order, the keys of every event and of its data, the keys of the JSON
documents, run ids that are ISO timestamps, four roles, and no heartbeat file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import real_runtime
from superloop_ops.clock import FrozenClock
from superloop_ops.engine.loop import control_run
from superloop_ops.sim import simulator as sim_mod

START = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
ISO = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
OPERATOR_FILES = (
    "state.json",
    "active-run.json",
    "loops/{id}/events.jsonl",
    "loops/{id}/run-summary.json",
    "loops/{id}/usage.jsonl",
    "loops/{id}/test-status.json",
    "loops/{id}/approval.json",
    "loops/{id}/rate-limit.json",
    "loops/{id}/stuck.json",
    "loops/{id}/heartbeat.v1.json",
)


def _drive(sim: sim_mod.Simulator, clock: FrozenClock, ticks: int) -> None:
    for _ in range(ticks):
        clock.advance(5)
        sim.step()


def _decide(decision: str) -> Callable[[sim_mod.Simulator, FrozenClock], None]:
    def act(sim: sim_mod.Simulator, clock: FrozenClock) -> None:
        loop = sim.loops[0]
        control_run.write_approval_decision(
            loop.repo, loop.loop_id, decision=decision, by="ops", note="n", now=clock.now()
        )
        _drive(sim, clock, 15)

    return act


# recorded scenario -> (simulator scenario, simulator options, ticks, then)
CASES: dict[str, tuple[str, dict[str, Any], int, Callable[[sim_mod.Simulator, FrozenClock], None] | None]] = {
    "complete": ("complete", {}, 15, None),
    "approval_waiting": ("awaiting_approval", {}, 15, None),
    "approval_approved": ("awaiting_approval", {}, 15, _decide("approved")),
    "approval_rejected": ("awaiting_approval", {}, 15, _decide("rejected")),
    "role_timeout": ("failing", {}, 15, None),
    "max_iterations": ("running", {"max_iterations": 2}, 30, None),
    "runner_failure": ("runner_failure", {}, 15, None),
    "rate_limited": ("rate_limited", {}, 15, None),
}


def _files(root: Path, loop_id: str) -> set[str]:
    return {name for name in OPERATOR_FILES if (root / name.format(id=loop_id)).is_file()}


def _events(root: Path, loop_id: str) -> list[dict[str, Any]]:
    text = (root / "loops" / loop_id / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _shape(event: dict[str, Any]) -> tuple[str, tuple[str, ...], tuple[str, ...] | None]:
    data = event.get("data")
    return event["event"], tuple(sorted(event)), tuple(sorted(data)) if isinstance(data, dict) else None


def _doc_keys(root: Path, name: str) -> set[str] | None:
    path = root / name
    return set(json.loads(path.read_text())) if path.is_file() else None


def _jsonl_keys(path: Path) -> set[str] | None:
    if not path.is_file():
        return None
    return set().union(*(json.loads(line) for line in path.read_text().splitlines() if line.strip()))


@pytest.fixture(params=sorted(CASES))
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, str, Path]:
    recorded = request.param
    scenario, options, ticks, then = CASES[recorded]
    installed = real_runtime.install(recorded, tmp_path / "recorded")
    clock = FrozenClock(START)
    sim = sim_mod.Simulator(tmp_path / "sim", clock, scenarios=[scenario], **options)
    _drive(sim, clock, ticks)
    if then is not None:
        then(sim, clock)
    loop = sim.loops[0]
    return real_runtime.LOOP, installed.repo / ".superloop", loop.loop_id, loop.repo / ".superloop"


def test_same_operator_files(pair: tuple[str, Path, str, Path]) -> None:
    real_id, real, sim_id, sim = pair
    assert _files(sim, sim_id) == _files(real, real_id)
    assert "loops/{id}/heartbeat.v1.json" not in _files(sim, sim_id)


def test_same_events_in_the_same_order_with_the_same_keys(pair: tuple[str, Path, str, Path]) -> None:
    real_id, real, sim_id, sim = pair
    real_events, sim_events = _events(real, real_id), _events(sim, sim_id)
    assert [e["event"] for e in sim_events] == [e["event"] for e in real_events]
    assert [_shape(e) for e in sim_events] == [_shape(e) for e in real_events]
    assert [e.get("status") for e in sim_events] == [e.get("status") for e in real_events]
    assert [e.get("role") for e in sim_events] == [e.get("role") for e in real_events]
    for event in sim_events:
        assert ISO.match(event["run_id"]), event


def test_same_documents(pair: tuple[str, Path, str, Path]) -> None:
    real_id, real, sim_id, sim = pair
    for name in ("state.json", "active-run.json"):
        assert _doc_keys(sim, name) == _doc_keys(real, name)
    for name in ("test-status.json", "approval.json", "rate-limit.json", "run-summary.json"):
        assert _doc_keys(sim / "loops" / sim_id, name) == _doc_keys(real / "loops" / real_id, name), name
    assert _jsonl_keys(sim / "loops" / sim_id / "usage.jsonl") == _jsonl_keys(
        real / "loops" / real_id / "usage.jsonl"
    )
    summary = sim / "loops" / sim_id / "run-summary.json"
    if summary.is_file():
        real_entries = json.loads((real / "loops" / real_id / "run-summary.json").read_text())["entries"]
        sim_entries = json.loads(summary.read_text())["entries"]
        assert [set(e) for e in sim_entries] == [set(e) for e in real_entries]
        for key in ("promise", "completion_ok", "gates"):
            if key == "promise":
                assert [e[key]["matched"] for e in sim_entries] == [e[key]["matched"] for e in real_entries]
            else:
                assert [e[key] for e in sim_entries] == [e[key] for e in real_entries]
