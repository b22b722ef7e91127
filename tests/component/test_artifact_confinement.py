"""Symbolic links inside ``.superloop/`` never lead the manager out of the repository (issue 10 item 7).

Real files and links under tmp_path; the sprite service runs on 127.0.0.1. Each test plants a
link to a file (or directory) outside the repository and checks the outside content is neither
served nor written, and that the refusal carries the ``artifact_outside_repo`` reason code.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _loop_reconcile_helpers import SIM_RUNTIME, RunningService, now_ts, write_runtime_artifacts

from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.engine.loop import control_run as engine_control
from superloop_ops.errors import ContractError
from superloop_ops.service import server as service_server
from superloop_ops.transports import local as local_transport

LOOP = "demo-loop"
SECRET = "s3cr3t-outside-the-repo"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    write_runtime_artifacts(repo, now_ts(), LOOP)
    return repo, outside


@pytest.fixture
def service(layout: tuple[Path, Path]) -> Iterator[RunningService]:
    repo, _ = layout
    config = sprite_cli.build_config(repo.resolve(), token="t", runtime_command=SIM_RUNTIME)
    running = RunningService(service_server.build_server(config, "127.0.0.1", 0))
    yield running
    running.stop()


def _loop_dir(repo: Path) -> Path:
    return repo / ".superloop" / "loops" / LOOP


def _link(link: Path, target: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def test_snapshot_refuses_an_approval_file_linked_outside(
    layout: tuple[Path, Path], service: RunningService
) -> None:
    repo, outside = layout
    (outside / "secret.json").write_text(json.dumps({"status": "pending", "token": SECRET}))
    _link(_loop_dir(repo) / "approval.json", outside / "secret.json")
    response = httpx.get(f"{service.url}/ops/snapshot", params={"loopId": LOOP}, headers={"X-Ops-Token": "t"})
    assert SECRET not in response.text
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "artifact_outside_repo"


def test_events_refuse_an_events_file_linked_outside(
    layout: tuple[Path, Path], service: RunningService
) -> None:
    repo, outside = layout
    (outside / "other.jsonl").write_text(json.dumps({"event": "x", "secret": SECRET}) + "\n")
    _link(_loop_dir(repo) / "events.jsonl", outside / "other.jsonl")
    response = httpx.get(f"{service.url}/ops/events", params={"loopId": LOOP}, headers={"X-Ops-Token": "t"})
    assert SECRET not in response.text
    assert response.json()["error"]["code"] == "artifact_outside_repo"


def test_a_loop_directory_linked_outside_is_refused(layout: tuple[Path, Path]) -> None:
    repo, outside = layout
    foreign = outside / "foreign-loop"
    write_runtime_artifacts(foreign, now_ts(), LOOP)
    loops = repo / ".superloop" / "loops"
    (loops / "elsewhere").symlink_to(foreign / ".superloop" / "loops" / LOOP, target_is_directory=True)
    with pytest.raises(ContractError, match="artifact_outside_repo"):
        local_transport.fetch_snapshot(repo, "elsewhere", trace_id=None, now=dt.datetime.now(dt.UTC))
    with pytest.raises(ContractError, match="artifact_outside_repo"):
        local_transport.fetch_events(repo, "elsewhere", offset=0, trace_id=None, now=dt.datetime.now(dt.UTC))


def test_links_that_stay_inside_the_repository_still_work(layout: tuple[Path, Path]) -> None:
    repo, _ = layout
    real = repo / "elsewhere-in-repo.jsonl"
    _loop_dir(repo).joinpath("events.jsonl").rename(real)
    _link(_loop_dir(repo) / "events.jsonl", real)
    batch = local_transport.fetch_events(repo, LOOP, offset=0, trace_id=None, now=dt.datetime.now(dt.UTC))
    assert len(batch.events) == 2


@pytest.mark.parametrize("name", ["decisions.md", "decisions.jsonl", "events.jsonl", "approval.json"])
def test_approve_never_writes_through_a_link_outside(layout: tuple[Path, Path], name: str) -> None:
    repo, outside = layout
    (_loop_dir(repo) / "approval.json").write_text(
        json.dumps({"status": "pending", "run_id": "r", "iteration": 1})
    )
    target = outside / f"victim-{name}"
    original = json.dumps({"status": "pending"}) if name == "approval.json" else "untouched\n"
    target.write_text(original)
    _link(_loop_dir(repo) / name, target)
    request = engine_control.ControlRequest(
        repo=repo, loop_id=LOOP, intent="approve", by="alice", note="line one\nline two", do_confirm=False
    )
    outcome = engine_control.execute_control(request)
    assert target.read_text() == original
    assert outcome.status == "failed_command"
    assert "artifact_outside_repo" in outcome.intent_row["commandOutput"]
