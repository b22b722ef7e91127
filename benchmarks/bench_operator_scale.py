"""Benchmark: the operator (``kopf run -m superloop_ops.main``) at N Loops on a real control plane.

Not a timed test: it measures, prints a table and (``--json``) writes the details. For each N in
``--loops`` it:

1. writes N simulated repositories (``superloop_ops.sim``), one a Loop, under one directory that
   plays a shared PVC: ``--active-share`` of them keep running (the simulator appends one event
   and rewrites the heartbeat every ``--event-period`` seconds), the others ran a few ticks and
   then stay idle; a few more idle "probe" loops measure how fast an appended event shows up;
2. starts the operator as a subprocess watching a fresh namespace (local transport, the claim
   mapped to that directory, ``--interval`` as every Loop's ``reconcileIntervalSeconds``);
3. creates the N Loops at once and waits until every one has ``status.lifecycle``
   (**convergence**), then one interval of warm-up;
4. measures over ``--window`` intervals:

   - **freshness**: age of each Loop's latest pass, sampled every ``--sample-every`` seconds,
     p50 / p95 / max against the interval, from the operators' per-Loop gauge
     ``superloop_ops_loop_last_pass_timestamp_seconds`` (only that family is scraped);
   - **event latency**: once an interval, one event is appended to each probe loop and the time
     until a watcher of the Loops sees it in ``status.cursor.eventLineCount`` is taken;
   - **operator CPU** (user + system from ``/proc/<pid>/stat``) per pass and per Loop per
     interval, and **peak RSS** (``VmHWM``), which is stable on a shared machine where wall time
     is not; the mean size of a Loop's status (JSON bytes);
   - **passes** (the operator's ``superloop_ops_reconcile_duration_seconds`` count, plus
     ``superloop_ops_loop_idle_passes_total`` where the operator has idle passes);
   - **API requests per second by verb and resource** (``apiserver_request_total`` from the
     apiserver's ``/metrics``, before and after; this script's own LISTs and watches are counted
     and subtracted), **status PATCHes per interval** against the Loops whose status content
     changed between two snapshots one interval apart, against the status writes a watcher
     sees (a PATCH the server finds unchanged leaves no watch event), and against those that
     changed content (the status minus the values that age by themselves,
     ``core.loop.loop_resource.compute_status_fingerprint``), and **GETs per pass**. Statuses
     come from one LIST and then a watch (``StatusWatch``), so measuring costs the apiserver in
     proportion to the changes, not to the fleet;
   - the CPU of the **other processes** on the machine: this script (which also runs the active
     loops' simulated runtime) and, on the project's control plane, etcd and the apiserver.

Each size gets its own namespace and operator; the machine's load average is recorded at the
start and the end of each window. Everything is bounded by ``--max-seconds`` (convergence gives
up at its own timeout and the window still runs), and all processes are stopped at the end.

Cluster: ``$KUBECONFIG`` when set (its current context must be allowed to create namespaces and
CRDs, and read ``/metrics``), else the project's own control plane from
``e2e/harness/build-k8s.sh``'s binaries. Run from the repository root::

    .venv/bin/python -m benchmarks.bench_operator_scale --loops 100,300 --interval 30 --active-share 0.1

``--active-share 0`` measures what idle Loops cost; ``--operator-env KEY=VALUE`` passes operator
settings (e.g. ``SUPERLOOP_STATUS_REFRESH_SECONDS=300``; the operators run with the product's
defaults otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from e2e.harness import controlplane
from e2e.harness.cluster import Cluster, cluster_of, find_tool, install_crds
from e2e.operator_harness import API, GROUP, build_operator_env, launch_operator, terminate
from prometheus_client.parser import text_string_to_metric_families

from superloop_ops.clock import Clock, FrozenClock, SystemClock
from superloop_ops.core.loop.loop_resource import compute_status_fingerprint
from superloop_ops.settings import Settings
from superloop_ops.sim.simulator import Simulator

CLAIM = "bench-claim"
# What the operator reads and writes; other resources' requests (the namespace controller
# emptying the previous size's namespace, the controller manager) are left out of the rates.
OPERATOR_RESOURCES = frozenset(
    {
        "loops",
        "handoffintents",
        "fleets",
        "fleetpolicies",
        "promotionapplies",
        "events",
        "leases",
        "secrets",
        "configmaps",
        "kopfpeerings",
    }
)
READ_ATTEMPTS = 4
LIST_PAGE = 500
SETUP_TICKS = 3
PASS_GAUGE = "superloop_ops_loop_last_pass_timestamp_seconds"
PASS_COUNTS = ("superloop_ops_reconcile_duration_seconds_count", "superloop_ops_loop_idle_passes_total")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    active_share: float
    interval: int
    event_period: float
    window_intervals: int
    sample_every: float
    probes: int
    idle_scenario: str
    converge_timeout: float
    max_seconds: float
    workdir: Path
    json_out: Path | None
    operator_env: Mapping[str, str]
    keep: bool
    shards: int
    namespaces: int = 1
    warmup_intervals: int = 1


# -- measuring the operator process and the apiserver -------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float


def sample_process(pid: int) -> ProcSample:
    """CPU (user + system) and memory of one process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)
    memory: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0]) / 1024
    return ProcSample(cpu, memory.get("VmRSS", 0.0), memory.get("VmHWM", 0.0))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


