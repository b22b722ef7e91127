"""Reading a Loop's ``status.remediation`` (issue 15), shared by the Loop and Fleet rules.

The Loop's pure part (``core.loop.remediation``) writes the record; the fleet reads only which
trace id is open, so a fleet candidate carries the Loop's remediation id without the fleet rules
reaching into the Loop controller's pure part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OPEN", "RESOLVED", "find_open_trace"]

OPEN = "open"
RESOLVED = "resolved"


def find_open_trace(status: Mapping[str, Any] | None) -> str | None:
    """The trace id of the Loop's open remediation (the id its next pass runs with), else None."""
    record = (status or {}).get("remediation")
    if not isinstance(record, Mapping):
        return None
    trace = record.get("traceId")
    return str(trace) if record.get("state") == OPEN and trace else None
