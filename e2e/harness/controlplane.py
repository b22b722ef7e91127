"""A real Kubernetes control plane on loopback, for e2e tests and the local demo.

kind needs a Docker engine, which CI machines and sandboxes often lack, so the project runs the
control plane's own binaries (built once by ``build-k8s.sh`` into a cache outside the
repository): etcd, kube-apiserver and kube-controller-manager (namespace deletion, garbage
collection, service-account tokens). Pods run only with a node: ``node=True`` prepares the
control plane for one (kube-scheduler, the controllers a Deployment needs) and
``e2e/harness/node.py`` starts the kubelet and containerd.

How it works:
- PKI is made with the ``openssl`` CLI in the cluster directory (ECDSA P-256 keys: RSA key
  generation alone took seconds on a loaded 2-core machine): a CA, a serving certificate for
  127.0.0.1/localhost (and the advertise address), a service-account signing key, and client
  certificates for ``admin`` (group ``system:masters``) and the controller manager.
- ``alice`` and ``bob`` are ordinary users with random static bearer tokens
  (``--token-auth-file``); RBAC is on, so they can do nothing until a test grants it.
- Every process starts in its own process group (and, on Linux, dies with its parent through
  ``PR_SET_PDEATHSIG``, even if the test process is SIGKILLed); :meth:`ControlPlane.stop`
  signals each group by PID, so nothing is left behind, also after Ctrl-C or a failed test.
- etcd keeps its data on tmpfs (``/dev/shm`` when present) with fsync off: tests need speed,
  not durability.

The advertise address is the first non-loopback IPv4 address of the host. A host with none
(a network namespace with only ``lo``) falls back to ``127.0.0.1``: with
``--endpoint-reconciler-type=none`` the apiserver never publishes its own endpoints, so a
loopback advertise address is harmless there.

CLI (used by the README demo)::

    python -m e2e.harness.controlplane up --dir /tmp/k8s   # prints KUBECONFIG=..., runs until killed
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

__all__ = [
    "DEFAULT_K8S_VERSION",
    "NODE_BINARIES",
    "REQUIRED_BINARIES",
    "ControlPlane",
    "ControlPlaneError",
    "Identity",
    "build_kubeconfig",
    "detect_advertise_address",
    "fetch_bin_dir",
    "find_free_port",
    "main",
    "missing_binaries",
    "running_control_plane",
]

DEFAULT_K8S_VERSION = "v1.36.3"
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
# With a node (e2e/harness/node.py): the scheduler, the kubelet and its container runtime.
NODE_BINARIES = ("kube-scheduler", "kubelet", "containerd", "containerd-shim-runc-v2", "ctr")
# Controllers a node needs besides the base set: Deployments and their Pods, PV binding, the
# kube-root-ca.crt ConfigMap every Pod's ServiceAccount volume mounts, the node's taints.
_BASE_CONTROLLERS = "namespace,garbagecollector,serviceaccount,serviceaccount-token,clusterrole-aggregation"
_NODE_CONTROLLERS = (
    "deployment-controller,replicaset-controller,persistentvolume-binder-controller,"
    "root-ca-certificate-publisher-controller,node-lifecycle-controller"
)
CLUSTER_NAME = "superloop-e2e"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_PR_SET_PDEATHSIG = 1
_EC_CURVE = "ec_paramgen_curve:prime256v1"
_START_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message names the failing component and log."""


@dataclass(frozen=True)
class Identity:
    """One kubeconfig user/context. ``token`` is set for static-token users, else a client cert."""

    name: str
    username: str
    groups: tuple[str, ...]
    token: str | None = None


def fetch_bin_dir(version: str = DEFAULT_K8S_VERSION) -> Path:
    """Where build-k8s.sh caches the binaries (``SUPERLOOP_K8S_BIN`` overrides)."""
    override = os.environ.get("SUPERLOOP_K8S_BIN")
    if override:
        return Path(override)
    cache = os.environ.get("SUPERLOOP_K8S_CACHE") or str(Path.home() / ".cache" / "superloop-ops" / "k8s")
    return Path(cache) / version / "bin"


