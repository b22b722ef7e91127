"""Shared plumbing of the operator e2e modules: the chart release, the operator subprocess under the
chart's ServiceAccount, sprite services, simulated runtimes and kubectl reads.

The Loop, alerts, Fleet and PromotionApply modules each carried a copy of this; one copy keeps
them running the operator the same way. Where the copies differed (confirm timeouts, the default
wait of ``eventually``, which settings reach the operator) the difference is a parameter, so each
module keeps exactly the behaviour it had.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.harness import controlplane
from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from superloop_ops.clock import SystemClock
from superloop_ops.journal import files
from superloop_ops.sim.simulator import Simulator

__all__ = [
    "API",
    "CHART",
    "FLEET_RETRY_ON",
    "GROUP",
    "LOOP_RETRY_ON",
    "PLUGIN",
    "REPO",
    "SIM_RUNTIME",
    "FleetEnv",
    "LoopEnv",
    "Operator",
    "OperatorEnv",
    "SimThread",
    "build_operator_env",
    "chart_release",
    "condition",
    "create_secret",
    "eventually",
    "fleet_eventually",
    "fleet_operator_env",
    "grant_role",
    "launch_operator",
    "launch_sprite_service",
    "loop_eventually",
    "terminate",
    "wait_for_rbac",
]

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "superloop-ops"
GROUP = "ops.superloop.dev"
API = f"{GROUP}/v1alpha1"
SIM_RUNTIME = f"{sys.executable} -m superloop_ops.cli.main simulate"
PLUGIN = [sys.executable, "-m", "superloop_ops.cli.kubectl_plugin"]

LOOP_RETRY_ON: tuple[type[BaseException], ...] = (AssertionError, KeyError, TypeError, json.JSONDecodeError)
FLEET_RETRY_ON: tuple[type[BaseException], ...] = (*LOOP_RETRY_ON, IndexError)


def eventually(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    every: float = 0.5,
    retry_on: tuple[type[BaseException], ...] = FLEET_RETRY_ON,
) -> Any:
    """Poll ``check`` until it returns something truthy; ``retry_on`` exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def loop_eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str, every: float = 0.5) -> Any:
    """The Loop and alerts modules' wait: 30 s by default, an IndexError fails at once."""
    return eventually(check, timeout=timeout, what=what, every=every, retry_on=LOOP_RETRY_ON)


def fleet_eventually(
    check: Callable[[], Any], *, timeout: float = 40.0, what: str, every: float = 0.5
) -> Any:
    """The Fleet and PromotionApply modules' wait: 40 s by default (fleet passes are slower)."""
    return eventually(check, timeout=timeout, what=what, every=every, retry_on=FLEET_RETRY_ON)


def condition(status: dict[str, Any], cond_type: str) -> dict[str, Any]:
    """The condition of that type in a status, or ``{}``."""
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == cond_type), {})


class SimThread:
    """One simulated loop ticking in the background (the runtime's run process).

    ``owner``: a uid whose files the repository's become after every tick, so an operator
    running as that user (the chart's Pod: 10001) can append to them as the runtime would.
    """

    def __init__(
        self,
        root: Path,
        scenario: str,
        prefix: str,
        tick: float = 0.5,
        auto: bool = True,
        owner: int | None = None,
    ) -> None:
        self.sim = Simulator(root, SystemClock(), loops=1, scenarios=[scenario], loop_prefix=prefix)
        self.loop_id = f"{prefix}-1"
        self.repo = self.sim.repo_of(self.loop_id)
        self._stop = threading.Event()
        self._tick = tick
        self._owner = owner
        self.step()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if auto:
            self._thread.start()

    def step(self) -> None:
        self.sim.step()
        if self._owner is not None:
            for path in [self.repo, *self.repo.rglob("*")]:
                os.chown(path, self._owner, self._owner)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self.step()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _events_path(self) -> Path:
        return self.repo / ".superloop" / "loops" / self.loop_id / "events.jsonl"

    def event_names(self) -> list[str]:
        return [
            json.loads(line).get("event")
            for line in self._events_path().read_text().splitlines()
            if line.strip()
        ]

    def line_count(self) -> int:
        return len([line for line in self._events_path().read_text().splitlines() if line.strip()])

    @property
    def alive(self) -> bool:
        """The runtime's cancel removes state.json; a live run keeps one."""
        return (self.repo / ".superloop" / "state.json").is_file()

    def service_executions(self) -> int:
        """Control executions the sprite service recorded for this loop."""
        path = self.repo / ".superloop" / "ops-manager" / self.loop_id / "intents.jsonl"
        return len(files.read_jsonl(path))


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the process group (started with a new session), then wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)


