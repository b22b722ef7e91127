"""Property-based fuzzing of every input parser (issue 10, fault matrix).

The property is the same for each: whatever the bytes or JSON, a parser returns a value or
raises one of the product's reason-coded errors (``OperatorError``: ``ContractError``,
``ArtifactInvalidError``, ``InvalidSpecError``). Any other exception is a traceback that would
freeze a Loop's status. Inputs are random, and also valid documents with one subtree replaced
by a random value (mutation finds far more than pure noise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from helpers.fuzz import (
    FUZZ,
    NOW,
    VALID_CURSOR,
    VALID_EVENT,
    VALID_STATE,
    VALID_SUMMARY,
    bytes_of,
    json_values,
    mutated,
    raw_inputs,
    reason_coded,
)
from superloop_ops.cli import import_registry
from superloop_ops.core.alerts import dispatch_plan, sink_catalog
from superloop_ops.core.fleet import fleet_registry
from superloop_ops.core.loop import artifacts, control_rules, cursor, envelopes, threshold_profiles


@FUZZ
@given(raw_inputs | mutated(VALID_EVENT).map(bytes_of))
def test_event_line_parser(line: bytes) -> None:
    reason_coded(lambda: artifacts.parse_event_line(line, 1, "events.jsonl"))


@FUZZ
@given(raw_inputs | mutated(VALID_SUMMARY).map(bytes_of) | mutated(VALID_STATE).map(bytes_of))
def test_optional_artifact_parser(data: bytes) -> None:
    reason_coded(lambda: artifacts.parse_optional_artifact(data, "x.json"))
    reason_coded(lambda: artifacts.parse_optional_artifact(data, "x.json", require_object=False))


@FUZZ
@given(raw_inputs | mutated(VALID_EVENT).map(bytes_of), st.integers(min_value=0, max_value=5))
def test_last_event_parser(line: bytes, count: int) -> None:
    reason_coded(lambda: artifacts.compute_last_event(count, line, "events.jsonl"))


@FUZZ
@given(mutated(VALID_SUMMARY))
def test_latest_summary_entry(summary: Any) -> None:
    reason_coded(lambda: artifacts.latest_summary_entry(summary))


@FUZZ
@given(raw_inputs | mutated(VALID_CURSOR).map(bytes_of))
def test_cursor_document_parser(data: bytes) -> None:
    reason_coded(lambda: cursor.parse_cursor_document(data, "cursor.json"))


@FUZZ
@given(
    st.lists(raw_inputs | mutated(VALID_EVENT).map(bytes_of), max_size=5),
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=3),
)
def test_poll_over_arbitrary_lines(lines: list[bytes], start: int, max_events: int) -> None:
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"

    def poll() -> None:
        cursor.compute_poll(
            cursor.PollWindow(data=data),
            start_line=start,
            max_events=max_events,
            repo_path="/repo",
            loop_id="demo",
            events_path="events.jsonl",
            trace_id=None,
            now=NOW,
        )

    reason_coded(poll)


@FUZZ
@given(raw_inputs | json_values.map(bytes_of))
def test_envelope_parsers(data: bytes) -> None:
    reason_coded(lambda: envelopes.parse_snapshot_envelope(data, "demo", "snapshot.json"))
    reason_coded(lambda: envelopes.parse_event_envelopes(data, "demo", "events.json"))


# --------------------------------------------------------------------- catalogs

REPO = Path(__file__).resolve().parents[2]


def _config(name: str) -> Any:
    return json.loads((REPO / "config" / name).read_text())


THRESHOLD_CATALOG = _config("ops-manager-threshold-profiles.v1.json")
SINK_CATALOG = _config("ops-manager-alert-sinks.v1.json")


@FUZZ
@given(mutated(THRESHOLD_CATALOG), st.none() | st.text(max_size=12))
def test_threshold_catalog(catalog: Any, profile: str | None) -> None:
    def resolve() -> None:
        resolved = threshold_profiles.compute_profile(catalog, source_file="catalog.json", profile=profile)
        threshold_profiles.compute_thresholds(resolved, {})

    reason_coded(resolve)
    reason_coded(lambda: threshold_profiles.compute_profile_names(catalog))


@FUZZ
@given(mutated(SINK_CATALOG))
def test_alert_sink_catalog(catalog: Any) -> None:
    def build() -> None:
        built = sink_catalog.build_sink_catalog(catalog)
        sink_catalog.build_sink_listing(built)
        sink_catalog.compute_env_status(built, {})

    reason_coded(build)


# --------------------------------------------------------------------- registry import

VALID_REGISTRY = {
    "schemaVersion": "v1",
    "fleetId": "fleet-x",
    "loops": [
        {"loopId": "loop-a", "transport": "local", "enabled": True},
        {
            "loopId": "loop-b",
            "transport": "sprite_service",
            "service": {"baseUrl": "http://sprite.local", "tokenEnv": "TOKEN_B", "retryAttempts": 2},
            "sprite": {"id": "sprite-1", "assignment": "pool"},
        },
    ],
    "policy": {"mode": "advisory", "suppressions": {"loop-a": ["health_degraded"]}},
}


@FUZZ
@given(mutated(VALID_REGISTRY))
def test_registry_validation_and_import(raw: Any) -> None:
    def import_() -> None:
        errors = fleet_registry.compute_registry_errors(raw, NOW)
        if errors:
            return
        registry = fleet_registry.build_normalized_registry(raw, "registry.v1.json")
        for document in import_registry.build_registry_manifests(registry):
            import_registry._check(document)

    reason_coded(import_)


# --------------------------------------------------------------------- service requests

VALID_CONTROL = {"loopId": "demo", "intent": "cancel", "by": "me", "timeoutSeconds": 5, "idempotencyKey": "k"}


@FUZZ
@given(mutated(VALID_CONTROL))
def test_service_control_request(payload: Any) -> None:
    def parse() -> None:
        control_rules.parse_service_control_request(
            payload, header_idempotency_key="", header_trace_id="", default_by="svc"
        )

    try:
        parse()
    except control_rules.ServiceRequestError:
        pass


# --------------------------------------------------------------------- journal documents

VALID_DISPATCH_STATE = {"schemaVersion": "v1", "escalationLineOffset": 2, "ledger": {"k": {"status": "sent"}}}


@FUZZ
@given(mutated(VALID_DISPATCH_STATE))
def test_alert_dispatch_state(previous: Any) -> None:
    reason_coded(lambda: dispatch_plan.parse_dispatch_state(previous))
