"""Reconcile over the local transport on real repositories (observability/visibility bats, local half).

Every command runs through ``superloop_ops.cli.main`` on a tmp repository; the files written
are then read back exactly as an operator (or the runbook's jq recipes) would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from _loop_reconcile_helpers import (
    HUGE_INGEST,
    LOOP,
    STALE,
    Cli,
    event_line,
    isolate_cli_env,
    last_row,
    now_ts,
    ops_dir,
    read_json,
    trim_events_to_first_line,
    write_heartbeat,
    write_runtime_artifacts,
)

from superloop_ops.cli import reconcile as cli_reconcile
from superloop_ops.clock import FrozenClock
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import reconcile_pass


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


# --------------------------------------------------------------------- observability.bats


def test_healthy_projection_and_status_surface(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert result.json["health"]["status"] == "healthy"
    assert read_json(ops_dir(repo) / "health.json")["status"] == "healthy"
    assert cli.status(repo).json["health"]["status"] == "healthy"


def test_ingest_stale_degrades_with_escalation(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, STALE)
    result = cli.reconcile(
        repo, "--degraded-ingest-lag-seconds", "1", "--critical-ingest-lag-seconds", "999999999"
    )
    assert result.code == 0, result.stderr
    assert result.json["health"]["status"] == "degraded"
    assert sorted(result.json["health"]["reasonCodes"]) == ["ingest_stale"]
    assert last_row(ops_dir(repo) / "escalations.jsonl")["category"] == "health_degraded"


def test_control_ambiguous_degrades_health(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    ops_dir(repo).mkdir(parents=True)
    (ops_dir(repo) / "intents.jsonl").write_text(
        json.dumps({"timestamp": STALE, "loopId": LOOP, "intent": "approve", "status": "ambiguous"}) + "\n"
    )
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert result.json["health"]["status"] == "degraded"
    assert result.json["health"]["reasonCodes"] == ["control_ambiguous"]


def test_ordering_drift_detection_and_status(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    baseline = cli.reconcile(repo, "--from-start", "--trace-id", "trace-seq-baseline-1", *HUGE_INGEST)
    assert baseline.code == 0, baseline.stderr
    trim_events_to_first_line(repo)
    result = cli.reconcile(repo, "--from-start", "--trace-id", "trace-seq-drift-1", *HUGE_INGEST)
    assert result.code == 0, result.stderr
    health = result.json["health"]
    assert health["status"] == "degraded"
    assert health["traceId"] == "trace-seq-drift-1"
    assert "ordering_drift_detected" in health["reasonCodes"]
    assert (ops_dir(repo) / "telemetry" / "sequence.jsonl").is_file()
    sequence_state = read_json(ops_dir(repo) / "sequence-state.json")
    assert sequence_state["driftActive"] is True
    assert sequence_state["traceId"] == "trace-seq-drift-1"
    assert {"snapshot_sequence_regression", "event_sequence_regression"} <= set(sequence_state["violations"])
    status = cli.status(repo).json
    assert status["visibility"]["sequence"]["status"] == "ordering_drift_detected"
    assert status["visibility"]["sequence"]["driftActive"] is True
    assert status["visibility"]["sequence"]["traceId"] == "trace-seq-drift-1"
    assert status["visibility"]["trace"]["sequenceTraceId"] == "trace-seq-drift-1"
    escalation_rows = [
        json.loads(line) for line in (ops_dir(repo) / "escalations.jsonl").read_text().splitlines()
    ]
    # the truncated file is also a cursor regression: divergence -> ordering drift -> health, in that order
    assert [row["category"] for row in escalation_rows] == [
        "divergence_detected",
        "ordering_drift_detected",
        "health_degraded",
    ]
    assert escalation_rows[-1]["traceId"] == "trace-seq-drift-1"


def test_health_command_critical_transport_from_fixture(cli: Cli, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"projection": {"lastEventAt": now_ts()}, "divergence": {"any": False}}))
    transport = tmp_path / "transport-health.json"
    transport.write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "transport": "sprite_service",
                "lastResult": "failed",
                "failureStreak": 2,
                "lastFailureCode": "service_request_failed",
            }
        )
    )
    result = cli(
        "health",
        "--state-file",
        str(state),
        "--transport-health-file",
        str(transport),
        "--degraded-transport-failure-streak",
        "1",
        "--critical-transport-failure-streak",
        "2",
        "--now",
        now_ts(),
    )
    assert result.code == 0, result.stderr
    assert result.json["status"] == "critical"
    assert result.json["reasonCodes"] == ["transport_unreachable"]
    assert result.json["updatedAt"]
    assert result.json["thresholds"]["profile"] is None


def test_health_command_fails_closed_on_bad_inputs(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert "invalid state JSON" in cli("health", "--state-file", str(bad)).stderr
    assert "invalid sequence state JSON" in cli("health", "--sequence-state-file", str(bad)).stderr
    result = cli("health", "--now", "2026-03-01T12:00:00+00:00")
    assert (result.code, result.stderr.strip()) == (1, "error: --now must be an ISO-8601 UTC timestamp")
    assert cli("health", "--ingest-status", "maybe").code == 1
    missing = cli("health", "--state-file", str(tmp_path / "absent.json"), "--now", "2026-03-01T12:00:00Z")
    assert missing.json["status"] == "healthy"


def test_heartbeat_telemetry_and_stale_reason(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    write_heartbeat(repo, STALE)
    result = cli.reconcile(
        repo,
        *HUGE_INGEST,
        "--degraded-heartbeat-lag-seconds",
        "1",
        "--critical-heartbeat-lag-seconds",
        "999999999",
    )
    assert result.code == 0, result.stderr
    assert result.json["health"]["status"] == "degraded"
    assert result.json["health"]["reasonCodes"] == ["runtime_heartbeat_stale"]
    assert read_json(ops_dir(repo) / "heartbeat.json")["freshnessStatus"] == "degraded"
    assert last_row(ops_dir(repo) / "telemetry" / "heartbeat.jsonl")["status"] == "degraded"
    heartbeat = cli.status(repo).json["visibility"]["heartbeat"]
    assert heartbeat["freshnessStatus"] == "degraded"
    assert heartbeat["reasonCode"] == "runtime_heartbeat_stale"
    assert heartbeat["lastHeartbeatAt"] == STALE


# --------------------------------------------------------------------- core.bats (reconcile)


def test_reconcile_updates_cursor_and_state_across_polls(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    first = cli.reconcile(repo, "--trace-id", "trace-reconcile-1")
    assert first.code == 0, first.stderr
    assert first.json["health"]["traceId"] == "trace-reconcile-1"
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 2
    events = repo / ".superloop" / "loops" / LOOP / "events.jsonl"
    events.write_text(events.read_text() + event_line("role_end", now_ts(), 2))
    second = cli.reconcile(repo, "--max-events", "1", "--trace-id", "trace-reconcile-2")
    assert second.code == 0, second.stderr
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 3
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert (row["traceId"], row["cursorOffsetBefore"], row["cursorOffsetAfter"], row["eventsIngested"]) == (
        "trace-reconcile-2",
        2,
        3,
        1,
    )
    assert second.json["trace"] == {"reconcileTraceId": "trace-reconcile-2"}


def test_divergence_escalation_on_every_divergent_pass(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    state_file = repo / ".superloop" / "state.json"
    state = json.loads(state_file.read_text())
    state["active"] = False
    state_file.write_text(json.dumps(state))
    events = repo / ".superloop" / "loops" / LOOP / "events.jsonl"
    for _ in range(2):
        # divergence is judged against the last polled event, so each pass gets a new one
        events.write_text(events.read_text() + event_line("role_end", now_ts(), 2))
        assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    rows = [json.loads(line) for line in (ops_dir(repo) / "escalations.jsonl").read_text().splitlines()]
    divergence = [row for row in rows if row["category"] == "divergence_detected"]
    assert len(divergence) == 2
    assert divergence[0]["divergenceFlags"]["activeMismatch"] is True
    assert divergence[0]["stateFile"] == str(ops_dir(repo) / "state.json")
    # the health verdict did not change on the second pass: one health row only
    assert [row["category"] for row in rows].count("health_degraded") == 1


# --------------------------------------------------------------------- visibility.bats (local)


def test_stale_heartbeat_and_ordering_drift_with_trace_linkage(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    write_heartbeat(repo, STALE)
    assert cli.reconcile(repo, "--from-start", "--trace-id", "trace-vis-baseline-1", *HUGE_INGEST).code == 0
    trim_events_to_first_line(repo)
    result = cli.reconcile(
        repo,
        "--from-start",
        "--trace-id",
        "trace-vis-drift-1",
        *HUGE_INGEST,
        "--degraded-heartbeat-lag-seconds",
        "1",
        "--critical-heartbeat-lag-seconds",
        "999999999",
    )
    assert result.code == 0, result.stderr
    visibility = cli.status(repo).json["visibility"]
    assert visibility["heartbeat"]["freshnessStatus"] == "degraded"
    assert visibility["heartbeat"]["reasonCode"] == "runtime_heartbeat_stale"
    assert visibility["sequence"]["status"] == "ordering_drift_detected"
    assert visibility["sequence"]["driftActive"] is True
    assert {"snapshot_sequence_regression", "event_sequence_regression"} <= set(
        visibility["sequence"]["violations"]
    )
    trace = visibility["trace"]
    for key in ("reconcileTraceId", "heartbeatTraceId", "sequenceTraceId", "alertTraceId", "sharedTraceId"):
        assert trace[key] == "trace-vis-drift-1", key


def test_control_invocation_audit_fields(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    assert cli.reconcile(repo, "--trace-id", "trace-vis-control-1", *HUGE_INGEST).code == 0
    control = cli(
        "control",
        "--repo",
        str(repo),
        "--loop",
        LOOP,
        "--intent",
        "cancel",
        "--trace-id",
        "trace-vis-control-1",
        "--timeout-seconds",
        "10",
        "--interval-seconds",
        "1",
    )
    assert control.code == 0, control.stderr
    visibility = cli.status(repo).json["visibility"]
    audit = visibility["invocationAudit"]
    assert (audit["intent"], audit["transport"], audit["traceId"]) == (
        "cancel",
        "local",
        "trace-vis-control-1",
    )
    assert (audit["executionStatus"], audit["confirmationStatus"], audit["outcomeStatus"]) == (
        "succeeded",
        "confirmed",
        "confirmed",
    )
    assert visibility["trace"]["controlInvocationTraceId"] == "trace-vis-control-1"


# --------------------------------------------------------------------- failure paths


def test_failed_reconcile_on_empty_repo_and_status_view(cli: Cli, repo: Path) -> None:
    result = cli.reconcile(repo, "--trace-id", "trace-vis-failure-parity-1")
    assert result.code == 1
    health = result.json
    assert health["status"] == "degraded"
    assert health["reasonCodes"] == ["transport_unreachable"]
    assert health["transport"]["failureCode"] == "snapshot_unavailable"
    assert not (ops_dir(repo) / "state.json").exists()
    assert not (ops_dir(repo) / "cursor.json").exists()
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert (row["status"], row["sequenceStatus"], row["failureCode"]) == (
        "failed",
        "skipped_ingest_failed",
        "snapshot_unavailable",
    )
    # The stderr line as the snapshot step printed it, "error: " included (spec §5.11).
    assert row["failureMessage"] == f"error: required artifact root missing: {repo}/.superloop/loops/{LOOP}"
    status = cli.status(repo).json
    assert status["health"]["status"] == "degraded"
    assert status["lifecycle"]["state"] == "unknown"
    assert status["reconcile"]["lastStatus"] == "failed"
    assert status["visibility"]["trace"]["reconcileTraceId"] == "trace-vis-failure-parity-1"


def test_events_failure_keeps_cursor_and_previous_state(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    assert cli.reconcile(repo, "--trace-id", "ok-1", *HUGE_INGEST).code == 0
    before = read_json(ops_dir(repo) / "state.json")
    cursor_before = (ops_dir(repo) / "cursor.json").read_text()
    events = repo / ".superloop" / "loops" / LOOP / "events.jsonl"
    events.write_text(events.read_text() + "{not json}\n" + event_line("role_end", now_ts(), 2))
    result = cli.reconcile(repo, "--trace-id", "bad-1", *HUGE_INGEST)
    assert result.code == 1
    # issue 10: an invalid line is reported as such, not as an unreachable transport
    assert result.json["transport"]["failureCode"] == "artifact_invalid"
    assert (ops_dir(repo) / "cursor.json").read_text() == cursor_before
    after = read_json(ops_dir(repo) / "state.json")
    assert after["projection"] == before["projection"]
    assert after["sequence"] == before["sequence"]
    assert after["trace"]["reconcileTraceId"] == "bad-1"
    assert after["health"]["reasonCodes"] == ["invalid_artifact"]
    # the drift evaluation still runs on a failed pass and is re-merged into the old state
    assert after["drift"]["traceId"] == "bad-1"
    transport_health = read_json(ops_dir(repo) / "telemetry" / "transport-health.json")
    assert transport_health["failureStreak"] == 0  # the transport delivered the file
    assert transport_health["lastFailureCode"] == "artifact_invalid"


def test_projection_failure_advances_cursor(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    summary_file = repo / ".superloop" / "loops" / LOOP / "run-summary.json"
    summary = json.loads(summary_file.read_text())
    summary["entries"][0]["completion_ok"] = "maybe"
    summary_file.write_text(json.dumps(summary))
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    assert result.json["reasonCodes"] == ["projection_failed"]
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert (row["cursorOffsetBefore"], row["cursorOffsetAfter"], row["status"]) == (0, 2, "failed")
    assert not (ops_dir(repo) / "sequence-state.json").exists()


def test_threshold_failure_writes_nothing_but_ops_dir(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    result = cli.reconcile(repo, "--threshold-profile", "nope")
    assert (result.code, result.stderr.strip()) == (1, "error: unknown threshold profile: nope")
    assert ops_dir(repo).is_dir()
    assert list(ops_dir(repo).iterdir()) == []
    pitfall = cli.reconcile(repo, "--degraded-ingest-lag-seconds", "999999")
    assert pitfall.stderr.strip() == "error: critical ingest lag threshold must be >= degraded threshold"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-events", "-1"), "--max-events must be a non-negative integer"),
        (("--retry-attempts", "0"), "--retry-attempts must be an integer >= 1"),
        (("--retry-backoff-seconds", "x"), "--retry-backoff-seconds must be a non-negative integer"),
        (("--drift-required-streak", "0"), "--drift-required-streak must be an integer >= 1"),
        (("--alerts-enabled", "yes"), "--alerts-enabled must be true or false"),
        (("--transport", "carrier-pigeon"), "--transport must be local or sprite_service"),
        (("--drift-min-confidence", "huge"), "--drift-min-confidence must be one of: low, medium, high"),
        (("--transport", "sprite_service"), "--service-base-url is required when --transport sprite_service"),
    ],
)
def test_argument_validation(cli: Cli, repo: Path, args: tuple[str, ...], message: str) -> None:
    result = cli.reconcile(repo, *args)
    assert (result.code, result.stderr.strip()) == (1, f"error: {message}")


def test_env_fallbacks_for_profile_and_trace(cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_runtime_artifacts(repo, now_ts())
    monkeypatch.setenv("OPS_MANAGER_THRESHOLD_PROFILE", "strict")
    monkeypatch.setenv("OPS_MANAGER_TRACE_ID", "env-trace")
    result = cli.reconcile(repo, "--critical-ingest-lag-seconds", "777")
    assert result.code == 0, result.stderr
    thresholds_doc = result.json["health"]["thresholds"]
    assert (thresholds_doc["profile"], thresholds_doc["criticalIngestLagSeconds"]) == ("strict", 777)
    assert thresholds_doc["degradedIngestLagSeconds"] == 120
    assert result.json["health"]["traceId"] == "env-trace"
    assert last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")["thresholdProfile"] == "strict"
    monkeypatch.setenv("OPS_MANAGER_DRIFT_REQUIRED_STREAK", "zero")
    bad = cli.reconcile(repo)
    assert bad.stderr.strip() == "error: --drift-required-streak must be an integer >= 1"


def test_generated_trace_id_is_a_lowercase_uuid(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    trace = cli.reconcile(repo, "--pretty").json["health"]["traceId"]
    assert len(trace) == 36
    assert trace == trace.lower()


def test_pretty_changes_stdout_only(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    result = cli.reconcile(repo, "--pretty", *HUGE_INGEST)
    assert result.stdout.startswith("{\n")
    assert "\n" not in (ops_dir(repo) / "state.json").read_text().rstrip("\n")


def test_strict_profile_and_override_land_in_health(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    strict = cli.reconcile(repo, "--threshold-profile", "strict").json["health"]["thresholds"]
    assert (strict["profile"], strict["degradedIngestLagSeconds"]) == ("strict", 120)
    override = cli.reconcile(repo, "--threshold-profile", "strict", "--critical-ingest-lag-seconds", "777")
    assert override.json["health"]["thresholds"]["criticalIngestLagSeconds"] == 777


def test_profile_drift_persisted_and_shown_by_status(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    result = cli.reconcile(
        repo,
        "--threshold-profile",
        "balanced",
        "--drift-min-confidence",
        "low",
        "--drift-required-streak",
        "1",
        "--drift-summary-window",
        "25",
    )
    assert result.code == 0, result.stderr
    assert result.json["drift"]["status"] == "drift_active"
    assert result.json["drift"]["recommendedProfile"] == "strict"
    assert result.json["tuning"]["appliedProfile"] == "balanced"
    assert (ops_dir(repo) / "profile-drift.json").is_file()
    assert (ops_dir(repo) / "telemetry" / "profile-drift.jsonl").is_file()
    categories = [
        json.loads(line)["category"]
        for line in (ops_dir(repo) / "escalations.jsonl").read_text().splitlines()
    ]
    assert categories.count("profile_drift_detected") == 1
    status = cli.status(repo, "--summary-window", "25").json
    assert status["drift"]["status"] == "drift_active"
    assert status["drift"]["action"] == "review_threshold_profile"
    assert status["files"]["driftStateFile"] == str(ops_dir(repo) / "profile-drift.json")
    assert status["tuning"]["summaryWindow"] == 25
    assert status["tuning"]["appliedProfile"] == "balanced"
    assert status["tuning"]["recommendedProfile"]


# --------------------------------------------------------------------- engine API and hooks


def _options(repo: Path, **overrides: object) -> reconcile_pass.ReconcileOptions:
    base = reconcile_pass.ReconcileOptions(
        repo=repo,
        loop_id=LOOP,
        thresholds=threshold_profiles.compute_thresholds(None),
        trace_id="hook-trace",
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def test_drift_hook_failure_is_not_fatal_and_alerts_still_run(repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    seen: list[reconcile_pass.PassContext] = []

    def broken_drift(ctx: reconcile_pass.PassContext) -> reconcile_pass.DriftOutcome | None:
        raise RuntimeError("corrupt profile-drift.json")

    hooks = reconcile_pass.ReconcileHooks(profile_drift=broken_drift, alert_dispatch=seen.append)
    result = reconcile_pass.run_reconcile(_options(repo, hooks=hooks))
    assert result.exit_code == 0
    assert result.drift_error == "corrupt profile-drift.json"
    assert "drift" not in result.output
    assert len(seen) == 1
    assert seen[0].ingest_ok
    assert seen[0].trace_id == "hook-trace"


def test_alert_hook_failure_appends_failed_command_row(repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())

    def broken_alerts(ctx: reconcile_pass.PassContext) -> object:
        raise RuntimeError("sink exploded\r\nsecond line")

    drift_doc = {
        "status": "drift_active",
        "transitioned": {"toActive": True},
        "reasonCode": "profile_drift_detected",
    }

    def drift(ctx: reconcile_pass.PassContext) -> reconcile_pass.DriftOutcome:
        return reconcile_pass.DriftOutcome(drift=drift_doc, summary=None)

    hooks = reconcile_pass.ReconcileHooks(profile_drift=drift, alert_dispatch=broken_alerts)
    result = reconcile_pass.run_reconcile(_options(repo, hooks=hooks))
    assert result.exit_code == 0
    row = last_row(ops_dir(repo) / "telemetry" / "alerts.jsonl")
    assert row["category"] == "alert_dispatch"
    assert (row["status"], row["reasonCode"]) == ("failed_command", "alert_dispatch_failed")
    assert row["message"] == "sink exploded\nsecond line"
    assert row["traceId"] == "hook-trace"
    state = read_json(ops_dir(repo) / "state.json")
    assert state["drift"] == {**drift_doc, "traceId": "hook-trace"}
    assert "tuning" not in state
    assert last_row(ops_dir(repo) / "escalations.jsonl")["category"] == "profile_drift_detected"


def test_alerts_disabled_skips_dispatch(repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    calls: list[reconcile_pass.PassContext] = []
    options = _options(
        repo,
        hooks=reconcile_pass.ReconcileHooks(alert_dispatch=calls.append),
        alerts=reconcile_pass.AlertSettings(enabled=False),
    )
    reconcile_pass.run_reconcile(options)
    assert calls == []


def test_frozen_clock_gives_deterministic_duration(repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())

    class SteppingClock(FrozenClock):
        def now(self) -> dt.datetime:
            moment = super().now()
            self.advance(1)
            return moment

    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = reconcile_pass.run_reconcile(_options(repo), clock=SteppingClock(start))
    assert result.telemetry_row["startedAt"] < result.telemetry_row["timestamp"]
    assert result.telemetry_row["durationSeconds"] >= 1


def test_cli_hooks_factory_seam(cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_runtime_artifacts(repo, now_ts())
    monkeypatch.setattr(cli_reconcile, "HOOKS_FACTORY", lambda args: reconcile_pass.ReconcileHooks())
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    assert not (ops_dir(repo) / "alert-dispatch-state.json").exists()
    assert not (ops_dir(repo) / "profile-drift.json").exists()


def test_module_runs_as_console_entry(repo: Path) -> None:
    import subprocess

    write_runtime_artifacts(repo, now_ts())
    completed = subprocess.run(
        [sys.executable, "-m", "superloop_ops.cli.main", "reconcile", "--repo", str(repo), "--loop", LOOP],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["transition"]["currentState"] == "running"


def test_cursor_and_state_file_overrides(cli: Cli, repo: Path, tmp_path: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    cursor, state = tmp_path / "alt" / "cursor.json", tmp_path / "alt" / "state.json"
    args = ("--cursor-file", str(cursor), "--state-file", str(state), *HUGE_INGEST)
    assert cli.reconcile(repo, *args).code == 0
    assert read_json(cursor)["eventLineOffset"] == 2
    assert read_json(state)["health"]["status"] == "healthy"
    assert not (ops_dir(repo) / "cursor.json").exists()
    assert not (ops_dir(repo) / "state.json").exists()
    again = cli.reconcile(repo, *args)
    assert last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")["cursorOffsetBefore"] == 2
    assert again.json["transition"]["previousState"] == "running"


def test_replay_from_start_resets_cursor_before(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    assert cli.reconcile(repo, "--from-start", *HUGE_INGEST).code == 0
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert (row["fromStart"], row["cursorOffsetBefore"], row["eventsIngested"]) == (True, 0, 2)


def test_drift_and_alert_file_overrides_are_honoured(cli: Cli, repo: Path, tmp_path: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    alt = tmp_path / "alt"
    result = cli.reconcile(
        repo,
        "--degraded-ingest-lag-seconds",
        "0",
        "--drift-state-file",
        str(alt / "drift.json"),
        "--drift-history-file",
        str(alt / "drift.jsonl"),
        "--alert-dispatch-state-file",
        str(alt / "dispatch.json"),
        "--alert-dispatch-telemetry-file",
        str(alt / "alerts.jsonl"),
    )
    assert result.code == 0, result.stderr
    assert read_json(alt / "drift.json")["status"] == result.json["drift"]["status"]
    assert (alt / "drift.jsonl").is_file()
    assert read_json(alt / "dispatch.json")["processedCount"] >= 1
    assert last_row(alt / "alerts.jsonl")["escalationCategory"] == "health_degraded"
    assert not (ops_dir(repo) / "profile-drift.json").exists()
    assert not (ops_dir(repo) / "alert-dispatch-state.json").exists()


def test_broken_alert_catalog_records_failed_dispatch_without_failing(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    write_runtime_artifacts(repo, now_ts())
    catalog = tmp_path / "sinks.json"
    catalog.write_text("{not json")
    result = cli.reconcile(repo, "--degraded-ingest-lag-seconds", "0", "--alert-config-file", str(catalog))
    assert result.code == 0, result.stderr
    row = last_row(ops_dir(repo) / "telemetry" / "alerts.jsonl")
    assert (row["status"], row["reasonCode"]) == ("failed_command", "alert_dispatch_failed")
    assert "invalid alert sink config JSON" in row["message"]
    assert not (ops_dir(repo) / "alert-dispatch-state.json").exists()
    assert cli.status(repo).json["alerts"]["lastDelivery"]["status"] == "failed_command"
