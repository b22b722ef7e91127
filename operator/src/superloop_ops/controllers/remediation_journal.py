"""The remediation trail's journal (issue 15): where a remediation's trace id is minted and recorded.

- ``new_trace_id``: the operator's id source (the ``OperatorContext`` holds it, so tests inject
  a deterministic one). A Loop pass runs with its open remediation's id, else a fresh one.
- ``carry_remediation``: after a Loop pass, the pure ``core.loop.remediation`` decides whether
  the pass opened, carried or resolved the Loop's remediation; this writes the journal row
  (``<ops>/telemetry/remediations.jsonl``) and returns the status field and the Event.
- ``record_fleet_steps``: the fleet pass's part of a trail (a candidate seen for the first time
  with its trace id, a HandoffIntent proposed for it) in ``<fleet>/telemetry/trail.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from superloop_ops.core.handoff import remediation_trail
from superloop_ops.core.loop import remediation
from superloop_ops.core.loop.loop_resource import EventSpec
from superloop_ops.journal import files

__all__ = [
    "FLEET_TRAIL_FILE",
    "REMEDIATIONS_FILE",
    "carry_remediation",
    "new_trace_id",
    "record_fleet_steps",
]

REMEDIATIONS_FILE = "remediations.jsonl"
FLEET_TRAIL_FILE = "trail.jsonl"


def new_trace_id() -> str:
    """A lowercase random UUID (the contract's trace id form)."""
    return str(uuid.uuid4())


def carry_remediation(
    ops_dir: Path | None,
    *,
    loop_id: str,
    previous: Mapping[str, Any],
    outcome: str,
    health: Mapping[str, Any],
    trace_id: str | None,
    started_at: dt.datetime,
    finished_at: dt.datetime,
) -> tuple[Any, list[EventSpec]]:
    """The Loop's ``status.remediation`` after this pass (None: none) and the Event to post
    (journal written). ``health`` is the pass's health document; a remediation opens at the
    pass's start and resolves at its end (``core.loop.remediation``).

    A pass that did not run (blocked, suspended) keeps the previous record as it is.
    """
    kept = previous.get("remediation")
    if outcome not in ("success", "failed") or not trace_id:
        return kept, []
    update = remediation.compute_remediation(
        kept, loop_id=loop_id, outcome=outcome, health_status=health.get("status"),
        reason_codes=list(health.get("reasonCodes") or []), trace_id=trace_id, started_at=started_at,
        finished_at=finished_at,
    )  # fmt: skip
    if update.row is not None and ops_dir is not None:
        files.append_jsonl(ops_dir / "telemetry" / REMEDIATIONS_FILE, [update.row])
    if update.event is None:
        return update.record, []
    trace = str((update.record or {}).get("traceId") or "")
    event = update.event
    tagged = EventSpec(event.type, event.reason, remediation_trail.tag_message(event.message, trace))
    return update.record, [tagged]


def record_fleet_steps(
    telemetry_dir: Path,
    *,
    fleet: str,
    prior_policy: Mapping[str, Any] | None,
    policy_state: Mapping[str, Any],
    created: Sequence[Mapping[str, Any]],
    now: dt.datetime,
) -> None:
    """Journal the candidates new in this pass and the HandoffIntents proposed for them."""
    rows = remediation_trail.build_fleet_trail_rows(
        fleet=fleet, prior_policy=prior_policy, policy_state=policy_state, created=created, now=now
    )
    if rows:
        files.append_jsonl(telemetry_dir / FLEET_TRAIL_FILE, rows)