def missing_binaries(bin_dir: Path, *, node: bool = False) -> list[str]:
    """Names of required binaries absent from ``bin_dir`` (empty when all are there)."""
    wanted = REQUIRED_BINARIES + (NODE_BINARIES if node else ())
    return [name for name in wanted if not os.access(bin_dir / name, os.X_OK)]


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def detect_advertise_address() -> str:
    """First non-loopback IPv4 address of this host, else 127.0.0.1 (see the module docstring).

    The UDP connect trick sends nothing; it only asks the kernel which source address the
    default route would use. Hosts without a default route fall back to the hostname lookup.
    """
    candidates: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        candidates.append(sock.getsockname()[0])
    with contextlib.suppress(OSError):
        candidates.extend(socket.gethostbyname_ex(socket.gethostname())[2])
    for address in candidates:
        if address and not address.startswith("127.") and address != "0.0.0.0":
            return address
    return "127.0.0.1"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def build_kubeconfig(
    *, server: str, ca_file: Path, identities: Sequence[Identity], cert_dir: Path, default: str
) -> str:
    """Kubeconfig text with one user and one context per identity (JSON is valid YAML)."""
    users = []
    for ident in identities:
        if ident.token is not None:
            user: dict[str, str] = {"token": ident.token}
        else:
            user = {
                "client-certificate-data": _b64(cert_dir / f"{ident.name}.crt"),
                "client-key-data": _b64(cert_dir / f"{ident.name}.key"),
            }
        users.append({"name": ident.name, "user": user})
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)}}
        ],
        "users": users,
        "contexts": [
            {"name": ident.name, "context": {"cluster": CLUSTER_NAME, "user": ident.name}}
            for ident in identities
        ],
        "current-context": default,
    }
    return json.dumps(config, indent=2) + "\n"


