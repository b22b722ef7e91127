"""Issue 12 on a real control plane: two operator shards (``SUPERLOOP_SHARD=i/2``) in one namespace.

Shard 1 asks the API server for the Loops labelled ``ops.superloop.dev/shard=1`` only; shard 0
watches every Loop and labels those without a shard label with the shard their hash names. So a
Loop nobody labelled stays invisible to shard 1 until shard 0 runs, then it is reconciled by
exactly one shard; a Loop pinned by its label stays where the label says. Each shard has its own
state directory, as each shard's Deployment has its own state claim.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness.cluster import Cluster
from e2e.operator_harness import GROUP, Operator
from e2e.operator_harness import LoopEnv as Env
from e2e.operator_harness import loop_eventually as _eventually
from superloop_ops.core.common.shards import SHARD_LABEL, compute_shard_of

INTERVAL = 2
PASS_GAUGE = "superloop_ops_loop_last_pass_timestamp_seconds"


@pytest.fixture
def env(cluster: Cluster, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("shards")
    handle = Env(cluster=cluster, namespace=namespace, workdir=workdir, sa_kubeconfig=cluster.kubeconfig)
    handle.mounts.mkdir(parents=True, exist_ok=True)
    try:
        yield handle
    finally:
        handle.close()


def _start_shard(env: Env, index: int) -> Operator:
    return env.start_operator(
        SUPERLOOP_SHARD=f"{index}/2", SUPERLOOP_STATE_DIR=str(env.workdir / f"state-{index}")
    )


def _name_in_shard(namespace: str, shard: int, prefix: str) -> str:
    for _ in range(200):
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        if compute_shard_of(namespace, name, None, 2) == shard:
            return name
    raise AssertionError("no name hashed into the shard")


def _loop(env: Env, shard_of_hash: int, prefix: str, labels: dict[str, str] | None = None) -> str:
    """A local Loop over a fresh simulated repository (loop id ``<prefix>-1``), named so that its
    hash picks that shard."""
    sim = env.simulate("running", prefix=prefix)
    name = _name_in_shard(env.namespace, shard_of_hash, prefix)
    env.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Loop",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "loopId": sim.loop_id,
                "transport": "local",
                "source": {"pvc": {"claimName": sim.loop_id}},
                "reconcileIntervalSeconds": INTERVAL,
            },
        }
    )
    return name


def _passed_loops(operator: Operator) -> set[str]:
    """The Loops this operator process has passed (its per-Loop last-pass gauge)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        sample.labels["loop"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == PASS_GAUGE
    }


def _label(env: Env, name: str) -> Any:
    return ((env.get("loops", name).get("metadata") or {}).get("labels") or {}).get(SHARD_LABEL)


def test_shard_one_watches_only_its_labelled_loops_and_shard_zero_labels_the_rest(env: Env) -> None:
    shard1 = _start_shard(env, 1)
    unlabelled = _loop(env, 1, "hashed-one")
    # Shard 1 alone: the API server does not send it an unlabelled Loop, so nothing reconciles it.
    time.sleep(3 * INTERVAL + 2)
    assert "lifecycle" not in env.status(unlabelled)
    assert unlabelled not in _passed_loops(shard1)

    shard0 = _start_shard(env, 0)
    _eventually(
        lambda: _label(env, unlabelled) == "1", timeout=30, what="shard 0 labels the Loop for shard 1"
    )
    _eventually(lambda: env.status(unlabelled).get("lifecycle"), timeout=30, what="shard 1 reconciles it")
    hashed_zero = _loop(env, 0, "hashed-zero")
    pinned_zero = _loop(env, 1, "pinned-zero", labels={SHARD_LABEL: "0"})  # its hash names shard 1
    for name in (hashed_zero, pinned_zero):
        _eventually(
            lambda name=name: env.status(name).get("lifecycle"), timeout=30, what=f"{name} reconciled"
        )
    assert _label(env, hashed_zero) == "0"
    assert _label(env, pinned_zero) == "0"

    _eventually(
        lambda: unlabelled in _passed_loops(shard1) and {hashed_zero, pinned_zero} <= _passed_loops(shard0),
        timeout=30,
        what="each Loop passed by its shard",
    )
    # exactly one shard passes each Loop
    assert _passed_loops(shard1) == {unlabelled}
    assert unlabelled not in _passed_loops(shard0)
    # the watch feeds (scheduler, shard labels) run on every Loop event without a log line each
    for operator in (shard0, shard1):
        assert "Handler 'on_loop_event' succeeded" not in operator.output()
        assert "Handler 'label_loop_shard' succeeded" not in operator.output()
    # each shard journals in its own state directory
    assert list((env.workdir / "state-1").rglob("hashed-one-1"))
    assert not list((env.workdir / "state-0").rglob("hashed-one-1"))
    assert list((env.workdir / "state-0").rglob("pinned-zero-1"))
