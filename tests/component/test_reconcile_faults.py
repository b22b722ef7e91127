"""A local reconcile pass against broken inputs (issue 10: items 9, 10, 11, 15, 16).

Every case runs the real CLI on a tmp repository and reads back what an operator would: the
exit code, stdout, the health document and the telemetry row. The rule under test: a fault is
reported with its own reason code (never a traceback), nothing is skipped silently, and the
cursor never moves past events whose state was not written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _loop_reconcile_helpers import (
    HUGE_INGEST,
    LOOP,
    Cli,
    event_line,
    isolate_cli_env,
    last_row,
    now_ts,
    ops_dir,
    read_json,
    write_runtime_artifacts,
)

from superloop_ops.transports import local


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


def _events(repo: Path) -> Path:
    return repo / ".superloop" / "loops" / LOOP / "events.jsonl"


# --------------------------------------------------------------------- item 16: reason codes


def test_invalid_local_artifact_has_its_own_reason(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    (repo / ".superloop" / "loops" / LOOP / "run-summary.json").write_text("{not json")
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    reasons = result.json["reasonCodes"]
    assert "invalid_artifact" in reasons
    assert "transport_unreachable" not in reasons
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert row["failureCode"] == "artifact_invalid"


def test_missing_artifact_is_still_unreachable(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    _events(repo).unlink()
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    assert "transport_unreachable" in result.json["reasonCodes"]


def test_ops_dir_that_is_a_file_is_an_error_not_a_traceback(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    ops = ops_dir(repo)
    ops.parent.mkdir(parents=True)
    ops.write_text("not a directory")
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "journal" in result.stderr


@pytest.mark.parametrize("name", ["state.json", "health.json", "telemetry/transport-health.json"])
def test_deeply_nested_journal_file_reads_as_unusable(cli: Cli, repo: Path, name: str) -> None:
    write_runtime_artifacts(repo, now_ts())
    target = ops_dir(repo) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("[" * 200_000 + "]" * 200_000)
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert result.json["health"]["status"] == "healthy"


def test_deeply_nested_event_is_a_reason_coded_bad_line(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    with _events(repo).open("a") as handle:
        nested = "[" * 100_000 + "]" * 100_000
        handle.write('{"event":"x","timestamp":"2026-01-01T00:00:00Z","data":' + nested + "}\n")
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    assert "invalid_artifact" in result.json["reasonCodes"]
    assert read_json(ops_dir(repo) / "health.json")["status"] != "healthy"


# --------------------------------------------------------------------- item 9: unexpected input


def test_huge_integer_in_an_event_is_a_reason_coded_bad_line(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    with _events(repo).open("a") as handle:
        handle.write('{"event":"x","timestamp":"2026-01-01T00:00:00Z","iteration":' + "9" * 5000 + "}\n")
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "invalid_artifact" in result.json["reasonCodes"]
    assert read_json(ops_dir(repo) / "health.json")["status"] != "healthy"
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert row["failureCode"] == "artifact_invalid"


def test_lone_surrogate_in_an_event_is_stored_and_the_pass_succeeds(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    with _events(repo).open("a") as handle:
        line = event_line("iteration_end", now_ts(), 2)
        handle.write(line.replace('"data": {}', '"data": {"note": "\\ud800"}'))
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    state = json.loads((ops_dir(repo) / "state.json").read_text())
    assert state["source"]["loopId"] == LOOP
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 3


# --------------------------------------------------------------------- item 10: rotation


def _write_events(repo: Path, count: int, name: str) -> None:
    _events(repo).write_text("".join(event_line(f"{name}_{n}", now_ts(), n) for n in range(count)))


def test_rotation_to_a_larger_file_is_not_skipped_silently(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    _write_events(repo, 30, "old")
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 30
    rotated = _events(repo).with_name("events.jsonl.new")
    rotated.write_text("".join(event_line(f"new_{n}", now_ts(), n) for n in range(35)))
    rotated.replace(_events(repo))
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 1  # fail closed: 30 of the new file's events would otherwise be skipped
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert "rotated or rewritten" in row["failureMessage"]
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 30
    replay = cli.reconcile(repo, "--from-start", *HUGE_INGEST)
    assert replay.code == 0, replay.stderr
    assert last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")["eventsIngested"] == 35


def test_rotation_is_detected_by_a_fresh_process(cli: Cli, repo: Path) -> None:
    """The cursor file's fingerprint catches it after a restart (no per-process memory)."""
    write_runtime_artifacts(repo, now_ts())
    _write_events(repo, 30, "old")
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    _write_events(repo, 35, "new")
    local.clear_memos()
    assert cli.reconcile(repo, *HUGE_INGEST).code == 1
    row = last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")
    assert "rotated or rewritten" in row["failureMessage"]


