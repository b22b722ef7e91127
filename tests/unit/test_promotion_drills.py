"""Drill evidence records (core.promotion.drill_records) and ``kubectl superloop drill record`` against an
in-memory cluster: merge order, replacement, refusal of broken documents, conflict retries."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest

from superloop_ops.cli import kubectl_drill, kubectl_plugin
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.promotion import drill_records
from superloop_ops.core.promotion.promotion_gates import (
    REQUIRED_DRILLS,
    GateThresholds,
    build_drill_evidence,
    build_handoff_evidence,
    compute_gates,
)
from superloop_ops.errors import ContractError, OperatorError
from superloop_ops.models.fleet_policy import FleetPolicy

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
TS = "2026-03-01T10:00:00Z"
WHERE = "ConfigMap ns/drills key promotion.v1.json"


def _record(drill: str, status: str = "pass", completed_at: str = TS) -> drill_records.DrillRecord:
    return drill_records.DrillRecord(drill_id=drill, status=status, completed_at=completed_at)


def _ids(document: Mapping[str, Any]) -> list[str]:
    return [entry["id"] for entry in document["drills"]]


def test_first_record_creates_the_document() -> None:
    doc = drill_records.build_drill_document(None, _record("sprite_service_outage"), now=NOW, where=WHERE)
    assert doc == {
        "schemaVersion": "v1",
        "updatedAt": "2026-03-01T12:00:00Z",
        "drills": [{"id": "sprite_service_outage", "status": "pass", "completedAt": TS}],
    }


def test_records_merge_in_the_required_order_whatever_the_recording_order() -> None:
    text = None
    for drill in ("ambiguous_retry_guard", "kill_switch", "sprite_service_outage"):
        doc = drill_records.build_drill_document(text, _record(drill), now=NOW, where=WHERE)
        text = drill_records.format_drill_document(doc)
    assert text is not None
    assert text.endswith("}\n")
    assert _ids(json.loads(text)) == ["kill_switch", "sprite_service_outage", "ambiguous_retry_guard"]


def test_a_new_record_replaces_the_entry_of_its_id_and_its_duplicates() -> None:
    existing = {
        "schemaVersion": "v1",
        "owner": "sre",
        "drills": [
            {"id": "custom_drill", "status": "pass"},
            {"id": "kill_switch", "status": "fail", "completedAt": "2026-02-01T00:00:00Z"},
            {"id": "kill_switch", "status": "pass", "completedAt": "2026-02-02T00:00:00Z"},
            {"id": "ambiguous_retry_guard", "status": "pass", "completedAt": TS, "note": "kept"},
        ],
    }
    doc = drill_records.build_drill_document(
        json.dumps(existing), _record("kill_switch", "pass", "2026-03-01T11:00:00Z"), now=NOW, where=WHERE
    )
    assert doc["drills"] == [
        {"id": "kill_switch", "status": "pass", "completedAt": "2026-03-01T11:00:00Z"},
        {"id": "ambiguous_retry_guard", "status": "pass", "completedAt": TS, "note": "kept"},
        {"id": "custom_drill", "status": "pass"},
    ]
    assert doc["owner"] == "sre"  # other top-level keys survive
    assert doc["updatedAt"] == format_ts(NOW)


@pytest.mark.parametrize("text", ["", "  \n", "null", "{}", '{"drills": null}'])
def test_empty_or_null_content_counts_as_no_drills(text: str) -> None:
    doc = drill_records.build_drill_document(text, _record("kill_switch"), now=NOW, where=WHERE)
    assert _ids(doc) == ["kill_switch"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"drills": {"id": "kill_switch"}}', "drills value that is not an array"),
    ],
)
def test_content_the_gates_would_call_invalid_is_refused_not_overwritten(text: str, message: str) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        drill_records.build_drill_document(text, _record("kill_switch"), now=NOW, where=WHERE)
    assert WHERE in str(caught.value)


@pytest.mark.parametrize(
    ("drill", "status", "completed_at", "message"),
    [
        ("chaos_monkey", "pass", TS, "--drill must be one of"),
        ("kill_switch", "passed", TS, "--status must be one of"),
        ("kill_switch", "pass", "2026-03-01T10:00:00.000Z", "--completed-at must be an ISO timestamp"),
        ("kill_switch", "pass", "2026-02-30T10:00:00Z", "--completed-at must be an ISO timestamp"),
    ],
)
def test_records_are_validated(drill: str, status: str, completed_at: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        drill_records.DrillRecord(drill_id=drill, status=status, completed_at=completed_at)


def test_three_recorded_passes_satisfy_the_drill_recency_gate() -> None:
    text = None
    for drill in ("kill_switch", "sprite_service_outage", "ambiguous_retry_guard"):
        doc = drill_records.build_drill_document(text, _record(drill), now=NOW, where=WHERE)
        text = drill_records.format_drill_document(doc)
    gates = compute_gates({}, build_handoff_evidence(None), build_drill_evidence(text), GateThresholds(), NOW)
    drill_gate = next(gate for gate in gates if gate.name == "drill_recency")
    assert drill_gate.passed
    assert [d["id"] for d in drill_gate.detail["drills"]] == list(REQUIRED_DRILLS)


def test_config_map_source_label() -> None:
    assert drill_records.compute_config_map_source("ns", "drills", "promotion.v1.json") == (
        "configmap://ns/drills/promotion.v1.json"
    )


# ---------------------------------------------------------------------------------------------
# kubectl superloop drill record


class FakeCluster:
    """The plugin's API calls in memory; ``conflicts`` makes that many writes fail with 409."""

    namespace = "ops"

    def __init__(self, policy_spec: Mapping[str, Any] | None = None) -> None:
        self.policies: dict[str, dict[str, Any]] = {
            "fp": {"metadata": {"name": "fp", "namespace": self.namespace}, "spec": dict(policy_spec or {})}
        }
        self.config_maps: dict[str, tuple[dict[str, str], int]] = {}
        self.conflicts = 0
        self.writes: list[str] = []

    def get(self, plural: str, name: str) -> dict[str, Any]:
        assert plural == "fleetpolicies"
        if name not in self.policies:
            raise OperatorError(f"{plural}/{name}: not found")
        return self.policies[name]

    def fetch_config_map(self, name: str) -> tuple[dict[str, str], str] | None:
        found = self.config_maps.get(name)
        return (dict(found[0]), str(found[1])) if found else None

    def _conflict(self) -> bool:
        if self.conflicts:
            self.conflicts -= 1
            return True
        return False

    def create_config_map(self, name: str, data: Mapping[str, str]) -> None:
        if name in self.config_maps or self._conflict():
            raise kubectl_drill.WriteConflictError("exists")
        self.config_maps[name] = (dict(data), 1)
        self.writes.append(f"create {name}")

    def patch_config_map(self, name: str, data: Mapping[str, str], resource_version: str) -> None:
        current, version = self.config_maps[name]
        if str(version) != resource_version or self._conflict():
            raise kubectl_drill.WriteConflictError("changed")
        self.config_maps[name] = ({**current, **data}, version + 1)
        self.writes.append(f"patch {name}")


