"""Benchmark: one Fleet of N Loops, its operator passes on a real control plane (issue 12, item 5).

Not a timed test: it measures and prints a table (``--json`` writes the rows). For each N in
``--loops`` it creates N Loops in a fresh namespace, each with a realistic status (one produced by a
real Loop pass over a simulated repository, copied with the Loop's own id; ``--degraded-share`` of
them report a degraded health), then runs the Fleet controller's pass in this process
(``controllers.fleet_controller.reconcile_fleet``) over a Fleet naming all N Loops, and measures:

- **first**: the first pass (nothing in the journal yet);
- **idle**: ``--idle-passes`` passes with nothing changed, averaged;
- **changed**: a pass after ``--change`` Loops' health changed (their status written again);

each as CPU-seconds of this process (user + system, ``time.process_time``: the pass, the API
client's decoding, the journal writes; stable on a shared machine, unlike wall time), wall time,
API requests by verb and the Fleet status size in bytes.

Which Fleet: when the code under test has label-selector membership (``spec.selector``), the
Fleet selects the N Loops by label, and its members come from the watch-kept index
(``controllers.fleet_members``): this script feeds the index what kopf's watch would (every Loop
at the start, then each changed Loop), and the CPU of that feeding is counted in the pass that
follows. Older code has neither: the Fleet lists the N Loops by ``loopRef`` (the Fleet model's
500-entry cap is lifted in this process only) and its pass LISTs the namespace's Loops. Either
way the Fleet object itself lives in this process (the apiserver's CRD of older code refuses more
than 500 entries); everything else is the real apiserver.

Run from the repository root against this tree, or against another one for the "before" column::

    PYTHONPATH=$PWD/operator/src:$PWD .venv/bin/python -m benchmarks.bench_fleet_scale --loops 1000,5000
    PYTHONPATH=/tmp/main/operator/src:$PWD .venv/bin/python -m benchmarks.bench_fleet_scale --loops 1000,5000

Cluster: ``$KUBECONFIG`` when set, else the project's control plane (``e2e/harness/build-k8s.sh``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.bench_operator_scale import open_cluster
from e2e.operator_harness import API, GROUP

from superloop_ops.clock import SystemClock
from superloop_ops.controllers import fleet_controller
from superloop_ops.handlers.context import OperatorContext, build_fleet_deps
from superloop_ops.k8s.edge import ObjectRef, build_api_client
from superloop_ops.k8s.fleet_edge import KubernetesFleetEdge
from superloop_ops.metrics import build_metrics
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings
from superloop_ops.sim.simulator import Simulator

MEMBER_LABEL = "bench.superloop.dev/fleet"
FLEET = "bench-fleet"
CLAIM = "bench-claim"


@dataclasses.dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    idle_passes: int
    change: int
    degraded_share: float
    workdir: Path
    json_out: Path | None


# -- a realistic Loop status ----------------------------------------------------------------------


def sample_statuses(root: Path) -> dict[str, dict[str, Any]]:
    """One real Loop status per health (a Loop pass over a simulated repository, in process)."""
    from superloop_ops.controllers import loop_controller
    from superloop_ops.core.loop import loop_resource

    clock = SystemClock()
    out: dict[str, dict[str, Any]] = {}
    for scenario, key in (("running", "healthy"), ("stale_heartbeat", "degraded")):
        sim = Simulator(root / "sim", clock, loops=1, scenarios=[scenario], loop_prefix=scenario)
        sim.run(4)
        settings = Settings(
            state_dir=root / "state", pvc_dirs={("bench", CLAIM): sim.repo_of(f"{scenario}-1").parent}
        )
        loop = Loop.from_body(loop_body(f"{scenario}-1", {}))
        target = loop_controller.build_loop_target(loop, "bench", f"{scenario}-1", settings)
        view, _ = loop_controller.run_loop_pass(
            loop, target, token=None, replay_token=None, replay_pending=False, clock=clock
        )
        out[key] = loop_resource.build_loop_status(previous=None, view=view, generation=1, now=clock.now())
    return out


def loop_body(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Loop",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "loopId": name,
            "transport": "local",
            "source": {"pvc": {"claimName": CLAIM, "subPath": name}},
        },
    }


# -- the API, counted -----------------------------------------------------------------------------


class CountingEdge(KubernetesFleetEdge):
    """The real edge, every call counted by verb; the Fleet object itself kept in this process."""

    def __init__(self, api_client: Any, fleet: dict[str, Any]) -> None:
        super().__init__(api_client)
        self.fleet = fleet
        self.calls: Counter[str] = Counter()

    def _is_fleet(self, ref: ObjectRef) -> bool:
        return ref.plural == "fleets" and ref.name == self.fleet["metadata"]["name"]

    def fetch_object(self, ref: ObjectRef) -> dict[str, Any] | None:
        if self._is_fleet(ref):
            self.calls["GET fleets"] += 1
            return copy.deepcopy(self.fleet)
        self.calls[f"GET {ref.plural}"] += 1
        return super().fetch_object(ref)

    def list_objects(self, ref: ObjectRef) -> list[dict[str, Any]]:
        self.calls[f"LIST {ref.plural}"] += 1
        return super().list_objects(ref)

    def list_labelled(self, ref: ObjectRef, selector: str) -> list[dict[str, Any]]:
        self.calls[f"LIST {ref.plural}"] += 1
        return super().list_labelled(ref, selector)

    def replace_status_fields(self, ref: ObjectRef, fields: Mapping[str, Any], **kwargs: Any) -> None:
        self.calls[f"PATCH {ref.plural}/status"] += 1
        if self._is_fleet(ref):
            status = self.fleet.setdefault("status", {})
            status.update(copy.deepcopy(dict(fields)))
            for key in kwargs.get("remove") or ():
                if key not in fields:
                    status.pop(key, None)
            return
        super().replace_status_fields(ref, fields, **kwargs)

    def post_event(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        self.calls["POST events"] += 1
        super().post_event(ref, event_type, reason, message)


# -- the namespace --------------------------------------------------------------------------------


def create_loops(
    custom: Any, namespace: str, names: Sequence[str], statuses: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Create the Loops and write their statuses; returns the bodies as the watch would show them."""

    def one(name: str) -> dict[str, Any]:
        custom.create_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, "loops", loop_body(name, {MEMBER_LABEL: FLEET})
        )
        return write_status(custom, namespace, name, statuses[name])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, names))


