"""The Loop handler on artifacts recorded from the real Superloop runtime (issue 11).

What a person sees on the Loop object (status, conditions, Events) and in the metrics, with a
frozen clock placed relative to the recording: a finished loop stays quiet an hour later, an
approval waiting 20 minutes reminds without paging, a dead runner is seen on the next pass, and
usage and cost per loop reach the metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import real_runtime
from helpers.operator_fakes import FakeEdge, build_context
from superloop_ops.clock import FrozenClock
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext

NS = "team-a"


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


def _reconcile(
    tmp_path: Path, edge: FakeEdge, scenario: str, *offsets: float
) -> tuple[dict[str, Any], OperatorContext]:
    installed = real_runtime.install(scenario, tmp_path / "repo")
    clock = FrozenClock(installed.at(offsets[0]))
    ctx = build_context(
        tmp_path,
        edge,
        clock,
        {"claim-a": installed.repo},
        control_confirm_timeout_seconds=20,
        status_refresh_seconds=300,
    )
    edge.add(
        "loops",
        {
            "apiVersion": "ops.superloop.dev/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": "rr"},
            "spec": {
                "loopId": real_runtime.LOOP,
                "transport": "local",
                "source": {"pvc": {"claimName": "claim-a"}},
            },
        },
    )
    for offset in offsets:
        clock.advance((installed.at(offset) - clock.now()).total_seconds())
        loop_handlers.reconcile_loop(edge.get("loops", "rr"), ctx)
    return edge.get("loops", "rr"), ctx


def test_completed_loop_is_quiet_an_hour_later(tmp_path: Path, edge: FakeEdge) -> None:
    body, ctx = _reconcile(tmp_path, edge, "complete", 10, 20 * 60, 3600)
    status = body["status"]
    assert (status["lifecycle"], status["healthStatus"], status["reasonCodes"]) == ("complete", "healthy", [])
    reasons = edge.reasons("rr")
    assert not {"HealthCritical", "HealthDegraded"} & set(reasons)
    rendered = ctx.metrics.render().decode()
    assert 'superloop_ops_loop_run_outcome{loop="rr",namespace="team-a",outcome="complete"} 1.0' in rendered
    assert 'superloop_ops_loop_role_calls{loop="rr",namespace="team-a",role="implementer"} 1.0' in rendered
    assert 'superloop_ops_loop_cost_usd{loop="rr",namespace="team-a",role="implementer"}' in rendered
    planner_input = 'superloop_ops_loop_tokens{kind="input",loop="rr",namespace="team-a",role="planner"}'
    assert f"{planner_input} 1200.0" in rendered
    assert status["state"]["signals"]["usage"]["calls"] == 4


def test_approval_waiting_reminds_without_paging(tmp_path: Path, edge: FakeEdge) -> None:
    body, _ = _reconcile(tmp_path, edge, "approval_waiting", 60, 20 * 60)
    status = body["status"]
    assert (status["healthStatus"], status["reasonCodes"]) == ("degraded", ["approval_waiting"])
    assert "HealthCritical" not in edge.reasons("rr")


def test_runner_failure_is_seen_on_the_next_pass(tmp_path: Path, edge: FakeEdge) -> None:
    body, ctx = _reconcile(tmp_path, edge, "runner_failure", 15)
    status = body["status"]
    assert status["lifecycle"] == "running"
    assert (status["healthStatus"], status["reasonCodes"]) == ("critical", ["run_dead"])
    assert "RunDead" in edge.reasons("rr")
    rendered = ctx.metrics.render().decode()
    assert 'superloop_ops_loop_run_outcome{loop="rr",namespace="team-a",outcome="dead"} 1.0' in rendered


@pytest.mark.parametrize(
    ("scenario", "code", "event"),
    [
        ("cancelled", "run_cancelled", "RunCancelled"),
        ("role_timeout", "run_timed_out", "RunTimedOut"),
        ("max_iterations", "run_max_iterations", "RunMaxIterations"),
    ],
)
def test_stops_show_as_such(tmp_path: Path, edge: FakeEdge, scenario: str, code: str, event: str) -> None:
    body, _ = _reconcile(tmp_path, edge, scenario, 30, 3600)
    assert code in body["status"]["health"]["reasonCodes"]
    assert event in edge.reasons("rr")
    assert "HealthCritical" not in edge.reasons("rr")
