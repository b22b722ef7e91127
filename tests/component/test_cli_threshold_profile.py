"""``superloop-ops threshold-profile`` against catalog files (threshold-tuning.bats, resolver part)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _loop_reconcile_helpers import Cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("OPS_MANAGER_THRESHOLD_PROFILES_FILE", raising=False)
    monkeypatch.delenv("OPS_MANAGER_THRESHOLD_PROFILE", raising=False)
    return Cli(capsys)


def test_list_shipped_profiles(cli: Cli) -> None:
    result = cli("threshold-profile", "--list")
    assert result.code == 0
    assert result.stdout.splitlines() == ["balanced", "relaxed", "strict"]


def test_default_is_balanced(cli: Cli) -> None:
    result = cli("threshold-profile")
    assert result.code == 0
    assert result.json["profile"] == "balanced"
    assert result.json["values"]["criticalTransportFailureStreak"] == 4
    assert result.json["sourceFile"].endswith("config/ops-manager-threshold-profiles.v1.json")


def test_unknown_profile_fails(cli: Cli) -> None:
    result = cli("threshold-profile", "--profile", "unknown")
    assert result.code == 1
    assert "unknown threshold profile" in result.stderr


def test_env_selects_catalog_but_not_profile(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "defaultProfile": "calm",
                "profiles": {
                    "calm": {
                        "degradedIngestLagSeconds": 1,
                        "criticalIngestLagSeconds": 2,
                        "degradedTransportFailureStreak": 3,
                        "criticalTransportFailureStreak": 4,
                    }
                },
            }
        )
    )
    monkeypatch.setenv("OPS_MANAGER_THRESHOLD_PROFILES_FILE", str(catalog))
    monkeypatch.setenv("OPS_MANAGER_THRESHOLD_PROFILE", "strict")
    result = cli("threshold-profile", "--pretty")
    assert result.stdout.startswith("{\n")
    assert result.json == {
        "schemaVersion": "v1",
        "sourceFile": str(catalog),
        "profile": "calm",
        "values": {
            "degradedIngestLagSeconds": 1,
            "criticalIngestLagSeconds": 2,
            "degradedTransportFailureStreak": 3,
            "criticalTransportFailureStreak": 4,
        },
    }


def test_missing_and_invalid_catalog(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    result = cli("threshold-profile", "--profiles-file", str(missing))
    assert result.stderr.strip() == f"error: threshold profiles file not found: {missing}"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = cli("threshold-profile", "--profiles-file", str(broken), "--list")
    assert result.stderr.strip() == f"error: invalid threshold profiles JSON: {broken}"
    shape = tmp_path / "shape.json"
    shape.write_text(json.dumps({"schemaVersion": "v1", "profiles": {}}))
    result = cli("threshold-profile", "--profiles-file", str(shape), "--list")
    assert result.stderr.strip() == "error: threshold profiles file has invalid shape"


def test_reconcile_uses_catalog_from_thresholds_file(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"schemaVersion": "v1", "profiles": {"only": {}}}))
    result = cli("reconcile", "--repo", str(repo), "--loop", "demo-loop", "--thresholds-file", str(catalog))
    assert result.stderr.strip() == "error: profile name is required and defaultProfile is missing"
