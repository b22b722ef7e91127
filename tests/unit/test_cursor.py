"""Pure cursor polling (§3.2-§3.5): offsets, fail-closed lines, byte hints, and property tests."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superloop_ops.core.loop import cursor
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 8, 0, 40, tzinfo=dt.UTC)
PATH = "/srv/demo/.superloop/loops/demo-loop/events.jsonl"


def _line(seq: int, name: str = "role_end") -> bytes:
    return json.dumps(
        {"timestamp": "2026-03-01T08:00:00Z", "event": name, "seq": seq}, separators=(",", ":")
    ).encode()


def _poll(data: bytes, start: int = 0, max_events: int = 0, **window: Any) -> cursor.PollOutcome:
    return cursor.compute_poll(
        cursor.PollWindow(data=data, **window),
        start_line=start,
        max_events=max_events,
        repo_path="/srv/demo",
        loop_id="demo-loop",
        events_path=PATH,
        trace_id="trace-events-1",
        now=NOW,
    )


def _seqs(outcome: cursor.PollOutcome) -> list[int]:
    return [event["event"]["raw"]["seq"] for event in outcome.events]


# ----------------------------------------------------------------------------- cursor document


@pytest.mark.parametrize(
    ("document", "offset"),
    [
        ({"eventLineOffset": 3}, 3),
        ({"eventLineOffset": "1"}, 1),
        ({"eventLineOffset": None}, 0),
        ({"eventLineOffset": False}, 0),
        ({}, 0),
        ({"eventLineOffset": 2.0}, 2),
    ],
)
def test_cursor_offset_accepted_forms(document: Any, offset: int) -> None:
    assert cursor.parse_cursor_document(json.dumps(document).encode(), "/c.json").line_offset == offset


@pytest.mark.parametrize("value", [-1, 1.5, "abc", "-1", " 1", True, [1], {"a": 1}])
def test_cursor_offset_rejected_forms(value: Any) -> None:
    with pytest.raises(ContractError, match=r"invalid cursor offset in /c\.json"):
        cursor.parse_cursor_document(json.dumps({"eventLineOffset": value}).encode(), "/c.json")


@pytest.mark.parametrize("data", [b"garbage", b"", b"{"])
def test_unparseable_cursor_file(data: bytes) -> None:
    with pytest.raises(ContractError, match=r"invalid JSON in cursor file: /c\.json"):
        cursor.parse_cursor_document(data, "/c.json")


def test_cursor_that_is_not_an_object_is_an_invalid_offset() -> None:
    with pytest.raises(ContractError, match="invalid cursor offset"):
        cursor.parse_cursor_document(b"[3]", "/c.json")


def test_byte_hint_kept_only_when_consistent() -> None:
    good = {"eventLineOffset": 2, "eventByteOffset": 40, "eventTailSha256": "a" * 64}
    assert cursor.parse_cursor_document(json.dumps(good).encode(), "c").has_hint
    for bad in (
        {"eventByteOffset": 1},
        {"eventByteOffset": "40"},
        {"eventTailSha256": "short"},
        {"eventByteOffset": 0},
    ):
        doc = good | bad
        position = cursor.parse_cursor_document(json.dumps(doc).encode(), "c")
        assert position.line_offset == 2
        assert not position.has_hint


def test_cursor_document_shape() -> None:
    doc = cursor.build_cursor_document(
        repo_path="/srv/demo",
        loop_id="demo-loop",
        events_path=".superloop/loops/demo-loop/events.jsonl",
        line_offset=3,
        line_count=3,
        byte_offset=120,
        tail_sha256="b" * 64,
        now=NOW,
    )
    assert doc == {
        "schemaVersion": "v1",
        "repoPath": "/srv/demo",
        "loopId": "demo-loop",
        "eventsFile": ".superloop/loops/demo-loop/events.jsonl",
        "eventLineOffset": 3,
        "eventLineCount": 3,
        "updatedAt": "2026-03-01T08:00:40Z",
        "eventByteOffset": 120,
        "eventTailSha256": "b" * 64,
    }


# ----------------------------------------------------------------------------- polling


def test_poll_emits_every_line_then_nothing() -> None:
    data = b"".join(_line(i) + b"\n" for i in range(1, 4))
    first = _poll(data)
    assert _seqs(first) == [1, 2, 3]
    assert [e["sequence"]["value"] for e in first.events] == [1, 2, 3]
    assert all(e["cursor"]["eventLineCount"] == 3 for e in first.events)
    assert first.events[0]["traceId"] == "trace-events-1"
    assert (first.offset_after, first.line_count, first.byte_offset_after) == (3, 3, len(data))
    again = _poll(data, start=3)
    assert again.events == []
    assert again.offset_after == 3


def test_max_events_limits_the_batch() -> None:
    data = b"".join(_line(i) + b"\n" for i in range(1, 5))
    outcome = _poll(data, start=3, max_events=1)
    assert _seqs(outcome) == [4]
    assert outcome.offset_after == 4


def test_zero_length_lines_consume_numbers_but_are_not_emitted() -> None:
    data = _line(1) + b"\n\n" + _line(3) + b"\n\n\n"
    outcome = _poll(data, max_events=2)
    assert [e["sequence"]["value"] for e in outcome.events] == [1, 3]
    assert outcome.offset_after == 3  # trailing empty lines are not consumed
    assert outcome.line_count == 5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"   ", "missing event name at line 2"),
        (b"\r", "missing event name at line 2"),
        (b"[1,2]", "invalid JSON event at line 2"),
        (b"{oops", "invalid JSON event at line 2"),
        (b'{"event":"x"} {"event":"y"}', "invalid JSON event at line 2"),
    ],
)
def test_invalid_line_fails_the_whole_poll(bad: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        _poll(_line(1) + b"\n" + bad + b"\n" + _line(3) + b"\n")


def test_cursor_ahead_of_the_file_fails() -> None:
    with pytest.raises(
        ContractError,
        match=r"cursor offset \(5\) exceeds available events \(2\); reset cursor or use --from-start",
    ):
        _poll(_line(1) + b"\n" + _line(2) + b"\n", start=5)


def test_unterminated_final_line_is_held_until_its_newline() -> None:
    data = _line(1) + b"\n" + _line(2)
    outcome = _poll(data)
    assert _seqs(outcome) == [1]
    assert outcome.held_partial_line
    assert outcome.offset_after <= outcome.line_count == 1
    done = _poll(data + b"\n", start=1)
    assert _seqs(done) == [2]
    assert not done.held_partial_line


def test_torn_final_line_that_is_not_json_yet_does_not_fail() -> None:
    outcome = _poll(_line(1) + b'\n{"timestamp":"2026-')
    assert _seqs(outcome) == [1]


def test_verify_position_accepts_the_same_file_and_rejects_others() -> None:
    data = b"".join(_line(i) + b"\n" for i in range(1, 300))
    outcome = _poll(data, max_events=120)
    position = cursor.CursorPosition(outcome.offset_after, outcome.byte_offset_after, outcome.tail_sha256)
    window = data[max(0, position.byte_offset - cursor.TAIL_WINDOW) : position.byte_offset]  # type: ignore[operator]
    assert cursor.verify_position(position, len(data), window)
    assert not cursor.verify_position(position, len(data), window[:-2] + b"X\n")
    with pytest.raises(ContractError, match="truncated or rotated; reset cursor or use --from-start"):
        cursor.verify_position(position, outcome.byte_offset_after - 1, b"")
    assert not cursor.verify_position(cursor.CursorPosition(4), len(data), b"")


# ----------------------------------------------------------------------------- property tests


def _emulated_poll(
    data: bytes, position: cursor.CursorPosition, max_events: int
) -> tuple[cursor.PollOutcome, bool]:
    """What the local transport does, on an in-memory file: verify the hint, else full scan."""
    incremental = False
    window = cursor.PollWindow(data=data)
    if position.byte_offset is not None:
        start = max(0, position.byte_offset - cursor.TAIL_WINDOW)
        before = data[start : position.byte_offset]
        if cursor.verify_position(position, len(data), before):
            window = cursor.PollWindow(
                data=data[position.byte_offset :],
                base_byte=position.byte_offset,
                base_line=position.line_offset,
                prefix=before,
            )
            incremental = True
    return _poll(
        window.data,
        position.line_offset,
        max_events,
        base_byte=window.base_byte,
        base_line=window.base_line,
        prefix=window.prefix,
    ), incremental


_stream = st.lists(st.one_of(st.integers(0, 10_000), st.just(-1)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(stream=_stream, data=st.data())
def test_random_appends_in_random_chunks_lose_and_duplicate_nothing(stream: list[int], data: Any) -> None:
    # -1 stands for an empty line the runtime never writes but the poller must tolerate.
    content = b"".join((b"" if seq < 0 else _line(seq)) + b"\n" for seq in stream)
    expected = [seq for seq in stream if seq >= 0]
    file = b""
    position = cursor.CursorPosition(0)
    emitted: list[int] = []
    offset = 0
    while True:
        if offset < len(content):
            step = data.draw(st.integers(1, 200), label="chunk")
            file += content[offset : offset + step]
            offset += step
        max_events = data.draw(st.integers(0, 3), label="max")
        outcome, _ = _emulated_poll(file, position, max_events)
        assert outcome.offset_after <= outcome.line_count
        emitted.extend(_seqs(outcome))
        position = cursor.CursorPosition(outcome.offset_after, outcome.byte_offset_after, outcome.tail_sha256)
        if offset >= len(content) and not outcome.events and max_events == 0:
            break
    assert emitted == expected


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 60), start=st.data(), max_events=st.integers(0, 5), torn=st.integers(0, 20))
def test_incremental_window_equals_full_scan(count: int, start: Any, max_events: int, torn: int) -> None:
    pending = _line(count)
    content = b"".join(_line(i) + b"\n" for i in range(count)) + pending[:torn]
    grown = content + pending[torn:] + b"\n" + _line(999) + b"\n"
    first_stop = start.draw(st.integers(0, count), label="first")
    first = _poll(content, max_events=first_stop)
    position = cursor.CursorPosition(first.offset_after, first.byte_offset_after, first.tail_sha256)
    incremental, used = _emulated_poll(grown, position, max_events)
    full = _poll(grown, position.line_offset, max_events)
    assert used
    assert incremental.events == full.events
    assert (
        incremental.offset_after,
        incremental.line_count,
        incremental.byte_offset_after,
        incremental.tail_sha256,
    ) == (full.offset_after, full.line_count, full.byte_offset_after, full.tail_sha256)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(2, 40), consumed=st.data(), cut=st.data())
def test_truncation_below_the_consumed_position_fails_closed(count: int, consumed: Any, cut: Any) -> None:
    content = b"".join(_line(i) + b"\n" for i in range(count))
    polled = _poll(content, max_events=consumed.draw(st.integers(1, count), label="consumed"))
    position = cursor.CursorPosition(polled.offset_after, polled.byte_offset_after, polled.tail_sha256)
    size = cut.draw(st.integers(0, len(content) - 1), label="cut")
    truncated = content[:size]
    if size < polled.byte_offset_after:
        with pytest.raises(ContractError, match="reset cursor or use --from-start"):
            _emulated_poll(truncated, position, 0)
    else:
        outcome, _ = _emulated_poll(truncated, position, 0)
        assert outcome.offset_after <= outcome.line_count
        assert _seqs(outcome) == list(range(polled.offset_after, truncated.count(b"\n")))
