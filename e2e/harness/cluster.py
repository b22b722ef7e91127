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
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TEST_USERS", "Cluster", "CommandError"]

TEST_USERS = ("alice", "bob")


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