RequestKey = tuple[str, str, str]  # verb, resource, subresource


@dataclasses.dataclass(frozen=True)
class Components:
    """The other processes on the machine whose CPU the window reports: this script (the
    simulated runtime of the active loops, the watch, the sampling; ``None`` = itself) and, on
    the project's control plane, its processes (etcd, the apiserver, the controller manager)."""

    pids: Mapping[str, int | None]

    def cpu(self) -> dict[str, float]:
        seconds = {}
        for name, pid in self.pids.items():
            if pid is None:
                usage = resource.getrusage(resource.RUSAGE_SELF)
                seconds[name] = usage.ru_utime + usage.ru_stime
            else:
                with contextlib.suppress(OSError):
                    seconds[name] = sample_process(pid).cpu_seconds
        return seconds


def fetch_apiserver_requests(api: Any) -> Counter[RequestKey]:
    """``apiserver_request_total`` summed over codes, scopes and versions."""
    method, url, headers, body, post = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, body=body, post_params=post)
    response.read()
    totals: Counter[RequestKey] = Counter()
    for family in text_string_to_metric_families(response.data.decode("utf-8")):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            totals[key] += int(sample.value)
    return totals


def fetch_operator_metrics(port: int) -> tuple[float, dict[tuple[str, str], float]]:
    """(passes so far, {(namespace, loop): last pass timestamp}) from the operator's endpoint."""
    # Only the families read here (prometheus_client's ``name[]`` filter): the whole exposition
    # of a 1,000-Loop shard is megabytes, and parsing it every few seconds loaded the machine.
    query = "&".join(f"name[]={name}" for name in (*PASS_COUNTS, PASS_GAUGE))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?{query}", timeout=10) as resp:
        text = resp.read().decode("utf-8")
    passes = 0.0
    last_pass: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in PASS_COUNTS:
                passes += sample.value
            elif sample.name == PASS_GAUGE:
                last_pass[(sample.labels.get("namespace", ""), sample.labels.get("loop", ""))] = sample.value
    return passes, last_pass


# -- the cluster and the Loops --------------------------------------------------------------------


@contextlib.contextmanager
def open_cluster(workdir: Path) -> Iterator[tuple[Cluster, Components]]:
    """``$KUBECONFIG``'s cluster, else the project's control plane; CRDs installed either way.
    With the project's control plane its processes' CPU is measured too (``Components``)."""
    bin_dir = controlplane.fetch_bin_dir()
    external = os.environ.get("KUBECONFIG")
    if external:
        kubectl, helm = find_tool("kubectl", bin_dir), find_tool("helm", bin_dir)
        if kubectl is None:
            raise SystemExit("KUBECONFIG is set but kubectl is missing (build-k8s.sh or PATH)")
        cluster = Cluster(Path(external), kubectl, helm or "helm", workdir, external=True)
        install_crds(cluster)
        yield cluster, Components({"benchmark": None})
        return
    missing = controlplane.missing_binaries(bin_dir)
    if missing:
        raise SystemExit(f"binaries missing in {bin_dir}: {', '.join(missing)}; run e2e/harness/build-k8s.sh")
    with controlplane.running_control_plane(workdir / "k8s") as plane:
        cluster = cluster_of(plane, workdir)
        install_crds(cluster)
        print(f"control plane up in {plane.start_seconds:.1f}s at {plane.server}", flush=True)
        pids: dict[str, int | None] = {"benchmark": None}
        pids.update(plane.pids())
        yield cluster, Components(pids)


