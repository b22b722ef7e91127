"""Parse and validate the runtime's loop artifacts (spec loop-core §1), failing closed (§1.8).

The runtime writes plain JSON documents and an append-only ``events.jsonl``. The reference reads
them with jq, whose "alternative" operator treats ``null`` and ``false`` as absent and whose
``-r`` output turns numbers into text; ``jq_alt``, ``jq_text`` and ``jq_number`` reproduce
exactly those rules so every derived field matches the reference. Everything here works on bytes
and parsed values: the shell reads the files and passes their content in.

Parsing is strict: ``NaN``/``Infinity`` literals, empty documents and two values on one line are
invalid JSON, as they are for jq.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact
from superloop_ops.errors import ArtifactInvalidError

__all__ = [
    "ACTIVE_PHASE_EVENTS",
    "EVENT_HEAD_BYTES",
    "FAILURE_STATUSES",
    "MAX_EVENT_LINE_BYTES",
    "MAX_STORED_EVENT_BYTES",
    "STOP_EVENTS",
    "LastEvent",
    "RuntimeArtifacts",
    "cap_stored_event",
    "compute_last_event",
    "event_name_of",
    "jq_alt",
    "jq_get",
    "jq_number",
    "jq_text",
    "jq_text_or_empty",
    "latest_summary_entry",
    "parse_event_line",
    "parse_json_bytes",
    "parse_optional_artifact",
]

ACTIVE_PHASE_EVENTS: frozenset[str] = frozenset(
    {
        "iteration_start",
        "role_start",
        "role_end",
        "iteration_end",
        "tests_start",
        "tests_end",
        "validation_start",
        "validation_end",
    }
)
STOP_EVENTS: frozenset[str] = frozenset({"loop_stop", "rate_limit_stop", "no_progress_stop"})
FAILURE_STATUSES: frozenset[str] = frozenset({"error", "timeout", "blocked", "rate_limited"})

_NUMERIC_TEXT = re.compile(r"\A\s*-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


class _InvalidJson(ValueError):
    """Raised internally for any byte string jq would not accept as exactly one JSON value."""


def _reject_constant(name: str) -> Any:
    raise _InvalidJson(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _InvalidJson("not UTF-8") from exc
    if not text.strip():
        raise _InvalidJson("empty document")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, an integer too long
        raise _InvalidJson(str(exc)) from exc


def parse_json_bytes(data: bytes, *, error: str) -> Any:
    """Exactly one JSON value, or ``ArtifactInvalidError(error)``; empty input is invalid (spec §1.8)."""
    try:
        return _loads(data)
    except _InvalidJson as exc:
        raise ArtifactInvalidError(error) from exc


def parse_optional_artifact(data: bytes | None, path: str, *, require_object: bool = True) -> Any:
    """An optional artifact's parsed content, ``None`` when the file is absent.

    Present but zero bytes or not valid JSON fails closed with ``invalid JSON in <path>``. The
    artifacts the lifecycle rules read field by field must be objects too: the reference would
    stop on a jq type error there, we fail with a message instead.
    """
    if data is None:
        return None
    value = parse_json_bytes(data, error=f"invalid JSON in {path}")
    if require_object and not isinstance(value, dict):
        raise ArtifactInvalidError(f"invalid JSON in {path}: expected a JSON object")
    return value


def jq_alt(value: Any, default: Any) -> Any:
    """jq's ``value // default``: ``null`` and ``false`` count as absent, ``0`` and ``""`` do not."""
    return default if value is None or value is False else value


