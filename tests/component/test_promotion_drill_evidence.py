"""Drill evidence from the FleetPolicy's ConfigMap, through the PromotionApply handler: the real
fleet pass and gates over real journal files, an in-memory API server holding the ConfigMap.

Reuses the PromotionApply component harness (``test_promotion_handler.Env``: one Fleet, one
simulated loop, a ``guarded_auto`` FleetPolicy). The ConfigMap is what ``kubectl superloop drill
record`` writes (built with the same core function)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from test_promotion_handler import NS, POLICY, Env

from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.promotion import drill_records
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectNotFoundError

CM = "drill-evidence"
KEY = "promotion.v1.json"
SOURCE = f"configmap://{NS}/{CM}/{KEY}"
DRILLS = ("kill_switch", "sprite_service_outage", "ambiguous_retry_guard")
APPLIES = "superloop_ops_promotion_applies_total"
DECISION = "superloop_ops_promotion_decision"


class ConfigMaps:
    """ConfigMaps of the in-memory API server; errors as ``KubernetesEdge`` maps them."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, str]] = {}
        self.error: Exception | None = None

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str:
        if self.error is not None:
            raise self.error
        found = self.data.get(name) if namespace == NS else None
        if found is None:
            raise ObjectNotFoundError(f"ConfigMap {namespace}/{name}: not found")
        if key not in found:
            raise ObjectNotFoundError(f"ConfigMap {namespace}/{name} has no key {key!r}")
        return found[key]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1))


def _env(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, **ref: Any
) -> tuple[Env, ConfigMaps]:
    """The harness with its FleetPolicy naming the evidence ConfigMap (``ref``: extra fields)."""
    env = Env(tmp_path, clock, canaryPercent=0)
    env.fleet_pass()  # a first full pass: the gates need the fleet status surface
    maps = ConfigMaps()
    monkeypatch.setattr(env.edge, "fetch_config_map_value", maps.fetch_config_map_value)
    env.edge.get("fleetpolicies", POLICY)["spec"]["promotion"] = {
        "drillEvidenceConfigMapRef": {"name": CM, **ref}
    }
    return env, maps


def _ago(clock: FrozenClock, hours: float) -> str:
    return format_ts(clock.now() - dt.timedelta(hours=hours))


def _evidence(clock: FrozenClock, *entries: tuple[str, str, float]) -> str:
    """Drills recorded one by one, as the plugin does: (id, status, hours ago)."""
    text: str | None = None
    for drill, status, hours in entries:
        record = drill_records.DrillRecord(drill_id=drill, status=status, completed_at=_ago(clock, hours))
        document = drill_records.build_drill_document(text, record, now=clock.now(), where=CM)
        text = drill_records.format_drill_document(document)
    assert text is not None
    return text


def _gates(env: Env) -> dict[str, Any]:
    state = files.read_json(env.journal / "promotion-state.json")
    assert isinstance(state, dict)
    return state


def _seed_reliable_history(env: Env) -> None:
    """20 clean autonomous executions: the outcome_reliability gate's minimum sample."""
    row = {
        "category": "fleet_handoff_execute",
        "execution": {
            "mode": "autonomous", "requestedIntentCount": 1, "executedCount": 1,
            "ambiguousCount": 0, "failedCount": 0,
        },
    }  # fmt: skip
    files.append_jsonl(env.journal / "telemetry" / "handoff.jsonl", [row] * 20)


