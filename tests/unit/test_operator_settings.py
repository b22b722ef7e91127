"""Operator settings: read once from an env mapping, failing closed on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from superloop_ops.errors import InvalidSpecError
from superloop_ops.models import Fleet, Loop, common
from superloop_ops.settings import Settings, build_pvc_dirs, fetch_settings


def test_defaults_from_an_empty_environment() -> None:
    settings = fetch_settings({})
    assert settings == Settings()
    assert settings.state_dir == Path("/var/lib/superloop/state")
    assert settings.metrics_port == 9090
    assert settings.default_reconcile_interval_seconds == 60.0
    assert settings.peering_name == ""
    assert settings.test_pause_after_executing_seconds == 0.0


def test_the_loop_status_refresh_and_the_fleet_recheck_are_separate_settings() -> None:
    """Loop statuses are rewritten only on change by default; Fleets re-check rules that move
    with time every 300 s, whatever the Loop refresh."""
    assert fetch_settings({}).status_refresh_seconds == 0.0
    assert fetch_settings({}).fleet_recheck_seconds == 300.0
    settings = fetch_settings(
        {"SUPERLOOP_STATUS_REFRESH_SECONDS": "3600", "SUPERLOOP_FLEET_RECHECK_SECONDS": "60"}
    )
    assert (settings.status_refresh_seconds, settings.fleet_recheck_seconds) == (3600.0, 60.0)


def test_the_reconcile_interval_default_is_stated_once_in_the_models() -> None:
    """Loop and Fleet specs without an interval, and the operator's fallback, share one default."""
    default = common.DEFAULT_RECONCILE_INTERVAL_SECONDS
    assert default == 60
    loop = Loop.from_body({"spec": {"loopId": "a", "source": {"pvc": {"claimName": "c"}}}})
    fleet = Fleet.from_body({"kind": "Fleet", "spec": {"loops": [{"loopId": "a", "loopRef": {"name": "a"}}]}})
    assert loop.spec.reconcile_interval_seconds == fleet.spec.reconcile_interval_seconds == default
    assert (
        fetch_settings({}).default_reconcile_interval_seconds == Settings().default_reconcile_interval_seconds
    )
    assert Settings().default_reconcile_interval_seconds == float(default)


def test_values_from_the_environment() -> None:
    settings = fetch_settings(
        {
            "SUPERLOOP_STATE_DIR": "/srv/state",
            "SUPERLOOP_PVC_DIRS": "team/claim-a=/data/a, team/claim-b=/data/b,",
            "SUPERLOOP_PVC_MOUNT_ROOT": "/mnt/pvcs",
            "SUPERLOOP_METRICS_PORT": "0",
            "SUPERLOOP_RECONCILE_INTERVAL_SECONDS": "2",
            "SUPERLOOP_NAMESPACES": "a, b",
            "SUPERLOOP_PEERING": "ops",
            "SUPERLOOP_TEST_PAUSE_AFTER_EXECUTING_SECONDS": "1.5",
            "SUPERLOOP_LOOP_PASS_WORKERS": "8",
            "SUPERLOOP_KOPF_WORKER_LIMIT": "16",
            "SUPERLOOP_KOPF_IDLE_SECONDS": "0.5",
            "SUPERLOOP_LIST_CHUNK_SIZE": "50",
            "SUPERLOOP_LOOP_PASS_PROCESSES": "2",
            "SUPERLOOP_LOOP_PASS_PROCESS_MIN_BYTES": "4096",
            "SUPERLOOP_LOOP_PASS_PROCESS_TIMEOUT_SECONDS": "60",
        }
    )
    assert (
        settings.loop_pass_processes,
        settings.loop_pass_process_min_bytes,
        settings.loop_pass_process_timeout_seconds,
    ) == (2, 4096, 60.0)
    assert (settings.loop_pass_workers, settings.kopf_worker_limit) == (8, 16)
    assert (settings.kopf_idle_seconds, settings.list_chunk_size) == (0.5, 50)
    assert settings.pvc_dirs == {("team", "claim-a"): Path("/data/a"), ("team", "claim-b"): Path("/data/b")}
    assert settings.metrics_port == 0
    assert settings.default_reconcile_interval_seconds == 2.0
    assert settings.namespaces == ("a", "b")
    assert settings.namespace_state_dir("team") == Path("/srv/state/team")
    assert settings.resolve_pvc_dir("team", "claim-a") == Path("/data/a")
    assert settings.resolve_pvc_dir("team", "claim-a", "sub/dir") == Path("/data/a/sub/dir")
    assert settings.resolve_pvc_dir("team", "other") == Path("/mnt/pvcs/team/other")
    assert settings.test_pause_after_executing_seconds == 1.5


@pytest.mark.parametrize("sub_path", ["/etc", "../other", "a/../../b"])
def test_sub_path_must_stay_inside_the_claim(sub_path: str) -> None:
    with pytest.raises(InvalidSpecError, match="subPath"):
        Settings().resolve_pvc_dir("team", "claim", sub_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SUPERLOOP_PVC_DIRS": "team/claim-a"}, "namespace/claim=/path"),
        ({"SUPERLOOP_PVC_DIRS": "=/x"}, "namespace/claim=/path"),
        ({"SUPERLOOP_METRICS_PORT": "http"}, "non-negative integer"),
        ({"SUPERLOOP_METRICS_PORT": "70000"}, "out of range"),
        ({"SUPERLOOP_RECONCILE_INTERVAL_SECONDS": "0"}, ">= 1"),
        ({"SUPERLOOP_RECONCILE_INTERVAL_SECONDS": "soon"}, "must be a number"),
        ({"SUPERLOOP_LOOP_PASS_WORKERS": "0"}, "at least 1"),
        ({"SUPERLOOP_KOPF_WORKER_LIMIT": "-3"}, "non-negative integer"),
        ({"SUPERLOOP_KOPF_IDLE_SECONDS": "0"}, ">= 0.1"),
        ({"SUPERLOOP_LOOP_PASS_PROCESSES": "-1"}, "non-negative integer"),
        ({"SUPERLOOP_LOOP_PASS_PROCESS_TIMEOUT_SECONDS": "0.5"}, ">= 1"),
    ],
)
def test_bad_values_fail_closed(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        fetch_settings(env)


def test_pvc_dirs_parser_ignores_blank_entries() -> None:
    assert build_pvc_dirs(" , ,") == {}
