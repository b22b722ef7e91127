"""Issue 15 part 1 on a real control plane: shadow autonomy.

One operator process watches one namespace with the chart's ServiceAccount (the ``env`` fixture of
``test_fleet_operator.py``, instantiated for this module). A FleetPolicy in ``mode: shadow`` over
two critical loops: the guarded path decides (one would-be execution, one held by the run cap),
executes nothing, and records its decisions; a person approves the first proposal and declines
the second; the agreement figures appear in the FleetPolicy status, and a PromotionApply's gate
report carries the shadow_agreement gate.
"""

from __future__ import annotations

import json
import time
from typing import Any

from e2e.operator_harness import API, GROUP
from e2e.operator_harness import FleetEnv as Env
from e2e.operator_harness import fleet_eventually as _eventually
from e2e.test_fleet_operator import env  # noqa: F401  (the fixture, instantiated for this module)
from superloop_ops.core.fleet import owned_names
from superloop_ops.journal import files


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": "sh-policy"},
        "spec": {
            "mode": "shadow",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "autonomous": {
                "allow": {"categories": ["health_critical"], "intents": ["cancel"]},
                "safety": {"maxActionsPerRun": 1, "maxActionsPerLoop": 1, "cooldownSeconds": 0},
                "shadow": {"matchWindowSeconds": 300, "minAgreementRate": 0.5, "minSampleSize": 2},
            },
        },
    }


def _fleet(loop_ids: list[str]) -> dict[str, Any]:
    loops = [
        {"loopId": loop_id, "transport": "local", "source": {"pvc": {"claimName": loop_id}}}
        for loop_id in loop_ids
    ]
    spec = {
        "policyRef": {"name": "sh-policy"},
        "loops": loops,
        "deterministicOrder": True,
        "reconcileIntervalSeconds": 2,
    }
    return {"apiVersion": API, "kind": "Fleet", "metadata": {"name": "sh"}, "spec": spec}


def _critical(fleet: Env) -> dict[str, Any]:
    agreement: dict[str, Any] = fleet.status("fleetpolicies", "sh-policy")["shadow"]["agreement"]
    return dict(agreement["byReasonCode"].get("health_critical") or {})


