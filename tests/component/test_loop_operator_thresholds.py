"""The operator's threshold catalog: the one the chart mounts under ``SUPERLOOP_CONFIG_DIR``
replaces the shipped default; ``OPS_MANAGER_THRESHOLD_PROFILES_FILE`` still wins, and without a
mounted catalog the shipped one applies. Real files, and a real reconcile pass of a local Loop."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import LOOP, isolate_cli_env, read_json, write_runtime_artifacts

from superloop_ops.clock import FrozenClock
from superloop_ops.controllers import loop_controller
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.engine.loop import threshold_files
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings

NS = "team-a"
CLAIM = "loop-pvc"
SITE_CATALOG = {
    "schemaVersion": "v1",
    "defaultProfile": "site",
    "profiles": {
        "site": {
            "degradedIngestLagSeconds": 4321,
            "criticalIngestLagSeconds": 8765,
            "degradedTransportFailureStreak": 5,
            "criticalTransportFailureStreak": 9,
            "description": "only in the mounted catalog",
        },
        "site-strict": {
            "degradedIngestLagSeconds": 11,
            "criticalIngestLagSeconds": 22,
            "degradedTransportFailureStreak": 1,
            "criticalTransportFailureStreak": 2,
            "description": "only in the mounted catalog, selected by name",
        },
    },
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def _mount_catalog(config_dir: Path, catalog: dict[str, Any]) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / threshold_files.CATALOG_FILENAME
    path.write_text(json.dumps(catalog), encoding="utf-8")
    return path


def _settings(tmp_path: Path, config_dir: Path | None) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        pvc_dirs={(NS, CLAIM): tmp_path / "pvc"},
        pvc_mount_root=tmp_path / "mounts",
        config_dir=config_dir,
    )


def _loop(**thresholds: Any) -> Loop:
    spec: dict[str, Any] = {"loopId": LOOP, "transport": "local", "source": {"pvc": {"claimName": CLAIM}}}
    if thresholds:
        spec["thresholds"] = thresholds
    return Loop.from_body({"metadata": {"name": "l1", "namespace": NS}, "spec": spec})


def _target(tmp_path: Path, config_dir: Path | None) -> loop_controller.LoopTarget:
    (tmp_path / "pvc").mkdir(exist_ok=True)
    return loop_controller.build_loop_target(_loop(), NS, "l1", _settings(tmp_path, config_dir))


def test_mounted_catalog_replaces_the_shipped_default(tmp_path: Path) -> None:
    mounted = _mount_catalog(tmp_path / "config", SITE_CATALOG)
    target = _target(tmp_path, tmp_path / "config")
    assert target.threshold_catalog == str(mounted)
    options = loop_controller.build_reconcile_options(_loop(), target, token=None, from_start=False)
    assert options.thresholds_file == mounted
    assert options.thresholds.profile == "site"
    assert options.thresholds.degraded_ingest_lag_seconds == 4321
    assert options.thresholds.critical_ingest_lag_seconds == 8765
    assert options.thresholds.degraded_transport_failure_streak == 5
    assert options.thresholds.critical_transport_failure_streak == 9


def test_a_profile_only_the_mounted_catalog_has_is_selectable(tmp_path: Path) -> None:
    _mount_catalog(tmp_path / "config", SITE_CATALOG)
    loop = _loop(profile="site-strict")
    target = _target(tmp_path, tmp_path / "config")
    options = loop_controller.build_reconcile_options(loop, target, token=None, from_start=False)
    assert options.thresholds.profile == "site-strict"
    assert options.thresholds.degraded_ingest_lag_seconds == 11
    assert options.thresholds.critical_transport_failure_streak == 2


def test_without_config_dir_or_mounted_file_the_shipped_catalog_applies(tmp_path: Path) -> None:
    shipped = str(threshold_files.default_catalog_path())
    assert _target(tmp_path, None).threshold_catalog == shipped
    (tmp_path / "empty-config").mkdir()
    target = _target(tmp_path, tmp_path / "empty-config")
    assert target.threshold_catalog == shipped
    options = loop_controller.build_reconcile_options(_loop(), target, token=None, from_start=False)
    assert options.thresholds.profile == "balanced"
    assert options.thresholds.degraded_ingest_lag_seconds == 300


def test_the_profiles_file_env_still_wins_over_the_mounted_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mount_catalog(tmp_path / "config", SITE_CATALOG)
    explicit = _mount_catalog(tmp_path / "explicit", {**SITE_CATALOG, "defaultProfile": "site-strict"})
    monkeypatch.setenv(threshold_files.PROFILES_FILE_ENV, str(explicit))
    assert _target(tmp_path, tmp_path / "config").threshold_catalog == str(explicit)
    assert loop_controller.compute_threshold_catalog_path(tmp_path / "config", env={}) == str(
        tmp_path / "config" / threshold_files.CATALOG_FILENAME
    )


def test_an_invalid_mounted_catalog_fails_the_spec_closed(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / threshold_files.CATALOG_FILENAME).write_text("{not json", encoding="utf-8")
    target = _target(tmp_path, config_dir)
    with pytest.raises(InvalidSpecError, match="invalid threshold profiles JSON"):
        loop_controller.build_reconcile_options(_loop(), target, token=None, from_start=False)


def test_a_reconcile_pass_records_the_mounted_thresholds_in_health(tmp_path: Path) -> None:
    _mount_catalog(tmp_path / "config", SITE_CATALOG)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    target = _target(tmp_path, tmp_path / "config")
    write_runtime_artifacts(target.repo, format_ts(now - dt.timedelta(seconds=30)))
    view, result = loop_controller.run_loop_pass(
        _loop(),
        target,
        token=None,
        replay_token=None,
        replay_pending=False,
        clock=FrozenClock(now),
    )
    assert result.ingest_ok
    health = read_json(target.ops_dir / "health.json")
    assert health["thresholds"]["profile"] == "site"
    assert health["thresholds"]["degradedIngestLagSeconds"] == 4321
    assert health["thresholds"]["criticalTransportFailureStreak"] == 9
    assert view.outcome == "success"