def loop_body(loop_id: str, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Loop",
        "metadata": {"name": loop_id},
        "spec": {
            "loopId": loop_id,
            "transport": "local",
            "source": {"pvc": {"claimName": CLAIM, "subPath": loop_id}},
            "reconcileIntervalSeconds": interval,
        },
    }


class LoopClient:
    """This script's own API calls, counted so they can be subtracted from the apiserver's totals."""

    def __init__(self, kubeconfig: Path, namespaces: Sequence[str]) -> None:
        from kubernetes import client, config
        from urllib3.util.retry import Retry

        # A loaded 2-core machine makes the apiserver answer 429/5xx now and then: retry those.
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.retries = Retry(
            total=4, backoff_factor=2.0, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None
        )
        self.api = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api)
        self.namespaces = tuple(namespaces)
        self.namespace_of: dict[str, str] = {}
        self.calls: Counter[RequestKey] = Counter()
        self._guard = threading.Lock()

    def _count(self, verb: str) -> None:
        with self._guard:
            self.calls[(verb, "loops", "")] += 1

    def place(self, loop_ids: Sequence[str]) -> None:
        """Spread the Loops over the namespaces, round robin (each namespace: one operator set)."""
        for index, loop_id in enumerate(loop_ids):
            self.namespace_of[loop_id] = self.namespaces[index % len(self.namespaces)]

    def create(self, body: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        self._count("POST")
        namespace = self.namespace_of[body["metadata"]["name"]]
        try:
            self.custom.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, "loops", dict(body))
        except ApiException as exc:
            if exc.status != 409:  # 409: a retried create whose first attempt did succeed
                raise

    def _read(self, verb: str, call: Callable[[], Any]) -> dict[str, Any]:
        """One JSON answer; a body cut off mid-read (a loaded apiserver does that) is asked again."""
        from urllib3.exceptions import HTTPError

        for attempt in range(1, READ_ATTEMPTS):
            try:
                return self._read_once(verb, call)
            except (HTTPError, ValueError):
                time.sleep(2.0 * attempt)
        return self._read_once(verb, call)

    def _read_once(self, verb: str, call: Callable[[], Any]) -> dict[str, Any]:
        self._count(verb)
        answer: dict[str, Any] = json.loads(call().data)
        return answer

    def list_statuses(self) -> dict[str, dict[str, Any]]:
        """Every Loop's status, in pages of LIST_PAGE (a 10,000-Loop LIST in one answer is ~150 MB)."""
        statuses: dict[str, dict[str, Any]] = {}
        for namespace in self.namespaces:
            token: str | None = None
            while True:
                listing = self._list_page(namespace, token)
                for item in listing.get("items", []):
                    statuses[item["metadata"]["name"]] = dict(item.get("status") or {})
                token = (listing.get("metadata") or {}).get("continue") or None
                if token is None:
                    break
        return statuses

    def watch_lines(self, namespace: str, resource_version: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The watch events of one namespace's Loops from ``resource_version``, for ``seconds``."""
        self._count("WATCH")
        response: Any = self.custom.list_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, "loops", watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=seconds, _preload_content=False,
            _request_timeout=(10, seconds + 30),
        )  # fmt: skip
        try:
            for line in response:
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release_conn()

    def _list_page(self, namespace: str, token: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"_continue": token} if token else {}
        return self._read(
            "LIST",
            lambda: self.custom.list_namespaced_custom_object(
                GROUP, "v1alpha1", namespace, "loops", limit=LIST_PAGE, _preload_content=False, **extra
            ),
        )