def build_operator_env(
    kubeconfig: Path, state_dir: Path, mounts: Path, *, confirm_timeout_seconds: int, **overrides: str
) -> dict[str, str]:
    """This process's environment plus the operator's settings; no peering (one operator a namespace)."""
    env = dict(os.environ)
    env.update(
        KUBECONFIG=str(kubeconfig),
        SUPERLOOP_STATE_DIR=str(state_dir),
        SUPERLOOP_PVC_MOUNT_ROOT=str(mounts),
        SUPERLOOP_RUNTIME_COMMAND=SIM_RUNTIME,
        SUPERLOOP_CONTROL_CONFIRM_TIMEOUT_SECONDS=str(confirm_timeout_seconds),
        SUPERLOOP_CONTROL_CONFIRM_INTERVAL_SECONDS="1",
        SUPERLOOP_STATUS_REFRESH_SECONDS="30",
    )
    env.pop("SUPERLOOP_PEERING", None)
    env.update(overrides)
    return env


def launch_operator(
    namespace: str,
    env: dict[str, str],
    log: Path,
    track: Callable[[subprocess.Popen[bytes]], None],
    args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``kopf run`` watching one namespace; ``track`` sees the process before the health wait, so a
    teardown stops it even when it never becomes healthy. ``args`` go to ``kopf run`` (``--priority``)."""
    liveness = controlplane.find_free_port()
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "kopf", "run", "-m", "superloop_ops.main",
                f"--namespace={namespace}", f"--liveness=http://127.0.0.1:{liveness}/healthz", *args,
            ],
            stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    track(proc)

    def healthy() -> bool:
        assert proc.poll() is None, f"operator exited:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    eventually(healthy, timeout=60, what="the operator to report healthy")
    return proc


def launch_sprite_service(
    repo: Path,
    port: int,
    token: str,
    track: Callable[[subprocess.Popen[bytes]], None],
    runtime: str = SIM_RUNTIME,
) -> subprocess.Popen[bytes]:
    """The project's sprite service in front of ``repo``, answering ``/healthz`` before this returns."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "superloop_ops.cli.main", "sprite-service", "--repo", str(repo),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # the token travels in the environment, never in argv (visible to every user of the host)
        env=dict(os.environ, SUPERLOOP_RUNTIME_COMMAND=runtime, OPS_MANAGER_SERVICE_TOKEN=token),
        start_new_session=True,
    )  # fmt: skip
    track(proc)

    def up() -> bool:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"X-Ops-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    eventually(up, timeout=20, what="the sprite service")
    return proc


@contextmanager
def chart_release(
    cluster: Cluster,
    name: str,
    namespace: str,
    watched: Sequence[str],
    *,
    peering: str,
    sets: Sequence[str] = (),
) -> Iterator[str]:
    """The chart installed as a namespace-scoped release watching ``watched``; yields its ServiceAccount.
    The namespaces are created first and deleted (without waiting) afterwards. The tests run
    their own operator process, so the chart's Deployment has no replica (``replicaCount=0``):
    on a cluster whose nodes run Pods, two operators must never act at once."""
    for ns in (namespace, *watched):
        cluster.kubectl("create", "namespace", ns)
    try:
        extra = [arg for value in sets for arg in ("--set", value)]
        cluster.helm(
            "install", name, str(CHART), "--namespace", namespace, "--set", "replicaCount=0",
            "--set", "watch.allNamespaces=false", "--set", f"watch.namespaces={{{','.join(watched)}}}",
            "--set", f"peering.name={peering}", *extra,
        )  # fmt: skip
        yield f"{name}-superloop-ops"
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)
        for ns in (namespace, *watched):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def create_secret(cluster: Cluster, namespace: str, name: str, *, opted_in: bool = True, **data: str) -> None:
    """A generic Secret (applied: tests sharing a namespace may each ask for it); ``opted_in``
    labels it usable by the operator (it ignores any other)."""
    labels = {"ops.superloop.dev/usable-by": "superloop-ops"} if opted_in else {}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "stringData": dict(data),
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))


