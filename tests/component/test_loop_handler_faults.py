"""A Loop pass that cannot write its journal, through the handler (issue 10, item 9).

Real files, the simulator as the runtime, an in-memory API server: the failure must reach the
status (Ready=False with its reason), an Event and the metrics, and the pass must recover once
the journal can be written again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.operator_fakes import FakeEdge, build_context, build_frozen_clock
from superloop_ops.clock import FrozenClock
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.sim.simulator import Simulator

NS = "team-a"


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


def _ready(body: dict[str, object]) -> dict[str, object]:
    conditions = body["status"]["conditions"]  # type: ignore[index]
    return next(c for c in conditions if c["type"] == "Ready")  # type: ignore[union-attr]


def test_an_unwritable_journal_reaches_status_events_and_metrics(tmp_path: Path, clock: FrozenClock) -> None:
    sim = Simulator(tmp_path / "sim", clock, loops=1, scenarios=["running"], loop_prefix="running")
    sim.run(4)
    edge = FakeEdge(NS)
    pvcs = {"claim-a": sim.repo_of("running-1")}
    ctx = build_context(
        tmp_path, edge, clock, pvcs, control_confirm_timeout_seconds=20, status_refresh_seconds=300
    )
    edge.add(
        "loops",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "l1"},
            "spec": {
                "loopId": "running-1",
                "transport": "local",
                "source": {"pvc": {"claimName": "claim-a"}},
            },
        },
    )
    assert loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx).outcome == "success"
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "running-1"
    cursor_before = (ops / "cursor.json").read_text()
    # The state file's place is taken by a non-empty directory: every state write fails.
    (ops / "state.json").unlink()
    (ops / "state.json").mkdir()
    (ops / "state.json" / "keep").write_text("x")
    sim.run(3)
    clock.advance(5)
    report = loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx)
    assert report.outcome == "blocked"
    assert report.retry_after is not None
    ready = _ready(edge.get("loops", "l1"))
    assert (ready["status"], ready["reason"]) == ("False", "JournalUnwritable")
    assert "journal write failed" in str(ready["message"])
    assert "JournalUnwritable" in edge.reasons("l1")
    assert (ops / "cursor.json").read_text() == cursor_before  # nothing skipped
    rendered = ctx.metrics.render().decode()
    assert 'reason="journal_unwritable"' in rendered
    # Space returns: the next pass ingests the events it could not store and recovers.
    shutil.rmtree(ops / "state.json")
    clock.advance(5)
    assert loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx).outcome == "success"
    assert _ready(edge.get("loops", "l1"))["status"] == "True"
    assert "ReconcileRecovered" in edge.reasons("l1")
    assert (ops / "cursor.json").read_text() != cursor_before