def test_shadow_mode_executes_nothing_and_measures_agreement_with_people(env: Env) -> None:  # noqa: F811
    first, second = env.simulate("stale_heartbeat", "sh-a"), env.simulate("stale_heartbeat", "sh-b")
    env.apply(_policy())
    env.apply(_fleet([first.loop_id, second.loop_id]))
    intents = [
        owned_names.compute_intent_name("sh", f"{sim.loop_id}:health_critical:cancel")
        for sim in (first, second)
    ]
    _eventually(lambda: all(env.exists("handoffintents", n) for n in intents), timeout=90, what="proposals")
    _eventually(lambda: _critical(env).get("pending") == 2, timeout=60, what="two open shadow decisions")
    policy = env.status("fleetpolicies", "sh-policy")
    assert policy["mode"] == "shadow"
    assert {"fleet_shadow_mode", "fleet_shadow_would_execute"} <= set(policy["reasonCodes"])
    recent = {
        d["loopId"]: d for d in policy["shadow"]["agreement"]["recent"] if d["category"] == "health_critical"
    }
    assert (recent[first.loop_id]["decision"], recent[first.loop_id]["reasons"]) == ("execute", [])
    assert (recent[second.loop_id]["decision"], recent[second.loop_id]["reasons"]) == (
        "hold",
        ["autonomous_max_actions_per_run_exceeded"],
    )
    # several passes later nothing has executed: both loops run, both proposals wait for a person
    time.sleep(6)
    assert first.alive
    assert second.alive
    assert all(
        env.status("handoffintents", n).get("phase") in (None, "pending_operator_confirmation")
        for n in intents
    )
    listed = env.status("fleets", "sh")["handoff"]["intents"]
    assert all(not i["eligible"] and "policy_mode_shadow" in i["reasons"] for i in listed)
    handoff_rows = files.read_jsonl(env.fleet_dir("sh") / "telemetry" / "handoff.jsonl")
    assert not [r for r in handoff_rows if r.get("category") == "fleet_handoff_execute"]

    # people act: approve the proposal shadow would have executed, decline the one it held;
    # declines are attributable, like approvals (the chart's admission policy)
    env.approve(intents[0])
    refused = env.cluster.kubectl(
        "annotate", f"handoffintents.{GROUP}", intents[1], "-n", env.namespace,
        "ops.superloop.dev/declined=true", "ops.superloop.dev/declined-by=bob", context="alice", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "ops.superloop.dev/declined-by must equal the requesting user alice" in refused.stderr
    declined = env.plugin("decline", intents[1], context="alice")  # kubectl superloop decline
    assert declined.returncode == 0, declined.stderr
    assert f"handoffintent/{intents[1]} declined by alice" in declined.stdout
    annotations = env.get("handoffintents", intents[1])["metadata"]["annotations"]
    assert annotations["ops.superloop.dev/declined-by"] == "alice"
    _eventually(lambda: _critical(env).get("resolved") == 2, timeout=60, what="both decisions resolved")
    agreement = env.status("fleetpolicies", "sh-policy")["shadow"]["agreement"]
    critical = _critical(env)
    assert {k: critical[k] for k in ("resolved", "agreed", "disagreed", "agreementRate")} == {
        "resolved": 2, "agreed": 2, "disagreed": 0, "agreementRate": 1,
    }  # fmt: skip
    assert agreement["byDecision"]["execute"]["approved"] == 1
    assert agreement["byDecision"]["hold"]["rejected"] == 1
    assert not first.alive  # the person's approval executed (manual), not shadow
    # the plugin's fleet view carries the same figures
    shown = env.plugin("fleet", "sh")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)["policy"]
    assert (view["mode"], view["shadow"]["agreement"]["byReasonCode"]["health_critical"]["resolved"]) == (
        "shadow",
        2,
    )
    rows = files.read_jsonl(env.fleet_dir("sh") / "telemetry" / "shadow.jsonl")
    resolved = {r["human"]: r for r in rows if r["category"] == "fleet_shadow_resolution"}
    assert set(resolved) == {"approved", "rejected"}
    assert (resolved["approved"]["humanIntent"], resolved["approved"]["humanBy"]) == (intents[0], "alice")
    assert (resolved["rejected"]["humanIntent"], resolved["rejected"]["humanBy"]) == (intents[1], "alice")

    # the gate report of a PromotionApply carries shadow_agreement (the apply itself needs guarded_auto)
    env.apply(
        {
            "apiVersion": API,
            "kind": "PromotionApply",
            "metadata": {"name": "sh-expand"},
            "spec": {
                "fleetRef": {"name": "sh"},
                "intent": "expand",
                "governance": {
                    "by": "ops-user",
                    "approvalRef": "CAB-15",
                    "rationale": "e2e shadow",
                    "reviewWithinDays": 7,
                },
                "dryRun": True,
            },
        }
    )
    _eventually(
        lambda: (
            env.exists("promotionapplies", "sh-expand")
            and env.status("promotionapplies", "sh-expand").get("phase") == "rejected"
        ),
        timeout=60,
        what="the PromotionApply evaluated",
    )
    report = files.read_json(env.fleet_dir("sh") / "promotion-state.json")
    assert isinstance(report, dict)
    gate = report["gates"]["shadowAgreement"]
    assert (gate["status"], gate["minAgreementRate"], gate["minSampleSize"]) == ("pass", 0.5, 2)
    assert gate["resolved"] >= 2
    assert "shadow_agreement" not in report["summary"]["failedGates"]
    assert "governance" in report["summary"]["failedGates"]
