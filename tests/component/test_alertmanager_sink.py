"""The ``alertmanager`` sink type: escalations POSTed to Alertmanager's API v2 ``/api/v2/alerts``.

The receiver here is a real HTTP server on 127.0.0.1 that checks each request against the v2
API's ``postableAlerts`` schema (a JSON array; each alert with a non-empty ``labels`` map of
label-name -> string, an ``annotations`` map of strings, RFC 3339 ``startsAt``/``endsAt``, an
optional ``generatorURL``) and answers 400 as Alertmanager does when it does not hold.
e2e/test_alertmanager.py sends to a real Alertmanager binary.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.clock import FrozenClock
from superloop_ops.core.alerts import sink_catalog
from superloop_ops.engine.alerts import alert_delivery

LOOP = "demo-loop"
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def schema_problems(body: Any) -> list[str]:
    """Why ``body`` is not a valid ``postableAlerts`` document (empty when it is)."""
    if not isinstance(body, list) or not body:
        return ["body must be a non-empty array of alerts"]
    problems = []
    for i, alert in enumerate(body):
        if not isinstance(alert, dict):
            problems.append(f"[{i}] not an object")
            continue
        unknown = set(alert) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        labels = alert.get("labels")
        if unknown:
            problems.append(f"[{i}] unknown fields {sorted(unknown)}")
        if not isinstance(labels, dict) or not labels:
            problems.append(f"[{i}].labels must be a non-empty map")
        else:
            problems += [
                f"[{i}].labels.{k}"
                for k, v in labels.items()
                if not _LABEL.match(k) or not isinstance(v, str)
            ]
        annotations = alert.get("annotations", {})
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            problems.append(f"[{i}].annotations must map to strings")
        for key in ("startsAt", "endsAt"):
            if key in alert and not (isinstance(alert[key], str) and _RFC3339.match(alert[key])):
                problems.append(f"[{i}].{key} is not a date-time")
    return problems


class _Alertmanager(http.server.ThreadingHTTPServer):
    received: list[Any]


@pytest.fixture
def receiver() -> Iterator[_Alertmanager]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            problems = schema_problems(body) if self.path == "/api/v2/alerts" else [f"no route {self.path}"]
            if not problems:
                server.received.append({"body": body, "auth": self.headers.get("Authorization")})
            payload = json.dumps(problems).encode()
            self.send_response(400 if problems else 200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    server = _Alertmanager(("127.0.0.1", 0), Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def write_catalog(path: Path, **sink: Any) -> Path:
    entry = {"enabled": True, "type": "alertmanager", "urlEnv": "T_AM_URL", "timeoutSeconds": 5, **sink}
    path.write_text(
        json.dumps(
            {
                "schemaVersion": "v1",
                "defaultMinSeverity": "warning",
                "sinks": {"am": entry},
                "routing": {
                    "defaultSinks": ["am"],
                    "categorySeverity": {"health_critical": "critical"},
                    "routes": [{"category": "health_critical", "sinks": ["am"], "minSeverity": "critical"}],
                },
            }
        )
    )
    return path


def dispatch(
    tmp_path: Path, url: str, now: dt.datetime, escalated_at: dt.datetime, **sink: Any
) -> dict[str, Any]:
    ops = tmp_path / ".superloop" / "ops-manager" / LOOP
    ops.mkdir(parents=True, exist_ok=True)
    row = {
        "timestamp": escalated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loopId": LOOP,
        "traceId": "trace-esc-1",
        "category": "health_critical",
        "reasonCodes": ["transport_unreachable"],
    }
    with (ops / "escalations.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    dispatcher = alert_delivery.AlertDispatcher(
        paths=alert_delivery.DispatchPaths.for_loop(tmp_path, LOOP),
        loop_id=LOOP,
        trace_id="trace-run",
        catalog_path=str(write_catalog(tmp_path / "sinks.json", **sink)),
        secrets={"T_AM_URL": url, "T_AM_TOKEN": "am-token-1"},
        settings=alert_delivery.DispatchSettings(retries=0),
        now=FrozenClock(now).now,
        sleep=lambda _: None,
    )
    return dispatcher.run()


def test_escalation_is_a_valid_v2_alert_that_resolves_at_ends_at(
    tmp_path: Path, receiver: _Alertmanager
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/"
    state = dispatch(
        tmp_path, url, now, now - dt.timedelta(minutes=1),
        authTokenEnv="T_AM_TOKEN", labels={"team": "infra"}, resolveAfterSeconds=600,
    )  # fmt: skip
    assert (state["status"], state["dispatchedCount"]) == ("success", 1)
    (request,) = receiver.received
    assert request["auth"] == "Bearer am-token-1"
    (alert,) = request["body"]
    assert alert["labels"] == {
        "alertname": "SuperloopLoopEscalation",
        "category": "health_critical",
        "severity": "critical",
        "loop_id": LOOP,
        "sink": "am",
        "team": "infra",
    }
    starts = dt.datetime.fromisoformat(alert["startsAt"])
    ends = dt.datetime.fromisoformat(alert["endsAt"])
    assert starts == now - dt.timedelta(minutes=1)
    assert ends == now + dt.timedelta(seconds=600)
    assert json.loads(alert["annotations"]["escalation"])["traceId"] == "trace-esc-1"


def test_a_rejected_alert_is_an_http_error(tmp_path: Path, receiver: _Alertmanager) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/wrong-prefix"
    state = dispatch(tmp_path, url, now, now)
    assert state["status"] != "success"
    assert not receiver.received


def test_the_catalog_checks_alertmanager_sinks() -> None:
    def catalog(**sink: Any) -> dict[str, Any]:
        entry = {"enabled": True, "type": "alertmanager", "urlEnv": "AM_URL", **sink}
        return {
            "schemaVersion": "v1",
            "defaultMinSeverity": "warning",
            "sinks": {"am": entry},
            "routing": {"defaultSinks": ["am"], "categorySeverity": {}, "routes": []},
        }

    built = sink_catalog.build_sink_catalog(catalog(labels={"team": "a"}))
    (sink,) = built.sinks
    assert sink.secret_env_names == ["AM_URL"]
    assert sink.config["resolveAfterSeconds"] == sink_catalog.DEFAULT_RESOLVE_AFTER_SECONDS
    for bad in ({"labels": {"bad-label": "x"}}, {"resolveAfterSeconds": 5}, {"urlEnv": "not an env"}):
        with pytest.raises(Exception, match="sink definitions are invalid"):
            sink_catalog.build_sink_catalog(catalog(**bad))


def test_the_schema_check_rejects_what_alertmanager_rejects() -> None:
    assert schema_problems({"labels": {}}) == ["body must be a non-empty array of alerts"]
    assert schema_problems([{"labels": {}}]) == ["[0].labels must be a non-empty map"]
    assert schema_problems([{"labels": {"a": "b"}, "endsAt": "tomorrow"}]) == [
        "[0].endsAt is not a date-time"
    ]