def _set_parent_death_signal() -> None:
    """In the child: get SIGKILL if the test process dies without cleaning up (Linux only).

    SIGKILL, not SIGTERM: nothing here holds data worth a graceful shutdown, and a loaded
    machine can take many seconds to finish an apiserver's graceful termination.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed: {result.stderr.strip()}")


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_handle: IO[bytes]
    argv: list[str]


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager under ``workdir``; use as a context manager.

    After :meth:`start`, ``kubeconfig`` has the contexts ``admin``, ``alice`` and ``bob``
    (also listed in ``identities``), ``server`` is the apiserver URL, and ``pids.json`` in
    ``workdir`` names each component's PID.

    ``node=True`` prepares the control plane for a kubelet (e2e/harness/node.py): the apiserver
    also listens on the advertise address (Pods reach it there) with a client certificate for
    the kubelet API, the controller manager runs the Deployment, ReplicaSet, PV binder, root-CA
    publisher and node lifecycle controllers, and kube-scheduler runs.
    """

    workdir: Path
    bin_dir: Path = field(default_factory=fetch_bin_dir)
    advertise_address: str | None = None
    startup_timeout: float = 90.0
    node: bool = False
    identities: tuple[Identity, ...] = ()
    server: str = ""
    advertised: str = ""
    start_seconds: float = 0.0
    _procs: list[_Proc] = field(default_factory=list)
    _etcd_dir: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm_path(self) -> Path:
        return self.bin_dir / "helm"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and wait until it serves; on any failure stop what was started."""
        missing = missing_binaries(self.bin_dir, node=self.node)
        if missing:
            raise ControlPlaneError(
                f"missing binaries in {self.bin_dir}: {', '.join(missing)}; "
                "build them with `bash e2e/harness/build-k8s.sh`"
            )
        if shutil.which("openssl") is None:
            raise ControlPlaneError("openssl is required for the control plane PKI (make tools)")
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        advertise = self.advertised = self.advertise_address or detect_advertise_address()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._start_once(advertise)
                break
            except ControlPlaneError as exc:
                self.stop()
                # Free ports are picked before the components bind them; another cluster
                # starting at the same moment can win the race. Only that is retried.
                if attempt == _START_ATTEMPTS or "address already in use" not in str(exc):
                    raise
            except BaseException:
                self.stop()
                raise
        self.start_seconds = time.monotonic() - began
        _write_private(self.workdir / "pids.json", json.dumps(self.pids(), indent=2) + "\n")

    def _start_once(self, advertise: str) -> None:
        self._write_pki(advertise)
        etcd_port = self._start_etcd()
        api_port = find_free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._start_apiserver(etcd_port, api_port, advertise)
        self._write_kubeconfigs()
        self._wait_ready(f"{self.server}/readyz", "kube-apiserver", client_cert=True)
        kcm_port = self._start_controller_manager()
        self._wait_ready(
            f"https://127.0.0.1:{kcm_port}/healthz", "kube-controller-manager", client_cert=False
        )
        if self.node:
            scheduler_port = self._start_scheduler()
            self._wait_ready(
                f"https://127.0.0.1:{scheduler_port}/healthz", "kube-scheduler", client_cert=False
            )

    def stop(self) -> None:
        """SIGTERM each process group (reverse start order), SIGKILL after 10 s; remove etcd data."""
        for proc in reversed(self._procs):
            _terminate_group(proc.popen)
            proc.log_handle.close()
        self._procs.clear()
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
            self._etcd_dir = None

    def restart(self, name: str, *, down_seconds: float = 1.0) -> None:
        """SIGKILL one component (``etcd``, ``kube-apiserver``, ...) and start it again, same flags.

        etcd keeps its data directory, so the cluster's objects survive; returns once the
        apiserver answers ``/readyz`` again (fault tests: watches must resume on their own).
        """
        proc = next(p for p in self._procs if p.name == name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        proc.log_handle.close()
        self._procs.remove(proc)
        time.sleep(down_seconds)
        self.spawn(name, proc.argv)
        self._wait_ready(f"{self.server}/readyz", "kube-apiserver", client_cert=True)

    def pids(self) -> dict[str, int]:
        """PID of each running component (for diagnostics and the no-orphan test)."""
        return {proc.name: proc.popen.pid for proc in self._procs}

    # -- steps -------------------------------------------------------------------------------

    def _write_pki(self, advertise: str) -> None:
        pki = self.pki
        pki.mkdir(parents=True, exist_ok=True)
        os.chmod(pki, 0o700)
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", _EC_CURVE, "-nodes", "-days", "7",
            "-subj", "/CN=superloop-e2e-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=pki,
        )  # fmt: skip
        sans = {
            "IP:127.0.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default.svc",
            f"IP:{advertise}",
        }
        (pki / "serving.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(sorted(sans))}\n"
        )
        self._sign(pki, "serving", "/CN=kube-apiserver", "serving.ext")
        (pki / "client.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
        self._sign(pki, "admin", "/O=system:masters/CN=admin", "client.ext")
        # A test harness: the controller manager gets full rights so namespace deletion and
        # garbage collection of custom resources never stall on RBAC.
        self._sign(
            pki, "controller-manager", "/O=system:masters/CN=system:kube-controller-manager", "client.ext"
        )
        if self.node:
            self._sign(pki, "scheduler", "/O=system:masters/CN=system:kube-scheduler", "client.ext")
            # The apiserver's identity towards the kubelet API (logs, exec, port-forward).
            self._sign(
                pki, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "client.ext"
            )
        _openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "sa.key",
            cwd=pki,
        )
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
        alice, bob = secrets.token_hex(16), secrets.token_hex(16)
        tokens = pki / "tokens.csv"
        tokens.write_text(
            f'{alice},alice,uid-alice,"superloop:testers"\n{bob},bob,uid-bob,"superloop:testers"\n'
        )
        os.chmod(tokens, 0o600)
        self.identities = (
            Identity("admin", "admin", ("system:masters",)),
            Identity("alice", "alice", ("superloop:testers",), token=alice),
            Identity("bob", "bob", ("superloop:testers",), token=bob),
        )

    def sign(self, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
        """A certificate and key signed by this control plane's CA (for the node's components)."""
        (self.pki / f"{name}.ext").write_text(extensions)
        self._sign(self.pki, name, subject, f"{name}.ext")
        return self.pki / f"{name}.crt", self.pki / f"{name}.key"

    @staticmethod
    def _sign(pki: Path, name: str, subject: str, extfile: str) -> None:
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", _EC_CURVE, "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=pki,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "7", "-extfile", extfile, "-out", f"{name}.crt", cwd=pki,
        )  # fmt: skip

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a component in its own process group, logging to ``logs/<name>.log``; :meth:`stop`
        (or :meth:`terminate`) ends it, and :meth:`check_alive` watches it."""
        log = self.workdir / "logs" / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal,
        )
        self._procs.append(_Proc(name, popen, log, handle, argv))
        return popen

    def terminate(self, name: str) -> None:
        """Stop one component (as :meth:`stop` does) before the others."""
        for proc in [p for p in self._procs if p.name == name]:
            _terminate_group(proc.popen)
            proc.log_handle.close()
            self._procs.remove(proc)

    def _start_etcd(self) -> int:
        shm = Path("/dev/shm")
        if shm in self.workdir.resolve().parents:  # already on tmpfs: keep everything in one place
            self._etcd_dir = self.workdir / "etcd"
            self._etcd_dir.mkdir(exist_ok=True)
        else:
            tmp_root = shm if shm.is_dir() else None
            self._etcd_dir = Path(tempfile.mkdtemp(prefix="superloop-etcd-", dir=tmp_root))
        client, peer = find_free_port(), find_free_port()
        self.spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=e2e",
                f"--data-dir={self._etcd_dir / 'data'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=e2e=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        return client

    def _start_apiserver(self, etcd_port: int, api_port: int, advertise: str) -> None:
        pki = self.pki
        node_args = [
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
        self.spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                # Pods reach the apiserver at the advertise address (there is no kube-proxy).
                f"--bind-address={'0.0.0.0' if self.node else '127.0.0.1'}",
                f"--secure-port={api_port}",
                f"--advertise-address={advertise}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                f"--cert-dir={pki}",
                "--profiling=false",
                "--v=1",
                *(node_args if self.node else []),
            ],
        )

    def _start_controller_manager(self) -> int:
        pki = self.pki
        port = find_free_port()
        self.spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
                "--controllers="
                + (f"{_BASE_CONTROLLERS},{_NODE_CONTROLLERS}" if self.node else _BASE_CONTROLLERS),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--concurrent-namespace-syncs=4",
                "--concurrent-gc-syncs=4",
                "--v=1",
            ],
        )
        return port

    def _start_scheduler(self) -> int:
        port = find_free_port()
        self.spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--v=1",
            ],
        )
        return port

    def component_kubeconfig(self, name: str, username: str) -> Path:
        """``<workdir>/<name>.kubeconfig``: the client certificate ``pki/<name>.crt`` on this apiserver."""
        ident = Identity(name, username, ("system:masters",))
        text = build_kubeconfig(
            server=self.server,
            ca_file=self.pki / "ca.crt",
            identities=[ident],
            cert_dir=self.pki,
            default=name,
        )
        path = self.workdir / f"{name}.kubeconfig"
        _write_private(path, text)
        return path

    def _write_kubeconfigs(self) -> None:
        ca = self.pki / "ca.crt"
        text = build_kubeconfig(
            server=self.server, ca_file=ca, identities=self.identities, cert_dir=self.pki, default="admin"
        )
        _write_private(self.kubeconfig, text)
        self.component_kubeconfig("controller-manager", "system:kube-controller-manager")
        if self.node:
            self.component_kubeconfig("scheduler", "system:kube-scheduler")

    def _wait_ready(self, url: str, name: str, *, client_cert: bool) -> None:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if client_cert:
            context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        else:  # the controller manager serves a self-signed certificate of its own
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{name} not ready after {self.startup_timeout:.0f}s ({last_error}); see {self.workdir / 'logs'}"
        )

    def check_alive(self) -> None:
        """Raise ControlPlaneError (with the log tail) if any component has exited."""
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                tail = proc.log.read_text(errors="replace").splitlines()[-15:]
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code}; last log lines ({proc.log}):\n" + "\n".join(tail)
                )


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _terminate_group(popen: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Signal the child's whole process group (it leads its own session), then reap it."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=grace)
    # Reap any stragglers left in the group after the leader exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_control_plane(workdir: Path | None = None, **kwargs: object) -> Iterator[ControlPlane]:
    """Start a control plane in ``workdir`` (a fresh tmpfs directory if None) and always stop it."""
    owned = workdir is None
    root = workdir or Path(
        tempfile.mkdtemp(prefix="superloop-k8s-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    )
    plane = ControlPlane(workdir=root, **kwargs)  # type: ignore[arg-type]
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _cmd_up(args: argparse.Namespace) -> int:
    plane = ControlPlane(
        workdir=Path(args.dir).resolve(), bin_dir=Path(args.bin_dir) if args.bin_dir else fetch_bin_dir()
    )

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds start() or the wait loop; `finally` stops every process

    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, _request_stop)
    try:
        plane.start()
        print(f"KUBECONFIG={plane.kubeconfig}", flush=True)
        print(
            f"control plane ready in {plane.start_seconds:.1f}s at {plane.server}; contexts: "
            + ", ".join(ident.name for ident in plane.identities)
            + f"; logs in {plane.workdir / 'logs'}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while True:
            plane.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        plane.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``up --dir DIR``: run a control plane until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m e2e.harness.controlplane", description="Run the e2e control plane."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver and kube-controller-manager; run until killed")
    up.add_argument("--dir", required=True, help="directory for PKI, kubeconfig and logs")
    up.add_argument("--bin-dir", default=None, help="binaries (default: the build-k8s.sh cache)")
    args = parser.parse_args(argv)
    return _cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
