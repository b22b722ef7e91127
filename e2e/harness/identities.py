"""Act as a ServiceAccount: a short-lived token from the TokenRequest API, in its own kubeconfig.

The operator's e2e tests run ``kopf run`` under the chart's ServiceAccount, so RBAC is tested
as deployed. The token comes from ``kubectl create token`` (TokenRequest; nothing is stored in
a Secret) and is written only to a 0600 kubeconfig file; it is never logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from e2e.harness.cluster import Cluster

__all__ = [
    "ServiceAccountKubeconfig",
    "build_token_kubeconfig",
    "fetch_service_account_token",
    "service_account_username",
    "write_service_account_kubeconfig",
]


@dataclass(frozen=True)
class ServiceAccountKubeconfig:
    """A kubeconfig that authenticates as ``username`` (``system:serviceaccount:<ns>:<name>``)."""

    path: Path
    namespace: str
    name: str

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.name)


def service_account_username(namespace: str, name: str) -> str:
    """The user name the apiserver gives a ServiceAccount's tokens."""
    return f"system:serviceaccount:{namespace}:{name}"


def fetch_service_account_token(cluster: Cluster, namespace: str, name: str, *, duration: str = "1h") -> str:
    """A bound token for the ServiceAccount via the TokenRequest API (admin identity)."""
    result = cluster.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}")
    token = result.stdout.strip()
    if not token:
        raise AssertionError(f"TokenRequest for {namespace}/{name} returned no token")
    return token


def build_token_kubeconfig(
    *, server: str, cluster_entry: dict[str, object], token: str, namespace: str
) -> str:
    """Kubeconfig text with one context using ``token``; ``cluster_entry`` is kubeconfig's ``cluster``."""
    entry = dict(cluster_entry)
    entry["server"] = server
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": entry}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "target", "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    }
    return json.dumps(config, indent=2) + "\n"


def write_service_account_kubeconfig(
    cluster: Cluster, namespace: str, name: str, path: Path, *, duration: str = "1h"
) -> ServiceAccountKubeconfig:
    """Write ``path``: the admin context's cluster (server, CA) with a fresh token of ``namespace/name``."""
    view = cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json")
    cluster_entry = json.loads(view.stdout)["clusters"][0]["cluster"]
    token = fetch_service_account_token(cluster, namespace, name, duration=duration)
    text = build_token_kubeconfig(
        server=str(cluster_entry["server"]), cluster_entry=cluster_entry, token=token, namespace=namespace
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return ServiceAccountKubeconfig(path=path, namespace=namespace, name=name)
