"""Operator shards: which replica owns which Loop (core.common.shards, the kopf filters)."""

from __future__ import annotations

import types
from collections import Counter

import pytest

from superloop_ops.core.common.shards import SHARD_LABEL, Shard, compute_shard_of, parse_shard
from superloop_ops.errors import InvalidSpecError
from superloop_ops.handlers.context import OperatorContext, owns_intent_loop, owns_loop, runs_fleet_kinds
from superloop_ops.metrics import build_metrics
from superloop_ops.settings import Settings, fetch_settings


def test_parse_shard() -> None:
    assert parse_shard("") == Shard(0, 1)
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "x/2", "1", "-1/2", "1/0"):
        with pytest.raises(InvalidSpecError):
            parse_shard(bad)
    assert fetch_settings({"SUPERLOOP_SHARD": "2/3"}).shard == Shard(2, 3)


def test_every_loop_has_exactly_one_shard_and_they_are_spread() -> None:
    names = [f"loop-{n}" for n in range(3000)]
    shards = [Shard(i, 3) for i in range(3)]
    for name in names:
        assert sum(shard.owns("team-a", name) for shard in shards) == 1
    spread = Counter(compute_shard_of("team-a", name, None, 3) for name in names)
    assert min(spread.values()) > 900


def test_the_label_pins_a_loop_and_an_invalid_label_is_ignored() -> None:
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "2"}, 3) == 2
    hashed = compute_shard_of("ns", "a", None, 3)
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "7"}, 3) == hashed
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "x"}, 3) == hashed
    assert Shard(0, 1).owns("ns", "a", {SHARD_LABEL: "2"})


def _memo(shard: str) -> types.SimpleNamespace:
    ctx = OperatorContext(
        settings=Settings(shard=parse_shard(shard)),
        edge=None,
        clock=None,
        metrics=build_metrics(),  # type: ignore[arg-type]
    )
    return types.SimpleNamespace(operator=ctx)


def test_kopf_filters_route_loops_intents_and_fleet_kinds() -> None:
    loop = {"metadata": {"namespace": "ns", "name": "a"}}
    owner = compute_shard_of("ns", "a", None, 2)
    intent = {"metadata": {"namespace": "ns", "name": "i1"}, "spec": {"loopRef": {"name": "a"}}}
    for index in (0, 1):
        memo = _memo(f"{index}/2")
        assert owns_loop(loop, memo) is (index == owner)
        assert owns_intent_loop(intent, memo) is (index == owner)
        assert runs_fleet_kinds(memo) is (index == 0)
    unsharded = _memo("")
    assert owns_loop(loop, unsharded)
    assert runs_fleet_kinds(unsharded)
    assert owns_loop(loop, types.SimpleNamespace())  # before startup: everything


def test_each_shard_keeps_kopf_bookkeeping_and_finalizer_under_its_own_prefix() -> None:
    import kopf

    from superloop_ops.main import configure_persistence

    def prefixes(shard: Shard) -> tuple[str, str, str]:
        settings = kopf.OperatorSettings()
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
        configure_persistence(settings, shard)
        progress = settings.persistence.progress_storage
        diffbase = settings.persistence.diffbase_storage
        assert isinstance(progress, kopf.AnnotationsProgressStorage)
        assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
        return progress.prefix, diffbase.prefix, settings.persistence.finalizer

    assert prefixes(Shard()) == (
        "kopf.zalando.org",
        "kopf.zalando.org",
        "kopf.zalando.org/KopfFinalizerMarker",
    )
    assert prefixes(Shard(1, 2)) == (
        "shard-1.ops.superloop.dev",
        "shard-1.ops.superloop.dev",
        "shard-1.ops.superloop.dev/KopfFinalizerMarker",
    )
