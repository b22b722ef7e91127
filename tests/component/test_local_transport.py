"""The local transport against real files: snapshot, incremental polling, cursor files (§1-§3)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.ingest_runtime import INGEST_RUNTIME, write_ingest_runtime
from superloop_ops.core.loop import cursor
from superloop_ops.errors import ContractError
from superloop_ops.transports import local

NOW = dt.datetime(2026, 3, 1, 8, 0, 40, tzinfo=dt.UTC)
RUNTIME = INGEST_RUNTIME
LOOP = "demo-loop"


def _write_base(repo: Path, *, with_role_end: bool = True, active_run: bool = True) -> Path:
    return write_ingest_runtime(repo, LOOP, with_role_end=with_role_end, active_run=active_run)


def _line(seq: int) -> bytes:
    return json.dumps({"timestamp": "2026-03-01T08:00:00Z", "event": "role_end", "seq": seq}).encode() + b"\n"


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def _poll(
    repo: Path, offset: int = 0, hint: cursor.CursorPosition | None = None, **kw: Any
) -> local.EventBatch:
    return local.fetch_events(
        repo, LOOP, offset=offset, trace_id=kw.pop("trace_id", None), now=NOW, byte_hint=hint, **kw
    )


def _hint(batch: local.EventBatch) -> cursor.CursorPosition:
    return cursor.CursorPosition(batch.offset_after, batch.byte_offset_after, batch.tail_sha256)


# ----------------------------------------------------------------------------- snapshot


def test_snapshot_emits_the_loop_run_snapshot_envelope(tmp_path: Path) -> None:
    _write_base(tmp_path)
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id="trace-snapshot-1", now=NOW)
    assert snap["schemaVersion"] == "v1"
    assert snap["envelopeType"] == "loop_run_snapshot"
    assert snap["source"] == {"repoPath": str(tmp_path), "loopId": LOOP}
    assert snap["run"]["runId"] == "run-7f3"
    assert snap["traceId"] == "trace-snapshot-1"
    assert snap["sequence"] == {"source": "cursor_event_line_offset", "value": 3}
    assert snap["cursor"]["eventLineOffset"] == 3
    assert snap["runtime"]["heartbeat"] is None
    assert snap["artifacts"]["heartbeat"]["path"] == ".superloop/loops/demo-loop/heartbeat.v1.json"
    assert snap["artifacts"]["heartbeat"]["exists"] is False
    assert snap["run"]["status"] == "running"
    assert snap["run"]["iteration"] == 1  # the summary's iteration wins over the live event's
    assert snap["runtime"]["activeRun"]["pid"] == 4242
    events_file = tmp_path / ".superloop/loops/demo-loop/events.jsonl"
    ref = snap["artifacts"]["events"]
    assert ref["sha256"] == hashlib.sha256(events_file.read_bytes()).hexdigest()
    assert ref["sizeBytes"] == events_file.stat().st_size
    assert ref["lineCount"] == 3
    assert ref["mtimeEpoch"] == int(events_file.stat().st_mtime)
    assert snap["health"]["lastEventName"] == "role_end"
    assert snap["health"]["lastSummaryAt"] == "2026-03-01T08:00:02Z"


def test_snapshot_fails_closed_when_events_artifact_is_missing(tmp_path: Path) -> None:
    loop_dir = tmp_path / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True)
    (loop_dir / "run-summary.json").write_text('{"version":1,"loop_id":"demo-loop","entries":[]}\n')
    with pytest.raises(ContractError, match="required artifact missing"):
        local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)


def test_snapshot_fails_closed_when_loop_directory_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="required artifact root missing"):
        local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)


@pytest.mark.parametrize("name", ["run-summary.json", "approval.json", "heartbeat.v1.json"])
def test_zero_byte_optional_artifact_fails_the_snapshot(tmp_path: Path, name: str) -> None:
    loop_dir = _write_base(tmp_path)
    (loop_dir / name).write_bytes(b"")
    with pytest.raises(ContractError, match=f"invalid JSON in .*{name}"):
        local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)


def test_unparseable_repo_state_fails_the_snapshot(tmp_path: Path) -> None:
    _write_base(tmp_path)
    (tmp_path / ".superloop" / "state.json").write_text("{not json")
    with pytest.raises(ContractError, match=r"invalid JSON in .*state\.json"):
        local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)


def test_trailing_empty_line_fails_the_snapshot(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    _append(loop_dir / "events.jsonl", b"\n")
    with pytest.raises(ContractError, match="invalid JSON in final events line"):
        local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)


def test_snapshot_ignores_an_unterminated_final_line(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    _append(loop_dir / "events.jsonl", b'{"timestamp":"2026-03-01T08:00:50Z","event":"loop_st')
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
    assert snap["health"]["eventCount"] == 3
    assert snap["health"]["lastEventName"] == "role_end"


def test_single_unterminated_line_has_no_last_event(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    (loop_dir / "events.jsonl").write_bytes(_line(1).rstrip(b"\n"))
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
    assert snap["health"]["eventCount"] == 0
    assert snap["health"]["lastEventName"] is None


def test_large_run_summary_is_read_without_a_size_limit(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    entries = [
        {"run_id": f"run-{i}", "iteration": i, "notes": "x" * 2000, "completion_ok": False}
        for i in range(1, 2500)
    ]
    entries[-1]["completion_ok"] = True
    (loop_dir / "run-summary.json").write_text(json.dumps({"version": 1, "entries": entries}))
    assert (loop_dir / "run-summary.json").stat().st_size > 4 * 1024 * 1024
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
    assert snap["run"]["runId"] == "run-2499"
    assert snap["run"]["status"] == "complete"
    assert snap["artifacts"]["runSummary"]["sizeBytes"] > 4 * 1024 * 1024


def test_snapshot_digest_stays_exact_as_the_file_grows_and_is_replaced(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    events = loop_dir / "events.jsonl"
    for step in range(3):
        _append(events, b"".join(_line(step * 10 + i) for i in range(50)))
        snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
        assert snap["artifacts"]["events"]["sha256"] == hashlib.sha256(events.read_bytes()).hexdigest()
        assert snap["cursor"]["eventLineCount"] == events.read_bytes().count(b"\n")
    replacement = loop_dir / "events.new"
    replacement.write_bytes(_line(1) + _line(2))
    os.replace(replacement, events)
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
    assert snap["artifacts"]["events"]["sha256"] == hashlib.sha256(events.read_bytes()).hexdigest()
    assert snap["cursor"]["eventLineCount"] == 2


def test_heartbeat_artifact_is_embedded(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    beat = {
        "schemaVersion": "v1",
        "timestamp": "2026-03-01T08:00:35Z",
        "source": "runtime",
        "status": "running",
    }
    (loop_dir / "heartbeat.v1.json").write_text(json.dumps(beat))
    snap = local.fetch_snapshot(tmp_path, LOOP, trace_id=None, now=NOW)
    assert snap["runtime"]["heartbeat"] == beat
    assert snap["artifacts"]["heartbeat"]["exists"] is True


# ----------------------------------------------------------------------------- polling


def test_event_poll_emits_cursor_safe_envelopes(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    first = _poll(tmp_path, trace_id="trace-events-1")
    assert len(first.events) == 3
    assert all(e["envelopeType"] == "loop_run_event" for e in first.events)
    assert first.events[0]["sequence"] == {"source": "cursor_event_line_offset", "value": 1}
    assert first.events[0]["traceId"] == "trace-events-1"
    assert (first.offset_before, first.offset_after, first.line_count) == (0, 3, 3)
    second = _poll(tmp_path, 3, _hint(first))
    assert second.events == []
    assert second.offset_after == 3
    _append(loop_dir / "events.jsonl", (RUNTIME / "event-iteration-end.jsonl").read_bytes())
    third = _poll(tmp_path, 3, _hint(second), max_events=1)
    assert len(third.events) == 1
    assert third.offset_after == 4
    assert third.events[0]["event"]["name"] == "iteration_end"


def test_incremental_poll_reads_only_the_new_bytes(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    events = loop_dir / "events.jsonl"
    _append(events, b"".join(_line(i) for i in range(2000)))
    first = _poll(tmp_path)
    assert first.scanned_bytes == events.stat().st_size
    new = b"".join(_line(i) for i in range(2000, 2100))
    _append(events, new)
    second = _poll(tmp_path, first.offset_after, _hint(first))
    assert second.scanned_bytes == len(new)
    assert [e["event"]["raw"]["seq"] for e in second.events] == list(range(2000, 2100))
    assert second.line_count == events.read_bytes().count(b"\n")


def test_process_memo_makes_polls_incremental_without_a_hint(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    first = _poll(tmp_path)
    _append(loop_dir / "events.jsonl", _line(7))
    second = _poll(tmp_path, first.offset_after)
    assert second.scanned_bytes == len(_line(7))
    assert len(second.events) == 1


def test_hint_on_a_rewritten_file_fails_closed(tmp_path: Path) -> None:
    """Issue 10: the bytes before the remembered position changed, so the lines cannot be counted on."""
    loop_dir = _write_base(tmp_path)
    first = _poll(tmp_path)
    events = loop_dir / "events.jsonl"
    content = events.read_bytes()
    # Same size, different bytes before the remembered position: a rewritten file.
    events.write_bytes(content.replace(b"planner", b"testerx"))
    _append(events, _line(9))
    forged = cursor.CursorPosition(first.offset_after, first.byte_offset_after, first.tail_sha256)
    with pytest.raises(ContractError, match="rotated or rewritten"):
        _poll(tmp_path, 3, forged)


def test_edited_line_offset_with_a_stale_byte_hint_is_not_trusted(tmp_path: Path) -> None:
    _write_base(tmp_path)
    first = _poll(tmp_path)
    cursor_file = tmp_path / "cursor.json"
    document = local.build_cursor_document(tmp_path, LOOP, first, NOW)
    document["eventLineOffset"] = 1  # an operator rewound the line offset by hand
    cursor_file.write_text(json.dumps(document))
    local.clear_memos()
    position = local.read_cursor(cursor_file)
    replay = _poll(tmp_path, position.line_offset, position)
    assert [e["sequence"]["value"] for e in replay.events] == [2, 3]
    assert replay.scanned_bytes == (tmp_path / ".superloop/loops/demo-loop/events.jsonl").stat().st_size


def test_truncated_events_file_fails_closed(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    first = _poll(tmp_path)
    (loop_dir / "events.jsonl").write_bytes((RUNTIME / "events-base.jsonl").read_bytes())
    with pytest.raises(ContractError, match=r"cursor offset \(3\) exceeds available events \(2\)"):
        _poll(tmp_path, 3, _hint(first))
    with pytest.raises(ContractError, match=r"cursor offset \(3\) exceeds available events \(2\)"):
        _poll(tmp_path, 3)  # no hint: the line count alone catches it
    replay = _poll(tmp_path, 0)
    assert len(replay.events) == 2


def test_rotated_file_with_more_but_shorter_lines_fails_closed(tmp_path: Path) -> None:
    _write_base(tmp_path)
    first = _poll(tmp_path)
    (tmp_path / ".superloop/loops/demo-loop/events.jsonl").write_bytes(b'{"event":"a","timestamp":"t"}\n' * 4)
    with pytest.raises(ContractError, match="truncated or rotated; reset cursor or use --from-start"):
        _poll(tmp_path, 3, _hint(first))


def test_unterminated_final_line_is_emitted_once_after_its_newline(tmp_path: Path) -> None:
    loop_dir = _write_base(tmp_path)
    events = loop_dir / "events.jsonl"
    whole = _line(42)
    _append(events, whole[:20])
    first = _poll(tmp_path)
    assert len(first.events) == 3
    assert first.held_partial_line
    assert first.offset_after == first.line_count == 3
    _append(events, whole[20:])
    second = _poll(tmp_path, first.offset_after, _hint(first))
    assert [e["event"]["raw"]["seq"] for e in second.events] == [42]
    assert second.offset_after == 4


@pytest.mark.parametrize(
    ("bad", "message"),
    [(b"   \n", "missing event name at line 4"), (b'"text"\n', "invalid JSON event at line 4")],
)
def test_invalid_line_after_the_cursor_fails_the_poll(tmp_path: Path, bad: bytes, message: str) -> None:
    loop_dir = _write_base(tmp_path)
    _append(loop_dir / "events.jsonl", bad)
    with pytest.raises(ContractError, match=message):
        _poll(tmp_path, 3)


def test_poll_requires_the_loop_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="required artifact root missing"):
        _poll(tmp_path)


# ----------------------------------------------------------------------------- cursor file


def test_read_cursor_offset_forms(tmp_path: Path) -> None:
    path = tmp_path / "cursor.json"
    assert local.read_cursor_offset(path) == 0
    path.write_text('{"eventLineOffset":"1"}')
    assert local.read_cursor_offset(path) == 1
    path.write_text('{"eventLineOffset":-1}')
    with pytest.raises(ContractError, match="invalid cursor offset in"):
        local.read_cursor_offset(path)
    path.write_text("garbage")
    with pytest.raises(ContractError, match="invalid JSON in cursor file:"):
        local.read_cursor_offset(path)


def test_cursor_document_round_trips_the_byte_hint(tmp_path: Path) -> None:
    _write_base(tmp_path)
    batch = _poll(tmp_path, max_events=2)
    doc = local.build_cursor_document(tmp_path, LOOP, batch, NOW)
    assert doc["eventsFile"] == ".superloop/loops/demo-loop/events.jsonl"
    assert (doc["eventLineOffset"], doc["eventLineCount"]) == (2, 3)
    path = tmp_path / "cursor.json"
    path.write_text(json.dumps(doc))
    position = local.read_cursor(path)
    assert position == _hint(batch)


# ----------------------------------------------------------------------------- property test on real files


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seqs=st.lists(st.integers(0, 10**6), min_size=1, max_size=30),
    plan=st.lists(
        st.tuples(st.integers(1, 300), st.integers(0, 3), st.sampled_from(["file", "memo", "none"])),
        min_size=1,
        max_size=40,
    ),
)
def test_real_file_polls_lose_and_duplicate_nothing(
    seqs: list[int], plan: list[tuple[int, int, str]]
) -> None:
    content = b"".join(_line(seq) for seq in seqs)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        loop_dir = repo / ".superloop" / "loops" / LOOP
        loop_dir.mkdir(parents=True)
        events = loop_dir / "events.jsonl"
        events.write_bytes(b"")
        cursor_file = repo / "cursor.json"
        written = 0
        emitted: list[int] = []
        steps = iter(plan)
        while True:
            chunk, max_events, source = next(steps, (300, 0, "file"))
            if written < len(content):
                _append(events, content[written : written + chunk])
                written += chunk
            position = local.read_cursor(cursor_file)
            if source != "file":
                if source == "none":
                    local.clear_memos()
                position = cursor.CursorPosition(position.line_offset)
            batch = local.fetch_events(
                repo,
                LOOP,
                offset=position.line_offset,
                max_events=max_events,
                trace_id=None,
                now=NOW,
                byte_hint=position,
            )
            assert batch.offset_after <= batch.line_count
            cursor_file.write_text(json.dumps(local.build_cursor_document(repo, LOOP, batch, NOW)))
            emitted.extend(e["event"]["raw"]["seq"] for e in batch.events)
            if written >= len(content) and not batch.events and max_events == 0:
                break
        assert emitted == seqs
