"""GitOps tools judge the operator's objects right: kstatus (Flux's default), Argo CD's health.lua.

Each scenario is a real status from the operator's status builders (``helpers.kind_statuses``).
``helpers.kstatus`` applies the kstatus library's rules for custom resources; Argo CD's check
(gitops/argocd/health.lua) runs in a Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1),
with the object as the global ``obj``, as Argo CD runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.kind_statuses import SCENARIOS, build_object
from helpers.kstatus import compute

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "gitops" / "argocd" / "health.lua"
KUSTOMIZATION = ROOT / "gitops" / "argocd" / "kustomization.yaml"

# scenario -> (kstatus, Argo CD health)
EXPECTED = {
    "loop-converged": ("Current", "Healthy"),
    "loop-degraded": ("Current", "Healthy"),
    "loop-critical": ("Current", "Degraded"),
    "loop-failing": ("Failed", "Degraded"),
    "loop-waiting": ("InProgress", "Progressing"),
    "loop-suspended": ("Current", "Suspended"),
    "loop-new-generation": ("InProgress", "Progressing"),
    "fleet-reconciled": ("Current", "Healthy"),
    "fleet-all-failed": ("Current", "Degraded"),
    "fleet-invalid": ("Failed", "Degraded"),
    "policy-awaiting": ("InProgress", "Progressing"),
    "intent-pending": ("InProgress", "Suspended"),
    "intent-executed": ("Current", "Healthy"),
    "intent-failed": ("Failed", "Degraded"),
    "apply-applied": ("Current", "Healthy"),
    "apply-dry-run": ("Current", "Healthy"),
    "apply-pending": ("InProgress", "Progressing"),
    "apply-rejected": ("Failed", "Degraded"),
}


def _lua(value: Any) -> str:
    """A Python JSON value as a Lua table constructor (JSON arrays become 1-based sequences)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(str(k))}] = {_lua(v)}" for k, v in value.items()) + "}"


def argocd_health(obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    lua = shutil.which("lua5.1")
    assert lua, "lua5.1 missing: scripts/install-tools.sh installs it (Debian's lua5.1)"
    runner = tmp_path / "run.lua"
    runner.write_text(
        f"obj = {_lua(obj)}\n"
        f"local check = assert(loadfile({json.dumps(str(HEALTH_LUA))}))\n"
        "local hs = check()\n"
        'io.write(hs.status, "\\t", hs.message or "")\n'
    )
    result = subprocess.run([lua, str(runner)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\t")
    return status, message


def test_every_scenario_has_an_expectation() -> None:
    assert set(EXPECTED) == set(SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_kstatus_judges_the_objects_right(scenario: str) -> None:
    assert compute(build_object(scenario))[0] == EXPECTED[scenario][0]


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_argocd_health_lua_judges_the_objects_right(scenario: str, tmp_path: Path) -> None:
    status, message = argocd_health(build_object(scenario), tmp_path)
    assert status == EXPECTED[scenario][1], message
    assert message


def test_argocd_messages_say_why(tmp_path: Path) -> None:
    assert argocd_health(build_object("loop-failing"), tmp_path)[1].startswith("TransportUnreachable")
    assert (
        "ingest_stale, runtime_heartbeat_stale" in argocd_health(build_object("loop-critical"), tmp_path)[1]
    )
    pending = argocd_health(build_object("intent-pending"), tmp_path)[1]
    assert pending == "waiting for approval: kubectl superloop approve intent-pending"
    assert argocd_health({"kind": "Loop", "metadata": {"name": "x"}}, tmp_path) == (
        "Progressing", "Waiting for the superloop-ops operator",
    )  # fmt: skip


def test_the_argocd_component_installs_the_check_for_every_kind() -> None:
    component = yaml.safe_load(KUSTOMIZATION.read_text())
    (generator,) = component["configMapGenerator"]
    assert (generator["name"], generator["behavior"]) == ("argocd-cm", "merge")
    keys = {entry.split("=")[0]: entry.split("=")[1] for entry in generator["files"]}
    kinds = {kind for kind, _ in SCENARIOS.values()}
    assert keys == {f"resource.customizations.health.ops.superloop.dev_{k}": "health.lua" for k in kinds}