def jq_text(value: Any) -> str:
    """The text jq ``-r`` prints for a value, which the reference then re-embeds as a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e17:
        return str(int(value))
    return dumps_compact(value)


def jq_number(value: Any) -> int | float:
    """jq ``(value // 0) | tonumber? // 0``: numbers pass, numeric strings convert, the rest is 0."""
    value = jq_alt(value, 0)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _tidy_number(value)
    if isinstance(value, str) and _NUMERIC_TEXT.match(value):
        return _tidy_number(float(value)) if _is_fractional(value) else int(value.strip())
    return 0


def _is_fractional(text: str) -> bool:
    return any(marker in text for marker in (".", "e", "E"))


def _tidy_number(value: float) -> int | float:
    if math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def jq_get(container: Any, *path: str) -> Any:
    """``container.a.b`` without jq's type errors: anything that is not an object has no fields."""
    node = container
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def latest_summary_entry(summary: Any) -> JsonObject | None:
    """The last element of ``entries`` (spec §1.3); missing file, key or empty list mean ``None``."""
    entries = jq_get(summary, "entries")
    if not isinstance(entries, list) or not entries:
        return None
    last = entries[-1]
    if last is None or last is False:
        return None
    if not isinstance(last, dict):
        raise ArtifactInvalidError("invalid run summary: the latest entry is not a JSON object")
    return last


@dataclass(frozen=True)
class LastEvent:
    """The last complete line of ``events.jsonl`` as the snapshot sees it (§2.1)."""

    line_count: int
    """L: number of newline characters in the file."""
    event: JsonObject | None
    """The parsed last terminated line, ``None`` when L is 0."""


def compute_last_event(
    line_count: int, last_line: bytes | None, events_path: str, *, size: int | None = None
) -> LastEvent:
    """Parse the final terminated line (``last_line`` excludes its newline).

    An empty final line (``...}\\n\\n``) fails closed exactly as invalid JSON does (§1.8): the
    runtime never writes one, so it signals a damaged file.
    """
    if line_count == 0 or last_line is None:
        return LastEvent(line_count=line_count, event=None)
    size = len(last_line) if size is None else size
    if size > MAX_EVENT_LINE_BYTES:
        event = _oversized_event(last_line, line_count, events_path, size)
        return LastEvent(line_count=line_count, event=event)
    error = f"invalid JSON in final events line: {events_path}"
    value = parse_json_bytes(last_line, error=error)
    if not isinstance(value, dict):
        raise ArtifactInvalidError(f"{error} (not a JSON object)")
    return LastEvent(line_count=line_count, event=value)


MAX_EVENT_LINE_BYTES = 1 << 20
"""An event line longer than this is not parsed: its head gives the event, its data is dropped."""
MAX_STORED_EVENT_BYTES = 16 * 1024
"""An event whose JSON is longer than this is stored (state, status) without its payload."""
EVENT_HEAD_BYTES = 64 * 1024
"""How much of an oversized line is read for its event name, timestamp, run and iteration."""
_HEAD_FIELDS = {
    "event": re.compile(rb'"event"\s*:\s*"((?:[^"\\]|\\.){1,200})"'),
    "timestamp": re.compile(rb'"timestamp"\s*:\s*"((?:[^"\\]|\\.){1,64})"'),
    "run_id": re.compile(rb'"run_id"\s*:\s*"((?:[^"\\]|\\.){1,200})"'),
    "loop_id": re.compile(rb'"loop_id"\s*:\s*"((?:[^"\\]|\\.){1,200})"'),
    "iteration": re.compile(rb'"iteration"\s*:\s*(\d{1,9})\b'),
}


def _truncation(reason_code: str, size: int, limit: int) -> JsonObject:
    return {"truncated": {"reasonCode": reason_code, "bytes": size, "limit": limit}}


def _oversized_event(line: bytes, line_no: int, events_path: str, size: int) -> JsonObject:
    """The event of a line above ``MAX_EVENT_LINE_BYTES``, from the scalar fields in its head.

    The data is dropped (reason ``event_line_too_large``); a head without an event name and a
    timestamp fails closed like any invalid line.
    """
    head = line[:EVENT_HEAD_BYTES]
    event: JsonObject = {}
    for key, pattern in _HEAD_FIELDS.items():
        match = pattern.search(head)
        if match is None:
            continue
        text = match.group(1)
        try:
            event[key] = int(text) if key == "iteration" else _loads(b'"' + text + b'"')
        except _InvalidJson:
            continue
    if not isinstance(event.get("event"), str) or not isinstance(event.get("timestamp"), str):
        raise ArtifactInvalidError(
            f"event line {line_no} in {events_path} is {size} bytes (limit {MAX_EVENT_LINE_BYTES}) "
            "and its head has no event name or timestamp"
        )
    event["data"] = _truncation("event_line_too_large", size, MAX_EVENT_LINE_BYTES)
    return event


def cap_stored_event(event: JsonObject, size: int | None = None) -> tuple[JsonObject, Any]:
    """The event and its payload as stored (state, status): without the payload when too large.

    ``size`` is the event's line length when known (it saves serialising the event again).
    """
    payload = jq_alt(event.get("data"), None)
    if size is None:
        size = len(dumps_compact(event).encode("utf-8", "surrogatepass"))
    if size <= MAX_STORED_EVENT_BYTES:
        return event, payload
    marker = _truncation("event_payload_truncated", size, MAX_STORED_EVENT_BYTES)
    small = {key: value for key, value in event.items() if _is_small_scalar(value)}
    return {**small, "data": marker}, marker


def _is_small_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 1024
    return value is None or isinstance(value, bool | int | float)


def parse_event_line(
    line: bytes, line_no: int, events_path: str, *, size: int | None = None
) -> JsonObject:
    """One runtime event line for the poller, validated as §1.8 demands.

    Whitespace-only lines (including a lone ``\\r``) have no event name: jq reads no value from
    them, so the reference reports the missing name, and so do we. A line above
    ``MAX_EVENT_LINE_BYTES`` is not parsed (``_oversized_event``); for one, the caller may pass only
    its head (at least ``EVENT_HEAD_BYTES``) and its full ``size``.
    """
    size = len(line) if size is None else size
    if size > MAX_EVENT_LINE_BYTES:
        return _oversized_event(line, line_no, events_path, size)
    if not line.strip():
        raise ArtifactInvalidError(f"missing event name at line {line_no} in {events_path}")
    try:
        value = _loads(line)
    except _InvalidJson as exc:
        raise ArtifactInvalidError(f"invalid JSON event at line {line_no} in {events_path}") from exc
    if not isinstance(value, dict):
        message = f"invalid JSON event at line {line_no} in {events_path}: not a JSON object"
        raise ArtifactInvalidError(message)
    if not event_name_of(value):
        raise ArtifactInvalidError(f"missing event name at line {line_no} in {events_path}")
    if not jq_text_or_empty(value.get("timestamp")):
        raise ArtifactInvalidError(f"missing event timestamp at line {line_no} in {events_path}")
    return value


def jq_text_or_empty(value: Any) -> str:
    """``value // ""`` rendered as text: the empty string stands for absent."""
    value = jq_alt(value, "")
    return jq_text(value)


def event_name_of(event: Any) -> str:
    """``.event // .type // ""`` as text: the runtime's event name, or empty."""
    return jq_text_or_empty(jq_alt(jq_get(event, "event"), jq_get(event, "type")))


@dataclass(frozen=True)
class RuntimeArtifacts:
    """Everything the snapshot reads, already parsed (absent optional files are ``None``)."""

    last_event: LastEvent
    state: Any = None
    active_run: Any = None
    approval: Any = None
    summary: Any = None
    heartbeat: Any = None

    @property
    def latest_entry(self) -> JsonObject | None:
        return latest_summary_entry(self.summary)
