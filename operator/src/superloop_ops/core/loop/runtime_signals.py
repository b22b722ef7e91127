"""What the runtime writes besides the contract's artifacts, read as signals (issue 11).

The Superloop runtime also writes ``rate-limit.json``, ``stuck.json``, ``test-status.json`` and
``usage.jsonl`` (one row per role call: tokens and cost), and its last event carries the data
that explains a stop (``loop_stop.data.reason``, ``role_timeout.data.timeout_seconds``). The
reference ignores all of it; we carry it in the snapshot (``runtime.signals``) and the projected
state (``signals``), where health and metrics read it.

These files are optional and advisory: the runtime writes them with a plain redirect, so a
reader can see a zero-byte or half-written file. An unreadable signal is ``None`` (never a
failed ingest), unlike the contract's artifacts, which fail closed.

Liveness: the runtime never writes a heartbeat file. The freshest sign of life is taken from
what it does write, in this order of preference when equally fresh: the heartbeat (when some
runtime writes one), the running role's log file (the agent's output is streamed there), the
active-run record, the events file, the state file. The source used is reported.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.loop.artifacts import cap_stored_event, event_name_of, jq_get

__all__ = [
    "LIVENESS_SOURCES",
    "USAGE_TOKEN_KEYS",
    "compute_last_event_signal",
    "compute_liveness",
    "compute_usage_summary",
    "parse_signal_document",
    "role_log_path",
]

LIVENESS_SOURCES: tuple[str, ...] = ("heartbeat", "role_log", "active_run", "events", "state")
"""Preference order among equally fresh sources."""

USAGE_TOKEN_KEYS: tuple[tuple[str, str], ...] = (
    ("input_tokens", "inputTokens"),
    ("output_tokens", "outputTokens"),
    ("thinking_tokens", "thinkingTokens"),
    ("cache_read_input_tokens", "cacheReadInputTokens"),
    ("cache_creation_input_tokens", "cacheCreationInputTokens"),
)


def parse_signal_document(data: bytes | None) -> JsonObject | None:
    """A JSON object, or ``None`` for an absent, empty, partial or non-object file."""
    if not data:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value


def _empty_usage() -> JsonObject:
    return {"calls": 0, **{camel: 0 for _, camel in USAGE_TOKEN_KEYS}, "costUsd": 0}


def _add_usage(total: JsonObject, row: Mapping[str, Any]) -> None:
    usage = row.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    total["calls"] += 1
    for snake, camel in USAGE_TOKEN_KEYS:
        total[camel] += _number(usage.get(snake))
    total["costUsd"] = round(total["costUsd"] + _number(row.get("cost_usd")), 6)


def compute_usage_summary(data: bytes | None) -> JsonObject | None:
    """Token usage and cost of every role call in ``usage.jsonl``, in total and by role.

    Unparsable lines (a partial last line) are skipped; ``None`` when the file is absent.
    """
    if data is None:
        return None
    total = _empty_usage()
    by_role: dict[str, JsonObject] = {}
    models: set[str] = set()
    for line in data.splitlines():
        row = parse_signal_document(line)
        if row is None:
            continue
        role = row.get("role") if isinstance(row.get("role"), str) and row.get("role") else "unknown"
        _add_usage(total, row)
        _add_usage(by_role.setdefault(str(role), _empty_usage()), row)
        if isinstance(row.get("model"), str) and row["model"]:
            models.add(row["model"])
    return {**total, "models": sorted(models), "byRole": dict(sorted(by_role.items()))}


def compute_last_event_signal(event: Mapping[str, Any] | None) -> JsonObject | None:
    """The last event's name, status, role, iteration and data (what explains a stop).

    The data is kept as the state keeps an event's payload: a payload over the stored-event cap
    is replaced by its truncation marker (``artifacts.cap_stored_event``).
    """
    if event is None:
        return None
    event, _ = cap_stored_event(dict(event))
    return {
        "name": event_name_of(event) or None,
        "status": event.get("status") if isinstance(event.get("status"), str) else None,
        "role": event.get("role") if isinstance(event.get("role"), str) else None,
        "iteration": event.get("iteration"),
        "timestamp": event.get("timestamp") if isinstance(event.get("timestamp"), str) else None,
        "data": event.get("data") if isinstance(event.get("data"), dict) else None,
    }


def role_log_path(event: Mapping[str, Any] | None) -> str | None:
    """The running role's log file, from a ``role_start`` last event (``data.log_file``)."""
    if event is None or event_name_of(event) != "role_start":
        return None
    path = jq_get(event, "data", "log_file")
    return path if isinstance(path, str) and path else None


def _epoch_ts(epoch: object) -> dt.datetime | None:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def compute_liveness(
    *,
    heartbeat_at: object,
    last_event_at: object,
    mtimes: Mapping[str, object],
) -> JsonObject:
    """The freshest sign of life: ``{"source", "at", "sources": {source: at}}``.

    ``mtimes`` maps ``role_log``/``active_run``/``events``/``state`` to modification times
    (epoch seconds, ``None`` when absent). The events source takes the later of the file's
    mtime and the last event's own timestamp.
    """
    found: dict[str, dt.datetime] = {}
    heartbeat = parse_ts(heartbeat_at)
    if heartbeat is not None:
        found["heartbeat"] = heartbeat
    for source in ("role_log", "active_run", "events", "state"):
        moment = _epoch_ts(mtimes.get(source))
        if moment is not None:
            found[source] = moment
    last_event = parse_ts(last_event_at)
    if last_event is not None:
        found["events"] = max(found.get("events", last_event), last_event)
    if not found:
        return {"source": None, "at": None, "sources": {}}
    freshest = max(found.values())
    source = next(name for name in LIVENESS_SOURCES if found.get(name) == freshest)
    return {
        "source": source,
        "at": format_ts(freshest),
        "sources": {name: format_ts(found[name]) for name in LIVENESS_SOURCES if name in found},
    }