def _samples(env: Env, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in env.ctx.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


ALL_PASS = tuple((drill, "pass", 2.0) for drill in DRILLS)


@pytest.mark.parametrize(
    ("content", "reasons"),
    [
        pytest.param(None, ["promotion_drill_state_missing"], id="missing-configmap"),
        pytest.param({"other.json": "{}"}, ["promotion_drill_state_missing"], id="missing-key"),
        pytest.param("{not json", ["promotion_drill_state_invalid"], id="invalid-json"),
        pytest.param("", ["promotion_drill_state_invalid"], id="empty-value"),
        pytest.param('{"drills": {"id": "x"}}', ["promotion_drill_state_invalid"], id="drills-object"),
        pytest.param(
            (("kill_switch", "pass", 2.0),),
            [
                "promotion_drill_missing_sprite_service_outage",
                "promotion_drill_missing_ambiguous_retry_guard",
            ],
            id="partial",
        ),
        pytest.param(
            (
                ("kill_switch", "pass", 2.0),
                ("sprite_service_outage", "fail", 2.0),
                ("ambiguous_retry_guard", "pass", 2.0),
            ),
            ["promotion_drill_not_passed_sprite_service_outage"],
            id="failed-drill",
        ),
        pytest.param(
            (
                ("kill_switch", "pass", 169.0),  # older than maxDrillAgeHours (168)
                ("sprite_service_outage", "pass", 168.0),  # exactly 168 h: not stale
                ("ambiguous_retry_guard", "pass", 2.0),
            ),
            ["promotion_drill_stale_kill_switch"],
            id="stale-drill",
        ),
        pytest.param(ALL_PASS, [], id="all-pass"),
    ],
)  # fmt: skip
def test_the_drill_gate_reads_the_policy_config_map(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, content: Any, reasons: list[str]
) -> None:
    env, maps = _env(tmp_path, clock, monkeypatch)
    if isinstance(content, tuple):
        maps.data[CM] = {KEY: _evidence(clock, *content)}
    elif isinstance(content, str):
        maps.data[CM] = {KEY: content}
    elif isinstance(content, dict):
        maps.data[CM] = content
    env.create("grow-1", "expand", expandStep=25, dryRun=True)
    report = env.run("grow-1")  # never raises, whatever the evidence
    gate = _gates(env)["gates"]["drillRecency"]
    assert gate["reasons"] == reasons
    assert gate["status"] == ("fail" if reasons else "pass")
    assert _gates(env)["source"]["drillStateFile"] == SOURCE
    if reasons:
        assert report.phase == "rejected"
        assert set(reasons) <= set(env.status("grow-1")["reasonCodes"])
    # the journal's drill file is not consulted once a ConfigMap is named
    assert not (env.journal / "drills" / "promotion.v1.json").exists()


def test_a_custom_key_is_read(tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    env, maps = _env(tmp_path, clock, monkeypatch, key="evidence.json")
    maps.data[CM] = {KEY: "{broken", "evidence.json": _evidence(clock, *ALL_PASS)}
    env.create("grow-1", "expand", expandStep=25, dryRun=True)
    env.run("grow-1")
    assert _gates(env)["gates"]["drillRecency"]["status"] == "pass"
    assert _gates(env)["source"]["drillStateFile"] == f"configmap://{NS}/{CM}/evidence.json"


@pytest.mark.parametrize(
    "error",
    [
        InvalidSpecError("ConfigMap promo-ns/drill-evidence: rejected by the API server (403 Forbidden)"),
        DependencyNotReadyError("ConfigMap promo-ns/drill-evidence: API server unreachable", delay=10.0),
    ],
    ids=["forbidden", "unreachable"],
)
def test_an_unreadable_config_map_is_missing_evidence_never_a_failed_reconcile(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    env, maps = _env(tmp_path, clock, monkeypatch)
    maps.error = error
    env.create("grow-1", "expand", expandStep=25)
    assert env.run("grow-1").phase == "rejected"
    assert "promotion_drill_state_missing" in env.status("grow-1")["reasonCodes"]


def test_without_a_reference_the_journal_file_is_read(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path, clock, canaryPercent=0)
    env.fleet_pass()
    files.write_text_atomic(env.journal / "drills" / "promotion.v1.json", _evidence(clock, *ALL_PASS))
    env.create("grow-1", "expand", expandStep=25, dryRun=True)
    env.run("grow-1")
    assert _gates(env)["gates"]["drillRecency"]["status"] == "pass"
    assert _gates(env)["source"]["drillStateFile"] == str(env.journal / "drills" / "promotion.v1.json")


def test_recorded_drills_let_an_expand_pass_every_gate_and_move_the_canary(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, maps = _env(tmp_path, clock, monkeypatch)
    _seed_reliable_history(env)
    labels = (("fleet", "canary"), ("namespace", NS))

    # before any drill is recorded: hold on the drill gate alone
    env.create("grow-0", "expand", expandStep=25)
    assert env.run("grow-0").phase == "rejected"
    assert _gates(env)["summary"]["failedGates"] == ["drill_recency"]
    assert _samples(env, DECISION) == {labels: 0.0}

    # the three drills recorded: promote, and the expand moves the effective canary
    maps.data[CM] = {KEY: _evidence(clock, *ALL_PASS)}
    clock.advance(60)
    env.create("grow-1", "expand", expandStep=25)
    report = env.run("grow-1")
    assert (report.phase, report.moved) == ("applied", True)
    status = env.status("grow-1")
    assert status["decision"] == "promote"
    assert status["record"]["rollout"]["after"] == {"canaryPercent": 25, "manualPause": False}
    assert env.effective()["canaryPercent"] == 25
    assert _gates(env)["summary"]["decision"] == "promote"
    assert _gates(env)["gates"]["drillRecency"]["status"] == "pass"
    assert _samples(env, DECISION) == {labels: 1.0}
    outcome = {
        dict(k)["outcome"]: v for k, v in _samples(env, APPLIES).items() if dict(k)["intent"] == "expand"
    }
    assert outcome == {"rejected": 1.0, "applied": 1.0}
    # a later look at a finished object counts nothing again
    env.run("grow-1")
    assert sum(_samples(env, APPLIES).values()) == 2.0