REF_SPEC = {"promotion": {"drillEvidenceConfigMapRef": {"name": "drills"}}}


def _args(*argv: str) -> argparse.Namespace:
    return kubectl_plugin.build_parser().parse_args(["drill", "record", "--fleet-policy", "fp", *argv])


def _stored(cluster: FakeCluster, key: str = "promotion.v1.json") -> Any:
    return json.loads(cluster.config_maps["drills"][0][key])


def test_record_creates_then_patches_the_policy_config_map(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster(REF_SPEC)
    assert kubectl_drill.run(cluster, _args("--drill", "ambiguous_retry_guard", "--status", "pass"), NOW) == 0
    assert (
        kubectl_drill.run(
            cluster, _args("--drill", "kill_switch", "--status", "fail", "--completed-at", TS), NOW
        )
        == 0
    )
    assert cluster.writes == ["create drills", "patch drills"]
    assert _stored(cluster)["drills"] == [
        {"id": "kill_switch", "status": "fail", "completedAt": TS},
        {"id": "ambiguous_retry_guard", "status": "pass", "completedAt": format_ts(NOW)},
    ]
    out = capsys.readouterr().out
    assert "configmap/drills (promotion.v1.json): drill kill_switch recorded as fail" in out


def test_record_uses_the_configured_key_and_keeps_other_keys() -> None:
    cluster = FakeCluster({"promotion": {"drillEvidenceConfigMapRef": {"name": "drills", "key": "ev.json"}}})
    cluster.config_maps["drills"] = ({"README": "drill evidence"}, 7)
    kubectl_drill.run(cluster, _args("--drill", "kill_switch", "--status", "pass"), NOW)
    assert _ids(_stored(cluster, "ev.json")) == ["kill_switch"]
    assert cluster.config_maps["drills"][0]["README"] == "drill evidence"


def test_record_redoes_the_merge_after_a_conflict() -> None:
    cluster = FakeCluster(REF_SPEC)
    kubectl_drill.run(cluster, _args("--drill", "kill_switch", "--status", "pass"), NOW)
    cluster.conflicts = 2
    kubectl_drill.run(cluster, _args("--drill", "sprite_service_outage", "--status", "pass"), NOW)
    assert _ids(_stored(cluster)) == ["kill_switch", "sprite_service_outage"]
    cluster.conflicts = 99
    with pytest.raises(OperatorError, match="kept changing"):
        kubectl_drill.run(cluster, _args("--drill", "ambiguous_retry_guard", "--status", "pass"), NOW)


def test_record_refuses_a_policy_without_an_evidence_config_map() -> None:
    with pytest.raises(ContractError, match=r"FleetPolicy fp names no drill evidence ConfigMap"):
        kubectl_drill.run(FakeCluster(), _args("--drill", "kill_switch", "--status", "pass"), NOW)


def test_record_refuses_to_overwrite_a_broken_document() -> None:
    cluster = FakeCluster(REF_SPEC)
    cluster.config_maps["drills"] = ({"promotion.v1.json": "{broken"}, 1)
    with pytest.raises(
        ContractError, match=r"ConfigMap ops/drills key promotion\.v1\.json is not valid JSON"
    ):
        kubectl_drill.run(cluster, _args("--drill", "kill_switch", "--status", "pass"), NOW)
    assert cluster.config_maps["drills"][0]["promotion.v1.json"] == "{broken"


@pytest.mark.parametrize(
    "argv", [["--drill", "nope", "--status", "pass"], ["--drill", "kill_switch", "--status", "ok"], []]
)
def test_plugin_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _args(*argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_the_policy_model_defaults_the_key() -> None:
    policy = FleetPolicy.model_validate(
        {"metadata": {"name": "fp"}, "spec": {"promotion": {"drillEvidenceConfigMapRef": {"name": "drills"}}}}
    )
    assert policy.spec.promotion is not None
    ref = policy.spec.promotion.drill_evidence_config_map_ref
    assert ref is not None
    assert (ref.name, ref.key) == ("drills", "promotion.v1.json")
    assert kubectl_drill.find_evidence_config_map(
        {"metadata": {"name": "fp"}, "spec": {"promotion": {"drillEvidenceConfigMapRef": {"name": "d"}}}}
    ) == ("d", "promotion.v1.json")