class StatusWatch:
    """Every Loop's status as the apiserver sends it to watchers.

    One watch per namespace, started without a resourceVersion: the apiserver first sends every
    Loop it has (``ADDED``) and then each change, so the initial state and the changes come from
    one consistent stream, and measuring costs the apiserver in proportion to the status changes,
    not to the fleet (a LIST of 10,000 statuses every interval was ~100 MB for it to encode and
    for this script to decode; and a watch resumed from a long paged LIST's resourceVersion was
    refused as too old on a loaded machine). It keeps each Loop's status fingerprint
    (``compute_status_fingerprint``: the status minus what ages by itself), its size and
    ``cursor.eventLineCount``, counts the content changes, and wakes the event probes when a
    status arrives.
    """

    WATCH_SECONDS = 240
    READY_SECONDS = 600.0

    def __init__(self, client: LoopClient) -> None:
        self.client = client
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.prints: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.line_counts: dict[str, int] = {}
        self.wholes: dict[str, str] = {}
        self.status_writes = 0
        self.content_changes = 0
        self.restarts = 0

    def __enter__(self) -> StatusWatch:
        for namespace in self.client.namespaces:
            threading.Thread(target=self._run, args=(namespace,), daemon=True).start()
        expected = len(self.client.namespace_of)
        deadline = time.monotonic() + self.READY_SECONDS
        with self._cond:  # the window starts once every Loop's current status has arrived
            self._cond.wait_for(lambda: len(self.prints) >= expected, timeout=self.READY_SECONDS)
        if len(self.prints) < expected and time.monotonic() >= deadline:
            print(
                f"status watch: {len(self.prints)} of {expected} Loops after {self.READY_SECONDS}s",
                flush=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # the threads end with their current watch (daemons: not joined)

    def snapshot(self) -> dict[str, str]:
        with self._cond:
            return dict(self.prints)

    def line_count(self, name: str) -> int:
        with self._cond:
            return self.line_counts.get(name, -1)

    def wait_change(self, seconds: float) -> None:
        """Block until the next status arrives, or ``seconds``."""
        with self._cond:
            self._cond.wait(timeout=seconds)

    def _run(self, namespace: str) -> None:
        resource_version = ""
        while not self._stop.is_set():
            try:
                resource_version = self._follow(namespace, resource_version)
            except Exception:  # a cut stream, a resourceVersion gone: start over from the current state
                self.restarts += 1
                resource_version = ""
                if self._stop.wait(1.0):
                    return

    def _follow(self, namespace: str, resource_version: str) -> str:
        for event in self.client.watch_lines(namespace, resource_version, self.WATCH_SECONDS):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                raise RuntimeError(f"watch error: {obj.get('message')}")
            resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
            if event.get("type") in ("ADDED", "MODIFIED"):
                self._apply(obj)
            if self._stop.is_set():
                break
        return resource_version

    def _apply(self, item: Mapping[str, Any]) -> None:
        name = str(item["metadata"]["name"])
        status = dict(item.get("status") or {})
        fingerprint = _digest(compute_status_fingerprint(status))
        whole = _digest(status)
        count = (status.get("cursor") or {}).get("eventLineCount")
        with self._cond:
            previous = self.prints.get(name)
            if previous is not None and self.wholes.get(name) != whole:
                self.status_writes += 1  # the stored status changed (a write that was not a no-op)
                self.content_changes += previous != fingerprint
            self.prints[name], self.wholes[name] = fingerprint, whole
            self.sizes[name] = len(json.dumps(status, separators=(",", ":")))
            if isinstance(count, int):
                self.line_counts[name] = count
            self._cond.notify_all()


def _digest(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclasses.dataclass
class Fleet:
    """The simulated repositories: active, idle and probe loops under one claim directory."""

    active: Simulator | None
    idle: Simulator | None
    probe: Simulator | None

    @property
    def loop_ids(self) -> list[str]:
        return [loop.loop_id for sim in (self.active, self.idle, self.probe) if sim for loop in sim.loops]


def build_fleet(root: Path, size: int, options: Options) -> Fleet:
    probes = min(options.probes, size)
    active = round((size - probes) * options.active_share)
    idle = size - probes - active

    def make(count: int, prefix: str, scenario: str, clock: Clock) -> Simulator | None:
        if count <= 0:
            return None
        sim = Simulator(root, clock, loops=count, scenarios=[scenario], loop_prefix=prefix)
        sim.run(SETUP_TICKS)
        return sim

    # Idle loops have been idle for a while: their last event and heartbeat are an hour old, so
    # their health crossed every lag threshold before the operator starts, not during the window.
    idle_since = FrozenClock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    return Fleet(
        make(active, "active", "running", SystemClock()),
        make(idle, "idle", options.idle_scenario, idle_since),
        make(probes, "probe", options.idle_scenario, idle_since),
    )


class Ticker:
    """Steps one simulator every ``period`` seconds in a thread (the active loops' runtime)."""

    def __init__(self, sim: Simulator | None, period: float) -> None:
        self._sim, self._period = sim, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Ticker:
        if self._sim is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        assert self._sim is not None
        while not self._stop.wait(self._period):
            self._sim.step()


def create_loops(client: LoopClient, loop_ids: Sequence[str], interval: int) -> float:
    """Create every Loop (8 at a time); returns the seconds it took."""
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda loop_id: client.create(loop_body(loop_id, interval)), loop_ids))
    return time.monotonic() - began


