"""Ports of the alert-sinks suite's reconcile/status scenarios (9-11): dispatch inside reconcile
with the shipped catalog, the status surface's alert summaries and trace linkage, and parity of
both between the local and sprite_service transports (the service is our own server on
127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import (
    LOOP,
    STALE,
    Cli,
    StartService,
    isolate_cli_env,
    ops_dir,
    read_json,
    service_fixture,
    write_runtime_artifacts,
)

TRACE = "trace-alert-status-1"
FLAGS = (
    "--trace-id",
    TRACE,
    "--alerts-enabled",
    "true",
    "--degraded-ingest-lag-seconds",
    "1",
    "--critical-ingest-lag-seconds",
    "999999999",
)
DISPATCH_KEYS = (
    "status",
    "processedCount",
    "dispatchedCount",
    "skippedCount",
    "failedCount",
    "failureReasonCodes",
)
DELIVERY_KEYS = (
    "status",
    "reasonCode",
    "escalationCategory",
    "eventSeverity",
    "sinkCount",
    "dispatchedSinkCount",
    "failedSinkCount",
)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def start_service() -> Iterator[StartService]:
    yield from service_fixture()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def _repo(tmp_path: Path, name: str) -> Path:
    repo = tmp_path / name
    repo.mkdir()
    write_runtime_artifacts(repo, STALE)
    return repo


def test_reconcile_dispatches_with_the_shipped_catalog_once(cli: Cli, tmp_path: Path) -> None:
    """alert-sinks 9: dispatch runs inside reconcile and never changes its success semantics."""
    repo = _repo(tmp_path, "repo")
    first = cli.reconcile(repo, *FLAGS)
    assert first.code == 0, first.stderr
    assert first.json["health"]["status"] == "degraded"
    state_file = ops_dir(repo) / "alert-dispatch-state.json"
    assert (ops_dir(repo) / "telemetry" / "alerts.jsonl").is_file()
    dispatch = read_json(state_file)
    assert dispatch["processedCount"] >= 1
    assert dispatch["skippedCount"] >= 1
    again = cli.reconcile(repo, *FLAGS)
    assert again.code == 0, again.stderr
    dispatch = read_json(state_file)
    assert (dispatch["status"], dispatch["processedCount"]) == ("no_new_escalations", 0)


def test_status_includes_alert_summaries_and_trace_linkage(cli: Cli, tmp_path: Path) -> None:
    """alert-sinks 10."""
    repo = _repo(tmp_path, "repo")
    assert cli.reconcile(repo, *FLAGS).code == 0
    status = cli.status(repo).json
    dispatch, last = status["alerts"]["dispatch"], status["alerts"]["lastDelivery"]
    assert dispatch["status"] == "success"
    assert dispatch["lastTraceId"] == TRACE
    assert dispatch["processedCount"] >= 1
    assert (last["status"], last["reasonCode"]) == ("skipped", "no_dispatchable_sinks")
    assert last["traceId"] == TRACE
    assert status["traceLinkage"]["reconcileTraceId"] == TRACE
    assert status["traceLinkage"]["alertTraceId"] == TRACE
    assert status["visibility"]["trace"]["alertTraceId"] == TRACE
    assert status["visibility"]["trace"]["sharedTraceId"] == TRACE
    assert status["visibility"]["sequence"]["status"] == "ok"
    files = status["files"]
    assert files["alertDispatchStateFile"] == str(ops_dir(repo) / "alert-dispatch-state.json")
    assert files["alertDispatchTelemetryFile"] == str(ops_dir(repo) / "telemetry" / "alerts.jsonl")
    assert files["sequenceStateFile"] == str(ops_dir(repo) / "sequence-state.json")


def _project(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: document.get(key) for key in keys}


def test_dispatch_and_status_parity_between_transports(
    cli: Cli, tmp_path: Path, start_service: StartService
) -> None:
    """alert-sinks 11: the same escalations give the same dispatch outcome over both transports."""
    local, remote = _repo(tmp_path, "local"), _repo(tmp_path, "service")
    service = start_service(remote)
    assert cli.reconcile(local, *FLAGS).code == 0
    assert cli.reconcile(remote, *service.reconcile_args(), *FLAGS).code == 0
    local_state = read_json(ops_dir(local) / "alert-dispatch-state.json")
    remote_state = read_json(ops_dir(remote) / "alert-dispatch-state.json")
    assert _project(local_state, DISPATCH_KEYS) == _project(remote_state, DISPATCH_KEYS)
    local_alerts = cli.status(local).json["alerts"]
    remote_alerts = cli.status(remote).json["alerts"]
    count_keys = DISPATCH_KEYS[:5]
    assert _project(local_alerts["dispatch"], count_keys) == _project(remote_alerts["dispatch"], count_keys)
    assert _project(local_alerts["lastDelivery"], DELIVERY_KEYS) == _project(
        remote_alerts["lastDelivery"], DELIVERY_KEYS
    )
    assert local_alerts["lastDelivery"]["escalationCategory"] == "health_degraded"
    assert local_state["loopId"] == remote_state["loopId"] == LOOP
