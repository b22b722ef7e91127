"""The chart as deployed on the e2e node: hostPath volumes bound to claims, and the helm values
that run the operator image built from the Dockerfile (used by e2e/test_in_cluster.py and the
demo).

- Volumes are hostPath PersistentVolumes on the node, reserved for one claim each (``claimRef``);
  the PV binder in the controller manager completes the binding. They carry the label
  ``superloop-e2e=<namespace>`` so a run deletes its own.
- :func:`chart_args` are the ``helm install`` arguments for a release watching one namespace:
  the image (``pullPolicy: Never``: it was imported into the node), the loop claims, and the
  apiserver's address in ``extraEnv`` (the node has no kube-proxy for the ClusterIP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from e2e.harness.node import Node

__all__ = ["POD_USER", "bound_claim", "chart_args", "host_path_volume", "volume_list"]

# The image's user (Dockerfile) and the chart's runAsUser: hostPath directories are handed to it.
POD_USER = 10001


def host_path_volume(name: str, path: Path, namespace: str, claim: str) -> dict[str, Any]:
    """A hostPath PV reserved for ``namespace/claim``."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"superloop-e2e": namespace}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def bound_claim(name: str, volume: str) -> dict[str, Any]:
    """A claim naming its volume (the chart's ``loopClaims`` expect the claims to exist)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def volume_list(items: list[dict[str, Any]]) -> str:
    """``kubectl apply -f -`` input for several objects."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def chart_args(node: Node, namespace: str, *, claims: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """``helm install`` arguments: the node's image, watching ``namespace``, claims mounted at
    their paths, ``env`` (plus the apiserver's address) in the operator's environment."""
    repository, tag = node.images.image.rsplit(":", 1)
    extra_env = [{"name": key, "value": value} for key, value in {**node.apiserver_env(), **env}.items()]
    return [
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", "watch.allNamespaces=false", "--set", f"watch.namespaces={{{namespace}}}",
        "--set", f"peering.name={namespace}",
        "--set-json", f"loopClaims={json.dumps(dict(claims))}",
        "--set-json", f"extraEnv={json.dumps(extra_env)}",
    ]  # fmt: skip
