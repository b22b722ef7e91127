"""JSON and timestamp conventions shared by every surface of the contract.

Timestamps are UTC, whole seconds, ``YYYY-MM-DDTHH:MM:SSZ``; parsing accepts only that shape
(strict, see docs/divergences.md). "Pruned" records drop top-level ``null`` keys only.
``JsonObject`` is re-exported from ``models.common``, where it is defined once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from superloop_ops.models.common import JsonObject

__all__ = [
    "JsonObject",
    "as_mapping",
    "as_number",
    "dumps_compact",
    "format_ts",
    "parse_ts",
    "prune_nulls",
]

_TS = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z\Z")


def format_ts(moment: dt.datetime) -> str:
    """Render an aware (or naive-UTC) datetime in the contract's canonical shape."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(value: object) -> dt.datetime | None:
    """Parse a canonical timestamp; anything else (or pre-1970) counts as no value."""
    if not isinstance(value, str):
        return None
    match = _TS.match(value)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        parsed = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None
    if parsed.year < 1970:
        return None
    return parsed


def prune_nulls(record: JsonObject) -> JsonObject:
    """Drop top-level keys whose value is None; nested nulls are kept."""
    return {key: value for key, value in record.items() if value is not None}


def dumps_compact(value: Any) -> str:
    """One-line JSON, the format of every JSONL row and compact stdout document."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_mapping(value: Any) -> Mapping[str, Any]:
    """The value when it is a JSON object, else an empty one (for reading optional blocks)."""
    return value if isinstance(value, Mapping) else {}


def as_number(value: Any) -> float | None:
    """The value as a float when it is a JSON number (booleans are not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
