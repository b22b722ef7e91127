"""Issue 12: the policy stage reads only the history and handoff telemetry it needs, and decides
what it decided over the whole logs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry, policy_rules
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.journal import files, tail

START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
LOOPS = ("loop-a", "loop-b", "loop-c")


def _registry(now: dt.datetime) -> dict[str, Any]:
    raw = {
        "schemaVersion": "v1",
        "fleetId": "fleet-x",
        "loops": [{"loopId": loop_id} for loop_id in LOOPS],
        "policy": {
            "mode": "guarded_auto",
            "noiseControls": {"dedupeWindowSeconds": 300},
            "suppressions": {"loop-b": ["health_degraded"]},
            "suppressionTerms": {
                "loop-b": {
                    "owner": "ops", "reason": "known flake",
                    "startsAt": format_ts(START + dt.timedelta(minutes=10)),
                    "expiresAt": format_ts(START + dt.timedelta(minutes=50)),
                }
            },
            "autonomous": {
                "allow": {"categories": ["reconcile_failed", "health_critical"], "intents": ["cancel"]},
                "safety": {"maxActionsPerRun": 2, "maxActionsPerLoop": 1, "cooldownSeconds": 600},
                "rollout": {"autoPause": {"lookbackExecutions": 3, "minSampleSize": 2}},
                "governance": {
                    "actor": "ops", "approvalRef": "CAB-1", "rationale": "test",
                    "changedAt": format_ts(START - dt.timedelta(days=1)),
                    "reviewBy": format_ts(START + dt.timedelta(days=30)),
                },
            },
        },
    }  # fmt: skip
    assert fleet_registry.compute_registry_errors(raw, now) == []
    return fleet_registry.build_normalized_registry(raw, "/r/registry.v1.json")


def _fleet_state(number: int, now: dt.datetime) -> dict[str, Any]:
    """Loops that fail, degrade and recover on different rhythms (candidates come and go)."""
    health = {
        "loop-a": "critical" if number % 7 < 3 else "healthy",
        "loop-b": "degraded" if number % 5 else "healthy",
        "loop-c": "critical" if number % 11 < 6 else "degraded",
    }
    results = [
        {"loopId": loop_id, "status": "failed" if (loop_id == "loop-c" and number % 4 == 0) else "success",
         "healthStatus": value, "traceId": f"t{number}-{loop_id}"}
        for loop_id, value in health.items()
    ]  # fmt: skip
    return {
        "fleetId": "fleet-x", "traceId": f"t{number}", "status": "partial_failure", "results": results,
        "startedAt": format_ts(now), "updatedAt": format_ts(now),
    }  # fmt: skip


def _without_reported_ages(state: dict[str, Any]) -> dict[str, Any]:
    """The policy state minus the two informative 'last seen' stamps of candidates absent for
    longer than their window (the only fields a bounded read may not know; no decision uses them)."""
    copy: dict[str, Any] = json.loads(json.dumps(state))
    for candidate in copy["candidates"]:
        candidate["cooldown"].pop("lastUnsuppressedAt", None)
        candidate["autonomous"]["safety"]["cooldown"].pop("lastEligibleAt", None)
    return copy


def _full_read_evaluation(
    paths: fleet_commands.FleetPaths, registry: Any, state: Any, now: dt.datetime
) -> Any:
    previous = files.read_json(paths.policy_state_file)
    return policy_rules.build_policy_evaluation(
        registry=registry, fleet_state=state,
        history=files.read_jsonl(paths.policy_history_file),
        handoff_telemetry=files.read_jsonl(paths.handoff_telemetry_file),
        previous_state=previous, had_previous_state=previous is not None, dedupe_window_seconds=300,
        trace_id=state["traceId"],
        paths=policy_rules.PolicyPaths(
            registry_file=str(paths.registry_file), fleet_state_file=str(paths.fleet_state_file),
            policy_state_file=str(paths.policy_state_file),
            policy_history_file=str(paths.policy_history_file),
            handoff_telemetry_file=str(paths.handoff_telemetry_file),
            governance_audit_file=str(paths.governance_audit_file),
        ),
        now=now,
    )  # fmt: skip


def _execute_row(number: int, now: dt.datetime) -> dict[str, Any]:
    return {
        "timestamp": format_ts(now), "category": "fleet_handoff_execute", "traceId": f"t{number}",
        "execution": {
            "mode": "autonomous", "requestedIntentCount": 1, "executedCount": int(number % 3 != 0),
            "ambiguousCount": 0, "failedCount": int(number % 3 == 0), "results": [{"big": "x" * 200}],
        },
    }  # fmt: skip


def test_bounded_reads_decide_as_the_whole_logs_do_over_eighty_passes(tmp_path: Path) -> None:
    paths = fleet_commands.FleetPaths.for_repo(tmp_path)
    for number in range(80):
        now = START + dt.timedelta(minutes=number)
        registry, state = _registry(now), _fleet_state(number, now)
        rows = [{"timestamp": format_ts(now), "category": "fleet_handoff_plan", "traceId": f"t{number}"}]
        if number % 6 == 0:
            rows.append(_execute_row(number, now))
        paths.handoff_telemetry_file.parent.mkdir(parents=True, exist_ok=True)
        files.append_jsonl(paths.handoff_telemetry_file, rows)
        expected = _full_read_evaluation(paths, registry, state, now).state
        got = fleet_commands.evaluate_policy(
            paths, registry, state, trace_id=None, dedupe_window_seconds=None, now=now, env={}
        )
        assert _without_reported_ages(got) == _without_reported_ages(expected), number
    hidden = got["suppressionState"]["entries"][0]["hiddenSignalCount"]
    assert hidden > 10  # the suppression's counts were carried from pass to pass, not re-read


def _history(path: Path, rows: int, now: dt.datetime) -> None:
    """``rows`` policy history rows, one a second, the last one at ``now``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            moment = now - dt.timedelta(seconds=rows - 1 - index)
            row = {
                "timestamp": format_ts(moment), "candidateId": f"loop-{index % 50}:health_critical",
                "loopId": f"loop-{index % 50}", "suppressed": index % 3 == 0, "traceId": f"t{index}",
            }  # fmt: skip
            handle.write(json.dumps(row) + "\n")


