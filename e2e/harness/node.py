"""A node for the e2e control plane: containerd 2 with runc and a CNI bridge, and a kubelet.

kind would give a node, but it needs a Docker engine and registry images; this machine has
neither. The node runs the upstream binaries as plain processes instead, next to the control
plane (which must be started with ``node=True``: scheduler, Deployment/ReplicaSet/PV binder
controllers, apiserver on the advertise address). Requirements: root, cgroup v1 or v2,
``runc``, ``/usr/lib/cni/{bridge,host-local,loopback}`` (Debian's runc and
containernetworking-plugins; ``make tools``), and containerd/kubelet built by build-k8s.sh.

How it works:
- **Images.** Nothing is pulled. ``build-image.sh`` builds the operator image (and the pod
  sandbox image, a ``sleep infinity`` on the same base) with podman and saves both to a
  docker-archive, which is imported into this containerd (``ctr images import``) before the
  kubelet starts; Pods use ``imagePullPolicy: Never`` or ``IfNotPresent``.
- **containerd** (config version 3) keeps its root and state in this node's directory and
  listens on a socket there; NRI and the TCP stream server are off, so two nodes (two test
  sessions) never share a socket. Runtime ``runc`` with cgroupfs (no systemd here).
- **CNI**: a bridge (``slk<id>``) with host-local addresses in a /24 no route of the host uses,
  no masquerading (Pods talk to the host only). The apiserver listens on the advertise address,
  and Pods are given it through ``KUBERNETES_SERVICE_HOST/PORT`` (:meth:`Node.apiserver_env`):
  there is no kube-proxy to route the ``kubernetes`` Service's ClusterIP.
- **kubelet**: cgroupfs driver under its own cgroup root (``/superloop-<id>``), ``failCgroupV1:
  false`` (the VM is cgroup v1; 1.35+ refuses it otherwise), a client certificate in
  ``system:masters``, its API on the advertise address with x509 authentication (the
  apiserver's kubelet client certificate) for logs and port-forward. Image GC and eviction are
  off in effect (thresholds at 100 % / 1 %): a test node must not delete its only images.
  The kubelet sets the kernel tunables it wants (vm.overcommit_memory=1, kernel.panic=10,
  kernel.panic_on_oops=1); :meth:`Node.stop` puts the previous values back.
- **Stopping**: the node is cordoned and its Pods deleted, so the kubelet tears their sandboxes
  and networks down through CNI; then the kubelet and containerd stop, any process left in the
  node's cgroups or a shim of this containerd is killed by PID, mounts under the node's
  directory are detached, its cgroups and bridge removed and the directory deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e.harness.controlplane import ControlPlane, ControlPlaneError, find_free_port

__all__ = ["NODE_NAME", "Node", "NodeImages", "build_images", "node_prerequisites"]

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "superloop-node"
CNI_BIN = Path("/usr/lib/cni")
CGROUP_FS = Path("/sys/fs/cgroup")
_KERNEL_TUNABLES = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


@dataclass(frozen=True)
class NodeImages:
    """The operator image and the pod sandbox image, both in one docker-archive."""

    image: str
    pause: str
    archive: Path


def build_images(timeout: float = 1800) -> NodeImages:
    """Run build-image.sh (returns at once when nothing changed) and read what it built."""
    result = subprocess.run(
        ["bash", str(REPO / "e2e" / "harness" / "build-image.sh")],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ControlPlaneError(f"build-image.sh failed:\n{result.stderr[-3000:]}")
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return NodeImages(image=values["IMAGE"], pause=values["PAUSE_IMAGE"], archive=Path(values["ARCHIVE"]))


def node_prerequisites() -> list[str]:
    """What this host lacks to run a node (empty when nothing)."""
    lacking = []
    if os.geteuid() != 0:
        lacking.append("root (the kubelet and containerd manage cgroups, mounts and network namespaces)")
    if shutil.which("runc") is None:
        lacking.append("runc (make tools)")
    lacking.extend(
        f"{CNI_BIN / plugin} (make tools)"
        for plugin in ("bridge", "host-local", "loopback")
        if not (CNI_BIN / plugin).exists()
    )
    return lacking


def _free_subnet() -> str:
    """A 10.2xx.y.0/24 that no route of this host covers (another session's node has its own)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    used = set(re.findall(r"^(10\.\d+\.\d+)\.\d+/", routes, flags=re.MULTILINE))
    for _ in range(200):
        prefix = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        if prefix not in used:
            return f"{prefix}.0/24"
    raise ControlPlaneError("no free 10.2xx.y.0/24 subnet for the node's bridge")


@dataclass
class Node:
    """One kubelet + containerd registered as ``superloop-node`` with ``plane``; a context manager."""

    plane: ControlPlane
    images: NodeImages
    ready_timeout: float = 180.0
    ident: str = field(default_factory=lambda: secrets.token_hex(4))
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="superloop-node-", dir="/var/tmp"))
    )
    address: str = ""
    start_seconds: float = 0.0
    _kernel: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def bridge(self) -> str:
        return f"slk{self.ident}"

    @property
    def cgroup_root(self) -> str:
        return f"superloop-{self.ident}"

    @property
    def volumes(self) -> Path:
        """Where hostPath PersistentVolumes of the tests live."""
        return self.workdir / "volumes"

    def apiserver_env(self) -> dict[str, str]:
        """What a Pod needs to reach the apiserver in-cluster (no kube-proxy for the ClusterIP)."""
        port = self.plane.server.rsplit(":", 1)[1]
        return {"KUBERNETES_SERVICE_HOST": self.address, "KUBERNETES_SERVICE_PORT": port}

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """containerd, images, kubelet; returns once the node is Ready (else stops and raises)."""
        lacking = node_prerequisites()
        if lacking:
            raise ControlPlaneError("the e2e node needs: " + "; ".join(lacking))
        began = time.monotonic()
        self.address = self.plane.advertised
        if self.address.startswith("127."):
            raise ControlPlaneError(
                "the e2e node needs a non-loopback IPv4 address (Pods reach the apiserver there)"
            )
        try:
            for sub in ("logs", "volumes", "cni/net.d", "cni/ipam", "pod-logs"):
                (self.workdir / sub).mkdir(parents=True, exist_ok=True)
            self._remember_kernel_tunables()
            self._write_cni()
            self._start_containerd()
            self._import_images()
            self._make_cgroup_root()
            self._start_kubelet()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Tear everything down (see the module docstring); safe to call twice."""
        if "kubelet" in self.plane.pids():
            self._drain()
        self.plane.terminate("kubelet")
        self._kill_cgroup_processes()
        self.plane.terminate("containerd")
        self._kill_shims()
        self._detach_mounts()
        self._remove_cgroups()
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
        self._restore_kernel_tunables()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- start steps -------------------------------------------------------------------------

    def _write_cni(self) -> None:
        subnet = _free_subnet()
        conf = {
            "cniVersion": "1.0.0",
            "name": f"superloop-{self.ident}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.workdir / "cni" / "net.d" / "10-superloop.conflist").write_text(json.dumps(conf, indent=2))

    def _containerd_config(self) -> str:
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        runc = shutil.which("runc") or "runc"
        return f"""version = 3
