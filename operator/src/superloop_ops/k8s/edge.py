"""Thin wrappers over the Kubernetes API: the only place the operator's handlers talk to it.

``KubeEdge`` is the protocol the handlers depend on; ``KubernetesEdge`` implements it with the
official ``kubernetes`` client, and component tests implement it in memory. Every
``ApiException`` is mapped into the product's error tree here, so handlers never see client
types:

- 404 -> ``ObjectNotFoundError`` (a ``DependencyNotReadyError``: the object may appear later);
- 409 -> ``ConflictError`` (a ``DependencyNotReadyError``: a precondition such as the
  ``resourceVersion`` of a status patch no longer holds; read the object again and retry);
- 429, 5xx and connection failures -> ``DependencyNotReadyError`` (retry after a delay);
- 400, 401, 403, 422 -> ``InvalidSpecError`` (retrying the same request cannot help).

Secret values are returned to the caller and never logged; error messages name the Secret and
key, not the value. A Secret is used only when it opts in with the label
``ops.superloop.dev/usable-by=superloop-ops`` (``read_secret_value``): whoever may create a
Loop must not be able to make the operator send any Secret of the namespace to any URL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, SecretNotUsableError
from superloop_ops.models import common as model_common

__all__ = [
    "GROUP",
    "VERSION",
    "ConflictError",
    "KubeEdge",
    "KubernetesEdge",
    "ObjectNotFoundError",
    "ObjectRef",
    "build_api_client",
    "map_api_exception",
    "read_secret_value",
]

GROUP = "ops.superloop.dev"
VERSION = "v1alpha1"


class ObjectNotFoundError(DependencyNotReadyError):
    """The referenced object does not exist (yet)."""


class ConflictError(DependencyNotReadyError):
    """The object changed since the version the write was based on (HTTP 409)."""


def read_secret_value(
    namespace: str, name: str, key: str, *, labels: Mapping[str, str] | None, data: Mapping[str, str] | None
) -> str:
    """One key of a Secret (base64 ``data``), provided the Secret opted in to the operator."""
    label, wanted = model_common.SECRET_OPT_IN_LABEL, model_common.SECRET_OPT_IN_VALUE
    if (labels or {}).get(label) != wanted:
        raise SecretNotUsableError(
            f"{SecretNotUsableError.reason_code}: Secret {namespace}/{name} is not labelled "
            f"{label}={wanted}; the operator uses only Secrets that opt in",
            delay=30.0,
        )
    values = data or {}
    if key not in values:
        raise ObjectNotFoundError(f"Secret {namespace}/{name} has no key {key!r}", delay=15.0)
    try:
        return base64.b64decode(values[key], validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidSpecError(f"Secret {namespace}/{name} key {key!r} is not valid UTF-8 base64") from None


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """Enough to address a namespaced custom object and to be an Event's involvedObject."""

    kind: str
    plural: str
    namespace: str
    name: str
    uid: str = ""
    group: str = GROUP
    version: str = VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class KubeEdge(Protocol):
    """What the handlers need from the API server."""

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str: ...

    def fetch_object(self, ref: ObjectRef) -> JsonObject | None: ...

    def patch_status(
        self, ref: ObjectRef, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None: ...

    def patch_annotations(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None: ...

    def post_event(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None: ...

    def list_objects(self, ref: ObjectRef) -> list[JsonObject]: ...


def map_api_exception(exc: Exception, what: str) -> Exception:
    """Translate a client exception into ``errors.*`` (returned, so callers ``raise ... from``)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if status == 404:
        return ObjectNotFoundError(f"{what}: not found", delay=15.0)
    if status == 409:
        return ConflictError(f"{what}: changed meanwhile (409 {reason})", delay=1.0)
    if status in (400, 401, 403, 422):
        detail = _status_message(exc)
        suffix = f": {detail}" if detail else ""
        return InvalidSpecError(f"{what}: rejected by the API server ({status} {reason}){suffix}")
    if isinstance(status, int) and status:
        return DependencyNotReadyError(f"{what}: API server answered {status} {reason}", delay=10.0)
    return DependencyNotReadyError(f"{what}: API server unreachable ({reason})", delay=10.0)


def _status_message(exc: Exception) -> str:
    """The ``message`` of the API server's Status body (why admission or validation refused)."""
    try:
        body = json.loads(getattr(exc, "body", None) or "")
    except (TypeError, ValueError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:500] if message else ""


def build_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient`` from in-cluster config, else the kubeconfig (``$KUBECONFIG`` / explicit)."""
    from kubernetes import client, config

    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    return client.ApiClient(configuration)


class KubernetesEdge:
    """``KubeEdge`` over the official client (synchronous; handlers run in kopf's thread pool)."""

    def __init__(self, api_client: Any, *, component: str = "superloop-ops") -> None:
        from kubernetes import client

        self._client_mod = client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._component = component

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except (ApiException, HTTPError, OSError) as exc:
            raise map_api_exception(exc, what) from exc

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self._call(
            f"Secret {namespace}/{name}", lambda: self._core.read_namespaced_secret(name, namespace)
        )
        labels = secret.metadata.labels if secret.metadata is not None else None
        return read_secret_value(namespace, name, key, labels=labels, data=secret.data)

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str:
        config_map = self._call(
            f"ConfigMap {namespace}/{name}", lambda: self._core.read_namespaced_config_map(name, namespace)
        )
        data = config_map.data or {}
        if key not in data:
            raise ObjectNotFoundError(f"ConfigMap {namespace}/{name} has no key {key!r}", delay=15.0)
        return str(data[key])

    def fetch_object(self, ref: ObjectRef) -> JsonObject | None:
        try:
            obj = self._call(
                f"{ref.kind} {ref.namespace}/{ref.name}",
                lambda: self._custom.get_namespaced_custom_object(
                    ref.group, ref.version, ref.namespace, ref.plural, ref.name
                ),
            )
        except ObjectNotFoundError:
            return None
        return dict(obj)

    def list_objects(self, ref: ObjectRef) -> list[JsonObject]:
        listing = self._call(
            f"{ref.kind} list in {ref.namespace}",
            lambda: self._custom.list_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural
            ),
        )
        return [dict(item) for item in listing.get("items", [])]

    def patch_status(
        self, ref: ObjectRef, status: Mapping[str, Any], *, resource_version: str | None = None
    ) -> None:
        """A merge patch of the status; with ``resource_version`` it applies only to that version."""
        body: JsonObject = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self._call(
            f"{ref.kind} {ref.namespace}/{ref.name} status",
            lambda: self._custom.patch_namespaced_custom_object_status(
                ref.group, ref.version, ref.namespace, ref.plural, ref.name, body
            ),
        )

    def patch_annotations(self, ref: ObjectRef, annotations: Mapping[str, str | None]) -> None:
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call(
            f"{ref.kind} {ref.namespace}/{ref.name} annotations",
            lambda: self._custom.patch_namespaced_custom_object(
                ref.group, ref.version, ref.namespace, ref.plural, ref.name, body
            ),
        )

    def post_event(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        client = self._client_mod
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{ref.name}.{uuid.uuid4().hex[:16]}", namespace=ref.namespace),
            involved_object=client.V1ObjectReference(
                api_version=ref.api_version,
                kind=ref.kind,
                name=ref.name,
                namespace=ref.namespace,
                uid=ref.uid or None,
            ),
            reason=reason[:128],
            message=message[:1024],
            type=event_type,
            source=client.V1EventSource(component=self._component),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=self._component,
            reporting_instance=self._component,
        )
        self._call(
            f"Event for {ref.kind} {ref.namespace}/{ref.name}",
            lambda: self._core.create_namespaced_event(ref.namespace, event),
        )
