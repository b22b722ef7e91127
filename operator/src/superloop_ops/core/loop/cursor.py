"""Event polling with a cursor (spec loop-core §3), as a pure function over the file's bytes.

The contract's cursor is a *line* offset. Re-reading the whole ``events.jsonl`` every pass to
find line S costs O(history), so our cursor document also remembers the *byte* position just
after line S (``eventByteOffset``) and a digest of the bytes before it (``eventTailSha256``).
Both are extra keys that readers of the contract ignore. The shell verifies the hint cheaply
(``verify_position``) and then hands us only the bytes after that position (``PollWindow``);
without a verified hint it hands us the whole file. Either way this module sees the same
lines with the same numbers, so the outcome is identical; only the cost differs.

Decisions (docs/divergences.md): an unterminated final line is still being written,
so it is never consumed: the cursor never passes the newline count. A file that shrank below
the remembered byte position was truncated or rotated and fails like a cursor ahead of the
file (§3.4): the operator must reset the cursor or replay from the start. So does a file that is
not smaller but whose bytes before the remembered position changed (rotated to a file at least as
large, or rewritten): counting lines in it from the old offset would skip events silently. Only
the line offset having been edited on the same file (the bytes before the remembered position
still match) falls back to a plain full scan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.loop import artifacts, envelopes
from superloop_ops.errors import ContractError

__all__ = [
    "TAIL_WINDOW",
    "CursorPosition",
    "PollOutcome",
    "PollWindow",
    "build_cursor_document",
    "check_same_file",
    "compute_poll",
    "compute_tail_digest",
    "cursor_ahead_error",
    "parse_cursor_document",
    "rotated_error",
    "truncated_error",
    "verify_position",
]

TAIL_WINDOW = 4096
"""How many bytes before the remembered position are digested to recognise the same file."""


@dataclass(frozen=True)
class CursorPosition:
    """A parsed cursor: the contract's line offset plus our optional byte hint."""

    line_offset: int
    byte_offset: int | None = None
    tail_sha256: str | None = None

    @property
    def has_hint(self) -> bool:
        return self.byte_offset is not None and self.tail_sha256 is not None


def parse_cursor_document(data: bytes, path: str) -> CursorPosition:
    """The start offset of §3.3 from a cursor file's bytes.

    ``eventLineOffset`` null/false/absent means 0; a digit string such as ``"1"`` is accepted;
    negative, fractional or non-numeric values fail. The byte hint is taken only when it is
    well formed and consistent with the line offset; otherwise it is ignored (full scan).
    """
    document = artifacts.parse_json_bytes(data, error=f"invalid JSON in cursor file: {path}")
    if not isinstance(document, dict):
        raise ContractError(f"invalid cursor offset in {path}")
    text = artifacts.jq_text(artifacts.jq_alt(document.get("eventLineOffset"), 0))
    if not (text.isascii() and text.isdigit()):
        raise ContractError(f"invalid cursor offset in {path}")
    line_offset = int(text)
    byte_offset = document.get("eventByteOffset")
    digest = document.get("eventTailSha256")
    if (
        isinstance(byte_offset, int)
        and not isinstance(byte_offset, bool)
        and byte_offset >= line_offset
        and (byte_offset == 0) == (line_offset == 0)
        and isinstance(digest, str)
        and len(digest) == 64
    ):
        return CursorPosition(line_offset, byte_offset, digest)
    return CursorPosition(line_offset)


def compute_tail_digest(window: bytes, line_offset: int) -> str:
    """Digest of the (up to ``TAIL_WINDOW``) bytes that end at a remembered position.

    The line number is part of the digest, so a cursor whose ``eventLineOffset`` was edited
    without its byte offset no longer verifies (full scan) instead of misnumbering lines.
    """
    digest = hashlib.sha256(f"{line_offset}:".encode())
    digest.update(window[-TAIL_WINDOW:])
    return digest.hexdigest()


def cursor_ahead_error(start: int, total: int) -> ContractError:
    return ContractError(
        f"cursor offset ({start}) exceeds available events ({total}); reset cursor or use --from-start"
    )


def truncated_error(start: int, byte_offset: int, size: int) -> ContractError:
    return ContractError(
        f"cursor offset ({start}) is past the end of the events file ({size} bytes, cursor at byte "
        f"{byte_offset}): it was truncated or rotated; reset cursor or use --from-start"
    )


def rotated_error(start: int, byte_offset: int) -> ContractError:
    return ContractError(
        f"cursor offset ({start}) does not match the events file: the bytes before the cursor (byte "
        f"{byte_offset}) changed, so it was rotated or rewritten; reset cursor or use --from-start"
    )