def test_a_pass_reads_only_the_rows_of_its_windows_however_long_the_history(tmp_path: Path) -> None:
    now = START
    needs = policy_rules.HistoryNeeds(since=now - dt.timedelta(seconds=600), carried_hidden={})
    read = {}
    for rows in (1_000, 100_000):
        path = tmp_path / f"history-{rows}.jsonl"
        _history(path, rows, now)
        found = tail.fetch_rows_after(path, needs.is_older)
        assert len(found) == 601
        assert found[-1]["timestamp"] == format_ts(now)
        read[rows] = found.bytes_read
    assert read[100_000] == read[1_000] < 160_000  # the window's rows and one block more, not the log


def test_the_handoff_telemetry_is_read_from_where_the_last_pass_stopped(tmp_path: Path) -> None:
    log = tmp_path / "handoff.jsonl"
    files.append_jsonl(log, [{"n": i} for i in range(10_000)])
    rows, end = tail.fetch_rows_from(log, 0)
    assert len(rows) == 10_000
    assert end == log.stat().st_size
    files.append_jsonl(log, [{"n": "new"}])
    with log.open("ab") as handle:
        handle.write(b'{"n": "tor')  # a torn last line: read again next time
    rows, later = tail.fetch_rows_from(log, end)
    assert list(rows) == [{"n": "new"}]
    assert rows.bytes_read == log.stat().st_size - end < 64
    assert later == log.read_bytes().rfind(b"\n") + 1  # before the torn line
    rows, _ = tail.fetch_rows_from(log, log.stat().st_size + 10)  # the log was replaced: from the start
    assert len(rows) == 10_001


def test_a_torn_last_line_is_ignored_and_a_corrupt_inner_line_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "history.jsonl"
    log.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3')
    assert list(tail.fetch_rows_after(log, lambda row: False, block=4)) == [{"a": 1}, {"a": 2}]
    log.write_bytes(b'{"a": 1}\nnot json\n{"a": 3}\n')
    try:
        tail.fetch_rows_after(log, lambda row: False)
    except ValueError:
        pass
    else:
        raise AssertionError("a corrupt inner line must be refused")
    assert list(tail.fetch_rows_after(log, lambda row: row == {"a": 3})) == []
