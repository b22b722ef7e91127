"""The sprite service's idempotency store (§9.5): key -> stored ``/ops/control`` response.

One JSON object per loop at ``<repo>/.superloop/ops-manager/<loop>/service-idempotency.json``,
rewritten whole and atomically, so a restarted service still replays every key it answered.
An unreadable file or a non-object reads as empty. Writers are serialised per process with a
lock so that two requests with different keys cannot lose each other's entries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.journal import files, layout

__all__ = ["STORE_FILE", "FileIdempotencyStore"]

STORE_FILE = "service-idempotency.json"


class FileIdempotencyStore:
    def __init__(self, repo: Path) -> None:
        self._repo = repo
        self._lock = threading.Lock()

    def path(self, loop_id: str) -> Path:
        return layout.loop_ops_dir(self._repo, loop_id) / STORE_FILE

    def _load(self, loop_id: str) -> dict[str, Any]:
        loaded = files.read_json(self.path(loop_id))
        return loaded if isinstance(loaded, dict) else {}

    def get(self, loop_id: str, key: str) -> JsonObject | None:
        """The stored response for ``key``, or None (a non-object value counts as absent)."""
        with self._lock:
            value = self._load(loop_id).get(key)
        return dict(value) if isinstance(value, dict) else None

    def put(self, loop_id: str, key: str, response: JsonObject) -> None:
        with self._lock:
            entries = self._load(loop_id)
            entries[key] = response
            files.write_json_atomic(self.path(loop_id), entries)
