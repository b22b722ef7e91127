"""CLI ports of the telemetry-summary and profile-drift bats scenarios, on real files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from superloop_ops.cli.main import main
from superloop_ops.engine.loop import tuning_pass

LOOP = "demo-loop"


def ops_dir(repo: Path) -> Path:
    return repo / ".superloop" / "ops-manager" / LOOP


def write_reconcile_rows(repo: Path, rows: list[dict[str, object]], *, trailer: str = "") -> Path:
    path = ops_dir(repo) / "telemetry" / "reconcile.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + trailer)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def healthy(n: int) -> list[dict[str, object]]:
    return [
        {
            "timestamp": f"2026-02-22T10:{i:02d}:00Z",
            "status": "success",
            "healthStatus": "healthy",
            "healthReasonCodes": [],
            "durationSeconds": 1,
        }
        for i in range(n)
    ]


def test_summary_recommends_relaxed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: telemetry summary recommends relaxed for high critical and failed rates."""
    write_reconcile_rows(
        tmp_path,
        [
            {"status": "failed", "healthStatus": "critical", "healthReasonCodes": ["transport_unreachable"]},
            {"status": "failed", "healthStatus": "critical", "healthReasonCodes": ["transport_unreachable"]},
            {"status": "success", "healthStatus": "degraded", "healthReasonCodes": ["ingest_stale"]},
            {"status": "success", "healthStatus": "healthy", "healthReasonCodes": []},
        ],
    )
    code, out, _ = run_cli(
        capsys, "telemetry-summary", "--repo", str(tmp_path), "--loop", LOOP, "--window", "50"
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["recommendedProfile"] == "relaxed"
    assert summary["source"]["reconcileTelemetryFile"] == str(
        ops_dir(tmp_path.resolve()) / "telemetry/reconcile.jsonl"
    )
    assert summary["source"]["window"] == 50


def test_summary_recommends_strict_for_stable_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Port of bats: telemetry summary recommends strict for stable healthy window."""
    write_reconcile_rows(tmp_path, healthy(40))
    code, out, _ = run_cli(
        capsys, "telemetry-summary", "--repo", str(tmp_path), "--loop", LOOP, "--window", "40", "--pretty"
    )
    assert code == 0
    assert "\n  " in out
    summary = json.loads(out)
    assert (summary["recommendedProfile"], summary["confidence"]) == ("strict", "medium")


def test_window_takes_last_physical_lines(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [{"status": "failed"} for _ in range(5)]
    rows += [{"status": "success"} for _ in range(3)]
    write_reconcile_rows(tmp_path, rows, trailer="\n")
    now = dt.datetime(2026, 2, 22, tzinfo=dt.UTC)
    assert (
        tuning_pass.compute_summary(tmp_path, LOOP, window=1, now=now)["observed"]["reconcileAttempts"] == 0
    )
    three = tuning_pass.compute_summary(tmp_path, LOOP, window=4, now=now)["observed"]
    assert (three["reconcileAttempts"], three["reconcileFailedCount"]) == (3, 0)


def test_bad_json_line_in_window_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = write_reconcile_rows(tmp_path, healthy(3))
    with path.open("a") as handle:
        handle.write('{"status": "succ')
    now = dt.datetime(2026, 2, 22, tzinfo=dt.UTC)
    assert (
        tuning_pass.compute_summary(tmp_path, LOOP, window=10, now=now)["observed"]["reconcileAttempts"] == 3
    )


def test_tail_reads_large_files_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(f'{{"n": {i}, "pad": "{"x" * 200}"}}\n' for i in range(2000)))
    lines = tuning_pass.fetch_tail_lines(path, 3)
    assert [json.loads(line)["n"] for line in lines] == [1997, 1998, 1999]
    assert len(tuning_pass.fetch_tail_lines(path, 5000)) == 2000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loop", LOOP], "--repo is required"),
        (["--repo", "."], "--loop is required"),
        (["--repo", ".", "--loop", LOOP, "--window", "0"], "--window must be an integer >= 1"),
        (["--repo", ".", "--loop", LOOP, "--window", "x"], "--window must be an integer >= 1"),
    ],
)
def test_summary_argument_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, "telemetry-summary", *argv)
    assert code == 1
    assert err.strip() == f"error: {message}"


def test_summary_requires_reconcile_telemetry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "telemetry-summary", "--repo", str(tmp_path), "--loop", LOOP)
    assert code == 1
    assert "reconcile telemetry file not found:" in err


def drift_cli(capsys: pytest.CaptureFixture[str], repo: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "profile-drift", "--repo", str(repo), "--loop", LOOP, *extra)


def test_drift_activates_after_required_streak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: profile drift activates after required mismatch streak."""
    args = [
        "--applied-profile",
        "balanced",
        "--recommended-profile",
        "relaxed",
        "--recommendation-confidence",
        "high",
        "--required-streak",
        "2",
        "--summary-window",
        "40",
    ]
    code, out, _ = drift_cli(capsys, tmp_path, *args)
    assert code == 0
    first = json.loads(out)
    assert (first["status"], first["mismatchStreak"], first["driftActive"]) == ("mismatch_pending", 1, False)
    code, out, _ = drift_cli(capsys, tmp_path, *args)
    assert code == 0
    second = json.loads(out)
    assert (second["status"], second["driftActive"]) == ("drift_active", True)
    assert second["transitioned"]["toActive"] is True
    state_file = ops_dir(tmp_path) / "profile-drift.json"
    history_file = ops_dir(tmp_path) / "telemetry" / "profile-drift.jsonl"
    assert json.loads(state_file.read_text())["status"] == "drift_active"
    history = history_file.read_text().splitlines()
    assert len(history) == 2
    assert json.loads(history[1])["category"] == "profile_drift_evaluation"


def test_drift_resolves_when_profiles_realign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: profile drift resolves when profiles realign."""
    common = [
        "--applied-profile",
        "balanced",
        "--recommendation-confidence",
        "high",
        "--required-streak",
        "1",
    ]
    assert drift_cli(capsys, tmp_path, *common, "--recommended-profile", "strict")[0] == 0
    code, out, _ = drift_cli(capsys, tmp_path, *common, "--recommended-profile", "balanced")
    assert code == 0
    resolved = json.loads(out)
    assert (resolved["status"], resolved["driftActive"], resolved["mismatchStreak"]) == ("aligned", False, 0)
    assert resolved["transitioned"]["toResolved"] is True


def test_drift_gated_by_confidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: profile drift mismatch is gated when confidence is below minimum."""
    code, out, _ = drift_cli(
        capsys,
        tmp_path,
        "--applied-profile",
        "balanced",
        "--recommended-profile",
        "strict",
        "--recommendation-confidence",
        "low",
        "--min-confidence",
        "high",
        "--required-streak",
        "1",
    )
    assert code == 0
    state = json.loads(out)
    assert (state["status"], state["eligibleMismatch"], state["mismatchStreak"]) == (
        "insufficient_confidence",
        False,
        0,
    )


def test_drift_fails_closed_on_unknown_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: profile drift fails closed on unknown threshold profile names."""
    catalog = tmp_path / "profiles.json"
    catalog.write_text(
        json.dumps({"schemaVersion": "v1", "profiles": {"strict": {}, "balanced": {}, "relaxed": {}}})
    )
    code, _, err = drift_cli(
        capsys,
        tmp_path,
        "--thresholds-file",
        str(catalog),
        "--applied-profile",
        "unknown-profile",
        "--recommended-profile",
        "balanced",
        "--recommendation-confidence",
        "high",
    )
    assert code != 0
    assert "unknown applied profile" in err


def test_drift_rejects_corrupt_state_and_bad_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "profiles.json"
    catalog.write_text(json.dumps({"profiles": {"balanced": {}}}))
    state = ops_dir(tmp_path) / "profile-drift.json"
    state.parent.mkdir(parents=True)
    state.write_text("{oops")
    code, _, err = drift_cli(capsys, tmp_path, "--thresholds-file", str(catalog))
    assert code == 1
    assert f"invalid drift state JSON: {state}" in err
    catalog.write_text("[]")
    code, _, err = drift_cli(capsys, tmp_path, "--thresholds-file", str(catalog))
    assert f"invalid threshold profiles file: {catalog}" in err


def test_drift_catalog_from_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "profiles.json"
    catalog.write_text(json.dumps({"profiles": {"only": {}}}))
    monkeypatch.setenv("OPS_MANAGER_THRESHOLD_PROFILES_FILE", str(catalog))
    code, _, err = drift_cli(capsys, tmp_path, "--applied-profile", "balanced")
    assert code == 1
    assert "unknown applied profile: balanced" in err


CATALOG_PROFILES = ("strict", "balanced", "relaxed")
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_reconcile_step_persists_drift_and_escalates_once(tmp_path: Path) -> None:
    """Port of the reconcile half of bats 'reconcile persists profile drift artifacts' at the hook."""
    write_reconcile_rows(tmp_path, healthy(1))
    settings = tuning_pass.DriftSettings(min_confidence="low", required_streak=1, summary_window=25)
    step = tuning_pass.run_profile_drift_step(
        ops_dir(tmp_path),
        LOOP,
        catalog_profiles=CATALOG_PROFILES,
        current_profile="balanced",
        now=NOW,
        settings=settings,
        trace_id="trace-drift-1",
    )
    assert step is not None
    assert step.drift["status"] == "drift_active"
    assert step.drift["recommendedProfile"] == "strict"
    assert step.drift["traceId"] == "trace-drift-1"
    assert step.tuning is not None
    assert step.tuning["appliedProfile"] == "balanced"
    assert step.tuning["summaryWindow"] == 25
    assert "traceId" not in json.loads((ops_dir(tmp_path) / "profile-drift.json").read_text())
    escalations = (ops_dir(tmp_path) / "escalations.jsonl").read_text().splitlines()
    assert len(escalations) == 1
    row = json.loads(escalations[0])
    assert (row["category"], row["traceId"], row["transport"]) == (
        "profile_drift_detected",
        "trace-drift-1",
        "local",
    )
    assert row["driftStateFile"] == str(ops_dir(tmp_path) / "profile-drift.json")
    again = tuning_pass.run_profile_drift_step(
        ops_dir(tmp_path),
        LOOP,
        catalog_profiles=CATALOG_PROFILES,
        current_profile="balanced",
        now=NOW,
        settings=settings,
    )
    assert again is not None
    assert again.drift["driftActive"] is True
    assert again.escalation is None
    assert len((ops_dir(tmp_path) / "escalations.jsonl").read_text().splitlines()) == 1


def test_reconcile_step_without_telemetry_is_a_no_op(tmp_path: Path) -> None:
    step = tuning_pass.run_profile_drift_step(
        ops_dir(tmp_path), LOOP, catalog_profiles=CATALOG_PROFILES, current_profile="balanced", now=NOW
    )
    assert step is None
    assert not (ops_dir(tmp_path) / "profile-drift.json").exists()


def test_reconcile_step_survives_custom_catalog_and_corrupt_state(tmp_path: Path) -> None:
    """Fixes of §3.6 and §8.4: neither a narrow catalog nor a corrupt drift file breaks reconcile."""
    write_reconcile_rows(tmp_path, healthy(5))
    (ops_dir(tmp_path) / "profile-drift.json").write_text("{corrupt")
    step = tuning_pass.run_profile_drift_step(
        ops_dir(tmp_path), LOOP, catalog_profiles=("balanced",), current_profile="balanced", now=NOW
    )
    assert step is not None
    assert step.drift["status"] == "no_recommendation"
    assert step.tuning is not None
    assert step.tuning["recommendedProfile"] == "strict"
    assert json.loads((ops_dir(tmp_path) / "profile-drift.json").read_text())["status"] == "no_recommendation"


def test_reconcile_step_honours_file_overrides(tmp_path: Path) -> None:
    write_reconcile_rows(tmp_path, healthy(2))
    state_file, history_file = tmp_path / "d" / "drift.json", tmp_path / "d" / "drift.jsonl"
    step = tuning_pass.run_profile_drift_step(
        ops_dir(tmp_path),
        LOOP,
        catalog_profiles=CATALOG_PROFILES,
        current_profile="strict",
        now=NOW,
        state_file=state_file,
        history_file=history_file,
    )
    assert step is not None
    assert step.drift["status"] == "aligned"
    assert json.loads(state_file.read_text())["status"] == "aligned"
    assert len(history_file.read_text().splitlines()) == 1
    assert not (ops_dir(tmp_path) / "profile-drift.json").exists()
