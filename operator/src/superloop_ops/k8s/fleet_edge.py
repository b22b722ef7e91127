"""What the Fleet controller needs from the API server beyond ``KubeEdge``.

The Fleet controller creates and deletes the objects it owns (Loops for inline registry
entries, HandoffIntents for planned intents) and writes free-form status objects whose explicit
``null`` values matter (policy and handoff documents): a JSON merge patch would drop them, so
``replace_status_fields`` sends a JSON patch (``add`` replaces an existing member).

Errors follow ``k8s.edge``: 404 on delete is success (already gone), 409 on create is
``AlreadyExistsError`` (the caller decides), everything else maps through ``map_api_exception``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.errors import DependencyNotReadyError
from superloop_ops.k8s.edge import KubeEdge, KubernetesEdge, ObjectRef, map_api_exception

__all__ = ["AlreadyExistsError", "FleetEdge", "KubernetesFleetEdge", "build_status_json_patch"]


class AlreadyExistsError(DependencyNotReadyError):
    """Create refused: an object of that name exists (e.g. still terminating)."""


class FleetEdge(KubeEdge, Protocol):
    """``KubeEdge`` plus create/delete of owned objects and null-preserving status writes."""

    def create_object(self, ref: ObjectRef, body: Mapping[str, Any]) -> JsonObject: ...

    def delete_object(self, ref: ObjectRef, *, uid: str | None = None) -> None: ...

    def list_labelled(self, ref: ObjectRef, selector: str) -> list[JsonObject]: ...

    def replace_status_fields(
        self,
        ref: ObjectRef,
        fields: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        has_status: bool = True,
    ) -> None: ...


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def build_status_json_patch(
    fields: Mapping[str, Any], remove: Sequence[str], *, has_status: bool
) -> list[JsonObject]:
    """JSON patch operations that set each top-level status field whole and drop ``remove``."""
    ops: list[JsonObject] = []
    if not has_status:
        ops.append({"op": "add", "path": "/status", "value": {}})
    for key, value in fields.items():
        ops.append({"op": "add", "path": f"/status/{_pointer(key)}", "value": value})
    if has_status:
        ops.extend(
            {"op": "remove", "path": f"/status/{_pointer(key)}"} for key in remove if key not in fields
        )
    return ops


class KubernetesFleetEdge(KubernetesEdge):
    """``FleetEdge`` over the official client."""

    def __init__(self, api_client: Any, *, component: str = "superloop-ops") -> None:
        super().__init__(api_client, component=component)

    def _guard(self, what: str, fn: Callable[[], Any], *, ok_statuses: tuple[int, ...] = ()) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            if exc.status in ok_statuses:
                return None
            if exc.status == 409:
                raise AlreadyExistsError(f"{what}: already exists", delay=2.0) from exc
            raise map_api_exception(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise map_api_exception(exc, what) from exc

    def create_object(self, ref: ObjectRef, body: Mapping[str, Any]) -> JsonObject:
        created = self._guard(
            f"create {ref.kind} {ref.namespace}/{ref.name}",
            lambda: self._custom.create_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, dict(body)
            ),
        )
        return dict(created or {})

    def delete_object(self, ref: ObjectRef, *, uid: str | None = None) -> None:
        client = self._client_mod
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid) if uid else None, propagation_policy="Background"
        )
        self._guard(
            f"delete {ref.kind} {ref.namespace}/{ref.name}",
            lambda: self._custom.delete_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, ref.name, body=options
            ),
            ok_statuses=(404, 409),
        )

    def list_labelled(self, ref: ObjectRef, selector: str) -> list[JsonObject]:
        listing = self._guard(
            f"{ref.kind} list in {ref.namespace}",
            lambda: self._custom.list_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, label_selector=selector
            ),
        )
        return [dict(item) for item in (listing or {}).get("items", [])]

    def replace_status_fields(
        self,
        ref: ObjectRef,
        fields: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        has_status: bool = True,
    ) -> None:
        ops = build_status_json_patch(fields, remove, has_status=has_status)
        if not ops:
            return
        self._guard(
            f"{ref.kind} {ref.namespace}/{ref.name} status",
            lambda: self._custom.patch_namespaced_custom_object_status(
                ref.group,
                ref.version,
                ref.namespace,
                ref.plural,
                ref.name,
                ops,
                _content_type="application/json-patch+json",
            ),
        )