def wait_converged(
    client: LoopClient, operators: Operators, size: int, began: float, deadline: float
) -> tuple[float | None, int]:
    """Seconds from ``began`` until all ``size`` Loops have had a pass (None on timeout), and how
    many did. Counted from the operators' per-Loop pass gauges when they export them (no LIST:
    at 10,000 Loops a LIST of every status every few seconds was a load of its own on the
    apiserver), else from ``status.lifecycle``."""
    done = 0
    while time.monotonic() < deadline:
        _, gauge = operators.metrics()
        if gauge:
            done = sum(1 for name, namespace in client.namespace_of.items() if (namespace, name) in gauge)
        else:
            statuses = client.list_statuses()
            done = sum(1 for status in statuses.values() if status.get("lifecycle"))
        if done >= size:
            return time.monotonic() - began, done
        time.sleep(2.0 if size <= 2000 else 10.0)
    return None, done


# -- the measurement window -----------------------------------------------------------------------


@dataclasses.dataclass
class WindowSamples:
    ages: list[float] = dataclasses.field(default_factory=list)
    boundaries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    latencies: list[float] = dataclasses.field(default_factory=list)
    probe_misses: int = 0
    status_bytes: list[int] = dataclasses.field(default_factory=list)


def sample_ages(watch: StatusWatch, gauge: Mapping[tuple[str, str], float]) -> list[float]:
    """Age of every Loop's latest pass now, from the operators' per-Loop pass gauge."""
    now = time.time()
    client = watch.client
    return [
        max(0.0, now - stamp)
        for name, namespace in client.namespace_of.items()
        if (stamp := gauge.get((namespace, name))) is not None
    ]


def run_probes(
    watch: StatusWatch, fleet: Fleet, options: Options, stop: threading.Event, out: WindowSamples
) -> None:
    """Once an interval (at a random moment), append one event to each probe loop and time until
    a watcher sees it in the status (``cursor.eventLineCount``)."""
    sim = fleet.probe
    if sim is None:
        return
    while not stop.is_set():
        if stop.wait(random.uniform(0.0, options.interval * 0.5)):
            return
        sim.step()
        appended = time.monotonic()
        pending = {loop.loop_id: _line_count(loop.events_file) for loop in sim.loops}
        timeout = appended + 3 * options.interval
        while pending and time.monotonic() < timeout and not stop.is_set():
            for name, lines in list(pending.items()):
                if watch.line_count(name) >= lines:
                    out.latencies.append(time.monotonic() - appended)
                    del pending[name]
            watch.wait_change(0.25)
        if (
            not stop.is_set()
        ):  # not arrived within three intervals (a round cut by the window's end is not counted)
            out.probe_misses += len(pending)
        stop.wait(max(0.0, appended + options.interval - time.monotonic()))


def _line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_window(watch: StatusWatch, fleet: Fleet, options: Options, operators: Operators) -> WindowSamples:
    out = WindowSamples()
    stop = threading.Event()
    prober = threading.Thread(target=run_probes, args=(watch, fleet, options, stop, out), daemon=True)
    prober.start()
    began = time.monotonic()
    end = began + options.window_intervals * options.interval
    next_boundary = began
    try:
        while True:
            now = time.monotonic()
            _, gauge = operators.metrics()
            if now >= next_boundary:
                out.boundaries.append(watch.snapshot())
                next_boundary += options.interval
            out.ages.extend(sample_ages(watch, gauge))
            if now >= end:
                break
            time.sleep(
                max(0.0, min(options.sample_every, end - time.monotonic(), next_boundary - time.monotonic()))
            )
    finally:
        stop.set()
        prober.join(timeout=options.interval + 10)
    out.status_bytes = list(watch.sizes.values())
    return out


def changed_per_interval(boundaries: Sequence[Mapping[str, Any]]) -> list[int]:
    """Loops whose status content differs between consecutive interval boundaries."""
    return [
        sum(1 for name, print_ in after.items() if before.get(name) != print_)
        for before, after in itertools.pairwise(boundaries)
    ]


