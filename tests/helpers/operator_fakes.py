"""One in-memory API server and one OperatorContext builder for the handler component tests.

The Loop, Fleet and PromotionApply handler tests each carried their own copy of this fake; one
copy keeps them honest about the same edge contract. Differences between the old copies are
constructor parameters, so each test keeps exactly the behaviour it had.
"""

from __future__ import annotations

import copy
import datetime as dt
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.merge_patch import apply_merge_patch
from superloop_ops.core.fleet.fleet_members import LoopMember, build_loop_member
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.k8s.edge import ConflictError, ObjectNotFoundError, ObjectRef
from superloop_ops.k8s.fleet_edge import AlreadyExistsError
from superloop_ops.metrics import build_metrics
from superloop_ops.settings import Settings

__all__ = ["SIM_RUNTIME", "FakeEdge", "WatchedMembers", "build_context", "build_frozen_clock"]

SIM_RUNTIME = (sys.executable, "-m", "superloop_ops.cli.main", "simulate")


def build_frozen_clock() -> FrozenClock:
    """An hour in the past, so journal rows the tests write are never in the future."""
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1))


class FakeEdge:
    """In-memory API server: objects by (plural, namespace, name), Secrets, status writes, Events.

    ``drop_none_annotations`` removes an annotation patched to ``None`` (a real merge patch);
    when false, ``None`` values are ignored instead (what the promotion tests always used).
    """

    def __init__(self, namespace: str, *, drop_none_annotations: bool = True) -> None:
        self.namespace = namespace
        self.drop_none_annotations = drop_none_annotations
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.events: list[tuple[str, str, str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.fail_status_of: set[str] = set()
        self.gets = 0
        self.lists: Counter[str] = Counter()  # LIST calls by plural
        self.conflicts = 0
        self.churn = 0  # another writer bumps resourceVersion after this many next reads

    def add(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", self.namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("resourceVersion", "1")
        self.objects[(plural, meta["namespace"], meta["name"])] = body
        return body

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.objects[(plural, self.namespace, name)]

    def names(self, plural: str) -> list[str]:
        return sorted(name for (p, _, name) in self.objects if p == plural)

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str:
        data = self.secrets.get((namespace, name))
        if data is None or key not in data:
            raise ObjectNotFoundError(f"Secret {namespace}/{name}: not found")
        return data[key]

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str:
        raise ObjectNotFoundError(f"ConfigMap {namespace}/{name}: not found")

    def fetch_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.gets += 1
        body = self.objects.get((ref.plural, ref.namespace, ref.name))
        read = copy.deepcopy(body) if body is not None else None
        if body is not None and self.churn > 0:
            self.churn -= 1
            meta = body["metadata"]
            meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        return read

    def list_objects(self, ref: ObjectRef) -> list[dict[str, Any]]:
        self.lists[ref.plural] += 1
        return [
            copy.deepcopy(b)
            for (p, ns, _), b in self.objects.items()
            if p == ref.plural and ns == ref.namespace
        ]

    def list_labelled(self, ref: ObjectRef, selector: str) -> list[dict[str, Any]]:
        key, _, value = selector.partition("=")
        return [
            b for b in self.list_objects(ref) if (b.get("metadata", {}).get("labels") or {}).get(key) == value
        ]

    def create_object(self, ref: ObjectRef, body: Mapping[str, Any]) -> dict[str, Any]:
        if (ref.plural, ref.namespace, ref.name) in self.objects:
            raise AlreadyExistsError(f"{ref.name} exists")
        created = copy.deepcopy(dict(body))
        created["metadata"]["namespace"] = ref.namespace
        return copy.deepcopy(self.add(ref.plural, created))

    def delete_object(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        body = self.objects.get((ref.plural, ref.namespace, ref.name))
        if body is None or (uid and body["metadata"]["uid"] != uid):
            return
        del self.objects[(ref.plural, ref.namespace, ref.name)]
        self.deleted.append((ref.plural, ref.name))

    def patch_status(
        self, ref: ObjectRef, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        """A JSON merge patch of the status, as the API server applies it (nested, nulls remove);
        a ``resource_version`` other than the stored one is a conflict. Each write bumps it."""
        body = self.objects[(ref.plural, ref.namespace, ref.name)]
        meta = body["metadata"]
        if resource_version and resource_version != meta.get("resourceVersion"):
            self.conflicts += 1
            raise ConflictError(f"{ref.name}: resourceVersion {resource_version} is stale")
        body["status"] = apply_merge_patch(body.get("status") or {}, copy.deepcopy(dict(status)))
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        self.status_patches.append((ref.name, copy.deepcopy(dict(status))))

    def replace_status_fields(
        self,
        ref: ObjectRef,
        fields: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        has_status: bool = True,
    ) -> None:
        if ref.name in self.fail_status_of:
            raise ObjectNotFoundError("simulated crash before the status write")
        current = self.objects[(ref.plural, ref.namespace, ref.name)].setdefault("status", {})
        current.update(copy.deepcopy(dict(fields)))
        for key in remove:
            current.pop(key, None)
        self.status_patches.append((ref.name, copy.deepcopy(dict(fields))))

    def patch_annotations(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        notes = self.objects[(ref.plural, ref.namespace, ref.name)]["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is not None:
                notes[key] = value
            elif self.drop_none_annotations:
                notes.pop(key, None)
        meta = self.objects[(ref.plural, ref.namespace, ref.name)]["metadata"]
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)

    def post_event(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        self.events.append((ref.name, event_type, reason, message))

    def reasons(self, name: str) -> list[str]:
        return [reason for obj, _, reason, _ in self.events if obj == name]


class WatchedMembers(Mapping[str, list[LoopMember]]):
    """What the operator's Loop watch index holds: every Loop of the fake's store as a fleet member
    (built as kopf's index does, from each Loop's current body), by namespace."""

    def __init__(self, edge: FakeEdge) -> None:
        self.edge = edge

    def __getitem__(self, namespace: str) -> list[LoopMember]:
        return [
            build_loop_member(b)
            for (p, ns, _), b in self.edge.objects.items()
            if p == "loops" and ns == namespace
        ]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({ns for (p, ns, _) in self.edge.objects if p == "loops"}))

    def __len__(self) -> int:
        return len(set(self))


def build_context(
    tmp_path: Path,
    edge: FakeEdge,
    clock: FrozenClock,
    pvcs: Mapping[str, Path],
    *,
    control_confirm_timeout_seconds: int,
    sleep: Callable[[float], None] | None = None,
    **settings: Any,
) -> OperatorContext:
    """Settings under ``tmp_path`` (metrics port 0) and the simulator as the loop runtime;
    ``pvcs`` maps claims of the edge's namespace to directories."""
    resolved = Settings(
        state_dir=tmp_path / "state",
        pvc_dirs={(edge.namespace, claim): path for claim, path in pvcs.items()},
        pvc_mount_root=tmp_path / "mounts",
        metrics_port=0,
        control_confirm_timeout_seconds=control_confirm_timeout_seconds,
        control_confirm_interval_seconds=1,
        **settings,
    )
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return OperatorContext(
        settings=resolved,
        edge=edge,
        clock=clock,
        metrics=build_metrics(),
        runtime_command=SIM_RUNTIME,
        **extra,
    )
