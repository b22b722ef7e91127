"""The ``local`` transport: read a loop's artifacts from ``<repo>/.superloop/`` and call the core.

Cost is what matters here: the operator polls every loop on a timer, and ``events.jsonl`` only
grows. Polling therefore reads only the bytes after the remembered position (the cursor's byte
hint, or the last position this process saw for the same file), after a cheap check that the
position still fits the file (``core.loop.cursor.verify_position``); it falls back to a full scan
when it does not. The snapshot needs the newline count and SHA-256 of the whole events file;
a per-process digest memo extends both with the new bytes instead of re-hashing history.
Optional JSON artifacts are read whole, with no size limit (the reference broke on a
``run-summary.json`` above 128 KiB).

Every artifact is opened through :func:`confine_to_repo`: its path with all links resolved must
stay inside the repository (links within it are fine), and the resolved path is opened with
``O_NOFOLLOW``. A link out of the repository is refused with ``ArtifactOutsideRepoError``
(reason code ``artifact_outside_repo``), never read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.loop import artifacts, cursor, envelopes, projection, runtime_signals
from superloop_ops.errors import ArtifactOutsideRepoError, ContractError

__all__ = [
    "EventBatch",
    "LoopPaths",
    "build_cursor_document",
    "clear_memos",
    "confine_to_repo",
    "fetch_events",
    "fetch_snapshot",
    "read_cursor",
    "read_cursor_offset",
]

_CHUNK = 1 << 20
_MEMO_LIMIT = 1024
_V = TypeVar("_V")


@dataclass(frozen=True)
class LoopPaths:
    """Where one loop's runtime artifacts live (spec §1.1)."""

    repo: Path
    loop_id: str

    @classmethod
    def of(cls, repo: Path, loop_id: str) -> LoopPaths:
        # The reference uses the logical ``cd && pwd`` path: absolute, symlinks kept.
        return cls(Path(os.path.abspath(repo)), loop_id)

    @property
    def superloop(self) -> Path:
        return self.repo / ".superloop"

    @property
    def loop_dir(self) -> Path:
        return self.superloop / "loops" / self.loop_id

    @property
    def events(self) -> Path:
        return self.loop_dir / "events.jsonl"

    def relative(self, path: Path) -> str:
        text, root = str(path), str(self.repo) + os.sep
        return text[len(root) :] if text.startswith(root) else text

    def require_events(self) -> None:
        """Fail closed on a missing loop directory or events file (§1.8)."""
        if not self.loop_dir.is_dir():
            raise ContractError(f"required artifact root missing: {self.loop_dir}")
        if not self.events.is_file():
            raise ContractError(f"required artifact missing: {self.events}")


@dataclass(frozen=True)
class EventBatch:
    """One successful poll. Persist ``offset_after`` (and the byte hint) only after using it."""

    events: list[JsonObject]
    """loop_run_event envelopes, in order."""
    offset_before: int
    offset_after: int
    """eventLineOffset to persist."""
    line_count: int
    """eventLineCount: newline count at poll start."""
    byte_offset_after: int = 0
    """Byte position just after line ``offset_after`` (the cursor's ``eventByteOffset``)."""
    tail_sha256: str = ""
    """Digest of the bytes before ``byte_offset_after`` (the cursor's ``eventTailSha256``)."""
    held_partial_line: bool = False
    """The file ends with an unterminated line, left for the next poll."""
    scanned_bytes: int = 0
    """Bytes of the events file this poll read (shows whether the incremental path was taken)."""


# --------------------------------------------------------------------------- low-level reads


def confine_to_repo(repo: Path, path: Path) -> Path:
    """``path`` with every symbolic link resolved, provided that stays inside ``repo``."""
    root = os.path.realpath(repo)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise ArtifactOutsideRepoError(
            f"{ArtifactOutsideRepoError.reason_code}: {path} resolves outside the repository {repo}"
        )
    return Path(real)


