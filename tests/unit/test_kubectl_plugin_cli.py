"""kubectl-superloop as kubectl users expect it: flags anywhere, output formats, exit codes,
completion, clean errors (the pure parts; e2e/test_kubectl_plugin.py runs it against a cluster)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from superloop_ops import __version__
from superloop_ops.cli import kubectl_actions, kubectl_completion, kubectl_get, kubectl_plugin

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)


def _loop(
    name: str, *, ready: str = "True", reason: str = "ReconcileSucceeded", **status: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2026-02-22T09:00:00Z"},
        "spec": {"loopId": f"{name}-id", "transport": "local", "suspend": False},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": "all good"}],
            **status,
        },
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["intents", "-n", "team-a", "-A", "-l", "team=a", "--as", "alice", "-o", "json"],
        ["-n", "team-a", "-A", "intents", "-l", "team=a", "--as=alice", "-o", "json"],
        ["--as", "alice", "-o", "json", "-l", "team=a", "-A", "intents", "--namespace=team-a"],
    ],
)
def test_kubectl_flags_work_anywhere_on_the_line(argv: list[str]) -> None:
    args = kubectl_plugin.parse_args(argv)
    assert (args.command, args.namespace, args.all_namespaces) == ("intents", "team-a", True)
    assert (args.selector, args.as_user, args.output) == ("team=a", "alice", "json")


def test_unset_flags_get_kubectls_defaults() -> None:
    args = kubectl_plugin.parse_args(["approve", "hoi-1", "--note", "ok", "--context", "alice"])
    assert (args.command, args.intent, args.note, args.context) == ("approve", "hoi-1", "ok", "alice")
    assert (args.namespace, args.all_namespaces, args.selector, args.output, args.as_groups) == (
        None, False, None, None, [],
    )  # fmt: skip


def test_version_and_help_speak_as_kubectl_superloop(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        kubectl_plugin.parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubectl-superloop {__version__}"
    text = kubectl_plugin.build_parser().format_help()
    assert text.startswith("usage: kubectl superloop")
    for command in (
        "get",
        "status",
        "approve",
        "reject",
        "wait",
        "suspend",
        "resume",
        "reconcile-now",
        "completion",
    ):
        assert command in text
    assert "exit codes" in text


def test_jsonpath_of_printer_columns() -> None:
    loop = _loop("a")
    assert kubectl_get.evaluate_jsonpath(loop, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert kubectl_get.evaluate_jsonpath(loop, '.status.conditions[?(@.type=="Stalled")].status') is None
    assert kubectl_get.evaluate_jsonpath(loop, ".spec.loopId") == "a-id"


def test_table_has_kubectls_columns_and_wide_adds_the_message() -> None:
    info = kubectl_get.resolve_kind("sloop")
    loop = _loop(
        "a", ready="False", reason="SourceNotFound", healthStatus="critical", reasonSummary="ingest_stale, x"
    )
    rows = kubectl_get.render_table(info, [loop], wide=False, all_namespaces=True, now=NOW)
    assert rows[0][:4] == ["NAMESPACE", "NAME", "READY", "STATUS"]
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["READY"], row["STATUS"], row["HEALTH"], row["REASONS"], row["AGE"]) == (
        "False", "SourceNotFound", "critical", "ingest_stale, x", "60m",
    )  # fmt: skip
    assert "MESSAGE" not in rows[0]
    wide = kubectl_get.render_table(info, [loop], wide=True, all_namespaces=False, now=NOW)
    assert dict(zip(wide[0], wide[1], strict=True))["MESSAGE"] == "all good"


def test_output_formats() -> None:
    info = kubectl_get.resolve_kind("loops")
    items = [_loop("a"), _loop("b")]
    listed = json.loads(
        kubectl_get.render(info, items, output="json", single=False, all_namespaces=False, now=NOW)
    )
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    one = yaml.safe_load(
        kubectl_get.render(info, items[:1], output="yaml", single=True, all_namespaces=False, now=NOW)
    )
    assert one["metadata"]["name"] == "a"
    names = kubectl_get.render(info, items, output="name", single=False, all_namespaces=False, now=NOW)
    assert names.splitlines() == ["loop.ops.superloop.dev/a", "loop.ops.superloop.dev/b"]


@pytest.mark.parametrize("name", ["intents", "intent", "hoi", "handoffintent", "HandoffIntent"])
def test_kind_names_resolve(name: str) -> None:
    assert kubectl_get.resolve_kind(name).plural == "handoffintents"


def test_ages_read_like_kubectls() -> None:
    assert kubectl_get.format_age("2026-02-22T09:59:15Z", NOW) == "45s"
    assert kubectl_get.format_age("2026-02-22T07:00:00Z", NOW) == "3h"
    assert kubectl_get.format_age("2026-02-17T10:00:00Z", NOW) == "5d"


def test_status_exit_code_follows_health() -> None:
    code = kubectl_plugin.health_exit_code
    assert code(_loop("a", healthStatus="healthy")) == 0
    assert code(_loop("a", healthStatus="degraded")) == 3
    assert code(_loop("a", healthStatus="critical")) == 4
    assert code(_loop("a", ready="False", healthStatus="healthy")) == 5


def test_wait_outcomes_and_durations() -> None:
    assert kubectl_actions.wait_outcome({}, "executed") is None
    assert kubectl_actions.wait_outcome({"phase": "executing"}, "executed") is None
    assert kubectl_actions.wait_outcome({"phase": "executed"}, "executed") is True
    assert kubectl_actions.wait_outcome({"phase": "execution_failed"}, "executed") is False
    assert kubectl_actions.parse_duration("1m30s") == 90
    assert kubectl_actions.parse_duration("45") == 45
    with pytest.raises(Exception, match="invalid duration"):
        kubectl_actions.parse_duration("soon")


def test_completion_offers_commands_flags_kinds_and_names() -> None:
    parser = kubectl_plugin.build_parser()
    seen: list[tuple[str, str | None]] = []

    def names(kind: str, namespace: str | None) -> list[str]:
        seen.append((kind, namespace))
        return ["alpha", "beta"]

    assert "reconcile-now" in kubectl_completion.candidates(parser, ["re"], names)
    assert kubectl_completion.candidates(parser, ["get", "fl"], names) == ["fleets", "fleetpolicies"]
    assert kubectl_completion.candidates(parser, ["-n", "team-a", "status", "a"], names) == ["alpha"]
    assert seen[-1] == ("loops", "team-a")
    assert kubectl_completion.candidates(parser, ["approve", ""], names) == ["alpha", "beta"]
    assert seen[-1] == ("handoffintents", None)
    assert "--timeout" in kubectl_completion.candidates(parser, ["wait", "x", "--t"], names)
    assert kubectl_completion.candidates(parser, ["get", "loops", "-o", ""], names) == [
        "json",
        "yaml",
        "wide",
        "name",
    ]


def _plugin(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "superloop_ops.cli.kubectl_plugin", *argv],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_missing_kubeconfig_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent"), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = _plugin("get", "loops", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot load a kubeconfig")
    assert len(result.stderr.strip().splitlines()) == 1


def test_completion_script_and_kubectl_completion_protocol(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "absent")}
    script = _plugin("completion", "bash", env=env)
    assert script.returncode == 0
    assert "complete -F _kubectl_superloop kubectl-superloop" in script.stdout
    hook = _plugin("__complete", "get", "lo", env=env)
    assert hook.stdout.splitlines() == ["loops", ":4"]


def test_usage_errors_exit_2() -> None:
    result = _plugin("get", env=dict(os.environ))
    assert result.returncode == 2
