"""Issue 15 part 2 on a real control plane: suppressions with an owner, a reason and an expiry.

1. Admission: the apiserver refuses a new suppression without terms, terms longer than the
   policy's maximum, and terms that end before they start; a FleetPolicy stored before the rule
   existed keeps its unowned entry through unrelated updates (ratcheting on ``oldSelf``) until
   that entry is changed.
2. Expiry: one operator (the chart's RBAC) runs an advisory Fleet whose stale loop's
   ``health_critical`` is suppressed for about a minute. While it holds, nothing is proposed and
   the FleetPolicy says what it hides and that it expires soon; once it expires, the next pass
   proposes the HandoffIntent, the status says ``expired``, ``SuppressionsExpiring`` turns False
   and one ``SuppressionExpired`` Event is posted. ``superloop-ops fleet suppressions`` reads the
   same journal.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import Cluster
from e2e.operator_harness import API, GROUP, fleet_operator_env
from e2e.operator_harness import FleetEnv as Env
from e2e.operator_harness import condition as _cond
from e2e.operator_harness import fleet_eventually as _eventually
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names

REPO = Path(__file__).resolve().parent.parent
POLICY_CRD = REPO / "crds" / "fleetpolicies.ops.superloop.dev.yaml"
NEEDS_TERMS = "new spec.suppressions entries need spec.suppressionTerms"
TOO_LONG = "spec.suppressionTerms must not exceed suppressionLimits.maxDurationSeconds"
ORDER = "spec.suppressionTerms expiresAt must be after startsAt"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _terms(owner: str, starts_in: float, expires_in: float) -> dict[str, str]:
    now = _now()
    return {
        "owner": owner,
        "reason": f"{owner}: e2e incident",
        "startsAt": format_ts(now + dt.timedelta(seconds=starts_in)),
        "expiresAt": format_ts(now + dt.timedelta(seconds=expires_in)),
    }


def _policy(name: str, suppressions: dict[str, list[str]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": "advisory",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "suppressions": suppressions,
            **spec,
        },
    }


def _apply(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)


def _refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    assert message in result.stderr, f"{message!r} not in:\n{result.stderr}"


# -- 1. admission --------------------------------------------------------------------------------


def test_new_suppressions_need_terms_within_the_maximum(cluster: Cluster, namespace: str) -> None:
    _refused(_apply(cluster, namespace, _policy("no-terms", {"*": ["health_degraded"]})), NEEDS_TERMS)
    day = 86400
    too_long = _policy(
        "too-long", {"*": ["health_degraded"]}, suppressionTerms={"*": _terms("alice", 0, 7 * day + 1)}
    )
    _refused(_apply(cluster, namespace, too_long), TOO_LONG)
    limited = _policy(
        "limited",
        {"*": ["health_degraded"]},
        suppressionTerms={"*": _terms("alice", 0, 3601)},
        suppressionLimits={"maxDurationSeconds": 3600},
    )
    _refused(_apply(cluster, namespace, limited), TOO_LONG)
    backwards = _policy("backwards", {"*": []}, suppressionTerms={"*": _terms("alice", 0, 0)})
    _refused(_apply(cluster, namespace, backwards), ORDER)
    ok = _policy("ok", {"*": ["health_degraded"]}, suppressionTerms={"*": _terms("alice", 0, 7 * day)})
    created = _apply(cluster, namespace, ok)
    assert created.returncode == 0, created.stderr
    stored = json.loads(
        cluster.kubectl("get", f"fleetpolicies.{GROUP}", "ok", "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"]["suppressionLimits"] == {
        "maxDurationSeconds": 604800,
        "expiringWithinSeconds": 86400,
    }


def _crd_without_terms_rule() -> dict[str, Any]:
    crd = yaml.safe_load(POLICY_CRD.read_text())
    old = copy.deepcopy(crd)
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        r for r in spec["x-kubernetes-validations"] if "oldSelf" not in r["rule"]
    ]
    return dict(old)


def _install(cluster: Cluster, crd: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))


@pytest.fixture
def older_policy(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """A FleetPolicy stored before the terms rule existed (an older CRD), with an unowned entry."""
    legacy = _policy("legacy", {"*": ["health_degraded"]})
    _install(cluster, _crd_without_terms_rule())
    try:

        def created() -> bool:
            return _apply(cluster, namespace, legacy).returncode == 0

        _eventually(created, timeout=30, what="the legacy FleetPolicy under the older CRD")
    finally:
        _install(cluster, yaml.safe_load(POLICY_CRD.read_text()))

    def enforced() -> bool:
        probe = _policy(f"probe-{uuid.uuid4().hex[:6]}", {"*": ["health_degraded"]})
        return _apply(cluster, namespace, probe).returncode != 0

    _eventually(enforced, timeout=30, what="the terms rule to be enforced again")
    return legacy


def test_an_older_unowned_entry_survives_unrelated_updates_until_it_is_changed(
    cluster: Cluster, namespace: str, older_policy: dict[str, Any]
) -> None:
    unrelated = copy.deepcopy(older_policy)
    unrelated["spec"]["noiseControls"]["dedupeWindowSeconds"] = 120
    result = _apply(cluster, namespace, unrelated)
    assert result.returncode == 0, result.stderr
    added = copy.deepcopy(unrelated)
    added["spec"]["suppressions"]["other-loop"] = ["health_critical"]
    _refused(_apply(cluster, namespace, added), NEEDS_TERMS)
    changed = copy.deepcopy(unrelated)
    changed["spec"]["suppressions"]["*"] = ["health_degraded", "health_critical"]
    _refused(_apply(cluster, namespace, changed), NEEDS_TERMS)
    owned = copy.deepcopy(changed)
    owned["spec"]["suppressionTerms"] = {"*": _terms("alice", 0, 3600)}
    result = _apply(cluster, namespace, owned)
    assert result.returncode == 0, result.stderr
    dropped = copy.deepcopy(owned)
    del dropped["spec"]["suppressionTerms"]
    _refused(_apply(cluster, namespace, dropped), NEEDS_TERMS)


# -- 2. expiry through the operator --------------------------------------------------------------


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The chart for one watched namespace and one operator watching it."""

    def checks(namespace: str) -> list[tuple[str, ...]]:
        return [("list", "namespaces"), ("create", f"loops.{GROUP}", "-n", namespace)]

    with fleet_operator_env(cluster, tmp_path_factory.mktemp("suppop"), "supp", checks) as handle:
        yield handle


