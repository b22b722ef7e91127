"""``superloop-ops status`` on real ops directories: reading rules, errors, defaults, read-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _loop_reconcile_helpers import HUGE_INGEST, LOOP, Cli, now_ts, ops_dir, write_runtime_artifacts


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "OPS_MANAGER_TRACE_ID",
        "OPS_MANAGER_THRESHOLD_PROFILE",
        "OPS_MANAGER_THRESHOLD_PROFILES_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "repo"
    path.mkdir()
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_no_artifacts_fails(cli: Cli, repo: Path) -> None:
    result = cli("status", "--repo", str(repo), "--loop", LOOP)
    assert (result.code, result.stderr.strip()) == (1, f"error: no status artifacts found for loop: {LOOP}")


@pytest.mark.parametrize("window", ["0", "x", "-2"])
def test_summary_window_validation(cli: Cli, repo: Path, window: str) -> None:
    result = cli("status", "--repo", str(repo), "--loop", LOOP, "--summary-window", window)
    assert result.stderr.strip() == "error: --summary-window must be an integer >= 1"


def test_required_flags(cli: Cli, repo: Path) -> None:
    assert cli("status", "--loop", LOOP).stderr.strip() == "error: --repo is required"
    assert cli("status", "--repo", str(repo)).stderr.strip() == "error: --loop is required"


def test_only_health_file_is_enough(cli: Cli, repo: Path) -> None:
    ops_dir(repo).mkdir(parents=True)
    (ops_dir(repo) / "health.json").write_text(json.dumps({"status": "healthy"}))
    document = cli.status(repo).json
    assert document["health"] == {"status": "healthy"}
    assert document["lifecycle"]["state"] == "unknown"
    assert document["visibility"] == {"trace": {}}
    assert "drift" not in document
    assert "alerts" not in document
    assert document["tuning"]["telemetrySummary"] is None
    assert document["source"] == {"repoPath": str(repo), "loopId": LOOP}
    files = document["files"]
    assert files["stateFile"] == str(ops_dir(repo) / "state.json")
    assert files["reconcileTelemetryFile"] == str(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert files["controlInvocationsFile"] == str(ops_dir(repo) / "telemetry" / "control-invocations.jsonl")
    assert len(files) == 15


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("state.json", "invalid state JSON"),
        ("cursor.json", "invalid cursor JSON"),
        ("health.json", "invalid health JSON"),
        ("heartbeat.json", "invalid heartbeat state JSON"),
        ("sequence-state.json", "invalid sequence state JSON"),
        ("profile-drift.json", "invalid drift JSON"),
        ("alert-dispatch-state.json", "invalid alert dispatch state JSON"),
    ],
)
def test_unparseable_documents_are_fatal(cli: Cli, repo: Path, name: str, message: str) -> None:
    ops_dir(repo).mkdir(parents=True)
    (ops_dir(repo) / "health.json").write_text("{}")
    (ops_dir(repo) / name).write_text("{broken")
    result = cli("status", "--repo", str(repo), "--loop", LOOP)
    assert result.code == 1
    assert result.stderr.strip() == f"error: {message}: {ops_dir(repo) / name}"


def test_only_the_physical_last_log_line_counts(cli: Cli, repo: Path) -> None:
    ops_dir(repo).mkdir(parents=True)
    (ops_dir(repo) / "health.json").write_text("{}")
    intents = ops_dir(repo) / "intents.jsonl"
    intents.write_text(json.dumps({"intent": "cancel", "status": "confirmed", "traceId": "c"}) + "\n{torn")
    assert cli.status(repo).json["control"]["lastIntent"] is None
    intents.write_text(json.dumps({"intent": "cancel", "status": "confirmed", "traceId": "c"}) + "\n")
    control = cli.status(repo).json["control"]
    assert (control["lastIntent"], control["lastStatus"], control["lastTraceId"]) == (
        "cancel",
        "confirmed",
        "c",
    )


def test_status_after_reconcile_is_read_only_and_links_traces(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    assert cli.reconcile(repo, "--trace-id", "trace-status-1", *HUGE_INGEST).code == 0
    before = _snapshot(repo)
    document = cli.status(repo, "--pretty").json
    assert _snapshot(repo) == before
    assert document["lifecycle"]["state"] == "running"
    assert document["cursor"] == {"eventLineOffset": 2, "eventLineCount": 2}
    assert document["reconcile"]["lastStatus"] == "success"
    assert document["reconcile"]["lastTransport"] == "local"
    assert document["visibility"]["sequence"]["status"] == "ok"
    assert document["alerts"]["dispatch"]["lastTraceId"] == "trace-status-1"
    assert document["traceLinkage"]["reconcileTraceId"] == "trace-status-1"
    assert document["traceLinkage"]["sharedTraceId"] == "trace-status-1"
    assert document["visibility"]["trace"]["sharedTraceId"] == "trace-status-1"
    assert document["tuning"]["appliedProfile"] == "balanced"
    assert document["tuning"]["telemetrySummary"]["source"]["window"] == 200


def test_path_overrides_are_used_and_reported(cli: Cli, repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"status": "critical"}))
    document = cli.status(repo, "--health-file", str(elsewhere)).json
    assert document["health"] == {"status": "critical"}
    assert document["files"]["healthFile"] == str(elsewhere)


def test_engine_status_with_separate_journal_dir(repo: Path, tmp_path: Path) -> None:
    import dataclasses
    import datetime as dt

    from superloop_ops.core.loop import threshold_profiles
    from superloop_ops.engine.loop import reconcile_pass, status_read

    write_runtime_artifacts(repo, now_ts())
    journal = tmp_path / "journal" / LOOP
    options = reconcile_pass.ReconcileOptions(
        repo=repo, loop_id=LOOP, thresholds=threshold_profiles.compute_thresholds(None), ops_dir=journal
    )
    result = reconcile_pass.run_reconcile(dataclasses.replace(options, trace_id="journal-1"))
    assert result.exit_code == 0
    assert (journal / "state.json").is_file()
    assert not ops_dir(repo).exists()
    paths = status_read.StatusPaths.build(repo, LOOP, ops_dir=journal)
    document = status_read.fetch_status(repo, LOOP, now=dt.datetime.now(dt.UTC), paths=paths)
    assert document["reconcile"]["lastTraceId"] == "journal-1"
    assert document["files"]["healthFile"] == str(journal / "health.json")
