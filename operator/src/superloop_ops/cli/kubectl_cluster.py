"""The API calls of ``kubectl superloop``, with kubectl's connection flags and kubectl's errors.

``--kubeconfig``, ``--context``, ``-n``, ``--as`` and ``--as-group`` mean what they mean to
kubectl (impersonation uses the same ``Impersonate-*`` headers). Errors read like kubectl's: a
missing kubeconfig says so, and an API error prints the server's own message (``Error from
server (Forbidden): ... cannot patch resource ...``), never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from superloop_ops.cli import kubectl_drill
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.errors import OperatorError
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectNotFoundError, map_api_exception

__all__ = ["Connection", "PluginCluster", "explain_api_error"]


@dataclasses.dataclass(frozen=True)
class Connection:
    """kubectl's connection flags."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    as_user: str | None = None
    as_groups: tuple[str, ...] = ()


def explain_api_error(exc: Exception, what: str) -> OperatorError:
    """The API server's own message, as kubectl prints it; a plain description without one."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    if message:
        error_type = ObjectNotFoundError if status == 404 else OperatorError
        return error_type(f"Error from server ({body.get('reason') or reason}): {message}")
    mapped = map_api_exception(exc, what)
    return mapped if isinstance(mapped, OperatorError) else OperatorError(str(mapped))


def _load_client(conn: Connection) -> Any:
    """kubectl's order: the kubeconfig (flag, ``$KUBECONFIG``, ~/.kube/config), else in-cluster."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=conn.kubeconfig, context=conn.context, client_configuration=configuration
        )
    except (config.ConfigException, OSError) as exc:
        if conn.kubeconfig is not None or conn.context is not None or not _in_cluster(config, configuration):
            where = conn.kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise OperatorError(f"cannot load a kubeconfig from {where}: {exc}") from None
    api = client.ApiClient(configuration)
    if conn.as_user:
        api.set_default_header("Impersonate-User", conn.as_user)  # type: ignore[no-untyped-call]
    for group in conn.as_groups[-1:]:  # one header per name: the client sends the last group
        api.set_default_header("Impersonate-Group", group)  # type: ignore[no-untyped-call]
    return api


def _in_cluster(config: Any, configuration: Any) -> bool:
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        return False
    return True


def _context_namespace(conn: Connection) -> str:
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=conn.kubeconfig)  # type: ignore[no-untyped-call]
    except Exception:  # in-cluster or no kubeconfig: kubectl's default
        return "default"
    chosen = active
    if conn.context:
        chosen = next((c for c in contexts if c.get("name") == conn.context), active)
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


class PluginCluster:
    """What the plugin reads and writes, in one namespace or all."""

    def __init__(self, conn: Connection) -> None:
        from kubernetes import client

        self._client = client
        self.api = _load_client(conn)
        self.custom = client.CustomObjectsApi(self.api)
        self.namespace = conn.namespace or _context_namespace(conn)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            raise explain_api_error(exc, what) from None
        except (HTTPError, OSError) as exc:
            raise OperatorError(
                f"{what}: cannot reach the API server ({type(exc).__name__}: {exc})"
            ) from None

    def get(self, plural: str, name: str) -> JsonObject:
        return dict(
            self._call(
                f"{plural}/{name}",
                lambda: self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                ),
            )
        )

    def list(
        self, plural: str, *, all_namespaces: bool = False, selector: str | None = None
    ) -> list[JsonObject]:
        listing = self._call(
            plural, lambda: self._list_call(all_namespaces)(plural, label_selector=selector or "")
        )
        return [dict(item) for item in listing.get("items", [])]

    def _list_call(self, all_namespaces: bool) -> Callable[..., Any]:
        if all_namespaces:
            return lambda plural, **kw: self.custom.list_cluster_custom_object(GROUP, VERSION, plural, **kw)
        return lambda plural, **kw: self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, **kw
        )

    def watch(
        self, plural: str, *, all_namespaces: bool, selector: str | None, timeout: float | None
    ) -> Iterator[tuple[str, JsonObject]]:
        """``(event type, object)`` as the API server streams them (ADDED first for what exists)."""
        from kubernetes import watch

        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self._list_call(all_namespaces),
            plural,
            label_selector=selector or "",
            **({"timeout_seconds": max(1, int(timeout))} if timeout else {}),
        )
        events = iter(stream)
        while True:
            event = self._call(plural, lambda: next(events, None))
            if event is None:
                return
            yield str(event.get("type")), dict(event.get("object") or {})

    def annotate(self, plural: str, name: str, annotations: Mapping[str, str | None]) -> None:
        self.patch(plural, name, {"metadata": {"annotations": dict(annotations)}})

    def patch(self, plural: str, name: str, body: Mapping[str, Any]) -> None:
        self._call(
            f"{plural}/{name}",
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, dict(body)
            ),
        )

    def delete(self, plural: str, name: str) -> None:
        self._call(
            f"{plural}/{name}",
            lambda: self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name),
        )

    def _write(self, what: str, fn: Callable[[], Any]) -> Any:
        """Like ``_call``, with 409 (changed or created meanwhile) as ``WriteConflictError``."""
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 409:
                raise kubectl_drill.WriteConflictError(f"{what}: conflict") from exc
            raise explain_api_error(exc, what) from None

    def fetch_config_map(self, name: str) -> tuple[dict[str, str], str] | None:
        core = self._client.CoreV1Api(self.api)
        try:
            found = self._call(
                f"configmaps/{name}", lambda: core.read_namespaced_config_map(name, self.namespace)
            )
        except ObjectNotFoundError:
            return None
        return dict(found.data or {}), str(found.metadata.resource_version)

    def create_config_map(self, name: str, data: Mapping[str, str]) -> None:
        core = self._client.CoreV1Api(self.api)
        body = self._client.V1ConfigMap(metadata=self._client.V1ObjectMeta(name=name), data=dict(data))
        self._write(f"configmaps/{name}", lambda: core.create_namespaced_config_map(self.namespace, body))

    def patch_config_map(self, name: str, data: Mapping[str, str], resource_version: str) -> None:
        core = self._client.CoreV1Api(self.api)
        body = {"metadata": {"resourceVersion": resource_version}, "data": dict(data)}
        self._write(
            f"configmaps/{name}", lambda: core.patch_namespaced_config_map(name, self.namespace, body)
        )

    def username(self) -> str:
        """Who the API server says we are (SelfSubjectReview), as the admission policy sees it."""
        api = self._client.AuthenticationV1Api(self.api)
        review = self._call(
            "selfsubjectreview",
            lambda: api.create_self_subject_review(self._client.V1SelfSubjectReview(metadata={})),
        )
        name = getattr(getattr(getattr(review, "status", None), "user_info", None), "username", None)
        if not name:
            raise OperatorError("the API server did not report a username for these credentials")
        return str(name)
