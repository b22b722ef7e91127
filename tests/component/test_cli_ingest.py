"""The snapshot, poll-events and project-state commands on real repositories (§2.1, §3, §4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.ingest_runtime import INGEST_RUNTIME, write_ingest_runtime
from superloop_ops.cli import main as cli

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"
RUNTIME = INGEST_RUNTIME
ENVELOPES = DATA / "envelopes"
LOOP = "demo-loop"


def _write_base(repo: Path, *, with_role_end: bool = True) -> Path:
    return write_ingest_runtime(repo, LOOP, with_role_end=with_role_end)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- snapshot


def test_snapshot_command_prints_the_envelope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_base(tmp_path)
    code, out, _ = _run(
        capsys, "snapshot", "--repo", str(tmp_path), "--loop", LOOP, "--trace-id", "trace-snapshot-1"
    )
    assert code == 0
    assert len(out.splitlines()) == 1
    snap = json.loads(out)
    assert snap["envelopeType"] == "loop_run_snapshot"
    assert snap["traceId"] == "trace-snapshot-1"
    assert snap["sequence"]["value"] == 3
    assert snap["artifacts"]["heartbeat"] == {
        "path": ".superloop/loops/demo-loop/heartbeat.v1.json",
        "exists": False,
        "sizeBytes": 0,
        "lineCount": 0,
        "sha256": None,
        "mtimeEpoch": None,
    }


def test_snapshot_command_run_id_override_and_pretty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_base(tmp_path)
    code, out, _ = _run(
        capsys, "snapshot", "--repo", str(tmp_path), "--loop", LOOP, "--run-id", "run-x", "--pretty"
    )
    assert code == 0
    assert len(out.splitlines()) > 10
    assert json.loads(out)["run"]["runId"] == "run-x"


def test_snapshot_command_fails_closed_without_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop_dir = tmp_path / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True)
    (loop_dir / "run-summary.json").write_text('{"version":1,"loop_id":"demo-loop","entries":[]}')
    code, out, err = _run(capsys, "snapshot", "--repo", str(tmp_path), "--loop", LOOP)
    assert code == 1
    assert out == ""
    assert err.startswith("error: required artifact missing")


# ----------------------------------------------------------------------------- poll-events


def test_poll_command_emits_cursor_safe_envelopes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop_dir = _write_base(tmp_path)
    cursor_file = tmp_path / "cursor.json"
    base = ["poll-events", "--repo", str(tmp_path), "--loop", LOOP, "--cursor-file", str(cursor_file)]
    code, out, _ = _run(capsys, *base, "--trace-id", "trace-events-1")
    assert code == 0
    envelopes = _lines(out)
    assert len(envelopes) == 3
    assert {e["envelopeType"] for e in envelopes} == {"loop_run_event"}
    assert envelopes[0]["sequence"] == {"source": "cursor_event_line_offset", "value": 1}
    assert envelopes[0]["traceId"] == "trace-events-1"
    assert json.loads(cursor_file.read_text())["eventLineOffset"] == 3

    code, out, _ = _run(capsys, *base)
    assert code == 0
    assert _lines(out) == []

    with (loop_dir / "events.jsonl").open("ab") as handle:
        handle.write((RUNTIME / "event-iteration-end.jsonl").read_bytes())
    code, out, _ = _run(capsys, *base, "--max-events", "1")
    assert code == 0
    assert len(_lines(out)) == 1
    cursor_doc = json.loads(cursor_file.read_text())
    assert cursor_doc["eventLineOffset"] == 4
    assert cursor_doc["eventLineCount"] == 4
    assert cursor_doc["repoPath"] == str(tmp_path)
    assert cursor_doc["eventsFile"] == ".superloop/loops/demo-loop/events.jsonl"


def test_poll_command_default_cursor_path_and_from_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop_dir = _write_base(tmp_path)
    base = ["poll-events", "--repo", str(tmp_path), "--loop", LOOP]
    assert _run(capsys, *base, "--max-events", "2")[0] == 0
    default_cursor = loop_dir / "ops-manager.cursor.json"
    assert json.loads(default_cursor.read_text())["eventLineOffset"] == 2
    code, out, _ = _run(capsys, *base, "--from-start")
    assert code == 0
    assert [e["sequence"]["value"] for e in _lines(out)] == [1, 2, 3]
    assert json.loads(default_cursor.read_text())["eventLineOffset"] == 3
    assert not list(loop_dir.glob(".ops-manager.cursor.json.*"))  # no temp files left behind


@pytest.mark.parametrize("value", ["x", "-1", "1.5", ""])
def test_poll_command_rejects_a_bad_max_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    _write_base(tmp_path)
    code, _, err = _run(capsys, "poll-events", "--repo", str(tmp_path), "--loop", LOOP, "--max-events", value)
    assert code == 1
    assert "--max-events must be a non-negative integer" in err


@pytest.mark.parametrize("bad", [b"   \n", b'"a string"\n', b"{broken\n"])
def test_failed_poll_prints_nothing_and_keeps_the_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: bytes
) -> None:
    loop_dir = _write_base(tmp_path)
    cursor_file = tmp_path / "cursor.json"
    base = ["poll-events", "--repo", str(tmp_path), "--loop", LOOP, "--cursor-file", str(cursor_file)]
    assert _run(capsys, *base, "--max-events", "1")[0] == 0
    before = cursor_file.read_bytes()
    with (loop_dir / "events.jsonl").open("ab") as handle:
        handle.write(bad)
    code, out, err = _run(capsys, *base)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert cursor_file.read_bytes() == before


def test_poll_command_cursor_offset_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_base(tmp_path)
    cursor_file = tmp_path / "cursor.json"
    base = ["poll-events", "--repo", str(tmp_path), "--loop", LOOP, "--cursor-file", str(cursor_file)]
    cursor_file.write_text('{"eventLineOffset":"1"}')
    code, out, _ = _run(capsys, *base)
    assert code == 0
    assert [e["sequence"]["value"] for e in _lines(out)] == [2, 3]
    cursor_file.write_text('{"eventLineOffset":-1}')
    code, _, err = _run(capsys, *base)
    assert (code, err.strip()) == (1, f"error: invalid cursor offset in {cursor_file}")
    cursor_file.write_text("not json at all")
    code, _, err = _run(capsys, *base)
    assert (code, err.strip()) == (1, f"error: invalid JSON in cursor file: {cursor_file}")
    cursor_file.write_text('{"eventLineOffset":9}')
    code, _, err = _run(capsys, *base)
    assert code == 1
    assert "cursor offset (9) exceeds available events (3); reset cursor or use --from-start" in err


def test_poll_command_holds_an_unterminated_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop_dir = _write_base(tmp_path, with_role_end=False)
    cursor_file = tmp_path / "cursor.json"
    base = ["poll-events", "--repo", str(tmp_path), "--loop", LOOP, "--cursor-file", str(cursor_file)]
    role_end = (RUNTIME / "event-role-end.jsonl").read_bytes()
    with (loop_dir / "events.jsonl").open("ab") as handle:
        handle.write(role_end.rstrip(b"\n"))
    code, out, _ = _run(capsys, *base)
    assert code == 0
    assert len(_lines(out)) == 2
    doc = json.loads(cursor_file.read_text())
    assert doc["eventLineOffset"] <= doc["eventLineCount"] == 2
    with (loop_dir / "events.jsonl").open("ab") as handle:
        handle.write(b"\n")
    code, out, _ = _run(capsys, *base)
    assert code == 0
    assert [e["event"]["name"] for e in _lines(out)] == ["role_end"]


# ----------------------------------------------------------------------------- project-state


def _project(capsys: pytest.CaptureFixture[str], repo: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "project-state", "--repo", str(repo), "--loop", LOOP, *extra)


def test_project_state_running_lifecycle_with_event_trigger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state.json"
    code, out, _ = _project(
        capsys,
        tmp_path,
        "--snapshot-file",
        str(ENVELOPES / "snapshot-running.json"),
        "--events-file",
        str(ENVELOPES / "events-running.ndjson"),
        "--state-file",
        str(state_file),
    )
    assert code == 0
    state = json.loads(state_file.read_text())
    assert json.loads(out) == state
    assert state["transition"]["currentState"] == "running"
    assert state["transition"]["triggeringSignal"].startswith("event:")
    assert state["divergence"]["any"] is False
    assert state["evidence"]["snapshotFile"] == str(ENVELOPES / "snapshot-running.json")


def test_project_state_flags_approval_completion_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state-divergent.json"
    snapshot = str(ENVELOPES / "snapshot-approval-conflict.json")
    code, _, _ = _project(capsys, tmp_path, "--snapshot-file", snapshot, "--state-file", str(state_file))
    assert code == 0
    state = json.loads(state_file.read_text())
    assert state["divergence"]["flags"]["approvalCompletionConflict"] is True
    assert state["divergence"]["any"] is True
    assert state["transition"]["confidence"] == "low"
    assert state["evidence"]["eventsFile"] is None


def test_project_state_flags_cursor_regression_against_prior_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(
        json.dumps({"transition": {"currentState": "idle"}, "cursor": {"eventLineOffset": 99}})
    )
    snapshot = str(ENVELOPES / "snapshot-running.json")
    code, _, _ = _project(capsys, tmp_path, "--snapshot-file", snapshot, "--state-file", str(state_file))
    assert code == 0
    state = json.loads(state_file.read_text())
    assert state["divergence"]["flags"]["cursorRegression"] is True
    assert state["transition"]["previousState"] == "idle"


def test_project_state_fails_closed_on_invalid_event_envelope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text('{"not":"a-valid-envelope"}\n')
    state_file = tmp_path / "state.json"
    code, out, err = _project(
        capsys,
        tmp_path,
        "--snapshot-file",
        str(ENVELOPES / "snapshot-running.json"),
        "--events-file",
        str(events),
        "--state-file",
        str(state_file),
    )
    assert code == 1
    assert out == ""
    assert "event envelope is invalid" in err
    assert not state_file.exists()


def test_project_state_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = _project(capsys, tmp_path, "--snapshot-file", str(missing))
    assert (code, err.strip()) == (1, f"error: snapshot file not found: {missing}")
    code, _, err = _project(
        capsys,
        tmp_path,
        "--snapshot-file",
        str(ENVELOPES / "snapshot-running.json"),
        "--events-file",
        str(missing),
    )
    assert (code, err.strip()) == (1, f"error: events file not found: {missing}")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = _project(capsys, tmp_path, "--snapshot-file", str(bad))
    assert (code, err.strip()) == (1, f"error: invalid snapshot JSON: {bad}")


def test_project_state_takes_a_snapshot_when_none_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_base(tmp_path)
    code, out, _ = _project(capsys, tmp_path, "--pretty")
    assert code == 0
    state_file = tmp_path / ".superloop" / "ops-manager" / LOOP / "state.json"
    state = json.loads(state_file.read_text())
    assert json.loads(out) == state
    assert state["transition"]["currentState"] == "running"
    assert state["transition"]["triggeringSignal"] == "snapshot_status:running"
    assert state["cursor"] == {"eventLineOffset": 3, "eventLineCount": 3}
    assert state["evidence"]["snapshotFile"] is None
    code, _, _ = _project(capsys, tmp_path)
    assert code == 0
    assert json.loads(state_file.read_text())["transition"]["previousState"] == "running"


def test_project_state_with_polled_batch_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_base(tmp_path)
    (tmp_path / ".superloop" / "state.json").write_text('{"active":false,"current_loop_id":"demo-loop"}')
    code, snap_out, _ = _run(capsys, "snapshot", "--repo", str(tmp_path), "--loop", LOOP)
    assert code == 0
    code, poll_out, _ = _run(capsys, "poll-events", "--repo", str(tmp_path), "--loop", LOOP)
    assert code == 0
    (tmp_path / "snap.json").write_text(snap_out)
    (tmp_path / "events.ndjson").write_text(poll_out)
    code, out, _ = _project(
        capsys,
        tmp_path,
        "--snapshot-file",
        str(tmp_path / "snap.json"),
        "--events-file",
        str(tmp_path / "events.ndjson"),
    )
    assert code == 0
    state = json.loads(out)
    assert state["transition"]["currentState"] == "idle"
    assert state["divergence"]["flags"]["activeMismatch"] is True
    assert state["projection"]["active"] is None
    assert state["evidence"]["lastEventEnvelope"]["event"]["name"] == "role_end"
