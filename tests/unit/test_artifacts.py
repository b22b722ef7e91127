"""Artifact parsing and the fail-closed rules of spec loop-core §1.8 (pure, no files)."""

from __future__ import annotations

import pytest

from superloop_ops.core.loop import artifacts
from superloop_ops.errors import ContractError

EVENTS = "/repo/.superloop/loops/demo-loop/events.jsonl"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "d"), (False, "d"), (0, 0), ("", ""), ([], []), (True, True), ("x", "x")],
)
def test_jq_alternative_treats_only_null_and_false_as_absent(value: object, expected: object) -> None:
    assert artifacts.jq_alt(value, "d") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("run-1", "run-1"), (7, "7"), (2.0, "2"), (2.5, "2.5"), (True, "true"), ({"a": 1}, '{"a":1}')],
)
def test_text_coercion_matches_jq_raw_output(value: object, expected: str) -> None:
    assert artifacts.jq_text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        ("12", 12),
        (" 4", 4),
        ("2.0", 2),
        ("1.5", 1.5),
        (4.0, 4),
        ("abc", 0),
        (True, 0),
        (None, 0),
        (False, 0),
        ([1], 0),
        ("", 0),
    ],
)
def test_iteration_number_conversion(value: object, expected: float) -> None:
    assert artifacts.jq_number(value) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"   \n", b"NaN", b'{"a": Infinity}', b'{"a":1} {"b":2}', b"\xff\xfe", b"{", b"tru"],
)
def test_strict_json_rejects_what_jq_rejects(data: bytes) -> None:
    with pytest.raises(ContractError, match="bad doc"):
        artifacts.parse_json_bytes(data, error="bad doc")


def test_missing_optional_artifact_is_none() -> None:
    assert artifacts.parse_optional_artifact(None, "/r/state.json") is None


def test_zero_byte_optional_artifact_fails_as_invalid_json() -> None:
    with pytest.raises(ContractError, match=r"invalid JSON in /r/state\.json"):
        artifacts.parse_optional_artifact(b"", "/r/state.json")


def test_optional_artifact_read_field_by_field_must_be_an_object() -> None:
    with pytest.raises(ContractError, match="expected a JSON object"):
        artifacts.parse_optional_artifact(b"[1,2]", "/r/state.json")
    assert artifacts.parse_optional_artifact(b"[1,2]", "/r/active-run.json", require_object=False) == [1, 2]


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (None, None),
        ({"version": 1}, None),
        ({"entries": []}, None),
        ({"entries": "x"}, None),
        ({"entries": [{"run_id": "a"}, {"run_id": "b"}]}, {"run_id": "b"}),
    ],
)
def test_latest_summary_entry_is_the_last_one(summary: object, expected: object) -> None:
    assert artifacts.latest_summary_entry(summary) == expected


def test_latest_summary_entry_that_is_not_an_object_fails_closed() -> None:
    with pytest.raises(ContractError, match="latest entry"):
        artifacts.latest_summary_entry({"entries": ["oops"]})


def test_last_event_is_none_when_no_line_is_terminated() -> None:
    assert artifacts.compute_last_event(0, None, EVENTS).event is None


def test_last_event_parses_the_final_terminated_line() -> None:
    last = artifacts.compute_last_event(2, b'{"event":"role_end","timestamp":"t"}', EVENTS)
    assert last.line_count == 2
    assert last.event == {"event": "role_end", "timestamp": "t"}


@pytest.mark.parametrize("line", [b"", b"{not json", b'"just a string"', b"[1]"])
def test_bad_final_events_line_fails_snapshot(line: bytes) -> None:
    with pytest.raises(ContractError, match="invalid JSON in final events line"):
        artifacts.compute_last_event(3, line, EVENTS)


@pytest.mark.parametrize("line", [b" ", b"\t  ", b"\r"])
def test_whitespace_only_event_line_is_a_missing_event_name(line: bytes) -> None:
    with pytest.raises(ContractError, match="missing event name at line 4 in"):
        artifacts.parse_event_line(line, 4, EVENTS)


def test_invalid_json_event_line_reports_its_number() -> None:
    with pytest.raises(ContractError, match=f"invalid JSON event at line 2 in {EVENTS}"):
        artifacts.parse_event_line(b'{"event":', 2, EVENTS)


def test_non_object_event_line_fails() -> None:
    with pytest.raises(ContractError, match="not a JSON object"):
        artifacts.parse_event_line(b'"loop_start"', 1, EVENTS)


def test_event_name_falls_back_to_type() -> None:
    event = artifacts.parse_event_line(b'{"type":"loop_start","timestamp":"t"}', 1, EVENTS)
    assert artifacts.event_name_of(event) == "loop_start"


def test_empty_event_name_does_not_fall_back_to_type() -> None:
    # jq's ``//`` keeps "" (only null/false fall through), so the name is empty: fail.
    with pytest.raises(ContractError, match="missing event name"):
        artifacts.parse_event_line(b'{"event":"","type":"x","timestamp":"t"}', 1, EVENTS)


@pytest.mark.parametrize(
    "line", [b'{"event":"x"}', b'{"event":"x","timestamp":""}', b'{"event":"x","timestamp":null}']
)
def test_missing_event_timestamp_fails(line: bytes) -> None:
    with pytest.raises(ContractError, match="missing event timestamp at line 1"):
        artifacts.parse_event_line(line, 1, EVENTS)


def test_timestamp_content_is_not_validated() -> None:
    event = artifacts.parse_event_line(b'{"event":"x","timestamp":12}', 1, EVENTS)
    assert event["timestamp"] == 12
