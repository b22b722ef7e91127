"""CLI ports of the alert-sink bats scenarios (resolver and dispatcher) on real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.alert_configs import enabled_webhook_config
from superloop_ops.cli.main import main

LOOP = "demo-loop"
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "ops-manager-alert-sinks.v1.json"
URL_ENV = "OPS_MANAGER_TEST_WEBHOOK_URL"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPS_MANAGER_ALERT_SINKS_FILE", "OPS_MANAGER_TRACE_ID", URL_ENV):
        monkeypatch.delenv(name, raising=False)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_enabled_webhook_config(path: Path) -> Path:
    path.write_text(json.dumps(enabled_webhook_config(URL_ENV)))
    return path


def test_lists_default_sinks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "alert-sink-config", "--list-sinks")
    assert code == 0
    assert out.splitlines() == [
        "webhook-default\twebhook\tfalse",
        "slack-default\tslack\tfalse",
        "pagerduty-default\tpagerduty_events\tfalse",
    ]


def test_default_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "alert-sink-config")
    assert code == 0
    summary = json.loads(out)
    assert summary["defaultMinSeverity"] == "warning"
    assert summary["enabledSinkCount"] == 0
    assert summary["sourceFile"] == str(SHIPPED)


def test_rejects_severity_without_category(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "alert-sink-config", "--severity", "warning")
    assert code != 0
    assert "--severity requires --category" in err


def test_fails_closed_on_missing_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_enabled_webhook_config(tmp_path / "enabled-webhook.json")
    code, _, err = run_cli(capsys, "alert-sink-config", "--config-file", str(config))
    assert code != 0
    assert f"enabled sink secret env var(s) are unset: {URL_ENV}" in err
    code, out, _ = run_cli(capsys, "alert-sink-config", "--config-file", str(config), "--no-env-check")
    assert code == 0
    assert json.loads(out)["validation"] == {"envCheckEnabled": False}


def test_resolves_route_when_secret_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_enabled_webhook_config(tmp_path / "enabled-webhook.json")
    monkeypatch.setenv(URL_ENV, "https://example.test/webhook")
    code, out, _ = run_cli(
        capsys,
        "alert-sink-config",
        "--config-file",
        str(config),
        "--category",
        "health_degraded",
        "--severity",
        "warning",
    )
    assert code == 0
    route = json.loads(out)
    assert route["shouldDispatch"] is True
    assert [sink["id"] for sink in route["dispatchableSinks"]] == ["webhook-a"]
    assert route["envStatus"] == {URL_ENV: {"present": True}}
    assert "example.test" not in out
    code, out, _ = run_cli(
        capsys,
        "alert-sink-config",
        "--config-file",
        str(config),
        "--category",
        "health_degraded",
        "--severity",
        "info",
    )
    gated = json.loads(out)
    assert gated["shouldDispatch"] is False
    assert gated["dispatchableSinks"] == []


def test_env_catalog_used_without_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "custom-config.json"
    config.write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "defaultMinSeverity": "critical",
                "sinks": {"webhook-a": {"enabled": False, "type": "webhook", "urlEnv": URL_ENV}},
                "routing": {"defaultSinks": ["webhook-a"], "categorySeverity": {}, "routes": []},
            }
        )
    )
    monkeypatch.setenv("OPS_MANAGER_ALERT_SINKS_FILE", str(config))
    code, out, _ = run_cli(capsys, "alert-sink-config")
    assert code == 0
    summary = json.loads(out)
    assert summary["sourceFile"] == str(config)
    assert summary["defaultMinSeverity"] == "critical"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "alert sink config file not found:"), ("{nope", "invalid alert sink config JSON:")],
)
def test_catalog_file_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    config = tmp_path / "c.json"
    if content is not None:
        config.write_text(content)
    code, _, err = run_cli(capsys, "alert-sink-config", "--config-file", str(config))
    assert code == 1
    assert message in err


def write_escalations(repo: Path, rows: list[Any]) -> Path:
    path = repo / ".superloop" / "ops-manager" / LOOP / "escalations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


ROWS = [
    {
        "timestamp": "2026-02-22T11:00:00Z",
        "loopId": LOOP,
        "category": "health_degraded",
        "reasonCodes": ["ingest_stale"],
    },
    {
        "timestamp": "2026-02-22T11:01:00Z",
        "loopId": LOOP,
        "category": "divergence_detected",
        "reasonCodes": ["divergence_detected"],
    },
]


def test_dispatch_processes_rows_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port of bats: alert dispatch processes new escalation rows once and is idempotent on repeat runs."""
    write_escalations(tmp_path, ROWS)
    base = ["alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP, "--alert-config-file", str(SHIPPED)]
    code, out, _ = run_cli(capsys, *base, "--trace-id", "trace-alert-dispatch-1")
    assert code == 0
    first = json.loads(out)
    assert (first["processedCount"], first["dispatchedCount"], first["skippedCount"]) == (2, 0, 2)
    assert first["status"] == "success"
    code, out, _ = run_cli(capsys, *base)
    second = json.loads(out)
    assert (second["status"], second["processedCount"]) == ("no_new_escalations", 0)
    ops = tmp_path / ".superloop" / "ops-manager" / LOOP
    telemetry = (ops / "telemetry" / "alerts.jsonl").read_text().splitlines()
    assert len(telemetry) == 2
    assert json.loads(telemetry[0])["traceId"] == "trace-alert-dispatch-1"
    assert json.loads(telemetry[0])["reasonCode"] == "no_dispatchable_sinks"
    assert json.loads((ops / "alert-dispatch-state.json").read_text())["escalationsLineOffset"] == 2


def test_dispatch_without_escalations_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP, "--pretty")
    assert code == 0
    state = json.loads(out)
    assert state["status"] == "no_source"
    assert (state["escalationsLineOffset"], state["escalationsLineCount"], state["failureReasonCodes"]) == (
        0,
        0,
        [],
    )


