"""Snapshot/event envelopes (§2.1-§2.3) and the schemaVersion gate / loop-scope guard (§2.5)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import dumps_compact
from superloop_ops.core.loop import artifacts, envelopes
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 8, 0, 30, tzinfo=dt.UTC)
DATA = Path(__file__).resolve().parents[1] / "data" / "ingest" / "envelopes"
REF_KEYS = ("events", "runSummary", "state", "activeRun", "approval", "heartbeat")


def _inputs(
    *,
    last_event: dict[str, Any] | None = None,
    line_count: int | None = None,
    summary: Any = None,
    state: Any = None,
    approval: Any = None,
    run_id_override: str | None = None,
    trace_id: str | None = None,
) -> envelopes.SnapshotInputs:
    count = line_count if line_count is not None else (1 if last_event else 0)
    runtime = artifacts.RuntimeArtifacts(
        last_event=artifacts.LastEvent(count, last_event), state=state, approval=approval, summary=summary
    )
    return envelopes.SnapshotInputs(
        repo_path="/srv/demo",
        loop_id="demo-loop",
        runtime=runtime,
        run_status="unknown",
        refs={key: envelopes.ArtifactFacts(path=f"p/{key}") for key in REF_KEYS},
        run_id_override=run_id_override,
        trace_id=trace_id,
    )


def _summary(**entry: Any) -> dict[str, Any]:
    return {"updated_at": "2026-03-01T08:00:02Z", "entries": [entry]}


def test_snapshot_has_every_field_and_counts_lines() -> None:
    snap = envelopes.build_snapshot_envelope(
        _inputs(
            last_event={"event": "role_end", "timestamp": "2026-03-01T08:00:21Z"},
            line_count=3,
            trace_id="trace-1",
        ),
        NOW,
    )
    assert set(snap) == {
        "schemaVersion",
        "envelopeType",
        "emittedAt",
        "traceId",
        "source",
        "run",
        "runtime",
        "artifacts",
        "sequence",
        "cursor",
        "health",
    }
    assert snap["emittedAt"] == "2026-03-01T08:00:30Z"
    assert snap["traceId"] == "trace-1"
    assert snap["sequence"] == {"source": "cursor_event_line_offset", "value": 3}
    assert snap["cursor"] == {"eventLineOffset": 3, "eventLineCount": 3}
    assert snap["health"]["eventCount"] == 3
    assert snap["health"]["lastEventName"] == "role_end"
    assert snap["health"]["lastEventAt"] == "2026-03-01T08:00:21Z"
    assert snap["run"]["summary"] is None
    assert set(snap["artifacts"]) == set(REF_KEYS)


def test_empty_trace_id_is_null() -> None:
    assert envelopes.build_snapshot_envelope(_inputs(trace_id=""), NOW)["traceId"] is None


@pytest.mark.parametrize(
    ("override", "summary", "event", "expected"),
    [
        ("forced", _summary(run_id="s"), {"run_id": "e"}, "forced"),
        (None, _summary(run_id="s"), {"run_id": "e"}, "s"),
        (None, _summary(run_id=""), {"run_id": "e"}, "e"),
        (None, None, {"run_id": ""}, "unknown"),
        (None, None, None, "unknown"),
    ],
)
def test_run_id_precedence(override: str | None, summary: Any, event: Any, expected: str) -> None:
    snap = envelopes.build_snapshot_envelope(
        _inputs(run_id_override=override, summary=summary, last_event=event), NOW
    )
    assert snap["run"]["runId"] == expected


@pytest.mark.parametrize(
    ("summary_iter", "event_iter", "state_iter", "expected"),
    [
        (1, 2, 3, 1),  # the summary wins, even when it lags the live iteration
        (None, 2, 3, 2),
        (False, None, 3, 3),
        (None, None, None, 0),
        ("4", None, None, 4),
        ("four", None, None, 0),
        (0, 2, 3, 0),  # 0 is present for jq's ``//``
    ],
)
def test_iteration_precedence(summary_iter: Any, event_iter: Any, state_iter: Any, expected: int) -> None:
    snap = envelopes.build_snapshot_envelope(
        _inputs(
            summary=_summary(iteration=summary_iter),
            last_event={"iteration": event_iter},
            state={"iteration": state_iter},
        ),
        NOW,
    )
    assert snap["run"]["iteration"] == expected


def test_last_summary_at_falls_back_to_entry_end() -> None:
    summary = {"entries": [{"ended_at": "2026-03-01T08:00:01Z", "gates": {"tests": "ok"}, "stuck": None}]}
    snap = envelopes.build_snapshot_envelope(_inputs(summary=summary), NOW)
    assert snap["health"]["lastSummaryAt"] == "2026-03-01T08:00:01Z"
    assert snap["health"]["gates"] == {"tests": "ok"}
    assert snap["health"]["stuck"] is None


@pytest.mark.parametrize(
    ("approval", "pending"),
    [(None, False), ({"status": "pending"}, True), ({"status": "approved"}, False), ({}, False)],
)
def test_pending_approval_flag(approval: Any, pending: bool) -> None:
    snap = envelopes.build_snapshot_envelope(_inputs(approval=approval), NOW)
    assert snap["health"]["hasPendingApproval"] is pending
    assert snap["runtime"]["approval"] == approval


def test_artifact_reference_of_missing_and_present_files() -> None:
    missing = envelopes.build_artifact_reference(envelopes.ArtifactFacts(path="a.json"))
    assert missing == {
        "path": "a.json",
        "exists": False,
        "sizeBytes": 0,
        "lineCount": 0,
        "sha256": None,
        "mtimeEpoch": None,
    }
    present = envelopes.build_artifact_reference(
        envelopes.ArtifactFacts("b.json", True, 10, 1, "ab" * 32, 1772352000)
    )
    assert present == {
        "path": "b.json",
        "exists": True,
        "sizeBytes": 10,
        "lineCount": 1,
        "sha256": "ab" * 32,
        "mtimeEpoch": 1772352000,
    }


def _event(raw: dict[str, Any], line_no: int = 5) -> dict[str, Any]:
    return envelopes.build_event_envelope(
        raw, line_no=line_no, line_count=9, repo_path="/srv/demo", loop_id="demo-loop", trace_id=None, now=NOW
    )


def test_event_envelope_fields() -> None:
    raw = {
        "timestamp": "t1",
        "event": "role_end",
        "run_id": "r",
        "iteration": "3",
        "role": "planner",
        "status": "ok",
        "message": "",
        "data": [1, 2],
    }
    env = _event(raw)
    assert env["sequence"] == {"source": "cursor_event_line_offset", "value": 5}
    assert env["cursor"] == {"eventLineOffset": 5, "eventLineCount": 9}
    assert env["run"] == {"runId": "r", "iteration": 3}
    assert env["event"] == {
        "timestamp": "t1",
        "name": "role_end",
        "role": "planner",
        "status": "ok",
        "message": None,
        "payload": [1, 2],
        "raw": raw,
    }
    assert env["traceId"] is None


def test_event_envelope_defaults_and_text_coercion() -> None:
    env = _event({"timestamp": 5, "type": "tests_end", "status": 7, "run_id": ""})
    assert env["run"] == {"runId": "unknown", "iteration": 0}
    assert env["event"]["name"] == "tests_end"
    assert env["event"]["timestamp"] == "5"
    assert env["event"]["status"] == "7"
    assert env["event"]["payload"] is None


def test_contract_fixtures_carry_required_envelope_fields() -> None:
    snap = json.loads((DATA / "snapshot-running.json").read_text())
    assert snap["schemaVersion"] == "v1"
    assert snap["envelopeType"] == "loop_run_snapshot"
    assert snap["source"]["repoPath"]
    assert snap["source"]["loopId"]
    assert snap["sequence"]["source"] == "cursor_event_line_offset"
    assert snap["sequence"]["value"] >= 0
    assert snap["cursor"]["eventLineOffset"] >= 0
    assert snap["health"]["eventCount"] >= 0
    event = json.loads((DATA / "event.json").read_text())
    assert event["schemaVersion"] == "v1"
    assert event["envelopeType"] == "loop_run_event"
    assert event["source"]["repoPath"]
    assert event["source"]["loopId"]
    assert event["sequence"]["source"] == "cursor_event_line_offset"
    assert event["sequence"]["value"] >= 0
    assert event["event"]["name"]
    assert event["run"]["iteration"] >= 0


def test_built_envelopes_have_the_fixture_shapes() -> None:
    snap = json.loads((DATA / "snapshot-running.json").read_text())
    built = envelopes.build_snapshot_envelope(_inputs(), NOW)
    assert set(built) == set(snap)
    # Our one addition to the reference's snapshot: runtime.signals (docs/divergences.md, issue 11).
    extensions = {"runtime": {"signals"}}
    for key in ("run", "runtime", "artifacts", "health"):
        assert set(built[key]) - extensions.get(key, set()) == set(snap[key])
    assert built["runtime"]["signals"] is None  # the transport gathered none
    event = json.loads((DATA / "event.json").read_text())
    built_event = _event(event["event"]["raw"])
    assert set(built_event) == set(event)
    assert set(built_event["event"]) == set(event["event"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schemaVersion="v2"),
        lambda d: d.update(envelopeType="loop_run_event"),
        lambda d: d["source"].update(loopId="other-loop"),
        lambda d: d.pop("source"),
    ],
)
def test_snapshot_gate_and_loop_guard(mutate: Any) -> None:
    snap = json.loads((DATA / "snapshot-running.json").read_text())
    assert envelopes.check_snapshot_envelope(snap, "demo-loop") is snap
    mutate(snap)
    with pytest.raises(ContractError, match="snapshot envelope is invalid or loop id mismatch"):
        envelopes.check_snapshot_envelope(snap, "demo-loop")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schemaVersion="v0"),
        lambda d: d.update(envelopeType="loop_run_snapshot"),
        lambda d: d["source"].update(loopId="other-loop"),
        lambda d: d["event"].update(name=""),
        lambda d: d["event"].pop("name"),
    ],
)
def test_event_gate_and_loop_guard(mutate: Any) -> None:
    event = json.loads((DATA / "event.json").read_text())
    envelopes.check_event_envelope(event, "demo-loop")
    mutate(event)
    with pytest.raises(ContractError, match="event envelope is invalid or loop id mismatch"):
        envelopes.check_event_envelope(event, "demo-loop")


def test_unparseable_snapshot_file_content() -> None:
    with pytest.raises(ContractError, match=r"invalid snapshot JSON: /x/snap\.json"):
        envelopes.parse_snapshot_envelope(b"{oops", "demo-loop", "/x/snap.json")


def test_envelope_batch_skips_empty_lines_and_rejects_the_rest() -> None:
    event = json.loads((DATA / "event.json").read_text())
    line = dumps_compact(event).encode()
    assert envelopes.parse_event_envelopes(b"\n" + line + b"\n\n" + line, "demo-loop", "/x/e") == [
        event,
        event,
    ]
    with pytest.raises(ContractError, match="invalid event envelope in /x/e"):
        envelopes.parse_event_envelopes(line + b"\n{bad\n", "demo-loop", "/x/e")
    with pytest.raises(ContractError, match="event envelope is invalid"):
        envelopes.parse_event_envelopes(line + b"\n  \n", "demo-loop", "/x/e")
    with pytest.raises(ContractError, match="event envelope is invalid"):
        envelopes.parse_event_envelopes(b'{"not":"a-valid-envelope"}\n', "demo-loop", "/x/e")