def _open_confined(repo: Path, path: Path) -> int:
    """A read-only descriptor of ``path``, refused when it leads out of ``repo``."""
    return os.open(confine_to_repo(repo, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, min(length, _CHUNK * 16), offset)
        if not chunk:
            break
        parts.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _read_optional(repo: Path, path: Path) -> bytes | None:
    try:
        fd = _open_confined(repo, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except IsADirectoryError as exc:
        raise ContractError(f"invalid JSON in {path}") from exc


def _window_before(fd: int, position: int) -> bytes:
    start = max(0, position - cursor.TAIL_WINDOW)
    return _pread_exact(fd, position - start, start)


# --------------------------------------------------------------------------- events digest memo


@dataclass
class _Digest:
    ino: int
    dev: int
    size: int
    mtime_ns: int
    line_count: int
    hasher: Any
    tail_sha256: str


class _Memo(Generic[_V]):
    """Per-process memo keyed by file path, bounded to the ``_MEMO_LIMIT`` most recently used."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, *, touch: bool = True) -> _V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and touch:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: _V) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > _MEMO_LIMIT:
                self._entries.popitem(last=False)


#: (line count, SHA-256) of append-only files, extended incrementally.
_DIGESTS: _Memo[_Digest] = _Memo()
#: The last verified (line, byte) position per events file.
_POSITIONS: _Memo[cursor.CursorPosition] = _Memo()


#: usage.jsonl summaries by (size, mtime_ns): the file is re-read only when it changed.
_USAGE: _Memo[tuple[int, int, JsonObject | None]] = _Memo()


def _usage_summary(repo: Path, path: Path) -> JsonObject | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    key, seen = str(path), _USAGE.get(str(path))
    if seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns):
        return seen[2]
    summary = runtime_signals.compute_usage_summary(_read_optional(repo, path))
    _USAGE.put(key, (stat.st_size, stat.st_mtime_ns, summary))
    return summary


def _remembered_position(key: str, line_offset: int) -> cursor.CursorPosition | None:
    entry = _POSITIONS.get(key, touch=False)
    return entry if entry is not None and entry.line_offset == line_offset else None


def clear_memos() -> None:
    """Forget the per-process positions and digests (what a fresh CLI process starts with)."""
    global _DIGESTS, _POSITIONS, _USAGE
    _DIGESTS = _Memo()
    _POSITIONS = _Memo()
    _USAGE = _Memo()


def _events_digest(fd: int, key: str) -> _Digest:
    """Line count and SHA-256 of the whole file, reusing the memo when the file only grew."""
    stat = os.fstat(fd)
    size = stat.st_size
    cached = _DIGESTS.get(key)
    base, line_count, hasher = 0, 0, hashlib.sha256()
    if cached is not None and cached.ino == stat.st_ino and cached.dev == stat.st_dev and cached.size <= size:
        if cached.size == size and cached.mtime_ns == stat.st_mtime_ns:
            return cached
        window = _window_before(fd, cached.size)
        if cursor.compute_tail_digest(window, cached.line_count) == cached.tail_sha256:
            base, line_count, hasher = cached.size, cached.line_count, cached.hasher.copy()
    offset = base
    tail = _window_before(fd, base) if base else b""
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            break
        hasher.update(chunk)
        line_count += chunk.count(b"\n")
        offset += len(chunk)
        tail = (tail + chunk)[-cursor.TAIL_WINDOW :]
    entry = _Digest(
        ino=stat.st_ino,
        dev=stat.st_dev,
        size=offset,
        mtime_ns=stat.st_mtime_ns,
        line_count=line_count,
        hasher=hasher,
        tail_sha256=cursor.compute_tail_digest(tail, line_count),
    )
    _DIGESTS.put(key, entry)
    return entry


def _rfind_newline(fd: int, before: int) -> int:
    """The index of the last newline before ``before``, or -1; scans backwards, keeping one block."""
    block = 8192
    position = before
    while position > 0:
        start = max(0, position - block)
        found = _pread_exact(fd, position - start, start).rfind(b"\n")
        if found != -1:
            return start + found
        position = start
        block = min(block * 2, _CHUNK)
    return -1


def _last_terminated_line(fd: int, size: int) -> tuple[bytes, int] | None:
    """The final newline-terminated line (without its newline) and its length.

    A line above ``artifacts.MAX_EVENT_LINE_BYTES`` is returned as its head only (the parser
    needs no more), so a huge last event costs one block of memory, not its size.
    """
    end = _rfind_newline(fd, size)
    if end == -1:
        return None
    start = _rfind_newline(fd, end) + 1
    length = end - start
    wanted = length if length <= artifacts.MAX_EVENT_LINE_BYTES else artifacts.EVENT_HEAD_BYTES
    return _pread_exact(fd, wanted, start), length


# --------------------------------------------------------------------------- snapshot


def _optional_facts(paths: LoopPaths, path: Path, data: bytes | None) -> envelopes.ArtifactFacts:
    if data is None:
        return envelopes.ArtifactFacts(path=paths.relative(path))
    try:
        mtime: int | None = int(path.stat().st_mtime)
    except OSError:
        mtime = None
    return envelopes.ArtifactFacts(
        path=paths.relative(path),
        exists=True,
        size_bytes=len(data),
        line_count=data.count(b"\n"),
        sha256=hashlib.sha256(data).hexdigest(),
        mtime_epoch=mtime,
    )


def fetch_snapshot(
    repo: Path,
    loop_id: str,
    *,
    trace_id: str | None,
    now: dt.datetime,
    run_id: str | None = None,
) -> JsonObject:
    """The loop_run_snapshot envelope (§2.1); ``ContractError`` on any fail-closed rule (§1.8)."""
    paths = LoopPaths.of(repo, loop_id)
    paths.require_events()
    events_label = str(paths.events)
    try:
        fd = _open_confined(paths.repo, paths.events)
    except OSError as exc:
        raise ContractError(f"required artifact missing: {paths.events}") from exc
    try:
        digest = _events_digest(fd, events_label)
        last = _last_terminated_line(fd, digest.size) if digest.line_count else None
        mtime = int(os.fstat(fd).st_mtime)
    finally:
        os.close(fd)
    last_line, last_size = last if last is not None else (None, None)
    last_event = artifacts.compute_last_event(digest.line_count, last_line, events_label, size=last_size)

    sources = {
        "runSummary": paths.loop_dir / "run-summary.json",
        "state": paths.superloop / "state.json",
        "activeRun": paths.superloop / "active-run.json",
        "approval": paths.loop_dir / "approval.json",
        "heartbeat": paths.loop_dir / "heartbeat.v1.json",
    }
    raw = {key: _read_optional(paths.repo, path) for key, path in sources.items()}
    parsed = {
        key: artifacts.parse_optional_artifact(
            data, str(sources[key]), require_object=key in {"runSummary", "state", "approval", "heartbeat"}
        )
        for key, data in raw.items()
    }
    runtime = artifacts.RuntimeArtifacts(
        last_event=last_event,
        state=parsed["state"],
        active_run=parsed["activeRun"],
        approval=parsed["approval"],
        summary=parsed["runSummary"],
        heartbeat=parsed["heartbeat"],
    )
    refs = {key: _optional_facts(paths, sources[key], data) for key, data in raw.items()}
    refs["events"] = envelopes.ArtifactFacts(
        path=paths.relative(paths.events),
        exists=True,
        size_bytes=digest.size,
        line_count=digest.line_count,
        sha256=digest.hasher.hexdigest(),
        mtime_epoch=mtime,
    )
    signals = _gather_signals(paths, runtime, refs)
    facts = projection.LifecycleFacts(
        loop_id=loop_id,
        approval=runtime.approval,
        latest_entry=runtime.latest_entry,
        state=runtime.state,
        last_event=last_event.event,
    )
    inputs = envelopes.SnapshotInputs(
        repo_path=str(paths.repo),
        loop_id=loop_id,
        runtime=runtime,
        run_status=projection.compute_run_status(facts),
        refs=refs,
        run_id_override=run_id,
        trace_id=trace_id,
        signals=signals,
    )
    return envelopes.build_snapshot_envelope(inputs, now)


_SIGNAL_FILES = {"rateLimit": "rate-limit.json", "stuck": "stuck.json", "testStatus": "test-status.json"}


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _role_log_mtime(paths: LoopPaths, event: JsonObject | None) -> float | None:
    """The running role's log file, only when it lies inside this loop's directory."""
    log = runtime_signals.role_log_path(event)
    if log is None:
        return None
    candidate = Path(log)
    try:
        candidate.resolve().relative_to(paths.loop_dir.resolve())
    except (OSError, ValueError):
        return None
    return _mtime(candidate)


def _gather_signals(
    paths: LoopPaths, runtime: artifacts.RuntimeArtifacts, refs: dict[str, envelopes.ArtifactFacts]
) -> JsonObject:
    """``runtime.signals``: the runtime's other files, the last event's data, liveness (issue 11)."""
    event = runtime.last_event.event
    signals: JsonObject = {
        key: runtime_signals.parse_signal_document(_read_optional(paths.repo, paths.loop_dir / name))
        for key, name in _SIGNAL_FILES.items()
    }
    signals["usage"] = _usage_summary(paths.repo, paths.loop_dir / "usage.jsonl")
    signals["lastEvent"] = runtime_signals.compute_last_event_signal(event)
    signals["liveness"] = runtime_signals.compute_liveness(
        heartbeat_at=artifacts.jq_get(runtime.heartbeat, "timestamp"),
        last_event_at=artifacts.jq_get(event, "timestamp"),
        mtimes={
            "role_log": _role_log_mtime(paths, event),
            "active_run": _mtime(paths.superloop / "active-run.json") if runtime.active_run else None,
            "events": refs["events"].mtime_epoch,
            "state": _mtime(paths.superloop / "state.json") if runtime.state is not None else None,
        },
    )
    return signals


# --------------------------------------------------------------------------- events


def fetch_events(
    repo: Path,
    loop_id: str,
    *,
    offset: int,
    max_events: int = 0,
    trace_id: str | None,
    now: dt.datetime,
    byte_hint: cursor.CursorPosition | None = None,
) -> EventBatch:
    """Poll the complete event lines after line ``offset`` (§3.3); nothing is written here.

    ``byte_hint`` is the position read from the cursor file (``read_cursor``); when it is
    absent or does not match ``offset``, the last position this process saw is tried, then a
    full scan. ``ContractError`` on any invalid line, a cursor ahead of the file, or a file
    that shrank below the remembered byte position (truncated or rotated).
    """
    if offset < 0 or max_events < 0:
        raise ContractError("cursor offset and max events must be non-negative")
    paths = LoopPaths.of(repo, loop_id)
    paths.require_events()
    events_label = str(paths.events)
    hint = byte_hint if byte_hint is not None and byte_hint.line_offset == offset else None
    if hint is None or not hint.has_hint:
        hint = _remembered_position(events_label, offset)
    try:
        fd = _open_confined(paths.repo, paths.events)
    except OSError as exc:
        raise ContractError(f"required artifact missing: {paths.events}") from exc
    try:
        size = os.fstat(fd).st_size
        window = _poll_window(fd, size, offset, hint)
    finally:
        os.close(fd)
    outcome = cursor.compute_poll(
        window,
        start_line=offset,
        max_events=max_events,
        repo_path=str(paths.repo),
        loop_id=loop_id,
        events_path=events_label,
        trace_id=trace_id,
        now=now,
    )
    _POSITIONS.put(
        events_label,
        cursor.CursorPosition(outcome.offset_after, outcome.byte_offset_after, outcome.tail_sha256),
    )
    return EventBatch(
        events=outcome.events,
        offset_before=outcome.offset_before,
        offset_after=outcome.offset_after,
        line_count=outcome.line_count,
        byte_offset_after=outcome.byte_offset_after,
        tail_sha256=outcome.tail_sha256,
        held_partial_line=outcome.held_partial_line,
        scanned_bytes=len(window.data),
    )


def _poll_window(fd: int, size: int, offset: int, hint: cursor.CursorPosition | None) -> cursor.PollWindow:
    if hint is not None and hint.byte_offset is not None:
        if size < hint.byte_offset:
            # Truncated or rotated. Report the plain cursor-ahead error when the line count
            # confirms it, the byte-level one otherwise; both demand a reset or replay.
            total = _pread_exact(fd, size, 0).count(b"\n")
            if offset > total:
                raise cursor.cursor_ahead_error(offset, total)
            raise cursor.truncated_error(offset, hint.byte_offset, size)
        before = _window_before(fd, hint.byte_offset)
        if cursor.verify_position(hint, size, before):
            data = _pread_exact(fd, size - hint.byte_offset, hint.byte_offset)
            return cursor.PollWindow(data=data, base_byte=hint.byte_offset, base_line=offset, prefix=before)
    data = _pread_exact(fd, size, 0)
    if hint is not None:
        cursor.check_same_file(hint, data)  # rotated or rewritten: fail closed, never skip lines
    return cursor.PollWindow(data=data)


# --------------------------------------------------------------------------- cursor file


def read_cursor(cursor_file: Path) -> cursor.CursorPosition:
    """The cursor's line offset and byte hint; offset 0 when the file is missing (§3.3)."""
    try:
        data = cursor_file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return cursor.CursorPosition(0)
    except IsADirectoryError as exc:
        raise ContractError(f"invalid JSON in cursor file: {cursor_file}") from exc
    return cursor.parse_cursor_document(data, str(cursor_file))


def read_cursor_offset(cursor_file: Path) -> int:
    """``eventLineOffset`` of the cursor file: 0 when missing, ``ContractError`` when invalid."""
    return read_cursor(cursor_file).line_offset


def build_cursor_document(repo: Path, loop_id: str, batch: EventBatch, now: dt.datetime) -> JsonObject:
    """The cursor document to persist after a successful poll (§3.2, plus the byte hint)."""
    paths = LoopPaths.of(repo, loop_id)
    return cursor.build_cursor_document(
        repo_path=str(paths.repo),
        loop_id=loop_id,
        events_path=paths.relative(paths.events),
        line_offset=batch.offset_after,
        line_count=batch.line_count,
        byte_offset=batch.byte_offset_after,
        tail_sha256=batch.tail_sha256,
        now=now,
    )
