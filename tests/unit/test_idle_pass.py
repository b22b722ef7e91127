"""When a periodic Loop pass may be skipped (core.idle_pass)."""

from __future__ import annotations

import datetime as dt

from superloop_ops.core.loop.idle_pass import IdleMemo, compute_next_due, is_idle
from superloop_ops.settings import fetch_settings

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)
THRESHOLDS = {
    "degradedIngestLagSeconds": 300,
    "criticalIngestLagSeconds": 900,
    "degradedHeartbeatLagSeconds": 120,
    "criticalHeartbeatLagSeconds": 300,
}
STAMPS = (("/r/events.jsonl", (10, 1, 7)), ("/r/approval.json", None))


def _status(ingest: float, heartbeat: float) -> dict[str, object]:
    return {
        "health": {
            "metrics": {"ingestLagSeconds": ingest, "heartbeatLagSeconds": heartbeat},
            "thresholds": THRESHOLDS,
        }
    }


def test_next_due_is_the_first_threshold_an_ageing_lag_reaches() -> None:
    due = compute_next_due(_status(ingest=10, heartbeat=100), now=NOW, refresh_seconds=300)
    assert due == NOW + dt.timedelta(seconds=21)  # heartbeat reaches 120 s after 20 s, one past it


def test_next_due_skips_crossed_thresholds_and_falls_back_to_the_refresh() -> None:
    past_all = _status(ingest=1000, heartbeat=1000)
    assert compute_next_due(past_all, now=NOW, refresh_seconds=300) == NOW + dt.timedelta(seconds=300)
    degraded = _status(ingest=1000, heartbeat=200)
    assert compute_next_due(degraded, now=NOW, refresh_seconds=300) == NOW + dt.timedelta(seconds=101)
    assert compute_next_due({}, now=NOW, refresh_seconds=60) == NOW + dt.timedelta(seconds=60)


def test_idle_only_when_nothing_read_changed_and_nothing_is_due() -> None:
    memo = IdleMemo(generation=2, replay_request=None, stamps=STAMPS, due=NOW + dt.timedelta(seconds=30))
    same = {"generation": 2, "replay_request": None, "stamps": STAMPS}
    assert is_idle(memo, **same, now=NOW)  # type: ignore[arg-type]
    assert not is_idle(None, **same, now=NOW)  # type: ignore[arg-type]
    assert not is_idle(memo, **same, now=NOW + dt.timedelta(seconds=30))  # type: ignore[arg-type]
    assert not is_idle(memo, generation=3, replay_request=None, stamps=STAMPS, now=NOW)
    assert not is_idle(memo, generation=2, replay_request="from-start@x", stamps=STAMPS, now=NOW)
    appended = (("/r/events.jsonl", (20, 2, 7)), ("/r/approval.json", None))
    assert not is_idle(memo, generation=2, replay_request=None, stamps=appended, now=NOW)
    created = (("/r/events.jsonl", (10, 1, 7)), ("/r/approval.json", (5, 3, 9)))
    assert not is_idle(memo, generation=2, replay_request=None, stamps=created, now=NOW)


def test_liveness_lag_of_a_running_run_and_an_approval_wait_age_toward_their_thresholds() -> None:
    """Since issue 11 a running run's staleness is judged on livenessLagSeconds (against the
    ingest thresholds), and an approval wait ages toward its reminder threshold: both make a
    full pass due when they cross, as the other lags do."""
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    status = {
        "health": {
            "metrics": {"livenessLagSeconds": 100, "ingestLagSeconds": None},
            "thresholds": {"degradedIngestLagSeconds": 300, "criticalIngestLagSeconds": 900},
        }
    }
    due = compute_next_due(status, now=now, refresh_seconds=3600)
    assert due == now + dt.timedelta(seconds=201)
    waiting = {
        "health": {
            "metrics": {},
            "thresholds": {},
            "reasons": [
                {
                    "code": "approval_waiting",
                    "severity": "info",
                    "metric": "approvalWaitSeconds",
                    "observed": "50",
                    "threshold": "600",
                },
            ],
        }
    }
    assert compute_next_due(waiting, now=now, refresh_seconds=3600) == now + dt.timedelta(seconds=551)


def test_by_default_an_idle_loop_past_every_threshold_is_never_due_again() -> None:
    """At 10,000 Loops a status refresh every 300 s was 900 of 1,833 status PATCHes an interval:
    by default, only a change or a threshold still ahead brings a full pass back."""
    refresh = fetch_settings({}).status_refresh_seconds
    assert compute_next_due(_status(ingest=1000, heartbeat=1000), now=NOW, refresh_seconds=refresh) is None
    memo = IdleMemo(generation=1, replay_request=None, stamps=STAMPS, due=None)
    a_week_later = NOW + dt.timedelta(days=7)
    assert is_idle(memo, generation=1, replay_request=None, stamps=STAMPS, now=a_week_later)
    assert not is_idle(memo, generation=2, replay_request=None, stamps=STAMPS, now=a_week_later)
    # a threshold still ahead is due whatever the refresh
    due = compute_next_due(_status(ingest=10, heartbeat=100), now=NOW, refresh_seconds=refresh)
    assert due == NOW + dt.timedelta(seconds=21)
