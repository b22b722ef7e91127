"""Session fixtures for e2e tests: one cluster per run, CRDs installed once, a namespace per test.

Which cluster:
- ``$KUBECONFIG`` set: that cluster, unchanged (it must answer ``/readyz``); test users are
  impersonated from its current context.
- otherwise: the project's own control plane (``e2e/harness/controlplane.py``) from the binaries
  ``e2e/harness/build-k8s.sh`` caches. Missing binaries fail the run with instructions: e2e
  tests are never skipped silently.

The node (``e2e/harness/node.py``: containerd + kubelet, so Pods run) is opt-in per session:
``pytest --node`` or ``SUPERLOOP_E2E_NODE=1`` (``make test`` sets it). It needs the operator
image, built first by ``e2e/harness/build-image.sh``. Tests marked ``node`` (the in-cluster
module) are deselected without it, and the header of the run says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import controlplane
from e2e.harness.cluster import CRD_DIRS, Cluster, cluster_of, find_tool, install_crds
from e2e.harness.node import Node, build_images

E2E_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--node", action="store_true", default=False,
        help="give the e2e cluster a node (kubelet + containerd) and run the in-cluster tests "
        "(also SUPERLOOP_E2E_NODE=1)",
    )  # fmt: skip


def node_enabled(config: pytest.Config) -> bool:
    """The node is on for this session: ``--node`` or ``SUPERLOOP_E2E_NODE`` (not ``0``), never
    on an external ``$KUBECONFIG`` cluster."""
    wanted = bool(config.getoption("--node")) or os.environ.get("SUPERLOOP_E2E_NODE", "0") not in ("", "0")
    return wanted and not os.environ.get("KUBECONFIG")


def pytest_report_header(config: pytest.Config) -> str:
    state = "on" if node_enabled(config) else "off (tests marked `node` are deselected; --node)"
    return f"e2e node: {state}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under e2e/ carries the ``e2e`` marker (select or deselect with ``-m``); tests
    marked ``node`` are deselected when the session has no node."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
    if node_enabled(config):
        return
    deselected = [item for item in items if item.get_closest_marker("node")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("node")]


def _external_cluster(kubeconfig: str, workdir: Path) -> Cluster:
    bin_dir = controlplane.fetch_bin_dir()
    kubectl, helm = find_tool("kubectl", bin_dir), find_tool("helm", bin_dir)
    if kubectl is None or helm is None:
        pytest.fail(
            f"KUBECONFIG={kubeconfig} is set but kubectl/helm are missing; "
            "run `bash e2e/harness/build-k8s.sh` or put them on PATH"
        )
    cluster = Cluster(
        kubeconfig=Path(kubeconfig), kubectl_bin=kubectl, helm_bin=helm, workdir=workdir, external=True
    )
    probe = cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=20)
    if probe.returncode != 0:
        pytest.fail(
            f"KUBECONFIG={kubeconfig} is set but its cluster is not reachable ({probe.stderr.strip()}); "
            "unset KUBECONFIG to run e2e on the project's own control plane"
        )
    return cluster


@pytest.fixture(scope="session")
def _cluster_and_node(request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, Node | None]]:
    """The cluster for this run with our CRDs installed, and its node when the session has one."""
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix="superloop-e2e-", dir=shm if shm.is_dir() else None))
    try:
        external = os.environ.get("KUBECONFIG")
        if external:
            handle = _external_cluster(external, workdir)
            install_crds(handle, CRD_DIRS)
            yield handle, None
            return
        with_node = node_enabled(request.config)
        bin_dir = controlplane.fetch_bin_dir()
        missing = controlplane.missing_binaries(bin_dir, node=with_node)
        if missing:
            pytest.fail(
                "e2e needs a Kubernetes control plane: binaries missing in "
                f"{bin_dir} ({', '.join(missing)}). "
                "Build them once with `bash e2e/harness/build-k8s.sh` (make k8s-binaries), "
                "or set KUBECONFIG to a reachable cluster.",
                pytrace=False,
            )
        plane = controlplane.ControlPlane(workdir=workdir / "controlplane", bin_dir=bin_dir, node=with_node)
        with plane:
            handle = cluster_of(plane, workdir)
            install_crds(handle, CRD_DIRS)
            if not with_node:
                yield handle, None
                return
            with Node(plane=plane, images=build_images()) as node:
                yield handle, node
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(_cluster_and_node: tuple[Cluster, Node | None]) -> Cluster:
    """The cluster for this run, with our CRDs installed (see the module docstring)."""
    return _cluster_and_node[0]


@pytest.fixture(scope="session")
def node(_cluster_and_node: tuple[Cluster, Node | None]) -> Node:
    """The cluster's node (only tests marked ``node`` ask for it; they run only when it is on)."""
    found = _cluster_and_node[1]
    if found is None:
        pytest.fail("this test needs the e2e node: mark it `node` (pytest --node or SUPERLOOP_E2E_NODE=1)")
    return found


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
