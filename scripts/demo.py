"""The product's main job on one machine: a local cluster, the operator and a simulated fleet.

``make demo`` runs this. It starts the project's own kube-apiserver + etcd + controller manager
(binaries built once by ``e2e/harness/build-k8s.sh``), installs the CRDs, simulates five loop
runs (one served over the sprite HTTP service, four read from PersistentVolumeClaims), creates a
Loop object for each and a Fleet (with an advisory FleetPolicy) over them, runs the operator and
prints the posture (``kubectl get loops,fleets,handoffintents``) as it changes: the fleet
proposes a HandoffIntent for each unsuppressed candidate, which a person approves with
``kubectl superloop approve``. Ctrl-C stops everything it started.

By default the cluster has a node (``e2e/harness/node.py``) and everything runs as deployed: the
operator is the chart's Deployment (``helm install --wait``) from the image the Dockerfile builds
(``e2e/harness/build-image.sh``), and the simulated runtime and its sprite service run in a Pod
next to it, on hostPath volumes bound to the claims. ``--local-operator`` runs the control plane
alone with the operator, simulator and sprite service as local processes (no root needed).

Options: ``--duration SECONDS`` stops on its own (0 = until Ctrl-C) and then checks the posture
(every Loop and the Fleet Ready, intents proposed; exit 1 otherwise), ``--refresh SECONDS`` sets how
often the table is printed, ``--workdir`` where the demo keeps its files (default ``.demo/``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from e2e.harness.controlplane import ControlPlane  # noqa: E402
from e2e.harness.in_cluster import (  # noqa: E402
    POD_USER,
    bound_claim,
    chart_args,
    host_path_volume,
    volume_list,
)
from e2e.harness.node import Node, build_images  # noqa: E402

NAMESPACE = "superloop-demo"
TOKEN = "demo-sprite-token-value"  # noqa: S105 - throwaway secret of a loopback-only demo service
SCENARIOS = ["running", "awaiting_approval", "stale_heartbeat", "contradiction", "failing", "runner_failure"]
BIN = Path(sys.executable).parent
CHART = REPO_ROOT / "helm" / "superloop-ops"
RUNTIME = "superloop-ops simulate"  # the runtime CLI the operator's control path runs in its Pod
LOCAL_CLAIMS = range(2, len(SCENARIOS) + 1)  # demo-2..5 read from claims; demo-1 over HTTP


def _kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(plane.kubectl_path), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _loop_manifest(loop_id: str, *, sprite_url: str | None, claim: str, interval: int) -> str:
    if sprite_url:
        transport = (
            "  transport: sprite_service\n"
            "  service:\n"
            f"    baseUrl: {sprite_url}\n"
            "    tokenSecretRef: {name: demo-sprite-token, key: token}\n"
            "    retryAttempts: 2\n"
            "    retryBackoffSeconds: 1\n"
        )
    else:
        transport = f"  transport: local\n  source:\n    pvc: {{claimName: {claim}}}\n"
    return (
        "apiVersion: ops.superloop.dev/v1alpha1\nkind: Loop\n"
        f"metadata: {{name: {loop_id}, namespace: {NAMESPACE}}}\n"
        f"spec:\n  loopId: {loop_id}\n{transport}"
        f"  reconcileIntervalSeconds: {interval}\n"
        "  alerts: {enabled: false}\n"
    )


def _fleet_manifests(loop_ids: list[str]) -> str:
    """A Fleet referencing the demo Loops, and an advisory policy (proposals only, nothing autonomous)."""
    entries = "".join(f"  - {{loopId: {loop_id}, loopRef: {{name: {loop_id}}}}}\n" for loop_id in loop_ids)
    now = time.time()
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400))
    return (
        "apiVersion: ops.superloop.dev/v1alpha1\nkind: FleetPolicy\n"
        f"metadata: {{name: demo-policy, namespace: {NAMESPACE}}}\n"
        "spec:\n  mode: advisory\n  suppressions: {'*': [health_degraded]}\n"
        "  suppressionTerms:\n    '*': {owner: demo, reason: 'degraded is expected in a demo',"
        f" startsAt: '{starts}', expiresAt: '{expires}'}}\n"
        "---\n"
        "apiVersion: ops.superloop.dev/v1alpha1\nkind: Fleet\n"
        f"metadata: {{name: demo-fleet, namespace: {NAMESPACE}}}\n"
        "spec:\n  fleetId: demo-fleet\n  policyRef: {name: demo-policy}\n  reconcileIntervalSeconds: 10\n"
        f"  loops:\n{entries}"
    )


@contextlib.contextmanager
def _process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    handle = log.open("w")
    proc = subprocess.Popen(
        argv, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        handle.close()


def _wait_for_listen_line(log: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "listening on " in line:
                return line.split("listening on ", 1)[1].strip()
        time.sleep(0.2)
    raise SystemExit(f"sprite service did not start; see {log}")


def _print_hint(plane: ControlPlane) -> None:
    print(
        f"  try: KUBECONFIG={plane.kubeconfig} {BIN / 'kubectl-superloop'} -n {NAMESPACE} "
        "intents | status demo-2 | fleet demo-fleet | approve <intent>\n",
        flush=True,
    )


def _show_posture(
    plane: ControlPlane, stop_at: float | None, refresh: float, alive: Callable[[], None]
) -> None:
    try:
        while stop_at is None or time.monotonic() < stop_at:
            alive()
            print(time.strftime("--- %H:%M:%S ---"))
            print(_kubectl(plane, "-n", NAMESPACE, "get", "loops,fleets,handoffintents"), flush=True)
            time.sleep(refresh)
    except KeyboardInterrupt:
        print("\nstopping ...")
        return
    _check_posture(plane)


def _ready(item: dict[str, Any]) -> str:
    conditions = (item.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    return f"{ready.get('status', 'Unknown')} {ready.get('reason', '')}: {ready.get('message', '')}"


def _check_posture(plane: ControlPlane) -> None:
    """A timed demo ends by checking what it showed: every Loop and the Fleet Ready, intents proposed."""
    listed = json.loads(_kubectl(plane, "-n", NAMESPACE, "get", "loops,fleets,handoffintents", "-o", "json"))
    items = listed.get("items") or []
    not_ready = [
        f"{item['kind']}/{item['metadata']['name']}: {_ready(item)}"
        for item in items
        if item["kind"] in ("Loop", "Fleet") and not _ready(item).startswith("True")
    ]
    loops = sum(1 for item in items if item["kind"] == "Loop")
    intents = sum(1 for item in items if item["kind"] == "HandoffIntent")
    if not_ready or loops != len(SCENARIOS) or intents == 0:
        raise SystemExit(f"demo check failed: {loops} Loops, {intents} intents; not Ready: {not_ready}")
    print(f"demo check: {loops} Loops and the Fleet Ready, {intents} HandoffIntents proposed")


def _prepare_namespace(plane: ControlPlane) -> None:
    _kubectl(plane, "apply", "-f", str(REPO_ROOT / "crds"))
    _kubectl(plane, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    _kubectl(plane, "create", "namespace", NAMESPACE)
    _kubectl(
        plane, "-n", NAMESPACE, "create", "secret", "generic", "demo-sprite-token",
        f"--from-literal=token={TOKEN}",
    )  # fmt: skip
    # the operator uses only Secrets that opt in
    opt_in = "ops.superloop.dev/usable-by=superloop-ops"
    _kubectl(plane, "-n", NAMESPACE, "label", "secret", "demo-sprite-token", opt_in)


def _apply_loops_and_fleet(plane: ControlPlane, sprite_url: str) -> None:
    manifests = [_loop_manifest("demo-1", sprite_url=sprite_url, claim="", interval=5)]
    manifests += [
        _loop_manifest(f"demo-{n}", sprite_url=None, claim=f"demo-claim-{n}", interval=5)
        for n in LOCAL_CLAIMS
    ]
    _kubectl(plane, "apply", "-f", "-", stdin="\n---\n".join(manifests))
    _kubectl(
        plane, "apply", "-f", "-", stdin=_fleet_manifests([f"demo-{n}" for n in range(1, len(SCENARIOS) + 1)])
    )


def _runtime_pod(image: str) -> dict[str, Any]:
    """The simulated runtimes and the sprite service in front of demo-1, on the loops claim."""
    simulate = ["superloop-ops", "simulate", "run", "--repo", "/loops", "--loops", str(len(SCENARIOS)),
                "--loop-prefix", "demo", "--interval", "2"]  # fmt: skip
    for scenario in SCENARIOS:
        simulate += ["--scenario", scenario]
    serve = ["superloop-ops", "sprite-service", "--repo", "/loops/demo-1", "--host", "0.0.0.0",
             "--port", "8080"]  # fmt: skip
    security = {"runAsNonRoot": True, "runAsUser": POD_USER, "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    mounts = [{"name": "loops", "mountPath": "/loops"}]
    containers = [
        {"name": name, "image": image, "imagePullPolicy": "Never", "command": argv,
         "securityContext": security, "volumeMounts": mounts}
        for name, argv in (("runtime", simulate), ("sprite-service", serve))
    ]  # fmt: skip
    token = {"secretKeyRef": {"name": "demo-sprite-token", "key": "token"}}  # never in argv
    containers[1]["env"] = [
        {"name": "SUPERLOOP_RUNTIME_COMMAND", "value": RUNTIME},
        {"name": "OPS_MANAGER_SERVICE_TOKEN", "valueFrom": token},
    ]
    containers[1]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 2}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "demo-runtime", "namespace": NAMESPACE},
        "spec": {
            "containers": containers,
            "volumes": [{"name": "loops", "persistentVolumeClaim": {"claimName": "demo-loops"}}],
        },
    }


def _provision_volumes(plane: ControlPlane, node: Node) -> None:
    """hostPath PVs for the runtime's root, each local loop's repository and the operator's journal."""
    root, state = node.volumes / NAMESPACE, node.volumes / "state"
    directories = [root, state, *(root / f"demo-{n}" for n in range(1, len(SCENARIOS) + 1))]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, POD_USER, POD_USER)
    claims = {"demo-loops": root, **{f"demo-claim-{n}": root / f"demo-{n}" for n in LOCAL_CLAIMS}}
    volumes = [host_path_volume(f"{NAMESPACE}-{c}", path, NAMESPACE, c) for c, path in claims.items()]
    volumes.append(host_path_volume(f"{NAMESPACE}-state", state, NAMESPACE, "ops-superloop-ops-state"))
    _kubectl(plane, "apply", "-f", "-", stdin=volume_list(volumes))
    bound = [bound_claim(claim, f"{NAMESPACE}-{claim}") for claim in claims]
    _kubectl(plane, "-n", NAMESPACE, "apply", "-f", "-", stdin=volume_list(bound))


