"""The product's main job on one machine: a local control plane, the operator and a simulated fleet.

``make demo`` runs this. It starts the project's own kube-apiserver + etcd + controller manager on
127.0.0.1 (binaries built once by ``e2e/harness/build-k8s.sh``), installs the CRDs, simulates
five loop runs (one served over the sprite HTTP service, four read from "PVC" directories),
creates a Loop object for each and a Fleet (with an advisory FleetPolicy) over them, starts the
operator (``kopf run``) and prints the posture (``kubectl get loops,fleets,handoffintents``) as it
changes: the fleet proposes a HandoffIntent for each unsuppressed candidate, which a person
approves with ``kubectl superloop approve``. Ctrl-C stops everything it started.

Options: ``--duration SECONDS`` stops on its own (0 = until Ctrl-C), ``--refresh SECONDS`` sets how
often the table is printed, ``--workdir`` where the demo keeps its files (default ``.demo/``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from e2e.harness.controlplane import ControlPlane  # noqa: E402

NAMESPACE = "superloop-demo"
TOKEN = "demo-sprite-token-value"  # noqa: S105 - throwaway secret of a loopback-only demo service
SCENARIOS = ["running", "awaiting_approval", "stale_heartbeat", "contradiction", "failing", "runner_failure"]
BIN = Path(sys.executable).parent


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
    return (
        "apiVersion: ops.superloop.dev/v1alpha1\nkind: FleetPolicy\n"
        f"metadata: {{name: demo-policy, namespace: {NAMESPACE}}}\n"
        "spec:\n  mode: advisory\n  suppressions: {'*': [health_degraded]}\n"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--refresh", type=float, default=5.0)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".demo")
    args = parser.parse_args()

    work: Path = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    loops_root = work / "loops"
    stop_at = time.monotonic() + args.duration if args.duration > 0 else None

    print("starting the local control plane (etcd, kube-apiserver, kube-controller-manager) ...", flush=True)
    with ControlPlane(work / "k8s") as plane:
        print(f"  KUBECONFIG={plane.kubeconfig}")
        _kubectl(plane, "apply", "-f", str(REPO_ROOT / "crds"))
        _kubectl(plane, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        _kubectl(plane, "create", "namespace", NAMESPACE)
        _kubectl(
            plane, "-n", NAMESPACE, "create", "secret", "generic", "demo-sprite-token",
            f"--from-literal=token={TOKEN}",
        )
        # the operator uses only Secrets that opt in
        _kubectl(
            plane, "-n", NAMESPACE, "label", "secret", "demo-sprite-token",
            "ops.superloop.dev/usable-by=superloop-ops",
        )

        sim_argv = [str(BIN / "superloop-ops"), "simulate", "run", "--repo", str(loops_root),
                    "--loops", str(len(SCENARIOS)), "--loop-prefix", "demo", "--interval", "2"]
        for scenario in SCENARIOS:
            sim_argv += ["--scenario", scenario]
        with _process(sim_argv, work / "logs" / "simulator.log"):
            deadline = time.monotonic() + 20
            while not (loops_root / "demo-1" / ".superloop").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            service_log = work / "logs" / "sprite-service.log"
            service_argv = [str(BIN / "superloop-ops"), "sprite-service",
                            "--repo", str(loops_root / "demo-1"), "--port", "0"]
            service_env = dict(os.environ, OPS_MANAGER_SERVICE_TOKEN=TOKEN)  # never in argv
            with _process(service_argv, service_log, service_env):
                sprite_url = _wait_for_listen_line(service_log)
                claims = {f"demo-claim-{n}": loops_root / f"demo-{n}" for n in range(2, len(SCENARIOS) + 1)}
                manifests = [_loop_manifest("demo-1", sprite_url=sprite_url, claim="", interval=5)]
                manifests += [
                    _loop_manifest(f"demo-{n}", sprite_url=None, claim=f"demo-claim-{n}", interval=5)
                    for n in range(2, len(SCENARIOS) + 1)
                ]
                _kubectl(plane, "apply", "-f", "-", stdin="\n---\n".join(manifests))
                loop_ids = [f"demo-{n}" for n in range(1, len(SCENARIOS) + 1)]
                _kubectl(plane, "apply", "-f", "-", stdin=_fleet_manifests(loop_ids))

                env = dict(os.environ)
                env.update(
                    KUBECONFIG=str(plane.kubeconfig),
                    SUPERLOOP_STATE_DIR=str(work / "state"),
                    SUPERLOOP_PVC_DIRS=",".join(f"{NAMESPACE}/{c}={path}" for c, path in claims.items()),
                    SUPERLOOP_METRICS_PORT="0",
                )
                operator_argv = [str(BIN / "kopf"), "run", "-m", "superloop_ops.main",
                                 "--namespace", NAMESPACE, "--standalone", "--quiet"]
                with _process(operator_argv, work / "logs" / "operator.log", env=env) as operator:
                    print(f"operator started (logs in {work / 'logs'}); Ctrl-C to stop")
                    print(f"  try: KUBECONFIG={plane.kubeconfig} {BIN / 'kubectl-superloop'} -n {NAMESPACE} "
                          "intents | status demo-2 | fleet demo-fleet | approve <intent>\n", flush=True)
                    try:
                        while stop_at is None or time.monotonic() < stop_at:
                            if operator.poll() is not None:
                                raise SystemExit(f"the operator exited; see {work / 'logs' / 'operator.log'}")
                            print(time.strftime("--- %H:%M:%S ---"))
                            posture = _kubectl(plane, "-n", NAMESPACE, "get", "loops,fleets,handoffintents")
                            print(posture, flush=True)
                            time.sleep(args.refresh)
                    except KeyboardInterrupt:
                        print("\nstopping ...")
    print("demo stopped; every process it started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
