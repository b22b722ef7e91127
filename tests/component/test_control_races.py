"""Concurrent control decisions and journal passes (issue 10, item 3): exactly one winner.

Races run for real: threads in one process, processes forked from the test, and HTTP requests
against the sprite service on 127.0.0.1. Each side effect is counted where it lands (the
approval file, the runtime command's own output, the reconcile telemetry).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from _loop_reconcile_helpers import SIM_RUNTIME, RunningService, event_line, now_ts, write_runtime_artifacts

from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.clock import SystemClock
from superloop_ops.core.loop import threshold_profiles as thresholds_mod
from superloop_ops.engine.loop import control_run as engine_control
from superloop_ops.engine.loop import reconcile_pass as engine_reconcile
from superloop_ops.errors import ContractError
from superloop_ops.service import server as service_server

LOOP = "demo-loop"
_FORK = multiprocessing.get_context("fork")
_T = TypeVar("_T")


def _pending_approval(repo: Path) -> Path:
    loop_dir = repo / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True, exist_ok=True)
    approval = loop_dir / "approval.json"
    approval.write_text(json.dumps({"status": "pending", "run_id": "run-1", "iteration": 3}))
    return approval


def _race(*calls: Callable[[], _T]) -> list[_T]:
    """Run the calls at once on their own threads (released together by a barrier)."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], _T]) -> _T:
        barrier.wait()
        return call()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(start, calls))


def _decide(repo: Path, decision: str) -> str:
    try:
        engine_control.write_approval_decision(
            repo, LOOP, decision=decision, by=decision + "-user", note="", now=SystemClock().now()
        )
    except ContractError as exc:
        return f"refused: {exc}"
    return "ok"


def test_approve_and_reject_in_process_exactly_one_wins(tmp_path: Path) -> None:
    both = 0
    for run in range(200):
        repo = tmp_path / f"r{run}"
        approval = _pending_approval(repo)
        results = _race(
            functools.partial(_decide, repo, "approved"), functools.partial(_decide, repo, "rejected")
        )
        winners = [r for r in results if r == "ok"]
        both += len(winners) == 2
        assert len(winners) >= 1, results
        final = json.loads(approval.read_text())["status"]
        loser = next((r for r in results if r != "ok"), None)
        if loser is not None:
            assert loser == f"refused: approval request is not pending (status={final})"
        decisions = (approval.parent / "decisions.jsonl").read_text().splitlines()
        assert len(decisions) == len(winners)
    assert both == 0, f"approve and reject both succeeded in {both} of 200 runs"


@pytest.fixture
def service(tmp_path: Path) -> Any:
    repo = tmp_path / "svc"
    repo.mkdir()
    config = sprite_cli.build_config(repo.resolve(), token="t", runtime_command=SIM_RUNTIME)
    running = RunningService(service_server.build_server(config, "127.0.0.1", 0))
    yield repo, running
    running.stop()


def test_approve_and_reject_over_http_exactly_one_wins(service: Any) -> None:
    repo, running = service
    both = 0
    with httpx.Client(headers={"X-Ops-Token": "t"}, timeout=30) as client:
        for run in range(200):
            approval = _pending_approval(repo)
            bodies = [
                {"loopId": LOOP, "intent": intent, "noConfirm": True, "idempotencyKey": f"{intent}-{run}"}
                for intent in ("approve", "reject")
            ]
            responses = _race(
                *(functools.partial(client.post, f"{running.url}/ops/control", json=body) for body in bodies)
            )
            winners = [r for r in responses if r.status_code == 200]
            both += len(winners) == 2
            assert len(winners) >= 1, [r.text for r in responses]
            final = json.loads(approval.read_text())["status"]
            for loser in (r for r in responses if r.status_code != 200):
                assert loser.json()["result"]["status"] == "failed_command"
                assert (
                    f"approval request is not pending (status={final})"
                    in loser.json()["result"]["commandOutput"]
                )
    assert both == 0, f"approve and reject both succeeded in {both} of 200 runs over HTTP"