def _helm(plane: ControlPlane, work: Path, *args: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(plane.kubeconfig))
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(work / "helm" / name.lower())
    result = subprocess.run(
        [str(plane.helm_path), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _pod_demo(work: Path, stop_at: float | None, refresh: float) -> None:
    print("building the operator image (cached) ...", flush=True)
    images = build_images()
    print("starting the local cluster (etcd, kube-apiserver, controller manager, scheduler, kubelet) ...",
          flush=True)  # fmt: skip
    with ControlPlane(work / "k8s", node=True) as plane, Node(plane=plane, images=images) as node:
        print(f"  KUBECONFIG={plane.kubeconfig}")
        _prepare_namespace(plane)
        _provision_volumes(plane, node)
        _kubectl(plane, "apply", "-f", "-", stdin=json.dumps(_runtime_pod(images.image)))
        _kubectl(
            plane, "-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/demo-runtime", "--timeout=180s"
        )
        address = _kubectl(
            plane, "-n", NAMESPACE, "get", "pod", "demo-runtime", "-o", "jsonpath={.status.podIP}"
        )
        _apply_loops_and_fleet(plane, f"http://{address}:8080")
        print(f"helm install --wait: the operator as a Pod from {images.image} ...", flush=True)
        claims = {f"demo-claim-{n}": f"/loops/demo-claim-{n}" for n in LOCAL_CLAIMS}
        values = chart_args(node, NAMESPACE, claims=claims, env={"SUPERLOOP_RUNTIME_COMMAND": RUNTIME})
        values += ["--set", "rbac.secretNames={demo-sprite-token}"]  # the chart reads no Secret by default
        _helm(
            plane,
            work,
            "install",
            "ops",
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--wait",
            "--timeout=300s",
            *values,
        )
        print(_kubectl(plane, "-n", NAMESPACE, "get", "pods", "-o", "wide"))
        _print_hint(plane)
        print(f"  operator logs: kubectl -n {NAMESPACE} logs deploy/ops-superloop-ops\n", flush=True)

        def alive() -> None:
            plane.check_alive()

        _show_posture(plane, stop_at, refresh, alive)


def _local_demo(work: Path, stop_at: float | None, refresh: float) -> None:
    loops_root = work / "loops"
    print("starting the local control plane (etcd, kube-apiserver, kube-controller-manager) ...", flush=True)
    with ControlPlane(work / "k8s") as plane:
        print(f"  KUBECONFIG={plane.kubeconfig}")
        _prepare_namespace(plane)
        sim_argv = [str(BIN / "superloop-ops"), "simulate", "run", "--repo", str(loops_root),
                    "--loops", str(len(SCENARIOS)), "--loop-prefix", "demo", "--interval", "2"]  # fmt: skip
        for scenario in SCENARIOS:
            sim_argv += ["--scenario", scenario]
        with _process(sim_argv, work / "logs" / "simulator.log"):
            deadline = time.monotonic() + 20
            while not (loops_root / "demo-1" / ".superloop").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            service_log = work / "logs" / "sprite-service.log"
            repo = str(loops_root / "demo-1")
            service_argv = [str(BIN / "superloop-ops"), "sprite-service", "--repo", repo, "--port", "0"]
            service_env = dict(os.environ, OPS_MANAGER_SERVICE_TOKEN=TOKEN)  # never in argv
            with _process(service_argv, service_log, service_env):
                _apply_loops_and_fleet(plane, _wait_for_listen_line(service_log))
                claims = {f"demo-claim-{n}": loops_root / f"demo-{n}" for n in LOCAL_CLAIMS}
                env = dict(os.environ)
                env.update(
                    KUBECONFIG=str(plane.kubeconfig),
                    SUPERLOOP_STATE_DIR=str(work / "state"),
                    SUPERLOOP_PVC_DIRS=",".join(f"{NAMESPACE}/{c}={path}" for c, path in claims.items()),
                    SUPERLOOP_METRICS_PORT="0",
                )
                operator_argv = [str(BIN / "kopf"), "run", "-m", "superloop_ops.main",
                                 "--namespace", NAMESPACE, "--standalone", "--quiet"]  # fmt: skip
                with _process(operator_argv, work / "logs" / "operator.log", env=env) as operator:
                    print(f"operator started (logs in {work / 'logs'}); Ctrl-C to stop")
                    _print_hint(plane)

                    def alive() -> None:
                        if operator.poll() is not None:
                            raise SystemExit(f"the operator exited; see {work / 'logs' / 'operator.log'}")

                    _show_posture(plane, stop_at, refresh, alive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--refresh", type=float, default=5.0)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".demo")
    parser.add_argument(
        "--local-operator", action="store_true",
        help="no node: the operator, simulator and sprite service as local processes",
    )  # fmt: skip
    args = parser.parse_args()

    work: Path = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    stop_at = time.monotonic() + args.duration if args.duration > 0 else None
    if args.local_operator:
        _local_demo(work, stop_at, args.refresh)
    else:
        _pod_demo(work, stop_at, args.refresh)
    print("demo stopped; every process it started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
