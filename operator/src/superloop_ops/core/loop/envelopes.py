"""Snapshot and event envelopes (spec loop-core §2): the only shapes the rest of the pipeline reads.

Envelopes are built from parsed artifacts plus ``now``; no field is pruned, so every key of
§2.1 and §2.3 is always present. The schemaVersion gate and the loop-scope guard (§2.5) live
here too, because every consumer of an envelope (projection, reconcile, the sprite client)
must refuse one from another contract version or another loop before reading anything else.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.loop import artifacts
from superloop_ops.core.loop.artifacts import jq_get
from superloop_ops.errors import ContractError

__all__ = [
    "SCHEMA_VERSION",
    "SEQUENCE_SOURCE",
    "ArtifactFacts",
    "SnapshotInputs",
    "build_artifact_reference",
    "build_event_envelope",
    "build_snapshot_envelope",
    "check_event_envelope",
    "check_snapshot_envelope",
    "parse_event_envelopes",
    "parse_snapshot_envelope",
]

SCHEMA_VERSION = "v1"
SEQUENCE_SOURCE = "cursor_event_line_offset"


@dataclass(frozen=True)
class ArtifactFacts:
    """What the shell observed about one artifact file (§2.2); ``exists=False`` for a missing one."""

    path: str
    """Repo-relative path when the file is under the repo, else absolute."""
    exists: bool = False
    size_bytes: int = 0
    line_count: int = 0
    sha256: str | None = None
    mtime_epoch: int | None = None


def build_artifact_reference(facts: ArtifactFacts) -> JsonObject:
    """The artifact reference object; a missing file reports zeros and nulls (§2.2)."""
    if not facts.exists:
        return {"path": facts.path, "exists": False, "sizeBytes": 0, "lineCount": 0,
                "sha256": None, "mtimeEpoch": None}
    return {
        "path": facts.path,
        "exists": True,
        "sizeBytes": facts.size_bytes,
        "lineCount": facts.line_count,
        "sha256": facts.sha256 or None,
        "mtimeEpoch": facts.mtime_epoch,
    }


@dataclass(frozen=True)
class SnapshotInputs:
    """Everything a loop_run_snapshot is derived from, gathered by the transport."""

    repo_path: str
    loop_id: str
    runtime: artifacts.RuntimeArtifacts
    run_status: str
    """From ``projection.compute_run_status`` (§4.2)."""
    refs: dict[str, ArtifactFacts]
    """Keyed events, runSummary, state, activeRun, approval, heartbeat."""
    run_id_override: str | None = None
    trace_id: str | None = None
    signals: JsonObject | None = None
    """``runtime.signals`` (see core.runtime_signals); ``None`` when the transport gathered none."""


_REF_KEYS = ("events", "runSummary", "state", "activeRun", "approval", "heartbeat")


@functools.lru_cache(maxsize=16)
def _stamp(now: dt.datetime) -> str:
    """``format_ts`` memoised: one poll stamps thousands of envelopes with the same instant."""
    return format_ts(now)


def _resolve_run_id(inputs: SnapshotInputs) -> str:
    if inputs.run_id_override:
        return inputs.run_id_override
    entry = inputs.runtime.latest_entry
    last_event = inputs.runtime.last_event.event
    for candidate in (jq_get(entry, "run_id"), jq_get(last_event, "run_id")):
        text = artifacts.jq_text_or_empty(candidate)
        if text:
            return text
    return "unknown"


def _resolve_iteration(inputs: SnapshotInputs) -> int | float:
    entry = inputs.runtime.latest_entry
    last_event = inputs.runtime.last_event.event
    value: Any = None
    for candidate in (jq_get(entry, "iteration"), jq_get(last_event, "iteration"),
                      jq_get(inputs.runtime.state, "iteration")):
        value = artifacts.jq_alt(value, candidate)
    return artifacts.jq_number(value)


def _text_or_null(value: Any) -> str | None:
    return artifacts.jq_text_or_empty(value) or None


def build_snapshot_envelope(inputs: SnapshotInputs, now: dt.datetime) -> JsonObject:
    """The loop_run_snapshot envelope of §2.1 (never pruned)."""
    runtime = inputs.runtime
    entry = runtime.latest_entry
    last_event = runtime.last_event.event
    line_count = runtime.last_event.line_count
    last_summary_at = artifacts.jq_alt(jq_get(runtime.summary, "updated_at"), jq_get(entry, "ended_at"))
    pending = runtime.approval is not None and jq_get(runtime.approval, "status") == "pending"
    refs = {key: build_artifact_reference(inputs.refs[key]) for key in _REF_KEYS}
    return {
        "schemaVersion": SCHEMA_VERSION,
        "envelopeType": "loop_run_snapshot",
        "emittedAt": format_ts(now),
        "traceId": inputs.trace_id or None,
        "source": {"repoPath": inputs.repo_path, "loopId": inputs.loop_id},
        "run": {
            "runId": _resolve_run_id(inputs),
            "iteration": _resolve_iteration(inputs),
            "status": inputs.run_status,
            "summary": entry,
        },
        "runtime": {
            "superloopState": runtime.state,
            "activeRun": runtime.active_run,
            "approval": runtime.approval,
            "heartbeat": runtime.heartbeat,
            "signals": inputs.signals,
        },
        "artifacts": refs,
        "sequence": {"source": SEQUENCE_SOURCE, "value": line_count},
        "cursor": {"eventLineOffset": line_count, "eventLineCount": line_count},
        "health": {
            "eventCount": line_count,
            "lastEventAt": _text_or_null(jq_get(last_event, "timestamp")),
            "lastEventName": artifacts.event_name_of(last_event) or None,
            "lastSummaryAt": _text_or_null(last_summary_at),
            "hasPendingApproval": pending,
            "gates": artifacts.jq_alt(jq_get(entry, "gates"), None),
            "stuck": artifacts.jq_alt(jq_get(entry, "stuck"), None),
        },
    }


def build_event_envelope(
    event: JsonObject,
    *,
    line_no: int,
    line_count: int,
    repo_path: str,
    loop_id: str,
    trace_id: str | None,
    now: dt.datetime,
    line_bytes: int | None = None,
) -> JsonObject:
    """The loop_run_event envelope of §2.3 for one validated runtime event line.

    ``payload`` and ``raw`` are capped (``artifacts.cap_stored_event``): the envelope is stored in
    the state and mirrored into the Loop status, which must stay small.
    """
    raw, payload = artifacts.cap_stored_event(event, line_bytes)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "envelopeType": "loop_run_event",
        "emittedAt": _stamp(now),
        "traceId": trace_id or None,
        "source": {"repoPath": repo_path, "loopId": loop_id},
        "sequence": {"source": SEQUENCE_SOURCE, "value": line_no},
        "cursor": {"eventLineOffset": line_no, "eventLineCount": line_count},
        "run": {
            "runId": artifacts.jq_text_or_empty(event.get("run_id")) or "unknown",
            "iteration": artifacts.jq_number(event.get("iteration")),
        },
        "event": {
            "timestamp": artifacts.jq_text_or_empty(event.get("timestamp")),
            "name": artifacts.event_name_of(event),
            "role": _text_or_null(event.get("role")),
            "status": _text_or_null(event.get("status")),
            "message": _text_or_null(event.get("message")),
            "payload": payload,
            "raw": raw,
        },
    }


def check_snapshot_envelope(snapshot: Any, loop_id: str) -> JsonObject:
    """The schemaVersion gate and loop-scope guard for a snapshot (§2.5)."""
    if not (
        isinstance(snapshot, dict)
        and snapshot.get("schemaVersion") == SCHEMA_VERSION
        and snapshot.get("envelopeType") == "loop_run_snapshot"
        and jq_get(snapshot.get("source"), "loopId") == loop_id
    ):
        raise ContractError("snapshot envelope is invalid or loop id mismatch")
    return snapshot


def check_event_envelope(event: Any, loop_id: str) -> JsonObject:
    """The schemaVersion gate and loop-scope guard for one event envelope (§2.5)."""
    if not (
        isinstance(event, dict)
        and event.get("schemaVersion") == SCHEMA_VERSION
        and event.get("envelopeType") == "loop_run_event"
        and jq_get(event.get("source"), "loopId") == loop_id
        and artifacts.jq_text_or_empty(jq_get(event.get("event"), "name"))
    ):
        raise ContractError("event envelope is invalid or loop id mismatch")
    return event


def parse_snapshot_envelope(data: bytes, loop_id: str, path: str) -> JsonObject:
    """A snapshot file's content, parsed and guarded."""
    value = artifacts.parse_json_bytes(data, error=f"invalid snapshot JSON: {path}")
    return check_snapshot_envelope(value, loop_id)


def parse_event_envelopes(data: bytes, loop_id: str, path: str) -> list[JsonObject]:
    """An NDJSON batch of event envelopes, every line guarded; zero-length lines are skipped."""
    envelopes: list[JsonObject] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        if not line.strip():
            # jq reads no value from a blank line, which then fails the envelope check.
            raise ContractError("event envelope is invalid or loop id mismatch")
        value = artifacts.parse_json_bytes(line, error=f"invalid event envelope in {path}")
        envelopes.append(check_event_envelope(value, loop_id))
    return envelopes