def _cancel_in_child(repo: str, counter: str, key: str, barrier: Any) -> None:
    request = engine_control.ControlRequest(
        repo=Path(repo),
        loop_id=LOOP,
        intent="cancel",
        idempotency_key=key,
        do_confirm=False,
        # the "runtime": every execution appends one line to the counter file
        runtime_command=("sh", "-c", f"echo executed >> {counter}"),
    )
    barrier.wait()
    engine_control.execute_control(request)


def test_two_processes_with_one_idempotency_key_execute_once(tmp_path: Path) -> None:
    write_runtime_artifacts(tmp_path, now_ts(), LOOP)
    twice = []
    for n in range(10):
        counter = tmp_path / f"counter-{n}"
        barrier = _FORK.Barrier(2)
        children = [
            _FORK.Process(target=_cancel_in_child, args=(str(tmp_path), str(counter), f"key-{n}", barrier))
            for _ in range(2)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
            assert child.exitcode == 0
        if len(counter.read_text().splitlines()) != 1:
            twice.append(n)
    assert twice == [], f"keys executed twice: {twice}"


def _reconcile_in_child(repo: str, barrier: Any) -> None:
    options = engine_reconcile.ReconcileOptions(
        repo=Path(repo),
        loop_id=LOOP,
        thresholds=thresholds_mod.compute_thresholds(None),  # the built-in defaults
        alerts=engine_reconcile.AlertSettings(enabled=False),
    )
    barrier.wait()
    engine_reconcile.run_reconcile(options)


def test_concurrent_reconcile_passes_ingest_each_event_once(tmp_path: Path) -> None:
    stamp = now_ts()
    write_runtime_artifacts(tmp_path, stamp, LOOP)
    events = tmp_path / ".superloop" / "loops" / LOOP / "events.jsonl"
    events.write_text("".join(event_line("iteration_start", stamp, i, LOOP) for i in range(100)))
    barrier = _FORK.Barrier(2)
    children = [_FORK.Process(target=_reconcile_in_child, args=(str(tmp_path), barrier)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    telemetry = tmp_path / ".superloop" / "ops-manager" / LOOP / "telemetry" / "reconcile.jsonl"
    rows = [json.loads(line) for line in telemetry.read_text().splitlines()]
    assert len(rows) == 2
    assert sum(row["eventsIngested"] for row in rows) == 100


# --- item 4: an idempotency key is bound to its request ------------------------------------------


def test_service_refuses_a_key_reused_for_a_different_request(service: Any) -> None:
    repo, running = service
    write_runtime_artifacts(repo, now_ts(), LOOP)
    url = f"{running.url}/ops/control"
    cancel = {"loopId": LOOP, "intent": "cancel", "noConfirm": True, "idempotencyKey": "k-1"}
    with httpx.Client(headers={"X-Ops-Token": "t"}, timeout=30) as client:
        first = client.post(url, json=cancel)
        assert first.status_code == 200
        # the same request again (another trace) is a replay
        again = client.post(url, json={**cancel, "traceId": "another-trace"})
        assert again.status_code == 200
        assert again.json()["replayed"] is True
        assert "requestFingerprint" not in again.json()
        for other in (
            {**cancel, "intent": "reject"},
            {**cancel, "note": "changed"},
            {**cancel, "by": "mallory"},
        ):
            refused = client.post(url, json=other)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "idempotency_key_conflict"
            assert "'k-1' was already used for a different request" in refused.json()["error"]["message"]
    inner = (repo / ".superloop" / "ops-manager" / LOOP / "intents.jsonl").read_text().splitlines()
    assert len(inner) == 1


def test_local_control_refuses_a_key_reused_for_a_different_request(tmp_path: Path) -> None:
    _pending_approval(tmp_path)

    def approve(by: str, note: str) -> engine_control.ControlOutcome:
        request = engine_control.ControlRequest(
            repo=tmp_path,
            loop_id=LOOP,
            intent="approve",
            by=by,
            note=note,
            idempotency_key="k-2",
            do_confirm=False,
        )
        return engine_control.execute_control(request)

    assert approve("alice", "ship it").status == "executed_unconfirmed"
    assert approve("alice", "ship it").replayed is True
    for by, note in (("bob", "ship it"), ("alice", "ship it now")):
        with pytest.raises(ContractError, match="k-2' was already used for a different request"):
            approve(by, note)