# -- one size, end to end -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def request_rates(
    before: Counter[RequestKey], after: Counter[RequestKey], own: Counter[RequestKey], seconds: float
) -> dict[str, float]:
    """Requests per second by ``VERB resource[/subresource]``, this script's own calls removed."""
    delta = after - before
    delta.subtract(own)
    rates = {}
    for (verb, kind, sub), count in sorted(delta.items()):
        if count > 0 and kind in OPERATOR_RESOURCES:
            rates[f"{verb} {kind}{'/' + sub if sub else ''}"] = round(count / seconds, 3)
    return rates


@dataclasses.dataclass
class Operators:
    """The operator processes of one size: one, or one per shard (``--shards``)."""

    pids: list[int] = dataclasses.field(default_factory=list)
    ports: list[int] = dataclasses.field(default_factory=list)

    def samples(self) -> list[ProcSample]:
        return [sample_process(pid) for pid in self.pids]

    def cpu(self) -> float:
        return sum(sample.cpu_seconds for sample in self.samples())

    def metrics(self) -> tuple[float, dict[tuple[str, str], float]]:
        """Passes of all shards, and the union of their last-pass gauges (each has its Loops)."""
        passes, gauges = 0.0, {}
        for port in self.ports:
            count, gauge = fetch_operator_metrics(port)
            passes += count
            gauges.update(gauge)
        return passes, gauges


def start_operators(
    cluster: Cluster,
    namespaces: Sequence[str],
    work: Path,
    claim_dir: Path,
    options: Options,
    procs: list[Any],
) -> Operators:
    """One operator per (namespace, shard): ``--namespaces`` shards by namespace (kopf's
    ``--namespace``, a release per namespace set), ``--shards`` by label hash within each."""
    operators = Operators()
    for ns_index, namespace in enumerate(namespaces):
        for index in range(options.shards):
            port = controlplane.find_free_port()
            shard = {"SUPERLOOP_SHARD": f"{index}/{options.shards}"} if options.shards > 1 else {}
            name = f"{ns_index}-{index}" if len(namespaces) > 1 else str(index)
            env = build_operator_env(
                cluster.kubeconfig, work / f"state-{name}", work / "mounts", confirm_timeout_seconds=30,
                SUPERLOOP_PVC_DIRS=f"{namespace}/{CLAIM}={claim_dir}", SUPERLOOP_METRICS_PORT=str(port),
                SUPERLOOP_METRICS_HOST="127.0.0.1",
                SUPERLOOP_STATUS_REFRESH_SECONDS=str(Settings.status_refresh_seconds),
                **shard, **dict(options.operator_env),
            )  # fmt: skip
            launch_operator(namespace, env, work / f"operator-{name}.log", procs.append)
            operators.pids.append(procs[-1].pid)
            operators.ports.append(port)
    return operators


def measure_size(
    cluster: Cluster, others: Components, size: int, options: Options, deadline: float
) -> dict[str, Any]:
    base = f"bench-{size}-{uuid.uuid4().hex[:6]}"
    namespaces = [base] if options.namespaces == 1 else [f"{base}-{i}" for i in range(options.namespaces)]
    work = options.workdir / base
    claim_dir = work / "pvc"
    claim_dir.mkdir(parents=True)
    for namespace in namespaces:
        cluster.kubectl("create", "namespace", namespace)
    fleet = build_fleet(claim_dir, size, options)
    client = LoopClient(cluster.kubeconfig, namespaces)
    client.place(fleet.loop_ids)
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {
        "loops": size,
        "shards": options.shards,
        "namespaces": len(namespaces),
        "processes": len(namespaces) * options.shards,
        "namespace": base,
        "work": str(work),
    }
    try:
        operators = start_operators(cluster, namespaces, work, claim_dir, options, procs)
        with Ticker(fleet.active, options.event_period):
            result.update(converge(client, fleet, size, options, operators, deadline))
            if result["converge_seconds"] is None:
                log = next(work.glob("operator-*.log")).read_text(errors="replace")
                errors = [line for line in log.splitlines() if "ERROR" in line]
                print(f"N={size}: not converged; last operator errors:", *errors[-3:], sep="\n  ", flush=True)
            warmup = options.warmup_intervals * options.interval
            time.sleep(min(warmup, max(0.0, deadline - time.monotonic())))
            result.update(measure_window(client, fleet, size, options, operators, others))
        peaks = [sample.peak_rss_mb for sample in operators.samples()]
        result["peak_rss_mb"] = round(max(peaks), 1)
        result["peak_rss_mb_per_shard"] = [round(peak, 1) for peak in peaks]
        result["peak_rss_mb_total"] = round(sum(peaks), 1)
    finally:
        for proc in procs:
            stop_operator(proc)
        for namespace in namespaces:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return result


