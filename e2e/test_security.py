"""Issue 10 items 1, 2 and 6 on a real control plane: approvals, separation of duties, Secret opt-in.

The chart is installed once with ``admissionPolicy.separationOfDuties=true``; one operator
process (under the chart's ServiceAccount) watches one namespace. alice and bob are real users
of the control plane (token authentication) with the same Role on HandoffIntents, so every
refusal below comes from the chart's admission policies, never from RBAC.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import GROUP, chart_release, create_secret, grant_role
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import condition as _condition
from e2e.operator_harness import loop_eventually as _eventually
from superloop_ops.journal import files

TOKEN = "e2e-security-token"
OPTED_IN, NOT_OPTED_IN = "svc-token", "unlabelled-token"
INTERVAL = 2
APPROVED = f"{GROUP}/approved"
APPROVED_BY = f"{GROUP}/approved-by"
APPROVED_AT = f"{GROUP}/approved-at"
NOTE = f"{GROUP}/note"
CREATED_BY = f"{GROUP}/created-by"


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:6]
    watched = f"e2e-sec-{suffix}"
    sets = [
        f"rbac.secretNames={{{OPTED_IN},{NOT_OPTED_IN}}}",
        "admissionPolicy.separationOfDuties=true",
    ]
    with chart_release(
        cluster, f"sec-{suffix}", f"e2e-secop-{suffix}", (watched,), peering=f"sec-{suffix}", sets=sets
    ) as account:
        tmp = tmp_path_factory.mktemp("security")
        sa = write_service_account_kubeconfig(cluster, f"e2e-secop-{suffix}", account, tmp / "sa.kubeconfig")
        handle = Env(
            cluster=cluster, namespace=watched, workdir=tmp, sa_kubeconfig=sa.path, sprite_token=TOKEN
        )
        handle.mounts.mkdir(parents=True, exist_ok=True)
        create_secret(cluster, watched, OPTED_IN, token=TOKEN)
        create_secret(cluster, watched, NOT_OPTED_IN, opted_in=False, token=TOKEN)
        rules = [
            {
                "apiGroups": [GROUP],
                "resources": ["handoffintents"],
                "verbs": ["get", "list", "create", "patch"],
            },
            {"apiGroups": [GROUP], "resources": ["loops"], "verbs": ["get", "list"]},
        ]
        grant_role(cluster, watched, "intent-editors", rules, timeout=30.0, users=("alice", "bob"))
        try:
            handle.start_operator()
            yield handle
        finally:
            handle.close()


def _local_loop(name: str, loop_id: str) -> dict[str, Any]:
    spec = {
        "loopId": loop_id,
        "transport": "local",
        "source": {"pvc": {"claimName": loop_id}},
        "reconcileIntervalSeconds": INTERVAL,
    }
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Loop", "metadata": {"name": name}, "spec": spec}


def _intent(name: str, loop: str, intent: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "HandoffIntent",
        "metadata": meta,
        "spec": {"loopRef": {"name": loop}, "intent": intent, "note": "e2e"},
    }


def _create(env: Env, doc: dict[str, Any], user: str) -> subprocess.CompletedProcess[str]:
    return env.cluster.kubectl(
        "create", "-n", env.namespace, "-f", "-", input=json.dumps(doc), context=user, check=False
    )


def _annotate(env: Env, name: str, user: str, *changes: str) -> subprocess.CompletedProcess[str]:
    return env.cluster.kubectl(
        "annotate", "--overwrite", f"handoffintents.{GROUP}", name, "-n", env.namespace, *changes,
        context=user, check=False,
    )  # fmt: skip


def _status(env: Env, name: str) -> dict[str, Any]:
    return dict(env.get("handoffintents", name).get("status") or {})


def test_an_approval_cannot_be_replayed_under_another_name(env: Env) -> None:
    """alice approves; the intent fails; bob edits each approval annotation in turn: every edit is
    refused by admission, and the operator never executes the intent a second time."""
    sim = env.simulate("running")  # no approval request pending: an approve fails in the runtime
    env.apply(_local_loop("replay-loop", sim.loop_id))
    env.apply(_intent("replay-me", "replay-loop", "approve"))
    _eventually(
        lambda: _status(env, "replay-me").get("phase") == "pending_operator_confirmation", what="pending"
    )
    approved = env.plugin("approve", "replay-me", "--note", "first", context="alice")
    assert approved.returncode == 0, approved.stderr
    _eventually(
        lambda: _status(env, "replay-me").get("phase") == "execution_failed", timeout=60, what="failed"
    )
    alice, bob = env.cluster.username("alice"), env.cluster.username("bob")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    edits = [
        (f"{APPROVED_AT}={later}",),
        (f"{NOTE}=again",),
        (f"{APPROVED_AT}-",),
        (f"{NOTE}-",),
        (f"{APPROVED}=TRUE",),
        (f"{APPROVED_BY}={env.cluster.username('carol')}",),
    ]
    for edit in edits:
        result = _annotate(env, "replay-me", "bob", *edit)
        assert result.returncode != 0, f"bob's edit {edit} was admitted"
        assert f"approved-by must equal the requesting user {bob}" in result.stderr, result.stderr
    time.sleep(3 * INTERVAL)
    status = _status(env, "replay-me")
    assert status["phase"] == "execution_failed"
    assert status["approvedBy"] == alice
    assert status["result"]["attempt"] == 1
    rows = files.read_jsonl(env.ops_dir(sim.loop_id) / "intents.jsonl")
    assert [row["intent"] for row in rows] == ["approve"]


def test_the_approver_must_differ_from_the_creator(env: Env) -> None:
    """Separation of duties: admission records the creator and refuses their own approval."""
    alice, bob = env.cluster.username("alice"), env.cluster.username("bob")
    sim = env.simulate("awaiting_approval")
    env.apply(_local_loop("sod-loop", sim.loop_id))
    _eventually(
        lambda: env.status("sod-loop").get("lifecycle") == "awaiting_approval", timeout=60, what="awaiting"
    )
    # the creator is recorded by admission, whatever the client claims
    forged = _intent("sod-approve", "sod-loop", "approve", {CREATED_BY: bob})
    assert _create(env, forged, "alice").returncode == 0
    assert env.get("handoffintents", "sod-approve")["metadata"]["annotations"][CREATED_BY] == alice
    # alice may not approve what she created, nor rewrite who created it
    own = env.plugin("approve", "sod-approve", context="alice")
    assert own.returncode != 0
    assert "separation of duties" in own.stderr
    rewritten = _annotate(env, "sod-approve", "alice", f"{CREATED_BY}={bob}")
    assert rewritten.returncode != 0
    assert "created-by is set by admission" in rewritten.stderr
    # nor create an intent that is already approved by herself
    preapproved = _intent("sod-preapproved", "sod-loop", "approve", {APPROVED: "true", APPROVED_BY: alice})
    refused = _create(env, preapproved, "alice")
    assert refused.returncode != 0
    assert "separation of duties" in refused.stderr
    time.sleep(2 * INTERVAL)
    assert _status(env, "sod-approve").get("phase") == "pending_operator_confirmation"
    assert "approval_consumed" not in sim.event_names()
    # bob is another person: his approval executes
    assert env.plugin("approve", "sod-approve", context="bob").returncode == 0
    _eventually(lambda: _status(env, "sod-approve").get("phase") == "executed", timeout=60, what="executed")
    assert _status(env, "sod-approve")["approvedBy"] == bob


def test_a_secret_is_used_only_after_it_opts_in(env: Env) -> None:
    sim = env.simulate("running")
    _, port = env.start_service(sim.repo)
    spec = {
        "loopId": sim.loop_id,
        "transport": "sprite_service",
        "service": {
            "baseUrl": f"http://127.0.0.1:{port}",
            "tokenSecretRef": {"name": NOT_OPTED_IN, "key": "token"},
        },
        "reconcileIntervalSeconds": INTERVAL,
    }
    env.apply(
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Loop", "metadata": {"name": "deputy"}, "spec": spec}
    )

    def refused() -> bool:
        ready = _condition(env.status("deputy"), "Ready") if env.status("deputy").get("conditions") else {}
        return ready.get("status") == "False" and "secret_not_opted_in" in str(ready.get("message"))

    _eventually(refused, timeout=60, what="the Loop blocked on the unlabelled Secret")
    assert env.status("deputy").get("health", {}).get("status") != "healthy"
    env.cluster.kubectl(
        "label", "secret", NOT_OPTED_IN, "-n", env.namespace, "ops.superloop.dev/usable-by=superloop-ops"
    )
    _eventually(
        lambda: (env.status("deputy").get("health") or {}).get("status") == "healthy",
        timeout=90,
        what="the Loop healthy once the Secret opts in",
    )
