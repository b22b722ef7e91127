"""Shard 0 labels every Loop and HandoffIntent with the shard it belongs to (``SUPERLOOP_SHARD``).

The other shards watch only the objects labelled for them (a server-side label selector, set at
startup by ``main.configure_watch_selectors``), so an object reaches its shard once it carries
the label. A Loop created without one gets ``crc32(namespace/name) mod n``; a valid label is kept
(it pins the Loop). A HandoffIntent without one follows its Loop: the Loop's label when the Loop
exists, else the hash of the Loop's name; a valid label is kept, as a Loop's. Event handlers
keep no bookkeeping of their own (no annotations), and an object that already has its label
costs a filter call per event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.core.common.shards import SHARD_LABEL, compute_shard_label
from superloop_ops.errors import OperatorError
from superloop_ops.handlers.context import OperatorContext, fetch_context, fetch_shard, loop_name_of
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectRef

__all__ = ["label_intent_shard", "label_loop_shard", "stamps_shards"]

log = logging.getLogger(__name__)


def stamps_shards(body: Mapping[str, Any], memo: Any, **_: Any) -> bool:
    """kopf ``when`` filter: this is shard 0 of several, and the object is not being deleted.

    Only objects that need a label pass (a handler that ran would be logged for every event)."""
    shard = fetch_shard(memo)
    meta = body.get("metadata") or {}
    if shard.count == 1 or shard.index != 0 or meta.get("deletionTimestamp"):
        return False
    name = loop_name_of(body) if body.get("kind") == "HandoffIntent" else str(meta.get("name", ""))
    return compute_shard_label(str(meta.get("namespace", "")), name, _labels(body), shard.count) is not None


def _labels(body: Mapping[str, Any]) -> Mapping[str, str]:
    return (body.get("metadata") or {}).get("labels") or {}


@kopf.on.event(GROUP, VERSION, "loops", when=stamps_shards)
def label_loop_shard(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Give a Loop without a valid shard label the one its hash names."""
    ctx = fetch_context(memo)
    meta = body.get("metadata") or {}
    wanted = compute_shard_label(
        str(meta.get("namespace", "")), str(meta.get("name", "")), _labels(body), ctx.settings.shard.count
    )
    if wanted is not None:
        patch.setdefault("metadata", {}).setdefault("labels", {})[SHARD_LABEL] = wanted


@kopf.on.event(GROUP, VERSION, "handoffintents", when=stamps_shards)
def label_intent_shard(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Give a HandoffIntent without a valid shard label its Loop's; a valid one is written in its
    canonical form. ``stamps_shards`` lets through only intents that need a label (kopf decides on
    the same body, in the same cycle, before this runs), so the Loop is read only for those."""
    ctx = fetch_context(memo)
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    loop_name = loop_name_of(body)
    owner = _loop_shard_label(ctx, namespace, loop_name)
    wanted = compute_shard_label(namespace, loop_name, _labels(body), ctx.settings.shard.count, owner=owner)
    if wanted is not None:
        patch.setdefault("metadata", {}).setdefault("labels", {})[SHARD_LABEL] = wanted


def _loop_shard_label(ctx: OperatorContext, namespace: str, loop_name: str) -> str | None:
    ref = ObjectRef(kind="Loop", plural="loops", namespace=namespace, name=loop_name)
    try:
        loop = ctx.edge.fetch_object(ref)
    except OperatorError as exc:
        log.warning("shard label of HandoffIntent's Loop %s/%s unknown: %s", namespace, loop_name, exc)
        return None
    return _labels(loop or {}).get(SHARD_LABEL)
