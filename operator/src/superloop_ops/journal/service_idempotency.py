"""The sprite service's idempotency store (§9.5): key -> stored ``/ops/control`` response.

One append-only JSONL log per loop at
``<repo>/.superloop/ops-manager/<loop>/service-idempotency.jsonl``, one row per answered key
(``{"key", "storedAt", "response"}``), so a restarted service still replays every key it
answered. A ``put`` appends one fsynced line (cost independent of how many keys exist); the
process keeps an index per loop and reads only the bytes appended since its last look (a log
replaced by another process is read again whole).

Bounded: a key is replayed for ``replay_window`` after it was stored; past that it is
forgotten. When the log holds twice ``max_entries`` rows, it is compacted (rewritten
atomically with the newest ``max_entries`` keys still inside the window). A torn last line
(a crashed writer) is ignored. The former whole-document store (``service-idempotency.json``)
is still read, and folded into the log at the first compaction.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact, format_ts, parse_ts
from superloop_ops.journal import files, layout

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_REPLAY_WINDOW",
    "LEGACY_STORE_FILE",
    "STORE_FILE",
    "FileIdempotencyStore",
]

STORE_FILE = "service-idempotency.jsonl"
LEGACY_STORE_FILE = "service-idempotency.json"
DEFAULT_REPLAY_WINDOW = dt.timedelta(days=7)
DEFAULT_MAX_ENTRIES = 10_000


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Index:
    """What this process knows of one loop's log: entries in store order, and how far it read."""

    entries: OrderedDict[str, tuple[dt.datetime, JsonObject]] = field(default_factory=OrderedDict)
    rows: int = 0
    identity: tuple[int, int] | None = None
    read_to: int = 0


class FileIdempotencyStore:
    def __init__(
        self,
        repo: Path,
        *,
        now_fn: Callable[[], dt.datetime] = _utcnow,
        replay_window: dt.timedelta = DEFAULT_REPLAY_WINDOW,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._repo = repo
        self._now = now_fn
        self._window = replay_window
        self._max = max(1, max_entries)
        self._lock = threading.Lock()
        self._indexes: dict[str, _Index] = {}

    def path(self, loop_id: str) -> Path:
        return layout.loop_ops_dir(self._repo, loop_id) / STORE_FILE

    def get(self, loop_id: str, key: str) -> JsonObject | None:
        """The stored response for ``key`` while inside the replay window, else None."""
        with self._lock:
            entry = self._refresh(loop_id).entries.get(key)
        if entry is None or entry[0] < self._now() - self._window:
            return None
        return dict(entry[1])

    def put(self, loop_id: str, key: str, response: JsonObject) -> None:
        now = self._now()
        with self._lock:
            index = self._refresh(loop_id)
            row = {"key": key, "storedAt": format_ts(now), "response": response}
            files.append_jsonl(self.path(loop_id), [row])
            index.entries.pop(key, None)
            index.entries[key] = (now, dict(response))
            index.rows += 1
            stat = self.path(loop_id).stat()
            index.identity, index.read_to = (stat.st_dev, stat.st_ino), stat.st_size
            if index.rows >= 2 * self._max:
                self._compact(loop_id, index, now)

    # -- the index -----------------------------------------------------------------------

    def _refresh(self, loop_id: str) -> _Index:
        """Bring the index up to the log's end: new bytes only, or a full read of a new log."""
        path = self.path(loop_id)
        index = self._indexes.get(loop_id)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            stat = None
        identity = (stat.st_dev, stat.st_ino) if stat is not None else None
        if index is None or identity != index.identity or (stat is not None and stat.st_size < index.read_to):
            index = _Index(identity=identity)
            self._load_legacy(loop_id, index)
            self._indexes[loop_id] = index
        if stat is not None and stat.st_size > index.read_to:
            self._read_tail(path, index)
        return index

    def _read_tail(self, path: Path, index: _Index) -> None:
        with path.open("rb") as handle:
            handle.seek(index.read_to)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a torn last line is left for a later look
        for line in data[:end].split(b"\n"):
            self._index_row(index, line)
        index.read_to += end

    def _index_row(self, index: _Index, line: bytes) -> None:
        if not line.strip():
            return
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return
        if not isinstance(row, dict):
            return
        key, response, stored = row.get("key"), row.get("response"), parse_ts(row.get("storedAt"))
        if isinstance(key, str) and isinstance(response, dict) and stored is not None:
            index.entries.pop(key, None)
            index.entries[key] = (stored, response)
            index.rows += 1

    def _load_legacy(self, loop_id: str, index: _Index) -> None:
        legacy = self.path(loop_id).with_name(LEGACY_STORE_FILE)
        document = files.read_json(legacy)
        if not isinstance(document, dict):
            return
        try:
            stored = dt.datetime.fromtimestamp(legacy.stat().st_mtime, dt.UTC)
        except OSError:
            return
        for key, response in document.items():
            if isinstance(response, dict):
                index.entries[key] = (stored, response)

    def _compact(self, loop_id: str, index: _Index, now: dt.datetime) -> None:
        """Rewrite the log with the newest ``max_entries`` keys still inside the window."""
        horizon = now - self._window
        live = [(key, entry) for key, entry in index.entries.items() if entry[0] >= horizon][-self._max :]
        rows: list[Any] = [
            {"key": key, "storedAt": format_ts(stored), "response": response}
            for key, (stored, response) in live
        ]
        path = self.path(loop_id)
        files.write_text_atomic(path, "".join(dumps_compact(row) + "\n" for row in rows))
        legacy = path.with_name(LEGACY_STORE_FILE)
        legacy.unlink(missing_ok=True)
        stat = path.stat()
        identity = (stat.st_dev, stat.st_ino)
        self._indexes[loop_id] = _Index(OrderedDict(live), len(rows), identity, stat.st_size)