root = "{self.workdir / "containerd" / "root"}"
state = "{self.workdir / "containerd" / "state"}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{self.workdir / "containerd" / "opt"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{self.images.pause}"

[{cri_runtime}]
  enable_selinux = false
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE (a sandboxed VM) no process may lower its OOM score below the
  # runtime's own: clamp the sandbox's -998 (and Guaranteed Pods' -997) instead of failing.
  restrict_oom_score_adj = true
  [{cri_runtime}.containerd]
    default_runtime_name = "runc"
    [{cri_runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_runtime}.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{self.workdir / "containerd" / "runc"}"
        SystemdCgroup = false
  [{cri_runtime}.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{self.workdir / "cni" / "net.d"}"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""

    def _start_containerd(self) -> None:
        config = self.workdir / "containerd.toml"
        config.write_text(self._containerd_config())
        self.plane.spawn(
            "containerd", [str(self.plane.bin_dir / "containerd"), f"--config={config}", "--log-level=warn"]
        )
        self._until(lambda: self._ctr("version", check=False).returncode == 0, "containerd to serve")

    def _ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.plane.bin_dir / "ctr"), f"--address={self.socket}", "--namespace=k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _import_images(self) -> None:
        self._ctr("images", "import", "--no-unpack=false", str(self.images.archive), timeout=600)
        listed = self._ctr("images", "list", "--quiet").stdout.split()
        for ref in (self.images.image, self.images.pause):
            if ref not in listed:
                raise ControlPlaneError(f"{ref} not in containerd after import (have {listed})")

    def _controllers(self) -> list[Path]:
        """The cgroup hierarchies the kubelet puts its root under: v1's (with the hybrid layout's
        ``unified``, which it uses too), or the single v2 one."""
        if (CGROUP_FS / "cgroup.controllers").exists():
            return [CGROUP_FS]
        return [
            path
            for path in sorted(CGROUP_FS.iterdir())
            if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists()
        ]

    def _make_cgroup_root(self) -> None:
        """The kubelet requires its --cgroup-root to exist in every hierarchy."""
        for hierarchy in self._controllers():
            root = hierarchy / self.cgroup_root
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset children start empty
                if (hierarchy / name).exists():
                    (root / name).write_text((hierarchy / name).read_text())

    def _kubelet_config(self) -> dict[str, object]:
        ca = str(self.plane.pki / "ca.crt")
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.address,
            "port": find_free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": find_free_port(),
            "tlsCertFile": str(self.plane.pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(self.plane.pki / "kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": ca},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 30,
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
        }

    def _start_kubelet(self) -> None:
        self.plane.sign(
            "kubelet", f"/O=system:masters/CN=system:node:{NODE_NAME}",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=IP:{self.address},DNS:{NODE_NAME}\n",
        )  # fmt: skip
        kubeconfig = self.plane.component_kubeconfig("kubelet", f"system:node:{NODE_NAME}")
        config = self.workdir / "kubelet.yaml"
        config.write_text(json.dumps(self._kubelet_config(), indent=2))
        self.plane.spawn(
            "kubelet",
            [
                str(self.plane.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.address}",
                "--v=1",
            ],
        )

    def _wait_ready(self) -> None:
        def ready() -> bool:
            result = self._kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if result.returncode != 0:
                return False
            node = json.loads(result.stdout)
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
            return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

        self._until(ready, f"node {NODE_NAME} to be Ready", timeout=self.ready_timeout)

    # -- stop steps --------------------------------------------------------------------------

    def _drain(self) -> None:
        """Cordon, delete every Pod, and give the kubelet a moment to stop their sandboxes."""
        self._kubectl("cordon", NODE_NAME, check=False)
        self._kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force", "--wait=false",
            check=False,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tasks = self._ctr("tasks", "list", "--quiet", check=False, timeout=10)
            if tasks.returncode != 0 or not tasks.stdout.strip():
                return
            time.sleep(0.5)

    def _kill_cgroup_processes(self) -> None:
        for hierarchy in self._controllers():
            for procs in (hierarchy / self.cgroup_root).rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design; end those of this containerd (by PID)."""
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and marker in cmdline:
                    os.kill(int(entry.name), signal.SIGKILL)

    def _detach_mounts(self) -> None:
        root = str(self.workdir)
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4].replace("\\040", " ")
                if point == root or point.startswith(root + "/"):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)

    def _remove_cgroups(self) -> None:
        for hierarchy in self._controllers():
            root = hierarchy / self.cgroup_root
            if not root.is_dir():
                continue
            for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()

    def _remember_kernel_tunables(self) -> None:
        for name in _KERNEL_TUNABLES:
            with contextlib.suppress(OSError):
                self._kernel[name] = (Path("/proc/sys") / name).read_text().strip()

    def _restore_kernel_tunables(self) -> None:
        for name, value in self._kernel.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / name).write_text(value)

    # -- helpers -----------------------------------------------------------------------------

    def _kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.plane.kubectl_path), f"--kubeconfig={self.plane.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _until(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.plane.check_alive()
            if check():
                return
            time.sleep(0.5)
        raise ControlPlaneError(
            f"timed out after {timeout:.0f}s waiting for {what}; see {self.plane.workdir / 'logs'}"
        )