def grant_role(
    cluster: Cluster,
    namespace: str,
    role: str,
    rules: list[dict[str, Any]],
    *,
    timeout: float,
    can_i: Sequence[str] = ("patch", f"handoffintents.{GROUP}"),
    what: str = "RBAC for alice",
    users: Sequence[str] = ("alice",),
) -> None:
    """A Role bound to ``users`` (alice by default), waited for until ``kubectl auth can-i <can_i>``
    says yes for each (bindings propagate asynchronously)."""
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": role, "namespace": namespace},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": cluster.username(user)}
            for user in users
        ],
    }
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [body, binding]})
    )

    def allowed() -> bool:
        for user in users:
            answer = cluster.kubectl("auth", "can-i", *can_i, "-n", namespace, context=user, check=False)
            if answer.stdout.strip() != "yes":
                return False
        return True

    eventually(allowed, timeout=timeout, what=what)


def wait_for_rbac(cluster: Cluster, kubeconfig: Path, checks: Sequence[Sequence[str]]) -> None:
    """Every ``kubectl auth can-i <check>`` answers yes with that kubeconfig (the operator's
    ServiceAccount), within 60 s."""

    def allowed() -> bool:
        for check in checks:
            argv = [cluster.kubectl_bin, f"--kubeconfig={kubeconfig}", "auth", "can-i", *check]
            answer = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            if answer.stdout.strip() != "yes":
                return False
        return True

    eventually(allowed, timeout=60, what="the operator ServiceAccount's RBAC")


