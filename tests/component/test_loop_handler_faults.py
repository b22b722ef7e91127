"""A Loop pass that cannot write its journal, through the handler (issue 10, item 9).

Real files, the simulator as the runtime, an in-memory API server: the failure must reach the
status (Ready=False with its reason), an Event and the metrics, and the pass must recover once
the journal can be written again.
"""

from __future__ import annotations

import json
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


def _add_loop(edge: FakeEdge, spec: dict[str, object]) -> None:
    edge.add(
        "loops",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "l1"},
            "spec": spec,
        },
    )


def test_an_unwritable_journal_reaches_status_events_and_metrics(tmp_path: Path, clock: FrozenClock) -> None:
    sim = Simulator(tmp_path / "sim", clock, loops=1, scenarios=["running"], loop_prefix="running")
    sim.run(4)
    edge = FakeEdge(NS)
    pvcs = {"claim-a": sim.repo_of("running-1")}
    ctx = build_context(
        tmp_path, edge, clock, pvcs, control_confirm_timeout_seconds=20, status_refresh_seconds=300
    )
    _add_loop(
        edge, {"loopId": "running-1", "transport": "local", "source": {"pvc": {"claimName": "claim-a"}}}
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


class _BrokenSecretsEdge(FakeEdge):
    """An API client that fails in a way the pass does not anticipate (not an operator error)."""

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str:
        raise RuntimeError("client library bug")


def test_an_unanticipated_exception_reaches_status_events_and_metrics(
    tmp_path: Path, clock: FrozenClock
) -> None:
    edge = _BrokenSecretsEdge(NS)
    ctx = build_context(tmp_path, edge, clock, {}, control_confirm_timeout_seconds=20)
    service = {"baseUrl": "http://127.0.0.1:9", "tokenSecretRef": {"name": "t", "key": "k"}}
    _add_loop(edge, {"loopId": "remote-1", "transport": "sprite_service", "service": service})
    report = loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx)
    assert report.outcome == "blocked"
    ready = _ready(edge.get("loops", "l1"))
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    assert "RuntimeError: client library bug" in str(ready["message"])
    assert "InternalError" in edge.reasons("l1")
    assert 'reason="internal_error"' in ctx.metrics.render().decode()


@pytest.mark.parametrize("size", [200_000, 3_000_000])
def test_a_huge_event_keeps_the_loop_status_small(tmp_path: Path, clock: FrozenClock, size: int) -> None:
    """Item 15: a large payload (stored truncated) or an oversized line (consumed from its head)
    is never mirrored whole into the Loop status."""
    sim = Simulator(tmp_path / "sim", clock, loops=1, scenarios=["running"], loop_prefix="running")
    sim.run(4)
    events = sim.repo_of("running-1") / ".superloop" / "loops" / "running-1" / "events.jsonl"
    last = json.loads(events.read_text().splitlines()[-1])
    with events.open("a") as handle:
        handle.write(json.dumps({**last, "data": {"blob": "x" * size}}) + "\n")
    edge = FakeEdge(NS)
    ctx = build_context(
        tmp_path, edge, clock, {"claim-a": sim.repo_of("running-1")}, control_confirm_timeout_seconds=20
    )
    _add_loop(
        edge, {"loopId": "running-1", "transport": "local", "source": {"pvc": {"claimName": "claim-a"}}}
    )
    assert loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx).outcome == "success"
    status = edge.get("loops", "l1")["status"]
    assert status["cursor"]["eventLineOffset"] == len(events.read_text().splitlines())
    assert len(json.dumps(status)) < 16 * 1024