def check_same_file(position: CursorPosition, data: bytes) -> None:
    """After ``verify_position`` failed: is ``data`` (the whole file) still the file of the hint?

    The bytes before the hint's byte offset, digested with their own line count, must match the
    remembered digest: then only the line offset was edited, and a full scan numbers lines
    correctly. Otherwise the file was replaced: ``rotated_error`` (or ``truncated_error``).
    """
    byte_offset, digest = position.byte_offset, position.tail_sha256
    if byte_offset is None or digest is None or byte_offset == 0:
        return
    if len(data) < byte_offset:
        raise truncated_error(position.line_offset, byte_offset, len(data))
    window = data[max(0, byte_offset - TAIL_WINDOW) : byte_offset]
    if window.endswith(b"\n") and compute_tail_digest(window, data.count(b"\n", 0, byte_offset)) == digest:
        return
    raise rotated_error(position.line_offset, byte_offset)


def verify_position(position: CursorPosition, size: int, window: bytes) -> bool:
    """Whether the byte hint still points just after line ``line_offset`` of this file.

    ``window`` is the file's bytes in ``[max(0, byte_offset - TAIL_WINDOW), byte_offset)``. A
    file smaller than the hint is not "unverified" but truncated: ``truncated_error``.
    """
    if position.byte_offset is None or position.tail_sha256 is None:
        return False
    if size < position.byte_offset:
        raise truncated_error(position.line_offset, position.byte_offset, size)
    if position.byte_offset == 0:
        return position.line_offset == 0
    expected_len = min(position.byte_offset, TAIL_WINDOW)
    return (
        len(window) == expected_len
        and window.endswith(b"\n")
        and compute_tail_digest(window, position.line_offset) == position.tail_sha256
    )


@dataclass(frozen=True)
class PollWindow:
    """The bytes a poll reads: ``data`` starts at ``base_byte``, just after line ``base_line``.

    ``prefix`` holds the up-to-``TAIL_WINDOW`` bytes before ``base_byte`` (empty for a full
    scan), so the new tail digest can be computed without reading again. ``data`` ends at the
    file size observed when the poll started.
    """

    data: bytes
    base_byte: int = 0
    base_line: int = 0
    prefix: bytes = b""


@dataclass(frozen=True)
class PollOutcome:
    events: list[JsonObject]
    offset_before: int
    offset_after: int
    line_count: int
    byte_offset_after: int
    tail_sha256: str
    held_partial_line: bool
    """True when the file ends with an unterminated line that this poll left for later."""


def compute_poll(
    window: PollWindow,
    *,
    start_line: int,
    max_events: int,
    repo_path: str,
    loop_id: str,
    events_path: str,
    trace_id: str | None,
    now: dt.datetime,
) -> PollOutcome:
    """Emit envelopes for the complete lines after ``start_line`` (§3.3), at most ``max_events``.

    Zero-length lines consume a line number but are not emitted; any other invalid line fails
    the whole poll (the caller then keeps its old cursor).
    """
    if start_line < window.base_line or max_events < 0:
        raise ValueError("poll window starts after the cursor, or max_events is negative")
    data = window.data
    total = window.base_line + data.count(b"\n")
    if start_line > total:
        raise cursor_ahead_error(start_line, total)

    emitted: list[JsonObject] = []
    line_no = window.base_line
    pos = 0
    after = 0  # position in ``data`` just after the last consumed line
    last_line = start_line
    while True:
        newline = data.find(b"\n", pos)
        if newline == -1:
            break
        line_no += 1
        start, size = pos, newline - pos
        pos = newline + 1
        if line_no <= start_line:
            after = pos
            continue
        if not size:
            continue
        # An oversized line is never copied whole: its head is enough (artifacts.parse_event_line).
        end = start + artifacts.EVENT_HEAD_BYTES if size > artifacts.MAX_EVENT_LINE_BYTES else newline
        event = artifacts.parse_event_line(data[start:end], line_no, events_path, size=size)
        emitted.append(
            envelopes.build_event_envelope(
                event,
                line_no=line_no,
                line_count=total,
                repo_path=repo_path,
                loop_id=loop_id,
                trace_id=trace_id,
                now=now,
                line_bytes=size if size <= artifacts.MAX_EVENT_LINE_BYTES else None,
            )
        )
        last_line = line_no
        after = pos
        if max_events and len(emitted) >= max_events:
            break

    byte_after = window.base_byte + after
    tail = (window.prefix + data[max(0, after - TAIL_WINDOW) : after])[-TAIL_WINDOW:]
    return PollOutcome(
        events=emitted,
        offset_before=start_line,
        offset_after=last_line,
        line_count=total,
        byte_offset_after=byte_after,
        tail_sha256=compute_tail_digest(tail, last_line),
        held_partial_line=bool(data) and not data.endswith(b"\n"),
    )


def build_cursor_document(
    *,
    repo_path: str,
    loop_id: str,
    events_path: str,
    line_offset: int,
    line_count: int,
    byte_offset: int,
    tail_sha256: str,
    now: dt.datetime,
) -> JsonObject:
    """The cursor file of §3.2 plus our two extra keys (readers of the contract ignore them)."""
    return {
        "schemaVersion": envelopes.SCHEMA_VERSION,
        "repoPath": repo_path,
        "loopId": loop_id,
        "eventsFile": events_path,
        "eventLineOffset": line_offset,
        "eventLineCount": line_count,
        "updatedAt": format_ts(now),
        "eventByteOffset": byte_offset,
        "eventTailSha256": tail_sha256,
    }
