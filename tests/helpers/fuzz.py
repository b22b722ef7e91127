"""Hypothesis strategies and sample documents for the fuzz tests (issue 10, fault matrix).

``mutated(doc)`` is a valid document with one subtree (possibly the root) replaced by a random
JSON value: mutation reaches deep into a parser where pure noise stops at the first check.
``reason_coded(call)`` is the property every parser must hold: it returns, or raises one of the
product's reason-coded errors (``OperatorError``); anything else fails the test.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from superloop_ops.errors import OperatorError

__all__ = [
    "FUZZ",
    "NOW",
    "VALID_APPROVAL",
    "VALID_CURSOR",
    "VALID_EVENT",
    "VALID_HEARTBEAT",
    "VALID_STATE",
    "VALID_SUMMARY",
    "bytes_of",
    "json_values",
    "mutated",
    "raw_inputs",
    "reason_coded",
]

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "\udfff", "\x00", "9" * 400])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
hostile_text = st.sampled_from(
    [
        "9" * 5000,
        '"\\ud800"',
        "[" * 5000 + "]" * 5000,
        "NaN",
        "-Infinity",
        "1e999",
        "",
        "\x00",
        '{"a":1}{"b":2}',
        "\xff",
    ]
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one subtree (possibly the root) replaced by a random JSON value."""
    doc = copy.deepcopy(document)
    path = draw(st.sampled_from(_paths(doc)))
    replacement = draw(json_values)
    if not path:
        return replacement
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = replacement
    return doc


def reason_coded(call: Any) -> None:
    try:
        call()
    except OperatorError:
        pass


def bytes_of(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


raw_inputs = st.binary(max_size=200) | hostile_text.map(lambda text: text.encode("utf-8", "surrogatepass"))

VALID_EVENT = {
    "timestamp": "2026-05-31T10:00:00Z",
    "event": "iteration_start",
    "loop_id": "demo",
    "run_id": "run-1",
    "iteration": 2,
    "data": {"role": "planner"},
}
VALID_SUMMARY = {
    "version": 1,
    "loop_id": "demo",
    "updated_at": "2026-05-31T10:00:00Z",
    "entries": [
        {
            "run_id": "run-1",
            "iteration": 1,
            "gates": {"tests": "ok", "validation": "ok", "approval": "none"},
            "stuck": {"streak": 0, "threshold": 3},
            "completion_ok": False,
            "ended_at": "2026-05-31T10:00:00Z",
        }
    ],
}
VALID_STATE = {"active": True, "loop_index": 0, "iteration": 2, "current_loop_id": "demo"}
VALID_APPROVAL = {
    "status": "pending",
    "run_id": "run-1",
    "iteration": 2,
    "requested_at": "2026-05-31T10:00:00Z",
}
VALID_HEARTBEAT = {"schemaVersion": "v1", "timestamp": "2026-05-31T10:00:00Z", "status": "running"}
VALID_CURSOR = {
    "schemaVersion": "v1",
    "eventLineOffset": 3,
    "eventLineCount": 3,
    "eventByteOffset": 300,
    "eventTailSha256": "0" * 64,
}