@dataclass
class OperatorEnv:
    """One watched namespace, a work directory and the operator ServiceAccount's kubeconfig."""

    cluster: Cluster
    namespace: str
    workdir: Path
    sa_kubeconfig: Path

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def mount_root(self) -> Path:
        """The operator's ``SUPERLOOP_PVC_MOUNT_ROOT``; a claim resolves to ``<root>/<namespace>/<claim>``."""
        return self.workdir / "pvcs"

    @property
    def mounts(self) -> Path:
        """Where this namespace's claims live (each simulated repository is one claim)."""
        return self.mount_root / self.namespace

    def apply(self, doc: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(
            "apply", "-n", self.namespace, "-f", "-", input=json.dumps(doc), check=check
        )

    def get(self, plural: str, name: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", f"{plural}.{GROUP}", name, "-n", self.namespace, "-o", "json")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def exists(self, plural: str, name: str) -> bool:
        out = self.cluster.kubectl(
            "get", f"{plural}.{GROUP}", name, "-n", self.namespace, "--ignore-not-found", "-o", "name"
        )
        return bool(out.stdout.strip())

    def events(self, name: str) -> list[str]:
        """Reasons of the Events about that object."""
        out = self.cluster.kubectl(
            "get", "events", "-n", self.namespace,
            "--field-selector", f"involvedObject.name={name}", "-o", "json",
        )  # fmt: skip
        return [str(item.get("reason")) for item in json.loads(out.stdout).get("items", [])]

    def plugin(self, *args: str, context: str = "admin") -> subprocess.CompletedProcess[str]:
        """``kubectl superloop`` as that identity in this namespace."""
        argv = [*PLUGIN, f"--kubeconfig={self.cluster.kubeconfig}", *self.cluster.identity_args(context)]
        return subprocess.run(
            [*argv, "-n", self.namespace, *args], capture_output=True, text=True, timeout=60, check=False
        )


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LoopEnv(OperatorEnv):
    """The Loop and alerts modules' namespace: operators with metrics on 127.0.0.1, a mapped claim."""

    sprite_token: str = ""
    operators: list[Operator] = field(default_factory=list)
    sims: list[SimThread] = field(default_factory=list)
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ops_dir(self, loop_id: str) -> Path:
        return self.state_dir / self.namespace / ".superloop" / "ops-manager" / loop_id

    def start_operator(self, *, args: Sequence[str] = (), **extra_env: str) -> Operator:
        metrics_port = controlplane.find_free_port()
        env = build_operator_env(
            self.sa_kubeconfig, self.state_dir, self.mount_root,
            confirm_timeout_seconds=20,
            SUPERLOOP_PVC_DIRS=f"{self.namespace}/mapped-claim={self.mounts / 'mapped-1'}",
            SUPERLOOP_METRICS_PORT=str(metrics_port),
            SUPERLOOP_METRICS_HOST="127.0.0.1",
            **extra_env,
        )  # fmt: skip
        log = self.workdir / f"operator-{len(self.operators)}.log"
        track = lambda proc: self.operators.append(Operator(proc, log, metrics_port))  # noqa: E731
        launch_operator(self.namespace, env, log, track, args)
        return self.operators[-1]

    def simulate(
        self, scenario: str, prefix: str | None = None, tick: float = 0.5, auto: bool = True
    ) -> SimThread:
        name = prefix or f"{scenario.replace('_', '-')}-{uuid.uuid4().hex[:4]}"
        sim = SimThread(self.mounts, scenario, name, tick=tick, auto=auto)
        self.sims.append(sim)
        return sim

    def start_service(self, repo: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
        port = port or controlplane.find_free_port()
        return launch_sprite_service(repo, port, self.sprite_token, self.services.append), port

    def status(self, name: str) -> dict[str, Any]:
        """A Loop's status."""
        return dict(self.get("loops", name).get("status") or {})

    def close(self) -> None:
        for operator in self.operators:
            operator.stop()
        for sim in self.sims:
            sim.stop()
        for proc in self.services:
            terminate(proc, timeout=10)


@dataclass
class FleetEnv(OperatorEnv):
    """The Fleet and PromotionApply modules' namespace: one operator, metrics on an ephemeral port."""

    sprite_token: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sims: list[SimThread] = field(default_factory=list)
    operator_log: Path | None = None

    def fleet_dir(self, fleet: str) -> Path:
        return self.state_dir / self.namespace / ".superloop" / "ops-manager" / "fleet" / fleet

    def start_operator(self) -> None:
        env = build_operator_env(
            self.sa_kubeconfig,
            self.state_dir,
            self.mount_root,
            confirm_timeout_seconds=4,
            SUPERLOOP_METRICS_PORT="0",
        )
        self.operator_log = self.workdir / "operator.log"
        launch_operator(self.namespace, env, self.operator_log, self.procs.append)

    def operator_output(self) -> str:
        return self.operator_log.read_text(errors="replace") if self.operator_log else ""

    def simulate(self, scenario: str, prefix: str) -> SimThread:
        sim = SimThread(self.mounts, scenario, prefix)
        self.sims.append(sim)
        return sim

    def start_service(self, repo: Path, port: int, runtime: str = SIM_RUNTIME) -> subprocess.Popen[bytes]:
        return launch_sprite_service(repo, port, self.sprite_token, self.procs.append, runtime=runtime)

    @staticmethod
    def stop_proc(proc: subprocess.Popen[bytes]) -> None:
        terminate(proc, timeout=15)

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.get(plural, name).get("status") or {})

    def approve(self, intent: str, context: str = "alice") -> None:
        result = self.plugin("approve", intent, context=context)
        assert result.returncode == 0, result.stderr

    def close(self) -> None:
        for proc in self.procs:
            try:
                self.stop_proc(proc)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for sim in self.sims:
            sim.stop()


@contextmanager
def fleet_operator_env(
    cluster: Cluster,
    workdir: Path,
    prefix: str,
    rbac_checks: Callable[[str], Sequence[Sequence[str]]],
    *,
    sets: Sequence[str] = (),
    sprite_token: str = "",
) -> Iterator[FleetEnv]:
    """The chart watching one fresh namespace and one operator under its ServiceAccount, started once
    ``rbac_checks(namespace)`` pass as that account; everything is stopped and removed afterwards."""
    release_ns = f"e2e-{prefix}rel-{uuid.uuid4().hex[:6]}"
    namespace = f"e2e-{prefix}-{uuid.uuid4().hex[:8]}"
    release = f"{prefix}op"
    with chart_release(
        cluster, release, release_ns, [namespace], peering=f"{release}-{uuid.uuid4().hex[:6]}", sets=sets
    ) as account:
        handle: FleetEnv | None = None
        try:
            sa = write_service_account_kubeconfig(cluster, release_ns, account, workdir / "sa.kubeconfig")
            handle = FleetEnv(
                cluster=cluster, namespace=namespace, workdir=workdir, sa_kubeconfig=sa.path,
                sprite_token=sprite_token,
            )  # fmt: skip
            handle.mounts.mkdir(parents=True, exist_ok=True)
            wait_for_rbac(cluster, sa.path, rbac_checks(namespace))
            handle.start_operator()
            yield handle
        finally:
            if handle is not None:
                handle.close()