def _rows(env: Env) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in env.status("fleetpolicies", "hush").get("suppressions") or []}


def test_a_suppression_expires_stops_applying_and_says_so(env: Env) -> None:
    stale = env.simulate("stale_heartbeat", "hush-stale")
    policy = _policy(
        "hush",
        {stale.loop_id: ["health_critical"]},
        suppressionTerms={stale.loop_id: _terms("alice", -60, 60)},
        suppressionLimits={"maxDurationSeconds": 3600, "expiringWithinSeconds": 45},
    )
    env.apply(policy)
    env.apply(
        {
            "apiVersion": API,
            "kind": "Fleet",
            "metadata": {"name": "hush"},
            "spec": {
                "policyRef": {"name": "hush"},
                "loops": [
                    {
                        "loopId": stale.loop_id,
                        "transport": "local",
                        "source": {"pvc": {"claimName": stale.loop_id}},
                    }
                ],
                "reconcileIntervalSeconds": 2,
            },
        }
    )
    intent = owned_names.compute_intent_name("hush", f"{stale.loop_id}:health_critical:cancel")

    def hiding() -> bool:
        return _rows(env)[stale.loop_id]["hidingNow"] == {"health_critical": 1}

    _eventually(hiding, timeout=50, what="the suppression hiding the stale loop's health_critical")
    assert not env.exists("handoffintents", intent)
    row = _rows(env)[stale.loop_id]
    assert (row["owner"], row["reason"], row["applies"]) == ("alice", "alice: e2e incident", True)
    assert row["state"] in ("active", "expiring")

    def expiring() -> bool:
        return _cond(env.status("fleetpolicies", "hush"), "SuppressionsExpiring").get("status") == "True"

    _eventually(expiring, timeout=40, what="SuppressionsExpiring=True")
    assert not env.exists("handoffintents", intent)
    cond = _cond(env.status("fleetpolicies", "hush"), "SuppressionsExpiring")
    assert cond["reason"] == "SuppressionsExpiring"
    assert cond["observedGeneration"] == env.get("fleetpolicies", "hush")["metadata"]["generation"]

    _eventually(
        lambda: env.exists("handoffintents", intent), timeout=60, what="the HandoffIntent after expiry"
    )
    assert _now() >= dt.datetime.fromisoformat(policy["spec"]["suppressionTerms"][stale.loop_id]["expiresAt"])
    status = env.status("fleetpolicies", "hush")
    row = _rows(env)[stale.loop_id]
    assert (row["state"], row["applies"]) == ("expired", False)
    assert row["hiddenSignals"]["health_critical"] >= 2
    cond = _cond(status, "SuppressionsExpiring")
    assert (cond["status"], cond["reason"]) == ("False", "SuppressionsExpired")
    assert "fleet_suppressions_expired" in status["reasonCodes"]
    _eventually(
        lambda: "SuppressionExpired" in env.events("hush"), timeout=20, what="the SuppressionExpired Event"
    )
    time.sleep(6)  # several more passes
    assert env.events("hush").count("SuppressionExpired") == 1
    assert env.status("fleets", "hush")["handoff"]["intents"]

    # the runbook CLI reads the same journal
    journal = env.fleet_dir("hush")
    shown = subprocess.run(
        [sys.executable, "-m", "superloop_ops.cli.main", "fleet", "suppressions",
         "--repo", str(env.state_dir), "--registry-file", str(journal / "registry.v1.json"),
         "--policy-state-file", str(journal / "policy-state.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    (listed,) = json.loads(shown.stdout)["suppressions"]
    assert (listed["key"], listed["owner"], listed["state"]) == (stale.loop_id, "alice", "expired")
    assert listed["hiddenSignals"] == row["hiddenSignals"]

    # the kubectl plugin: state recomputed now from the spec, counts from the status
    table = env.plugin("suppressions")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.strip().splitlines()
    assert header.split()[:4] == ["POLICY", "KEY", "CATEGORIES", "STATE"]
    assert line.split()[:5] == ["hush", stale.loop_id, "health_critical", "expired", "alice"]
    assert "alice: e2e incident" in line
    shown_json = env.plugin("suppressions", "hush", "-o", "json")
    assert shown_json.returncode == 0, shown_json.stderr
    (plugin_row,) = json.loads(shown_json.stdout)["suppressions"]
    assert (plugin_row["namespace"], plugin_row["policy"], plugin_row["state"]) == (
        env.namespace,
        "hush",
        "expired",
    )
    assert plugin_row["hiddenSignals"] == row["hiddenSignals"]