def test_an_edited_cursor_offset_on_the_same_file_is_still_honoured(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    _write_events(repo, 30, "old")
    assert cli.reconcile(repo, *HUGE_INGEST).code == 0
    cursor_file = ops_dir(repo) / "cursor.json"
    cursor = read_json(cursor_file)
    cursor["eventLineOffset"] = 25  # an operator re-reads the last five events
    cursor_file.write_text(json.dumps(cursor))
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")["eventsIngested"] == 5


# --------------------------------------------------------------------- items 11 and 9: journal writes


def test_a_failed_state_write_keeps_the_cursor_and_is_an_error(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """The cursor is committed after the state: a failure between them loses no events."""
    write_runtime_artifacts(repo, now_ts())
    state_dir = tmp_path / "state-is-a-directory"
    state_dir.mkdir()
    (state_dir / "keep").write_text("x")  # os.replace cannot put a file over a non-empty directory
    result = cli.reconcile(repo, "--state-file", str(state_dir), *HUGE_INGEST)
    assert result.code == 1
    assert result.stderr.startswith("error: journal write failed")
    assert "Traceback" not in result.stderr
    assert not (ops_dir(repo) / "cursor.json").exists()  # the two events are read again next pass
    again = cli.reconcile(repo, *HUGE_INGEST)
    assert again.code == 0, again.stderr
    assert last_row(ops_dir(repo) / "telemetry" / "reconcile.jsonl")["eventsIngested"] == 2


# --------------------------------------------------------------------- item 15: size caps


def _append_big_event(repo: Path, size: int) -> None:
    event = json.loads(event_line("iteration_end", now_ts(), 2))
    event["data"] = {"blob": "x" * size}
    with _events(repo).open("a") as handle:
        handle.write(json.dumps(event) + "\n")


def _envelope_event(repo: Path) -> dict[str, object]:
    state = read_json(ops_dir(repo) / "state.json")
    return state["evidence"]["lastEventEnvelope"]["event"]  # type: ignore[no-any-return]


def test_an_oversized_event_line_is_consumed_truncated_and_reason_coded(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    _append_big_event(repo, 3_000_000)
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert (ops_dir(repo) / "state.json").stat().st_size < 64 * 1024
    event = _envelope_event(repo)
    assert event["name"] == "iteration_end"
    assert event["payload"]["truncated"]["reasonCode"] == "event_line_too_large"  # type: ignore[index]
    assert read_json(ops_dir(repo) / "cursor.json")["eventLineOffset"] == 3


def test_a_large_event_payload_is_stored_truncated(cli: Cli, repo: Path) -> None:
    write_runtime_artifacts(repo, now_ts())
    _append_big_event(repo, 200_000)
    result = cli.reconcile(repo, *HUGE_INGEST)
    assert result.code == 0, result.stderr
    assert (ops_dir(repo) / "state.json").stat().st_size < 64 * 1024
    event = _envelope_event(repo)
    assert event["payload"]["truncated"]["reasonCode"] == "event_payload_truncated"  # type: ignore[index]
    assert event["raw"]["event"] == "iteration_end"  # type: ignore[index]


def test_a_50_mb_event_line_stays_within_memory(repo: Path) -> None:
    """The chart's memory limit is 512 Mi; a 50 MB line cost 440 MB of RSS before the caps."""
    write_runtime_artifacts(repo, now_ts())
    _append_big_event(repo, 50_000_000)
    # VmHWM is this process's own peak: ru_maxrss would carry the (large) test runner's peak over exec.
    probe = (
        "import pathlib, re, sys\n"
        "from superloop_ops.cli import main as m\n"
        "code = m.main(['reconcile', '--repo', sys.argv[1], '--loop', 'demo-loop',\n"
        "    '--degraded-ingest-lag-seconds', '999999', '--critical-ingest-lag-seconds', '9999999'])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', pathlib.Path('/proc/self/status').read_text()).group(1)\n"
        "print(code, hwm, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(repo)], capture_output=True, text=True, timeout=300, check=False
    )
    code, max_rss_kib = done.stderr.split()[-2:]
    assert code == "0", done.stderr
    assert int(max_rss_kib) < 250 * 1024, f"max RSS {int(max_rss_kib) // 1024} MiB"
