"""Property-based fuzzing through the filesystem (issue 10, fault matrix).

A repository of mutated runtime artifacts and previous journal documents goes through the local
reader, the projection and a whole reconcile pass. The property: a reason-coded outcome (a
``ContractError``, or a pass ending with exit 0/1 and a known failure code), never a traceback.
The strategies are the parser fuzz tests' (``tests/unit/test_fuzz_parsers.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.fuzz import (
    FUZZ,
    NOW,
    VALID_APPROVAL,
    VALID_EVENT,
    VALID_HEARTBEAT,
    VALID_STATE,
    VALID_SUMMARY,
    bytes_of,
    json_values,
    mutated,
    reason_coded,
)
from superloop_ops.clock import FrozenClock
from superloop_ops.core.loop import pass_rules, projection, threshold_profiles
from superloop_ops.engine.loop import reconcile_pass
from superloop_ops.transports import local

VALID_SEQUENCE_STATE = {"schemaVersion": "v1", "lastSequence": 2, "driftActive": False, "status": "ok"}
VALID_TRANSPORT_HEALTH = {"schemaVersion": "v1", "failureStreak": 1, "lastResult": "failed"}


@FUZZ
@given(
    summary=st.none() | mutated(VALID_SUMMARY),
    state=st.none() | mutated(VALID_STATE),
    approval=st.none() | mutated(VALID_APPROVAL),
    heartbeat=st.none() | mutated(VALID_HEARTBEAT),
    event=mutated(VALID_EVENT),
)
def test_snapshot_and_projection_over_a_repository(
    tmp_path_factory: pytest.TempPathFactory,
    summary: Any,
    state: Any,
    approval: Any,
    heartbeat: Any,
    event: Any,
) -> None:
    """A whole repository of mutated artifacts through the local reader and the projection."""
    repo = tmp_path_factory.mktemp("repo")
    loop_dir = repo / ".superloop" / "loops" / "demo"
    loop_dir.mkdir(parents=True)
    (loop_dir / "events.jsonl").write_bytes(bytes_of(VALID_EVENT) + b"\n" + bytes_of(event) + b"\n")
    for path, value in (
        (loop_dir / "run-summary.json", summary),
        (repo / ".superloop" / "state.json", state),
        (loop_dir / "approval.json", approval),
        (loop_dir / "heartbeat.v1.json", heartbeat),
    ):
        if value is not None:
            path.write_bytes(bytes_of(value))
    local.clear_memos()

    def run() -> None:
        snapshot = local.fetch_snapshot(repo, "demo", trace_id=None, now=NOW)
        batch = local.fetch_events(repo, "demo", offset=0, trace_id=None, now=NOW)
        projection.compute_projection(snapshot, batch.events, None, NOW, repo_path=str(repo), loop_id="demo")

    reason_coded(run)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    summary=mutated(VALID_SUMMARY),
    event=mutated(VALID_EVENT),
    previous_state=json_values,
    sequence_state=mutated(VALID_SEQUENCE_STATE),
    transport_health=mutated(VALID_TRANSPORT_HEALTH),
    heartbeat=mutated(VALID_HEARTBEAT),
)
def test_a_whole_local_pass_over_mutated_inputs(
    tmp_path_factory: pytest.TempPathFactory,
    summary: Any,
    event: Any,
    previous_state: Any,
    sequence_state: Any,
    transport_health: Any,
    heartbeat: Any,
) -> None:
    """Runtime artifacts and the previous journal documents, mutated: the pass ends with 0 or 1."""
    repo = tmp_path_factory.mktemp("repo")
    loop_dir = repo / ".superloop" / "loops" / "demo"
    loop_dir.mkdir(parents=True)
    (loop_dir / "events.jsonl").write_bytes(bytes_of(VALID_EVENT) + b"\n" + bytes_of(event) + b"\n")
    (loop_dir / "run-summary.json").write_bytes(bytes_of(summary))
    (loop_dir / "heartbeat.v1.json").write_bytes(bytes_of(heartbeat))
    ops = repo / ".superloop" / "ops-manager" / "demo"
    (ops / "telemetry").mkdir(parents=True)
    (ops / "state.json").write_bytes(bytes_of(previous_state))
    (ops / "sequence-state.json").write_bytes(bytes_of(sequence_state))
    (ops / "telemetry" / "transport-health.json").write_bytes(bytes_of(transport_health))
    local.clear_memos()
    options = reconcile_pass.ReconcileOptions(
        repo=repo, loop_id="demo", thresholds=threshold_profiles.compute_thresholds(_DEFAULT_PROFILE, {})
    )
    result = reconcile_pass.run_reconcile(options, clock=FrozenClock(NOW))
    assert result.exit_code in (0, 1)
    assert result.ingest_ok or result.failure_code in pass_rules.FAILURE_CODES


_CATALOG = json.loads(
    (Path(__file__).resolve().parents[2] / "config" / "ops-manager-threshold-profiles.v1.json").read_text()
)
_DEFAULT_PROFILE = threshold_profiles.compute_profile(_CATALOG, source_file="catalog.json")