def stop_operator(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL to its group when a loaded machine keeps it from stopping in a minute."""
    try:
        terminate(proc, timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def converge(
    client: LoopClient, fleet: Fleet, size: int, options: Options, operators: Operators, deadline: float
) -> dict[str, Any]:
    cpu_before = operators.cpu()
    began = time.monotonic()
    create_seconds = create_loops(client, fleet.loop_ids, options.interval)
    limit = min(deadline, began + options.converge_timeout)
    seconds, done = wait_converged(client, operators, size, began, limit)
    return {
        "create_seconds": round(create_seconds, 1),
        "converge_seconds": round(seconds, 1) if seconds is not None else None,
        "converged_loops": done,
        "converge_cpu_seconds": round(operators.cpu() - cpu_before, 2),
    }


def measure_window(
    client: LoopClient, fleet: Fleet, size: int, options: Options, operators: Operators, others: Components
) -> dict[str, Any]:
    with StatusWatch(client) as watch:
        load_before = load_average()
        requests_before = fetch_apiserver_requests(client.api)
        own_before = Counter(client.calls)
        cpu_before = [sample.cpu_seconds for sample in operators.samples()]
        others_before = others.cpu()
        changes_before = watch.content_changes
        writes_before = watch.status_writes
        passes_before, _ = operators.metrics()
        began = time.monotonic()
        samples = run_window(watch, fleet, options, operators)
        seconds = time.monotonic() - began
        passes_after, _ = operators.metrics()
        after = operators.samples()
        others_after = others.cpu()
        content_changes = watch.content_changes - changes_before
        status_writes = watch.status_writes - writes_before
        restarts = watch.restarts
        own = Counter(client.calls)
        own.subtract(own_before)
        requests_after = fetch_apiserver_requests(client.api)
    intervals = seconds / options.interval
    passes = passes_after - passes_before
    cpu_per_shard = [sample.cpu_seconds - before for sample, before in zip(after, cpu_before, strict=True)]
    cpu = sum(cpu_per_shard)
    rates = request_rates(requests_before, requests_after, own, seconds)
    changed = changed_per_interval(samples.boundaries)
    return {
        "window_seconds": round(seconds, 1),
        "load_before": load_before,
        "load_after": load_average(),
        "freshness_source": "operator gauge",
        "age_p50": _round(percentile(samples.ages, 50)),
        "age_p95": _round(percentile(samples.ages, 95)),
        "age_max": _round(max(samples.ages, default=None)),
        "event_latency_p50": _round(percentile(samples.latencies, 50)),
        "event_latency_max": _round(max(samples.latencies, default=None)),
        "event_probe_misses": samples.probe_misses,
        "passes_per_interval": round(passes / intervals, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_share_of_core_per_shard": [round(value / seconds, 3) for value in cpu_per_shard],
        "cpu_ms_per_pass": round(1000 * cpu / passes, 2) if passes else None,
        "cpu_ms_per_loop_interval": round(1000 * cpu / (size * intervals), 2),
        "cpu_share_of_core": round(cpu / seconds, 3),
        "cpu_share_of_core_others": {
            name: round((spent - others_before.get(name, 0.0)) / seconds, 3)
            for name, spent in others_after.items()
        },
        "rss_mb": round(max(sample.rss_mb for sample in after), 1),
        "status_bytes_mean": round(statistics.mean(samples.status_bytes)) if samples.status_bytes else None,
        "requests_per_second": rates,
        "status_patches_per_interval": round(rates.get("PATCH loops/status", 0.0) * options.interval, 1),
        "changed_loops_per_interval": round(statistics.mean(changed), 1) if changed else None,
        "status_changes_per_interval": round(content_changes / intervals, 1),
        "status_writes_seen_per_interval": round(status_writes / intervals, 1),
        "gets_per_pass": round(rates.get("GET loops", 0.0) * seconds / passes, 3) if passes else None,
        "status_watch_restarts": restarts,
    }


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


# -- entry point ----------------------------------------------------------------------------------

COLUMNS = (
    ("loops", "Loops"),
    ("shards", "shards"),
    ("namespaces", "namespaces"),
    ("converge_seconds", "all have a lifecycle (s)"),
    ("age_p50", "pass age p50 (s)"),
    ("age_p95", "pass age p95 (s)"),
    ("age_max", "pass age max (s)"),
    ("event_latency_p50", "event to status p50 (s)"),
    ("event_latency_max", "event to status max (s)"),
    ("passes_per_interval", "passes / interval"),
    ("cpu_ms_per_pass", "CPU ms / pass"),
    ("cpu_ms_per_loop_interval", "CPU ms / Loop / interval"),
    ("cpu_share_of_core", "cores used"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("status_bytes_mean", "status bytes / Loop"),
    ("status_patches_per_interval", "status PATCHes / interval"),
    ("changed_loops_per_interval", "changed Loops / interval"),
    ("status_writes_seen_per_interval", "status writes seen / interval"),
    ("status_changes_per_interval", "content changes seen / interval"),
    ("gets_per_pass", "GETs / pass"),
    ("load_before", "load before"),
)


def print_table(results: Sequence[Mapping[str, Any]]) -> None:
    print("\n| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "|".join("---:" for _ in COLUMNS) + "|")
    for row in results:
        print(
            "| " + " | ".join("—" if row.get(key) is None else str(row.get(key)) for key, _ in COLUMNS) + " |"
        )
    for row in results:
        rates = ", ".join(f"{name} {rate}/s" for name, rate in (row.get("requests_per_second") or {}).items())
        load = f"{row.get('load_before')} -> {row.get('load_after')}"
        print(f"\nN={row['loops']}: API requests {rates or 'n/a'}; load {load}")


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", default="100,300", help="comma-separated sizes (default 100,300)")
    parser.add_argument("--active-share", type=float, default=0.1, help="share of loops appending events")
    parser.add_argument("--interval", type=int, default=30, help="reconcileIntervalSeconds of every Loop")
    parser.add_argument(
        "--event-period", type=float, default=1.0, help="seconds between an active loop's events"
    )
    parser.add_argument("--window", type=int, default=3, help="measurement window, in intervals")
    parser.add_argument("--warmup", type=int, default=1, help="intervals between convergence and the window")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between freshness samples")
    parser.add_argument("--probes", type=int, default=5, help="idle loops used to time an appended event")
    parser.add_argument("--idle-scenario", default="running", help="simulator scenario of the idle loops")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument(
        "--max-seconds", type=float, default=1800.0, help="stop starting new phases after this"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the full results here")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (operator logs)")
    parser.add_argument("--shards", type=int, default=1, help="operator processes, SUPERLOOP_SHARD=i/n each")
    parser.add_argument(
        "--namespaces",
        type=int,
        default=1,
        help="spread the Loops over this many namespaces, one operator (times --shards) watching each",
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.operator_env)
    shm = Path("/dev/shm")
    workdir = args.workdir or Path(
        tempfile.mkdtemp(prefix="superloop-scale-", dir=shm if shm.is_dir() else None)
    )
    return Options(
        sizes=tuple(int(s) for s in args.loops.split(",") if s.strip()),
        active_share=args.active_share,
        interval=args.interval,
        event_period=args.event_period,
        window_intervals=args.window,
        sample_every=args.sample_every,
        probes=args.probes,
        idle_scenario=args.idle_scenario,
        converge_timeout=args.converge_timeout,
        max_seconds=args.max_seconds,
        workdir=workdir.resolve(),
        json_out=args.json,
        operator_env=env,
        keep=args.keep or args.workdir is not None,
        shards=max(1, args.shards),
        namespaces=max(1, args.namespaces),
        warmup_intervals=max(0, args.warmup),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    deadline = time.monotonic() + options.max_seconds
    results: list[dict[str, Any]] = []
    try:
        with open_cluster(options.workdir) as (cluster, others):
            for size in options.sizes:
                if time.monotonic() >= deadline:
                    print(f"N={size}: skipped, --max-seconds reached", flush=True)
                    continue
                print(f"N={size}: measuring (load {load_average()})", flush=True)
                row = measure_size(cluster, others, size, options, deadline)
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        if not options.keep:
            shutil.rmtree(options.workdir, ignore_errors=True)
    print_table(results)
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
