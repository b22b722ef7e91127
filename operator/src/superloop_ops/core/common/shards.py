"""Which operator shard owns an object: ``--shard i/n`` splits the Loops of a cluster over n
replicas, each with its own state volume, without a coordinator of our own.

A Loop belongs to shard ``int(label)`` when it carries the label ``ops.superloop.dev/shard``
(set at creation to pin it), otherwise to ``crc32(namespace/name) mod n``: stable, computable by
anyone (the plugin, a script) and spread evenly. Objects bound to a Loop (HandoffIntents) follow
their Loop. The fleet kinds (Fleet, FleetPolicy, PromotionApply) read Loops through the API, not
through a journal, so shard 0 runs them all and a Fleet spanning shards still gets one rollup.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping

from superloop_ops.errors import InvalidSpecError

__all__ = ["SHARD_LABEL", "Shard", "compute_shard_of", "parse_shard"]

SHARD_LABEL = "ops.superloop.dev/shard"


@dataclasses.dataclass(frozen=True)
class Shard:
    """This replica's part: ``index`` of ``count`` (0 of 1 is the whole cluster)."""

    index: int = 0
    count: int = 1

    def owns(self, namespace: str, name: str, labels: Mapping[str, str] | None = None) -> bool:
        return self.count == 1 or compute_shard_of(namespace, name, labels, self.count) == self.index

    @property
    def runs_fleet_kinds(self) -> bool:
        return self.index == 0


def parse_shard(text: str) -> Shard:
    """``"i/n"`` with 0 <= i < n; empty means the whole cluster."""
    raw = text.strip()
    if not raw:
        return Shard()
    index, sep, count = raw.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise InvalidSpecError(f"shard must be i/n with 0 <= i < n: {text}")
    return Shard(int(index), int(count))


def compute_shard_of(namespace: str, name: str, labels: Mapping[str, str] | None, count: int) -> int:
    """The shard of one object: its pinning label when valid, else the hash of namespace/name."""
    pinned = (labels or {}).get(SHARD_LABEL, "")
    if pinned.isdigit() and int(pinned) < count:
        return int(pinned)
    return zlib.crc32(f"{namespace}/{name}".encode()) % count