def test_dispatch_mixed_rows_and_max_escalations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_escalations(tmp_path, ["", "{broken", {"timestamp": "t"}, ["x"], *ROWS])
    base = ["alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP, "--trace-id", "t1"]
    code, out, _ = run_cli(capsys, *base, "--max-escalations", "4")
    state = json.loads(out)
    assert code == 0
    assert (state["processedCount"], state["skippedCount"], state["failedCount"]) == (4, 1, 3)
    assert state["status"] == "failed"
    assert state["failureReasonCodes"] == ["invalid_escalation_json", "missing_escalation_category"]
    assert (state["escalationsLineOffset"], state["escalationsLineCount"]) == (4, 6)
    code, out, _ = run_cli(capsys, *base)
    state = json.loads(out)
    assert (state["processedCount"], state["skippedCount"], state["status"]) == (2, 2, "success")


def test_dispatch_waits_for_unterminated_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fix of §5.2: a half-written last row is neither processed nor counted until its newline lands."""
    path = write_escalations(tmp_path, ROWS[:1])
    with path.open("a") as handle:
        handle.write(json.dumps(ROWS[1]))
    base = ["alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP]
    state = json.loads(run_cli(capsys, *base)[1])
    assert (state["processedCount"], state["escalationsLineCount"]) == (1, 1)
    with path.open("a") as handle:
        handle.write("\n")
    state = json.loads(run_cli(capsys, *base)[1])
    assert (state["processedCount"], state["escalationsLineOffset"]) == (1, 2)


def test_dispatch_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_escalations(tmp_path, ROWS)
    state_file = tmp_path / ".superloop" / "ops-manager" / LOOP / "alert-dispatch-state.json"
    base = ["alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP]
    state_file.write_text(json.dumps({"escalationsLineOffset": 5}))
    code, _, err = run_cli(capsys, *base)
    assert code == 1
    assert "dispatch state offset is ahead of escalation file: 5 > 2" in err
    state_file.write_text("{bad")
    code, _, err = run_cli(capsys, *base)
    assert (code, err.strip()) == (1, f"error: invalid dispatch state JSON: {state_file}")
    assert state_file.read_text() == "{bad"
    code, _, err = run_cli(capsys, *base, "--max-escalations", "-1")
    assert "--max-escalations must be a non-negative integer" in err


def test_dispatch_invalid_catalog_keeps_cursor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fix: a broken catalog fails the run instead of burning every pending row."""
    write_escalations(tmp_path, ROWS)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schemaVersion": "v2"}))
    base = ["alert-dispatch", "--repo", str(tmp_path), "--loop", LOOP]
    code, _, err = run_cli(capsys, *base, "--alert-config-file", str(bad))
    assert code == 1
    assert "alert sink config has invalid top-level shape" in err
    state = json.loads(run_cli(capsys, *base)[1])
    assert state["processedCount"] == 2


def test_install_root_from_superloop_ops_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    catalog = tmp_path / "config" / "ops-manager-alert-sinks.v1.json"
    catalog.write_text(SHIPPED.read_text())
    monkeypatch.setenv("SUPERLOOP_OPS_HOME", str(tmp_path))
    code, out, _ = run_cli(capsys, "alert-sink-config")
    assert code == 0
    assert json.loads(out)["sourceFile"] == str(catalog)
