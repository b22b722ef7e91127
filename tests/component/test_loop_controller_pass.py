"""The Loop controller's pass (``controllers.loop_controller.run_loop_pass``) on real files: the
status surface it mirrors uses the injected clock, and the view carries this pass's documents."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import LOOP, isolate_cli_env, read_json, write_heartbeat, write_runtime_artifacts

from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import loop_controller
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.engine.loop import tuning_pass
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings

NS = "team-a"
CLAIM = "loop-pvc"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def _loop() -> Loop:
    spec: dict[str, Any] = {"loopId": LOOP, "transport": "local", "source": {"pvc": {"claimName": CLAIM}}}
    return Loop.from_body({"metadata": {"name": "l1", "namespace": NS}, "spec": spec})


def _target(tmp_path: Path) -> loop_controller.LoopTarget:
    (tmp_path / "pvc").mkdir(exist_ok=True)
    settings = Settings(
        state_dir=tmp_path / "state",
        pvc_dirs={(NS, CLAIM): tmp_path / "pvc"},
        pvc_mount_root=tmp_path / "mounts",
    )
    return loop_controller.build_loop_target(_loop(), NS, "l1", settings)


def _pass(
    target: loop_controller.LoopTarget, clock: FrozenClock
) -> loop_controller.loop_resource.LoopPassView:
    view, _ = loop_controller.run_loop_pass(
        _loop(), target, token=None, replay_token=None, replay_pending=False, clock=clock
    )
    return view


def test_the_status_surface_summary_is_taken_at_the_injected_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The telemetry summary behind the surface's ``tuning`` block is computed at the pass's clock,
    not at the wall clock (a frozen clock a day back makes the two differ)."""
    frozen = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    target = _target(tmp_path)
    write_runtime_artifacts(target.repo, format_ts(frozen - dt.timedelta(seconds=30)))
    summaries: list[JsonObject] = []
    real = tuning_pass.compute_summary

    def recording(*args: Any, **kwargs: Any) -> JsonObject:
        summary = real(*args, **kwargs)
        summaries.append(summary)
        return summary

    monkeypatch.setattr(tuning_pass, "compute_summary", recording)
    view = _pass(target, FrozenClock(frozen))
    assert view.outcome == "success"
    assert {summary["generatedAt"] for summary in summaries} == {format_ts(frozen)}
    assert view.surface["tuning"]["telemetrySummary"]["observed"]["reconcileAttempts"] == 1


@pytest.mark.parametrize("artifacts", [True, False], ids=["success", "failed-ingest"])
def test_the_view_carries_the_documents_the_pass_wrote(tmp_path: Path, artifacts: bool) -> None:
    """State, heartbeat, sequence and transport health in the view are exactly the journal's files
    after the pass (they are passed in memory, not read back)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    target = _target(tmp_path)
    write_runtime_artifacts(target.repo, format_ts(now - dt.timedelta(seconds=30)))
    write_heartbeat(target.repo, format_ts(now - dt.timedelta(seconds=10)))
    _pass(target, FrozenClock(now))
    if not artifacts:
        (target.repo / ".superloop" / "loops" / LOOP / "events.jsonl").unlink()
    view = _pass(target, FrozenClock(now + dt.timedelta(seconds=60)))
    assert view.outcome == ("success" if artifacts else "failed")
    ops = target.ops_dir
    assert view.state == read_json(ops / "state.json")
    assert view.heartbeat == read_json(ops / "heartbeat.json")
    assert view.sequence == read_json(ops / "sequence-state.json")
    assert view.transport_health == read_json(ops / "telemetry" / "transport-health.json")


def test_a_pass_reads_the_summary_window_once_and_a_new_row_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift evaluation and the status surface summarize the same window of reconcile.jsonl: it
    is read once per pass (twice before issue 12), and each pass's summary still counts the row that
    pass appended (the kept window is keyed by the file's size and mtime)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    target = _target(tmp_path)
    write_runtime_artifacts(target.repo, format_ts(now - dt.timedelta(seconds=30)))
    reads: list[str] = []
    real = tuning_pass.fetch_tail_lines

    def recording(path: Path, count: int) -> list[str]:
        reads.append(Path(path).name)
        return real(path, count)

    monkeypatch.setattr(tuning_pass, "fetch_tail_lines", recording)
    for number in (1, 2, 3):
        reads.clear()
        view = _pass(target, FrozenClock(now + dt.timedelta(seconds=30 * number)))
        assert reads.count("reconcile.jsonl") == 1
        assert view.surface["tuning"]["telemetrySummary"]["observed"]["reconcileAttempts"] == number
        assert view.state is not None
        assert view.state["tuning"]["telemetrySummary"]["observed"]["reconcileAttempts"] == number
