"""A handle on the cluster e2e tests run against: ours (controlplane.py) or an existing one.

Tests speak to the cluster only through this handle, so the same test works on the project's
loopback control plane (identities are kubeconfig contexts: ``admin``, ``alice``, ``bob``) and
on any cluster named by ``$KUBECONFIG`` (kind, a real one), where ``alice`` and ``bob`` are
reached by impersonation (``--as``) from the current context, which must be allowed to
impersonate.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from e2e.harness.controlplane import ControlPlane

__all__ = ["CRD_DIRS", "TEST_USERS", "Cluster", "CommandError", "cluster_of", "find_tool", "install_crds"]

TEST_USERS = ("alice", "bob")
_REPO = Path(__file__).resolve().parent.parent.parent
CRD_DIRS = (_REPO / "crds", _REPO / "helm" / "superloop-ops" / "crds")


class CommandError(AssertionError):
    """A kubectl/helm call failed; the message carries the command line and its stderr.

    An AssertionError, so a failed call reads as a test failure rather than a crash.
    """

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.argv = list(argv)
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        detail = result.stderr.strip() or result.stdout.strip()
        super().__init__(f"`{shlex.join(argv)}` exited {result.returncode}:\n{detail}")


@dataclass(frozen=True)
class Cluster:
    """Where and how to reach the cluster; ``external`` is True for a ``$KUBECONFIG`` cluster."""

    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    workdir: Path
    external: bool = False
    # Context per identity on our control plane; empty for an external cluster.
    contexts: Mapping[str, str] = field(default_factory=dict)
    # Kill and restart one control-plane component (our control plane only; None for an external one).
    restart_component: Callable[[str], None] | None = None

    def username(self, identity: str) -> str:
        """The name the apiserver sees for an identity (``request.userInfo.username``)."""
        return identity

    def identity_args(self, identity: str) -> list[str]:
        """kubectl flags that act as ``identity`` ("admin", "alice", "bob")."""
        if not self.external:
            try:
                return ["--context", self.contexts[identity]]
            except KeyError:
                raise ValueError(f"unknown identity {identity!r}; known: {sorted(self.contexts)}") from None
        if identity == "admin":
            return []
        return [f"--as={identity}", "--as-group=system:authenticated"]

    def env(self) -> dict[str, str]:
        """Environment for child processes: our kubeconfig, and helm's state inside ``workdir``."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[name] = str(self.workdir / "helm" / name.lower())
        return env

    def kubectl(
        self,
        *args: str,
        context: str = "admin",
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as ``context`` (an identity); raise CommandError on failure when ``check``."""
        argv = [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *self.identity_args(context), *args]
        return self._run(argv, input=input, check=check, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin identity."""
        argv = [self.helm_bin, f"--kubeconfig={self.kubeconfig}"]
        if not self.external:
            argv.append(f"--kube-context={self.contexts['admin']}")
        return self._run([*argv, *args], input=None, check=check, timeout=timeout)

    def _run(
        self, argv: list[str], *, input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(argv, result)
        return result


def find_tool(name: str, bin_dir: Path) -> str | None:
    """The built binary in ``bin_dir`` when there, else the one on PATH (None when neither)."""
    built = bin_dir / name
    if os.access(built, os.X_OK):
        return str(built)
    return shutil.which(name)


def _crd_names(path: Path) -> list[str]:
    return [
        str(doc["metadata"]["name"])
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]


def install_crds(cluster: Cluster, directories: Iterable[Path] = CRD_DIRS) -> None:
    """Server-side apply every CRD in ``directories`` and wait until each is Established."""
    names: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            names.extend(_crd_names(path))
    if names:
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{name}" for name in sorted(set(names))],
        )


def cluster_of(plane: ControlPlane, workdir: Path) -> Cluster:
    """The handle on a started control plane of ours (identities are its kubeconfig contexts)."""
    return Cluster(
        kubeconfig=plane.kubeconfig,
        kubectl_bin=str(plane.kubectl_path),
        helm_bin=str(plane.helm_path),
        workdir=workdir,
        contexts={ident.name: ident.name for ident in plane.identities},
        restart_component=plane.restart,
    )