def write_status(custom: Any, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = custom.patch_namespaced_custom_object_status(
        GROUP, "v1alpha1", namespace, "loops", name, {"status": dict(status)}
    )
    return body


def status_for(samples: Mapping[str, Any], name: str, degraded: bool) -> dict[str, Any]:
    status = copy.deepcopy(samples["degraded" if degraded else "healthy"])
    status["traceId"] = uuid.uuid4().hex
    return status


# -- the two generations of the Fleet pass --------------------------------------------------------


def has_selector() -> bool:
    from superloop_ops.models.fleet import FleetSpec

    return "selector" in FleetSpec.model_fields


def lift_loop_cap() -> None:
    """Older code: the Fleet model refuses more than 500 entries; lift that in this process."""
    from annotated_types import MaxLen

    from superloop_ops.models import fleet as fleet_models

    field = fleet_models.FleetSpec.model_fields["loops"]
    field.metadata = [m for m in field.metadata if not isinstance(m, MaxLen)]
    fleet_models.FleetSpec.model_rebuild(force=True)
    fleet_models.Fleet.model_rebuild(force=True)


def fleet_body(namespace: str, names: Sequence[str], selector: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"maxParallel": 4, "deterministicOrder": True}
    if selector:
        spec["selector"] = {"matchLabels": {MEMBER_LABEL: FLEET}}
    else:
        spec["loops"] = [{"loopId": name, "loopRef": {"name": name}} for name in names]
    return {
        "apiVersion": API,
        "kind": "Fleet",
        "metadata": {"name": FLEET, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1},
        "spec": spec,
    }


class Runner:
    """Runs one pass the way the handler does; feeds the member index where there is one."""

    def __init__(self, edge: CountingEdge, settings: Settings, selector: bool) -> None:
        ctx = OperatorContext(settings=settings, edge=edge, clock=SystemClock(), metrics=build_metrics())
        self.edge, self.deps, self.selector = edge, build_fleet_deps(ctx, edge), selector
        self.index: dict[str, Any] = {}

    def watch(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        """What kopf's index does with each watch event: one member per Loop."""
        if not self.selector:
            return
        from superloop_ops.core.fleet.fleet_members import build_loop_member

        for body in bodies:
            self.index[body["metadata"]["name"]] = build_loop_member(body)
        self.deps.members = {self.edge.fleet["metadata"]["namespace"]: self.index.values()}

    def run(self) -> Any:
        return fleet_controller.reconcile_fleet(copy.deepcopy(self.edge.fleet), self.deps)


def measure(runner: Runner, before: Callable[[], None] = lambda: None) -> dict[str, Any]:
    runner.edge.calls.clear()
    cpu0, wall0 = time.process_time(), time.monotonic()
    before()
    report = runner.run()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    status = runner.edge.fleet.get("status") or {}
    return {
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "ran": bool(report.ran),
        "blocked": report.blocked_reason,
        "loop_count": status.get("loopCount"),
        "failed": status.get("failedLoopCount"),
        "status_bytes": len(json.dumps(status, separators=(",", ":"))),
        "status_bytes_by_key": {k: len(json.dumps(v, separators=(",", ":"))) for k, v in status.items()},
        "calls": dict(sorted(runner.edge.calls.items())),
    }


# -- one size -------------------------------------------------------------------------------------


def measure_size(kubeconfig: Path, size: int, options: Options, samples: Mapping[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    namespace = f"fleet-{size}-{uuid.uuid4().hex[:6]}"
    api = build_api_client(str(kubeconfig))
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    custom = client.CustomObjectsApi(api)
    names = [f"loop-{i:05d}" for i in range(size)]
    degraded = set(names[: int(size * options.degraded_share)])
    statuses = {name: status_for(samples, name, name in degraded) for name in names}
    began = time.monotonic()
    bodies = create_loops(custom, namespace, names, statuses)
    create_seconds = time.monotonic() - began
    selector = has_selector()
    if not selector:
        lift_loop_cap()
    edge = CountingEdge(api, fleet_body(namespace, names, selector))
    settings = Settings(state_dir=options.workdir / f"state-{size}")
    runner = Runner(edge, settings, selector)
    first = measure(runner, lambda: runner.watch(bodies))
    idle = [measure(runner) for _ in range(options.idle_passes)]
    changed_names = names[-options.change :]

    def change() -> None:
        runner.watch(
            write_status(custom, namespace, name, status_for(samples, name, name not in degraded))
            for name in changed_names
        )

    changed = measure(runner, change)
    client.CoreV1Api(api).delete_namespace(namespace)
    return {
        "loops": size,
        "code": "selector + index" if selector else "loopRef list + LIST",
        "create_seconds": round(create_seconds, 1),
        "load": os.getloadavg()[0],
        "first": first,
        "idle": idle,
        "idle_cpu_seconds_mean": round(sum(p["cpu_seconds"] for p in idle) / max(len(idle), 1), 4),
        "changed": changed,
        "changed_loops": len(changed_names),
    }


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    print(
        "\n| Loops | code | first pass CPU s | idle pass CPU s | pass after changes CPU s"
        " | API calls (idle pass) | status bytes |"
    )
    print("|---:|---|---:|---:|---:|---|---:|")
    for row in rows:
        idle_calls = row["idle"][0]["calls"] if row["idle"] else {}
        calls = ", ".join(f"{k} {v}" for k, v in idle_calls.items()) or "none"
        print(
            f"| {row['loops']} | {row['code']} | {row['first']['cpu_seconds']} "
            f"| {row['idle_cpu_seconds_mean']} "
            f"| {row['changed']['cpu_seconds']} ({row['changed_loops']} changed) | {calls} "
            f"| {row['changed']['status_bytes']} |"
        )


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="1000,5000", help="comma-separated sizes")
    parser.add_argument("--idle-passes", type=int, default=3)
    parser.add_argument(
        "--change", type=int, default=10, help="Loops whose health changes before the last pass"
    )
    parser.add_argument("--degraded-share", type=float, default=0.05)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(
        tempfile.mkdtemp(
            prefix="superloop-fleet-scale-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
    )
    return Options(
        sizes=tuple(int(s) for s in args.loops.split(",") if s.strip()),
        idle_passes=args.idle_passes,
        change=args.change,
        degraded_share=args.degraded_share,
        workdir=workdir,
        json_out=args.json,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    rows: list[dict[str, Any]] = []
    try:
        samples = sample_statuses(options.workdir / "samples")
        with open_cluster(options.workdir) as cluster:
            for size in options.sizes:
                print(
                    f"N={size}: measuring (load {os.getloadavg()[0]:.2f})"
                    f" at {dt.datetime.now(dt.UTC):%H:%M:%S}",
                    flush=True,
                )
                row = measure_size(cluster.kubeconfig, size, options, samples)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        shutil.rmtree(options.workdir, ignore_errors=True)
    print_table(rows)
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
