"""Issue 15 on a real control plane: one trail per remediation, and approvals that lapse.

The operator of ``test_fleet_operator`` (its module fixture, one per module: the chart's RBAC
and admission policies, one watched namespace). A stale loop opens a remediation; the advisory
fleet proposes a HandoffIntent carrying its trace id; alice's approval stamped ten minutes ago
lapses (the policy allows 60 s) and is not executed; her fresh approval through the kubectl
plugin is; the next Loop pass shows the effect. ``superloop-ops trail`` then prints every step,
in order, with one trace id, from the operator's journal and the API.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any

from e2e.operator_harness import API
from e2e.operator_harness import FleetEnv as Env
from e2e.operator_harness import condition as _cond
from e2e.operator_harness import fleet_eventually as _eventually
from e2e.test_fleet_operator import _local, env  # noqa: F401  (the module fixture, re-used)
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import owned_names

CLI = [sys.executable, "-m", "superloop_ops.cli.main"]


def _advisory_policy(name: str, max_age: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": "advisory",
            "noiseControls": {"dedupeWindowSeconds": 0},
            "approvals": {"maxAgeSeconds": max_age},
        },
    }


def _fleet(name: str, policy: str, loops: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {"policyRef": {"name": policy}, "loops": loops, "deterministicOrder": True}
    spec["reconcileIntervalSeconds"] = 2
    return {"apiVersion": API, "kind": "Fleet", "metadata": {"name": name}, "spec": spec}


def _trail(handle: Env, target: str, *output: str) -> subprocess.CompletedProcess[str]:
    argv = [
        *CLI, "trail", target, "--state-dir", str(handle.state_dir / handle.namespace),
        "-n", handle.namespace,
        f"--kubeconfig={handle.cluster.kubeconfig}", *handle.cluster.identity_args("admin"), *output,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_remediation_has_one_trail_and_a_stale_approval_lapses(env: Env) -> None:  # noqa: F811
    stale = env.simulate("stale_heartbeat", "tr-stale")
    env.apply(_advisory_policy("tr-policy", 60))
    env.apply(_fleet("tr", "tr-policy", [_local(stale)]))
    loop_name = owned_names.compute_loop_name("tr", stale.loop_id)
    _eventually(
        lambda: (env.status("loops", loop_name).get("remediation") or {}).get("state") == "open",
        timeout=60, what="the Loop's remediation opened",
    )  # fmt: skip
    trace = env.status("loops", loop_name)["remediation"]["traceId"]
    intent = owned_names.compute_intent_name("tr", f"{stale.loop_id}:health_critical:cancel")
    _eventually(lambda: env.exists("handoffintents", intent), timeout=60, what="the proposed HandoffIntent")
    assert env.get("handoffintents", intent)["spec"]["traceId"] == trace
    # alice's approval stamped ten minutes ago: lapsed, not executed
    stamp = format_ts(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10))
    env.cluster.kubectl(
        "annotate", f"handoffintents.ops.superloop.dev/{intent}", "-n", env.namespace, "--overwrite",
        "ops.superloop.dev/approved=true", f"ops.superloop.dev/approved-by={env.cluster.username('alice')}",
        f"ops.superloop.dev/approved-at={stamp}", context="alice",
    )  # fmt: skip
    _eventually(
        lambda: _cond(env.status("handoffintents", intent), "Approved").get("reason") == "ApprovalLapsed",
        timeout=60, what="the lapsed approval",
    )  # fmt: skip
    lapsed = env.status("handoffintents", intent)
    assert lapsed["phase"] == "pending_operator_confirmation"
    assert lapsed["reasonCodes"] == ["approval_lapsed"]
    assert "older than 60s" in _cond(lapsed, "Approved")["message"]
    _eventually(lambda: "ApprovalLapsed" in env.events(intent), what="the ApprovalLapsed Event")
    assert stale.alive
    # a fresh approval executes
    env.approve(intent)
    _eventually(
        lambda: env.status("handoffintents", intent).get("phase") == "executed", timeout=60, what="executed"
    )
    done = env.status("handoffintents", intent)
    assert not stale.alive
    # the Loop passes after the outcome carry the same id until one finds it healthy again
    _eventually(
        lambda: str(env.status("loops", loop_name).get("lastReconcileAt")) > str(done["completedAt"]),
        timeout=60, what="a Loop pass after the execution",
    )  # fmt: skip
    _eventually(
        lambda: env.status("loops", loop_name)["remediation"]["state"] == "resolved",
        timeout=60, what="the remediation resolved (the cancelled run is healthy)",
    )  # fmt: skip
    assert env.status("loops", loop_name)["remediation"]["traceId"] == trace
    # the resolution's Event is posted after the status write seen above (the trail reads Events
    # from the API: taken before it, the trail would gain a step up to the resolution later)
    _eventually(lambda: "RemediationResolved" in env.events(loop_name), what="the RemediationResolved Event")
    # the trail, by Loop, by HandoffIntent and by trace id
    shown = _trail(env, loop_name, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    trail = json.loads(shown.stdout)
    assert trail["traceId"] == trace
    kinds = [step["step"] for step in trail["steps"]]
    order = [
        "health_signal", "alert", "fleet_candidate", "handoff_intent", "approval_lapsed", "approval",
        "execution", "control", "outcome", "effect", "resolved",
    ]  # fmt: skip
    firsts = [kinds.index(k) for k in order if k in kinds]
    assert len(firsts) == len(order), _trail(env, loop_name).stdout
    assert firsts == sorted(firsts), _trail(env, loop_name).stdout
    assert kinds.index("alert") < kinds.index("fleet_candidate")
    assert "event" in kinds  # the HandoffIntent's Events, tagged with the trace id
    moments = [step["at"] for step in trail["steps"]]
    assert moments == sorted(moments)
    # the trail is history: later calls show the same steps up to the resolution (later passes have
    # ids of their own; only a pending intent of this remediation may still add Events)
    upto = kinds.index("resolved") + 1
    for target in (intent, trace):
        again = json.loads(_trail(env, target, "-o", "json").stdout)
        assert again["traceId"] == trace
        assert again["steps"][:upto] == trail["steps"][:upto]
    text = _trail(env, intent)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == f"trace {trace}"
    assert "approved by" in text.stdout
    # kubectl superloop trail: the same trail from the API alone (the Loop's remediation record, the
    # HandoffIntents still there, the Events), and with the journal the same document as the CLI's
    shown = env.plugin("trail", loop_name, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    from_api = json.loads(shown.stdout)
    assert from_api["traceId"] == trace
    api_kinds = [step["step"] for step in from_api["steps"]]
    assert api_kinds[0] == "health_signal"
    assert api_kinds.index("event") < api_kinds.index("resolved")
    assert [step["at"] for step in from_api["steps"]] == sorted(step["at"] for step in from_api["steps"])
    state = str(env.state_dir / env.namespace)
    with_journal = json.loads(env.plugin("trail", trace, "--state-dir", state, "-o", "json").stdout)
    assert with_journal["steps"][:upto] == trail["steps"][:upto]
