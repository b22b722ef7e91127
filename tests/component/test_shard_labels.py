"""Shard 0 labels Loops and HandoffIntents for their shard's server-side-filtered watch
(``handlers.shard_labels``), against the in-memory API server."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from helpers.operator_fakes import FakeEdge, build_context, build_frozen_clock
from superloop_ops.core.common.shards import SHARD_LABEL, Shard, compute_shard_of
from superloop_ops.handlers.shard_labels import label_intent_shard, label_loop_shard, stamps_shards


def _memo(tmp_path: Path, edge: FakeEdge, shard: Shard) -> types.SimpleNamespace:
    ctx = build_context(
        tmp_path, edge, build_frozen_clock(), {}, control_confirm_timeout_seconds=5, shard=shard
    )
    return types.SimpleNamespace(operator=ctx)


def test_shard_zero_labels_loops_and_intents_after_their_loop(tmp_path: Path) -> None:
    edge = FakeEdge("ns")
    memo = _memo(tmp_path, edge, Shard(0, 3))
    loop = {"metadata": {"namespace": "ns", "name": "a", "labels": {}}}
    assert stamps_shards(loop, memo)
    patch: dict[str, Any] = {}
    label_loop_shard(loop, patch, memo)  # type: ignore[arg-type]
    assert patch == {"metadata": {"labels": {SHARD_LABEL: str(compute_shard_of("ns", "a", None, 3))}}}
    # an intent of a pinned Loop goes where the Loop is, whatever its own name's hash
    pinned = next(str(i) for i in range(3) if str(i) != str(compute_shard_of("ns", "b", None, 3)))
    edge.add("loops", {"metadata": {"name": "b", "labels": {SHARD_LABEL: pinned}}})
    intent = {
        "kind": "HandoffIntent",
        "metadata": {"namespace": "ns", "name": "i"},
        "spec": {"loopRef": {"name": "b"}},
    }
    assert stamps_shards(intent, memo)
    patch = {}
    label_intent_shard(intent, patch, memo)  # type: ignore[arg-type]
    assert patch == {"metadata": {"labels": {SHARD_LABEL: pinned}}}
    # labelled objects need nothing; other shards and a deleting object are not handled at all
    patch = {}
    label_intent_shard(
        {**intent, "metadata": {**intent["metadata"], "labels": {SHARD_LABEL: pinned}}}, patch, memo
    )  # type: ignore[arg-type]
    assert patch == {}
    # the filter lets through only objects that need a label: kopf logs every handler it runs
    labelled_loop = {
        "metadata": {
            "namespace": "ns",
            "name": "a",
            "labels": {SHARD_LABEL: str(compute_shard_of("ns", "a", None, 3))},
        }
    }
    assert not stamps_shards(labelled_loop, memo)
    assert not stamps_shards(
        {**intent, "metadata": {**intent["metadata"], "labels": {SHARD_LABEL: "2"}}}, memo
    )
    assert not stamps_shards({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, memo)
    assert not stamps_shards(loop, _memo(tmp_path, edge, Shard(1, 3)))
    assert not stamps_shards(loop, _memo(tmp_path, edge, Shard(0, 1)))
    assert not stamps_shards(loop, types.SimpleNamespace())  # before startup stored a context


def test_an_intents_valid_label_is_kept_in_its_canonical_form_as_a_loops(tmp_path: Path) -> None:
    edge = FakeEdge("ns")
    memo = _memo(tmp_path, edge, Shard(0, 3))
    edge.add("loops", {"metadata": {"name": "b", "labels": {SHARD_LABEL: "1"}}})
    loop = {"metadata": {"namespace": "ns", "name": "a", "labels": {SHARD_LABEL: "02"}}}
    intent = {
        "kind": "HandoffIntent",
        "metadata": {"namespace": "ns", "name": "i", "labels": {SHARD_LABEL: "02"}},
        "spec": {"loopRef": {"name": "b"}},
    }
    for body, handler in ((loop, label_loop_shard), (intent, label_intent_shard)):
        assert stamps_shards(body, memo)  # "02" is shard 2, but the watch selector compares strings
        patch: dict[str, Any] = {}
        handler(body, patch, memo)
        assert patch == {"metadata": {"labels": {SHARD_LABEL: "2"}}}  # pinned, not moved to its Loop's
