"""Shared fixtures for the loop reconcile/status component tests (real files, real HTTP on loopback).

"Runtime artifacts at T": a repo-level ``.superloop/state.json`` (active, iteration 2, this loop),
a loop ``run-summary.json`` with run ``run-123``, and ``events.jsonl`` holding ``loop_start`` and
``iteration_start`` stamped T. Commands run in-process through ``superloop_ops.cli.main``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from superloop_ops.cli import main as cli_main
from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.service import server as service_server

LOOP = "demo-loop"
TOKEN = "test-token"
STALE = "2020-01-01T00:00:00Z"
SIM_RUNTIME = (sys.executable, "-m", "superloop_ops.cli.main", "simulate")
HUGE_INGEST = ("--degraded-ingest-lag-seconds", "999999", "--critical-ingest-lag-seconds", "9999999")


#: Environment variables the CLI reads as defaults; cleared so a developer's shell cannot leak in.
CLI_ENV_NAMES = (
    "OPS_MANAGER_TRACE_ID",
    "OPS_MANAGER_THRESHOLD_PROFILE",
    "OPS_MANAGER_THRESHOLD_PROFILES_FILE",
    "OPS_MANAGER_ALERTS_ENABLED",
    "OPS_MANAGER_ALERT_SINKS_FILE",
    "OPS_MANAGER_DRIFT_MIN_CONFIDENCE",
    "OPS_MANAGER_DRIFT_REQUIRED_STREAK",
    "OPS_MANAGER_DRIFT_SUMMARY_WINDOW",
    "OPS_MANAGER_SERVICE_TOKEN",
)


def isolate_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the CLI's env defaults and point cancel at the simulator's runtime CLI."""
    for name in CLI_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", shlex.join(SIM_RUNTIME))


def now_ts() -> str:
    return format_ts(dt.datetime.now(dt.UTC))


def write_runtime_artifacts(repo: Path, event_ts: str, loop_id: str = LOOP) -> None:
    loop_dir = repo / ".superloop" / "loops" / loop_id
    loop_dir.mkdir(parents=True, exist_ok=True)
    (repo / ".superloop" / "state.json").write_text(
        json.dumps(
            {
                "active": True,
                "loop_index": 0,
                "iteration": 2,
                "current_loop_id": loop_id,
                "updated_at": event_ts,
            }
        )
    )
    # A live run of the real runtime always has its active-run record (issue 11: without it,
    # an active state is a dead run).
    (repo / ".superloop" / "active-run.json").write_text(
        json.dumps({"repo": str(repo), "pid": 4242, "pgid": 4242, "loop_id": loop_id, "iteration": 2,
                    "stage": "iteration", "updated_at": event_ts})
    )
    entry = {
        "run_id": "run-123",
        "iteration": 1,
        "gates": {
            "tests": "ok",
            "validation": "ok",
            "prerequisites": "ok",
            "checklist": "ok",
            "evidence": "skipped",
            "approval": "none",
        },
        "stuck": {"streak": 0, "threshold": 3},
        "completion_ok": False,
        "ended_at": event_ts,
    }
    (loop_dir / "run-summary.json").write_text(
        json.dumps({"version": 1, "loop_id": loop_id, "updated_at": event_ts, "entries": [entry]})
    )
    events = [
        event_line("loop_start", event_ts, 1, loop_id),
        event_line("iteration_start", event_ts, 2, loop_id),
    ]
    (loop_dir / "events.jsonl").write_text("".join(events))
    _touch_all(repo / ".superloop", event_ts)


def _touch_all(root: Path, stamp: str) -> None:
    """Files written "at" ``stamp``: their modification times say so too (liveness reads them)."""
    moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (moment, moment))


def event_line(name: str, event_ts: str, iteration: int, loop_id: str = LOOP) -> str:
    return (
        json.dumps(
            {
                "timestamp": event_ts,
                "event": name,
                "loop_id": loop_id,
                "run_id": "run-123",
                "iteration": iteration,
                "data": {},
            }
        )
        + "\n"
    )


def write_heartbeat(repo: Path, heartbeat_ts: str, loop_id: str = LOOP) -> None:
    (repo / ".superloop" / "loops" / loop_id / "heartbeat.v1.json").write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "timestamp": heartbeat_ts,
                "source": "runtime",
                "status": "running",
                "stage": "iteration",
            }
        )
    )


def trim_events_to_first_line(repo: Path, loop_id: str = LOOP) -> None:
    events = repo / ".superloop" / "loops" / loop_id / "events.jsonl"
    first = events.read_text().splitlines(keepends=True)[0]
    events.write_text(first)


def ops_dir(repo: Path, loop_id: str = LOOP) -> Path:
    return repo / ".superloop" / "ops-manager" / loop_id


def journal_defects(directory: Path) -> list[str]:
    """What a crash or a full disk must never leave in a journal: temp files, torn rows, documents
    or rows that do not parse (parsing raises)."""
    defects = []
    for path in directory.rglob("*"):
        if path.is_dir():
            continue
        if path.name.endswith(".tmp"):
            defects.append(f"temp file left: {path.name}")
            continue
        text = path.read_text()
        if path.suffix == ".jsonl":
            if text and not text.endswith("\n"):
                defects.append(f"torn row: {path.name}")
            for line in text.splitlines():
                json.loads(line)
        elif path.suffix == ".json":
            json.loads(text)
    return defects


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def last_row(path: Path) -> Any:
    return json.loads(path.read_text().splitlines()[-1])


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``superloop-ops`` in-process and captures its output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> CliResult:
        self._capsys.readouterr()
        code = cli_main.main(list(argv))
        out, err = self._capsys.readouterr()
        return CliResult(code, out, err)

    def reconcile(self, repo: Path, *extra: str) -> CliResult:
        return self("reconcile", "--repo", str(repo), "--loop", LOOP, *extra)

    def status(self, repo: Path, *extra: str) -> CliResult:
        result = self("status", "--repo", str(repo), "--loop", LOOP, *extra)
        assert result.code == 0, result.stderr
        return result


class RunningService:
    def __init__(self, server: service_server.SpriteServiceServer) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.port}"
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def reconcile_args(self) -> tuple[str, ...]:
        return ("--transport", "sprite_service", "--service-base-url", self.url, "--service-token", TOKEN)


StartService = Callable[[Path], RunningService]


def service_fixture() -> Iterator[StartService]:
    running: list[RunningService] = []

    def start(repo: Path) -> RunningService:
        config = sprite_cli.build_config(repo.resolve(), token=TOKEN, runtime_command=SIM_RUNTIME)
        service = RunningService(service_server.build_server(config, "127.0.0.1", 0))
        running.append(service)
        response = httpx.get(f"{service.url}/healthz", headers={"X-Ops-Token": TOKEN}, timeout=5)
        assert response.status_code == 200
        return service

    yield start
    for service in running:
        service.stop()
