"""Which operator shard owns an object: ``--shard i/n`` splits the Loops of a cluster over n
replicas, each with its own state volume, without a coordinator of our own.

A Loop belongs to shard ``int(label)`` when it carries the label ``ops.superloop.dev/shard``
(set at creation to pin it), otherwise to ``crc32(namespace/name) mod n``: stable, computable by
anyone (the plugin, a script) and spread evenly. Objects bound to a Loop (HandoffIntents) follow
their Loop. The fleet kinds (Fleet, FleetPolicy, PromotionApply) read Loops through the API, not
through a journal, so shard 0 runs them all and a Fleet spanning shards still gets one rollup.

The label is also what the API server filters on: a shard other than 0 watches Loops and
HandoffIntents with the label selector ``ops.superloop.dev/shard=<index>`` (``compute_watch_selector``),
so it never receives, decodes or keeps another shard's objects, and its watch costs grow with its
own Loops, not the cluster's. Shard 0 watches every object; it runs the fleet kinds (whose
Fleets may select Loops of any shard) and sets the label on every Loop and HandoffIntent that has
none (or an unusable one) to the shard it belongs to (``compute_shard_label``), which is what
moves it into that shard's watch.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping

from superloop_ops.errors import InvalidSpecError

__all__ = [
    "SHARD_LABEL",
    "Shard",
    "compute_shard_label",
    "compute_shard_of",
    "compute_watch_selector",
    "parse_shard",
]

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
    pinned = (labels or {}).get(SHARD_LABEL)
    if _valid(pinned, count):
        return int(str(pinned))
    return zlib.crc32(f"{namespace}/{name}".encode()) % count


def compute_watch_selector(shard: Shard) -> str | None:
    """The server-side label selector of this shard's Loop and HandoffIntent watches (None: all)."""
    if shard.count == 1 or shard.index == 0:
        return None
    return f"{SHARD_LABEL}={shard.index}"


def compute_shard_label(
    namespace: str, name: str, labels: Mapping[str, str] | None, count: int, *, owner: str | None = None
) -> str | None:
    """The shard label an object must get so that its shard's watch sees it; None when it has it.

    ``name`` is the object whose hash decides (a HandoffIntent passes its Loop's name). A valid
    label is kept (a pinned Loop stays pinned), written in its canonical form (``"07"`` becomes
    ``"7"``: the selector compares strings). Without one, ``owner`` (the label of the intent's
    Loop, when known) decides, else the hash.
    """
    if count == 1:
        return None
    current = (labels or {}).get(SHARD_LABEL)
    if _valid(current, count):
        wanted = str(int(str(current)))
    elif _valid(owner, count):
        wanted = str(int(str(owner)))
    else:
        wanted = str(compute_shard_of(namespace, name, None, count))
    return None if current == wanted else wanted


def _valid(label: str | None, count: int) -> bool:
    """An ASCII decimal below ``count`` (``"²".isdigit()`` holds, but ``int("²")`` fails)."""
    return isinstance(label, str) and label.isascii() and label.isdigit() and int(label) < count
