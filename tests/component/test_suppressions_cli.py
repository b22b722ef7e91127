"""``superloop-ops fleet suppressions`` and the suppression terms through the runbook CLI (issue 15 part 2).

The commands run on a plain repository directory with the system clock; every date is relative
to now. ``fleet policy`` applies the suppressions that hold now and appends its history rows;
``fleet suppressions`` reads the registry and the last policy state and prints each suppression
with its owner, reason, expiry and what it hid.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.cli_run import CliRun, build_cli_runner
from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import format_ts

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    return build_cli_runner(capsys)


def fleet_dir(repo: Path) -> Path:
    path = repo / ".superloop" / "ops-manager" / "fleet"
    (path / "telemetry").mkdir(parents=True, exist_ok=True)
    return path


def terms(owner: str, starts: dt.timedelta, expires: dt.timedelta) -> dict[str, str]:
    now = SystemClock().now()
    return {
        "owner": owner,
        "reason": f"{owner}'s incident",
        "startsAt": format_ts(now + starts),
        "expiresAt": format_ts(now + expires),
    }


def write_fleet(repo: Path, **policy: Any) -> None:
    registry = {
        "schemaVersion": "v1",
        "fleetId": "fleet-s",
        "loops": [{"loopId": "loop-red"}, {"loopId": "loop-blue"}],
        "policy": {"mode": "advisory", "noiseControls": {"dedupeWindowSeconds": 0}, **policy},
    }
    (fleet_dir(repo) / "registry.v1.json").write_text(json.dumps(registry))
    results = [
        {"loopId": "loop-red", "status": "failed", "healthStatus": "healthy", "traceId": "t-red"},
        {"loopId": "loop-blue", "status": "success", "healthStatus": "degraded", "traceId": "t-blue"},
    ]
    state = {"schemaVersion": "v1", "fleetId": "fleet-s", "traceId": "t", "status": "partial_failure"}
    (fleet_dir(repo) / "state.json").write_text(json.dumps(state | {"results": results}))


def _policy(tmp_path: Path) -> None:
    write_fleet(
        tmp_path,
        suppressions={"loop-red": ["reconcile_failed"], "*": ["health_degraded"]},
        suppressionTerms={
            "loop-red": terms("alice", -HOUR, 2 * HOUR),
            "*": terms("team-fleet", -2 * HOUR, -dt.timedelta(seconds=90)),
        },
        suppressionLimits={"expiringWithinSeconds": 3600},
    )


def test_expired_global_suppression_stops_applying_and_the_view_counts_what_each_hid(
    tmp_path: Path, cli: CliRun
) -> None:
    _policy(tmp_path)
    for _ in range(2):
        code, policy, err = cli("fleet", "policy", "--repo", str(tmp_path))
        assert code == 0, err
    by_loop = {c["loopId"]: c for c in policy["candidates"]}
    assert by_loop["loop-red"]["suppressed"] is True
    assert by_loop["loop-blue"]["suppressed"] is False  # the global entry expired
    assert "fleet_suppressions_expired" in policy["reasonCodes"]
    code, view, err = cli("fleet", "suppressions", "--repo", str(tmp_path))
    assert code == 0, err
    rows = {row["key"]: row for row in view["suppressions"]}
    assert [row["key"] for row in view["suppressions"]] == ["*", "loop-red"]
    red = rows["loop-red"]
    assert (red["owner"], red["reason"], red["state"], red["applies"]) == (
        "alice", "alice's incident", "active", True,
    )  # fmt: skip
    assert red["hiddenSignals"] == {"reconcile_failed": 2}
    assert red["hidingNow"] == {"reconcile_failed": 1}
    assert rows["*"]["state"] == "expired"
    assert rows["*"]["hiddenSignalCount"] == 0


def test_the_table_shows_owner_reason_expires_in_and_what_each_hid(tmp_path: Path, cli: CliRun) -> None:
    _policy(tmp_path)
    cli("fleet", "policy", "--repo", str(tmp_path))
    code, table, err = cli("fleet", "suppressions", "--repo", str(tmp_path), "--table")
    assert code == 0, err
    header, glob, red = table.splitlines()
    assert header.split() == ["KEY", "CATEGORIES", "STATE", "OWNER", "EXPIRES", "IN", "HID", "REASON"]
    assert re.fullmatch(
        r"\*\s+health_degraded\s+expired\s+team-fleet\s+expired 1m\d*s? ago\s+0\s+team-fleet's incident", glob
    )
    assert re.fullmatch(
        r"loop-red\s+reconcile_failed\s+active\s+alice\s+(2h|1h59m)\s+"
        r"1 \(reconcile_failed=1\)\s+alice's incident",
        red,
    )


def test_registry_terms_are_validated_with_the_other_policy_rules(tmp_path: Path, cli: CliRun) -> None:
    write_fleet(
        tmp_path,
        suppressions={"loop-red": ["reconcile_failed"]},
        suppressionTerms={"loop-red": terms("alice", HOUR, HOUR), "loop-blue": terms("bob", -HOUR, HOUR)},
    )
    code, _, err = cli("fleet", "suppressions", "--repo", str(tmp_path))
    assert code == 1
    assert "policy.suppressionTerms.loop-red expiresAt must be after startsAt" in err
    assert "policy.suppressionTerms.loop-blue must name an entry of policy.suppressions" in err


def test_import_registry_carries_terms_and_refuses_suppressions_without_them(
    tmp_path: Path, cli: CliRun
) -> None:
    _policy(tmp_path)
    registry = str(fleet_dir(tmp_path) / "registry.v1.json")
    code, out, err = cli("import-registry", registry)
    assert code == 0, err
    policy = next(doc for doc in yaml.safe_load_all(out) if doc["kind"] == "FleetPolicy")
    assert policy["spec"]["suppressionTerms"]["loop-red"]["owner"] == "alice"
    write_fleet(tmp_path, suppressions={"loop-red": ["reconcile_failed"], "*": []})
    code, _, err = cli("import-registry", registry)
    assert code == 1
    assert "policy.suppressions loop-red, *: a FleetPolicy needs policy.suppressionTerms" in err
