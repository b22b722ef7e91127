"""Fleet commands end to end on real repository directories (ports of ops-manager-fleet.bats).

Reconcile runs the real in-process loop reconciler, against local artifacts and against our
sprite service on 127.0.0.1. Handoff drills use the engine's control injection point (the
contract's per-loop control seam, as the reference tests stub the control script) with a
recording control step; the confirmation/idempotency drill runs the real control engine with the
simulator as the runtime CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from helpers.cli_run import CliRun, build_cli_runner
from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.clock import FrozenClock, SystemClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import rollup
from superloop_ops.core.handoff.handoff_plan import ControlOutcome
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import ContractError
from superloop_ops.service import server as service_server

TOKEN = "fleet-test-token"
TOKEN_ENV = "SUPERLOOP_FLEET_TEST_TOKEN"
SIM_RUNTIME = f"{sys.executable} -m superloop_ops.cli.main simulate"


def now() -> dt.datetime:
    return SystemClock().now()


def ts(seconds_ago: int = 0) -> str:
    return format_ts(now() - dt.timedelta(seconds=seconds_ago))


def fleet_dir(repo: Path) -> Path:
    path = repo / ".superloop" / "ops-manager" / "fleet"
    (path / "telemetry").mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value) + "\n")


def write_registry(repo: Path, loops: list[dict[str, Any]], fleet_id: str = "fleet-t", **policy: Any) -> None:
    doc: dict[str, Any] = {"schemaVersion": "v1", "fleetId": fleet_id, "loops": loops}
    if policy:
        doc["policy"] = policy
    write_json(fleet_dir(repo) / "registry.v1.json", doc)


def governance(**overrides: Any) -> dict[str, Any]:
    base = {
        "actor": "ops-user",
        "approvalRef": "CAB-123",
        "rationale": "dogfood guarded auto",
        "changedAt": ts(30 * 86400),
        "reviewBy": format_ts(now() + dt.timedelta(days=300)),
    }
    base.update(overrides)
    return base


def write_runtime(repo: Path, loop_id: str, heartbeat_age: int | None = None) -> None:
    """A running loop's runtime artifacts (two events), optionally with a heartbeat of a given age."""
    stamp = ts()
    loop_dir = repo / ".superloop" / "loops" / loop_id
    write_json(
        repo / ".superloop" / "state.json",
        {"active": True, "loop_index": 0, "iteration": 2, "current_loop_id": loop_id, "updated_at": stamp},
    )
    write_json(  # a live run of the real runtime has its active-run record
        repo / ".superloop" / "active-run.json",
        {"repo": str(repo), "pid": 4242, "pgid": 4242, "loop_id": loop_id, "iteration": 2,
         "stage": "iteration", "updated_at": stamp},
    )
    gates = {
        "tests": "ok",
        "validation": "ok",
        "prerequisites": "ok",
        "checklist": "ok",
        "evidence": "skipped",
        "approval": "none",
    }
    write_json(
        loop_dir / "run-summary.json",
        {
            "version": 1,
            "loop_id": loop_id,
            "updated_at": stamp,
            "entries": [
                {
                    "run_id": f"run-{loop_id}",
                    "iteration": 1,
                    "gates": gates,
                    "stuck": {"streak": 0, "threshold": 3},
                    "completion_ok": False,
                    "ended_at": stamp,
                }
            ],
        },
    )
    events = [
        {
            "timestamp": stamp,
            "event": "loop_start",
            "loop_id": loop_id,
            "run_id": f"run-{loop_id}",
            "iteration": 1,
            "data": {"max_iterations": 5},
        },
        {
            "timestamp": stamp,
            "event": "iteration_start",
            "loop_id": loop_id,
            "run_id": f"run-{loop_id}",
            "iteration": 2,
            "data": {"started_at": stamp},
        },
    ]
    (loop_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if heartbeat_age is not None:
        write_json(
            loop_dir / "heartbeat.v1.json",
            {
                "schemaVersion": "v1",
                "timestamp": ts(heartbeat_age),
                "source": "runtime",
                "status": "running",
                "stage": "iteration",
            },
        )


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    return build_cli_runner(capsys)


class RunningService:
    def __init__(self, repo: Path) -> None:
        config = sprite_cli.build_config(
            repo.resolve(), token=TOKEN, runtime_command=tuple(SIM_RUNTIME.split())
        )
        self.server = service_server.build_server(config, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        assert httpx.get(f"{self.url}/healthz", headers={"X-Ops-Token": TOKEN}, timeout=5).status_code == 200

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def start_service() -> Iterator[Callable[[Path], RunningService]]:
    running: list[RunningService] = []

    def start(repo: Path) -> RunningService:
        service = RunningService(repo)
        running.append(service)
        return service

    yield start
    for service in running:
        service.stop()


def service_loop(loop_id: str, url: str) -> dict[str, Any]:
    return {
        "loopId": loop_id,
        "transport": "sprite_service",
        "service": {"baseUrl": url, "tokenEnv": TOKEN_ENV, "retryBackoffSeconds": 0},
    }


# --- registry ---------------------------------------------------------------------------------


# fleet.bats #1: the registry command fails closed on a sprite_service loop without a base URL
def test_registry_command_prints_errors_in_order_and_exits_1(tmp_path: Path, cli: CliRun) -> None:
    write_registry(tmp_path, [{"loopId": "a", "transport": "sprite_service"}])
    code, _, err = cli("fleet", "registry", "--repo", str(tmp_path))
    registry_file = fleet_dir(tmp_path) / "registry.v1.json"
    assert code == 1
    assert err.splitlines() == [
        f"error: invalid fleet registry: {registry_file.resolve()}",
        " - loops[0]: sprite_service loops require service.baseUrl or sprite.serviceBaseUrl",
    ]


def test_registry_command_normalises_and_inspects_one_loop(tmp_path: Path, cli: CliRun) -> None:
    write_registry(tmp_path, [{"loopId": "a"}, {"loopId": "b", "enabled": False}])
    code, doc, _ = cli("fleet", "registry", "--repo", str(tmp_path), "--loop", "b")
    assert code == 0
    assert doc["loopCount"] == 1
    assert doc["loops"][0]["enabled"] is False
    code, _, err = cli("fleet", "registry", "--repo", str(tmp_path), "--loop", "zzz")
    assert code == 1
    assert err.strip() == "error: loop not found in registry: zzz"


def test_commands_need_a_repo_and_a_registry(tmp_path: Path, cli: CliRun) -> None:
    code, _, err = cli("fleet", "status")
    assert (code, err.strip()) == (1, "error: --repo is required")
    code, _, err = cli("fleet", "registry", "--repo", str(tmp_path))
    assert code == 1
    assert err.startswith("error: fleet registry file not found: ")
    (fleet_dir(tmp_path) / "registry.v1.json").write_text("{nope")
    code, _, err = cli("fleet", "registry", "--repo", str(tmp_path))
    assert code == 1
    assert err.startswith("error: invalid fleet registry JSON: ")


# --- reconcile (real loop reconciler) -------------------------------------------------------


# fleet.bats #11: partial failure with deterministic order and trace linkage
def test_reconcile_partial_failure_with_deterministic_order_and_trace(tmp_path: Path, cli: CliRun) -> None:
    write_runtime(tmp_path, "loop-b")
    write_registry(tmp_path, [{"loopId": "loop-b"}, {"loopId": "loop-a"}])
    code, state, _ = cli(
        "fleet", "reconcile", "--repo", str(tmp_path), "--deterministic-order", "--max-parallel", "2",
        "--trace-id", "trace-fleet-partial-1",
    )  # fmt: skip
    assert code == 0
    assert state["status"] == "partial_failure"
    assert [r["loopId"] for r in state["results"]] == ["loop-a", "loop-b"]
    assert (state["failedCount"], state["successCount"]) == (1, 1)
    assert "fleet_partial_failure" in state["reasonCodes"]
    loop_a = state["results"][0]
    assert loop_a["status"] == "failed"
    assert loop_a["reasonCode"]
    assert loop_a["traceId"] == "trace-fleet-partial-1-loop-a"
    assert loop_a["files"]["stateFile"] == f"{tmp_path.resolve()}/.superloop/ops-manager/loop-a/state.json"
    telemetry = rows(fleet_dir(tmp_path) / "telemetry" / "reconcile.jsonl")
    assert telemetry[-1]["traceId"] == "trace-fleet-partial-1"
    assert telemetry[-1]["category"] == "fleet_reconcile"
    assert json.loads((fleet_dir(tmp_path) / "state.json").read_text()) == state


# fleet.bats #12: deterministic order is stable across two runs
def test_reconcile_deterministic_order_is_stable_across_runs(tmp_path: Path, cli: CliRun) -> None:
    for loop_id in ("loop-c", "loop-a", "loop-b"):
        write_runtime(tmp_path, loop_id)
    write_registry(tmp_path, [{"loopId": "loop-c"}, {"loopId": "loop-a"}, {"loopId": "loop-b"}])
    orders = []
    for _ in range(2):
        code, state, _ = cli(
            "fleet", "reconcile", "--repo", str(tmp_path), "--deterministic-order", "--max-parallel", "3"
        )
        assert code == 0
        orders.append([r["loopId"] for r in state["results"]])
    assert orders == [["loop-a", "loop-b", "loop-c"]] * 2


# fleet.bats #13: a local and a sprite_service loop both reconcile
def test_reconcile_local_and_sprite_service_loops(
    tmp_path: Path,
    cli: CliRun,
    start_service: Callable[[Path], RunningService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_runtime(tmp_path, "loop-local")
    write_runtime(tmp_path, "loop-service")
    service = start_service(tmp_path)
    write_registry(tmp_path, [{"loopId": "loop-local"}, service_loop("loop-service", service.url)])
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code, state, _ = cli(
        "fleet", "reconcile", "--repo", str(tmp_path), "--deterministic-order", "--trace-id", "trace-mixed-1"
    )
    assert code == 0
    assert state["status"] == "success"
    assert (state["successCount"], state["failedCount"]) == (2, 0)
    assert [r["transport"] for r in state["results"]] == ["local", "sprite_service"]
    assert state["results"][1]["status"] == "success"


# fleet.bats #14: degraded, critical and unreachable loops across both transports
def test_reconcile_mixed_degraded_critical_and_failures(
    tmp_path: Path,
    cli: CliRun,
    start_service: Callable[[Path], RunningService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_runtime(tmp_path, "loop-local-degraded", heartbeat_age=180)
    write_runtime(tmp_path, "loop-service-critical", heartbeat_age=900)
    service = start_service(tmp_path)
    write_registry(
        tmp_path,
        [
            {"loopId": "loop-local-degraded"},
            service_loop("loop-service-critical", service.url),
            {"loopId": "loop-local-failure"},
            service_loop("loop-service-failure", service.url),
        ],
    )
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    code, state, _ = cli(
        "fleet", "reconcile", "--repo", str(tmp_path), "--deterministic-order", "--max-parallel", "4"
    )
    assert code == 0
    by_loop = {r["loopId"]: r for r in state["results"]}
    assert state["status"] == "partial_failure"
    assert (state["successCount"], state["failedCount"]) == (2, 2)
    assert by_loop["loop-local-degraded"]["healthStatus"] == "degraded"
    assert by_loop["loop-service-critical"]["healthStatus"] == "critical"
    for loop_id in ("loop-local-failure", "loop-service-failure"):
        assert by_loop[loop_id]["reasonCode"] == "transport_unreachable"
        assert "transport_unreachable" in by_loop[loop_id]["healthReasonCodes"]


def _projection(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": state["status"],
        "reasonCodes": sorted(state["reasonCodes"]),
        "counts": [state[k] for k in ("loopCount", "successCount", "failedCount", "skippedCount")],
        "loops": [
            (
                r["loopId"],
                r["status"],
                r.get("reasonCode"),
                r["reconcileStatus"],
                r["healthStatus"],
                sorted(r["healthReasonCodes"]),
            )
            for r in state["results"]
        ],
    }


# fleet.bats #15: equivalent local and service repos project identically
def test_reconcile_surfaces_match_between_equivalent_local_and_service_repos(
    tmp_path: Path,
    cli: CliRun,
    start_service: Callable[[Path], RunningService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local_repo, service_repo = tmp_path / "local", tmp_path / "service"
    for repo in (local_repo, service_repo):
        write_runtime(repo, "loop-critical", heartbeat_age=900)
    service = start_service(service_repo)
    write_registry(local_repo, [{"loopId": "loop-critical"}, {"loopId": "loop-failure"}])
    write_registry(
        service_repo, [service_loop("loop-critical", service.url), service_loop("loop-failure", service.url)]
    )
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    states = []
    for repo in (local_repo, service_repo):
        code, state, _ = cli(
            "fleet", "reconcile", "--repo", str(repo), "--deterministic-order", "--trace-id", "trace-eq-1"
        )
        assert code == 0
        states.append(_projection(state))
    assert states[0] == states[1]
    assert states[0]["loops"][0][4] == "critical"


def test_regression_disabled_loop_is_skipped_and_never_reconciled(tmp_path: Path) -> None:
    write_registry(tmp_path, [{"loopId": "on"}, {"loopId": "off", "enabled": False}])
    seen: list[str] = []

    def reconciler(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        seen.append(request.loop_id)
        return rollup.LoopRunOutcome(
            exit_code=0, document={"health": {"status": "healthy", "reasonCodes": []}}
        )

    state = fleet_commands.run_fleet_reconcile(
        fleet_commands.FleetPaths.for_repo(tmp_path),
        settings=rollup.FanOutSettings(),
        reconciler=reconciler,
    )
    assert seen == ["on"]
    off = state["results"][1]
    assert (off["status"], off["reasonCode"], off["reconcileStatus"]) == (
        "skipped",
        "loop_disabled",
        "skipped",
    )
    assert "outputExcerpt" not in off
    assert state["status"] == "success"
    assert state["reasonCodes"] == ["fleet_loop_skipped"]


def test_missing_token_env_fails_the_loop_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    write_registry(tmp_path, [service_loop("svc", "http://127.0.0.1:9")])

    def reconciler(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        raise AssertionError("must not be called")

    state = fleet_commands.run_fleet_reconcile(
        fleet_commands.FleetPaths.for_repo(tmp_path),
        settings=rollup.FanOutSettings(),
        reconciler=reconciler,
    )
    assert state["results"][0]["reasonCode"] == "missing_service_token_env"
    assert state["status"] == "failed"
    assert state["reasonCodes"] == ["fleet_reconcile_failed"]


def test_fan_out_respects_max_parallel_and_keeps_start_order(tmp_path: Path) -> None:
    loop_ids = [f"loop-{n}" for n in range(6)]
    write_registry(tmp_path, [{"loopId": loop_id} for loop_id in reversed(loop_ids)])
    lock = threading.Lock()
    active = [0, 0]  # current, peak

    def reconciler(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        threading.Event().wait(0.02)
        with lock:
            active[0] -= 1
        if request.loop_id == "loop-3":
            raise RuntimeError("boom in one loop")
        return rollup.LoopRunOutcome(exit_code=0, document={})

    state = fleet_commands.run_fleet_reconcile(
        fleet_commands.FleetPaths.for_repo(tmp_path),
        settings=rollup.FanOutSettings(max_parallel=2),
        reconciler=reconciler,
    )
    assert active[1] <= 2
    assert [r["loopId"] for r in state["results"]] == list(reversed(loop_ids))
    crashed = next(r for r in state["results"] if r["loopId"] == "loop-3")
    assert crashed["reasonCode"] == "reconcile_failed"
    assert crashed["outputExcerpt"] == "RuntimeError: boom in one loop"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--max-parallel", "0"), "--max-parallel must be an integer >= 1"),
        (("--max-parallel", "two"), "--max-parallel must be an integer >= 1"),
        (("--max-events", "-1"), "--max-events must be a non-negative integer"),
    ],
)
def test_reconcile_flag_validation(tmp_path: Path, cli: CliRun, flags: tuple[str, ...], message: str) -> None:
    code, _, err = cli("fleet", "reconcile", "--repo", str(tmp_path), *flags)
    assert (code, err.strip()) == (1, f"error: {message}")


# --- policy and status through the CLI --------------------------------------------------------


def fleet_state(*results: dict[str, Any], trace: str = "trace-fleet-1") -> dict[str, Any]:
    failed = sum(1 for r in results if r["status"] == "failed")
    return {
        "schemaVersion": "v1",
        "updatedAt": ts(60),
        "startedAt": ts(80),
        "fleetId": "fleet-t",
        "traceId": trace,
        "status": "partial_failure"
        if failed and failed < len(results)
        else ("failed" if failed else "success"),
        "reasonCodes": [],
        "loopCount": len(results),
        "successCount": len(results) - failed,
        "failedCount": failed,
        "skippedCount": 0,
        "results": list(results),
    }


def result(
    loop_id: str, status: str = "success", health: str = "healthy", transport: str = "local"
) -> dict[str, Any]:
    return {
        "loopId": loop_id,
        "transport": transport,
        "status": status,
        "reconcileStatus": status,
        "healthStatus": health,
        "healthReasonCodes": [],
        "traceId": f"trace-fleet-1-{loop_id}",
        "files": {"stateFile": f"/tmp/{loop_id}/state.json"},
    }


# fleet.bats #16: advisory suppressions and exception buckets through policy and status
def test_policy_and_status_project_suppressions_and_exceptions(tmp_path: Path, cli: CliRun) -> None:
    write_registry(
        tmp_path,
        [{"loopId": "loop-red"}, {"loopId": "loop-blue"}],
        mode="advisory",
        suppressions={"loop-red": ["reconcile_failed"], "*": ["health_degraded"]},
    )
    write_json(
        fleet_dir(tmp_path) / "state.json",
        fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", health="degraded")),
    )
    code, policy, _ = cli("fleet", "policy", "--repo", str(tmp_path), "--trace-id", "trace-fleet-policy-1")
    assert code == 0
    assert (policy["candidateCount"], policy["unsuppressedCount"], policy["suppressedCount"]) == (3, 1, 2)
    assert {"fleet_action_required", "fleet_actions_suppressed"} <= set(policy["reasonCodes"])
    code, status, _ = cli("fleet", "status", "--repo", str(tmp_path))
    assert code == 0
    assert status["policy"]["unsuppressedCount"] == 1
    assert status["exceptions"]["reconcileFailures"] == ["loop-red"]
    assert status["fleet"]["partialFailure"] is True
    red = next(loop for loop in status["loops"] if loop["loopId"] == "loop-red")
    assert red["artifacts"]["stateFile"] == "/tmp/loop-red/state.json"
    tel = fleet_dir(tmp_path) / "telemetry"
    assert len(rows(tel / "policy-history.jsonl")) == 3
    assert rows(tel / "policy.jsonl")[-1]["summary"]["candidateCount"] == 3
    assert rows(tel / "policy-governance.jsonl")[0]["eventType"] == "autonomous_policy_initialized"


# fleet.bats #19: suppression precedence and advisory cooldown across two runs
def test_policy_cooldown_dedupes_across_runs_through_history(tmp_path: Path, cli: CliRun) -> None:
    write_registry(
        tmp_path,
        [{"loopId": "loop-red"}, {"loopId": "loop-blue"}, {"loopId": "loop-green"}],
        suppressions={"loop-red": ["health_critical"], "*": ["health_critical"]},
        noiseControls={"dedupeWindowSeconds": 3600},
    )
    write_json(
        fleet_dir(tmp_path) / "state.json",
        fleet_state(
            result("loop-red", health="critical"),
            result("loop-blue", health="critical"),
            result("loop-green", health="degraded"),
        ),
    )
    _, first, _ = cli("fleet", "policy", "--repo", str(tmp_path))
    _, second, _ = cli("fleet", "policy", "--repo", str(tmp_path))
    green = next(c for c in second["candidates"] if c["loopId"] == "loop-green")
    assert first["unsuppressedCount"] == 1
    assert green["suppressionReason"] == "advisory_cooldown_active"
    assert "fleet_actions_deduped" in second["reasonCodes"]
    assert len(rows(fleet_dir(tmp_path) / "telemetry" / "policy-history.jsonl")) >= 6
    code, _, err = cli("fleet", "policy", "--repo", str(tmp_path), "--dedupe-window-seconds", "x")
    assert (code, err.strip()) == (1, "error: --dedupe-window-seconds must be a non-negative integer")


# fleet.bats #29: governance audit file: initialised, mutated, toggled
def test_governance_audit_file_records_init_mutation_and_toggle(tmp_path: Path, cli: CliRun) -> None:
    loops = [{"loopId": "loop-a"}]
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-a", "failed")))
    audit = fleet_dir(tmp_path) / "telemetry" / "policy-governance.jsonl"
    write_registry(
        tmp_path, loops, mode="guarded_auto", autonomous={"governance": governance(approvalRef="CAB-111")}
    )
    for trace in ("t1", "t2"):
        assert cli("fleet", "policy", "--repo", str(tmp_path), "--trace-id", trace)[0] == 0
    assert [r["eventType"] for r in rows(audit)] == ["autonomous_policy_initialized"]
    write_registry(
        tmp_path, loops, mode="guarded_auto", autonomous={"governance": governance(approvalRef="CAB-222")}
    )
    cli("fleet", "policy", "--repo", str(tmp_path), "--trace-id", "t3")
    last = rows(audit)[-1]
    assert (last["eventType"], last["traceId"], last["governance"]["approvalRef"]) == (
        "autonomous_policy_mutated",
        "t3",
        "CAB-222",
    )
    write_registry(
        tmp_path, loops, mode="advisory", autonomous={"governance": governance(approvalRef="CAB-222")}
    )
    cli("fleet", "policy", "--repo", str(tmp_path), "--trace-id", "t4")
    last = rows(audit)[-1]
    assert len(rows(audit)) == 3
    assert (last["eventType"], last["previousMode"], last["mode"]) == (
        "autonomous_mode_toggled",
        "guarded_auto",
        "advisory",
    )
    (fleet_dir(tmp_path) / "policy-state.json").unlink()
    cli("fleet", "policy", "--repo", str(tmp_path))
    assert rows(audit)[-1]["eventType"] == "autonomous_policy_initialized"


# fleet.bats #30: governance audit snapshots stay deterministic across mutation reruns
def test_governance_audit_snapshots_are_deterministic_across_mutation_reruns(
    tmp_path: Path, cli: CliRun
) -> None:
    """One line per real change: the snapshot pair (previous, current) is taken from the
    normalised controls, so an identical rerun after a mutation appends nothing."""
    loops = [{"loopId": "loop-red"}]
    audit = fleet_dir(tmp_path) / "telemetry" / "policy-governance.jsonl"
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-red", health="critical")))

    def write(approval: str, rationale: str, run_cap: int) -> None:
        write_registry(
            tmp_path,
            loops,
            mode="guarded_auto",
            noiseControls={"dedupeWindowSeconds": 0},
            autonomous={
                "governance": governance(approvalRef=approval, rationale=rationale),
                "allow": {"categories": ["health_critical"], "intents": ["cancel"]},
                "thresholds": {"minSeverity": "critical", "minConfidence": "high"},
                "safety": {
                    "maxActionsPerRun": run_cap,
                    "maxActionsPerLoop": 1,
                    "cooldownSeconds": 0,
                    "killSwitch": False,
                },
            },
        )

    def run(trace: str) -> None:
        code, _, err = cli("fleet", "policy", "--repo", str(tmp_path), "--trace-id", trace)
        assert code == 0, err

    write("CAB-301", "baseline approval", 1)
    run("trace-audit-1")
    (first,) = rows(audit)
    assert first["eventType"] == "autonomous_policy_initialized"
    assert first["controls"]["safety"]["maxActionsPerRun"] == 1
    assert first["governance"]["approvalRef"] == "CAB-301"

    write("CAB-302", "expanded run cap", 2)
    run("trace-audit-2")
    events = rows(audit)
    assert len(events) == 2
    assert events[0] == first  # append-only: the first snapshot is never rewritten
    mutated = events[1]
    assert mutated["eventType"] == "autonomous_policy_mutated"
    assert mutated["traceId"] == "trace-audit-2"
    assert mutated["previousGovernance"]["approvalRef"] == "CAB-301"
    assert mutated["governance"]["approvalRef"] == "CAB-302"
    assert mutated["previousControls"]["safety"]["maxActionsPerRun"] == 1
    assert mutated["controls"]["safety"]["maxActionsPerRun"] == 2
    # The previous snapshot of the mutation is exactly the snapshot the first event recorded.
    assert mutated["previousGovernance"] == first["governance"]
    assert mutated["previousControls"] == first["controls"]

    before = audit.read_bytes()
    for trace in ("trace-audit-3", "trace-audit-4"):
        run(trace)
    assert audit.read_bytes() == before


def test_regression_expired_review_keeps_status_working(tmp_path: Path, cli: CliRun) -> None:
    gov = governance(changedAt=ts(90 * 86400), reviewBy=ts(3600))
    write_registry(tmp_path, [{"loopId": "loop-a"}], mode="guarded_auto", autonomous={"governance": gov})
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-a", "failed")))
    code, _, err = cli("fleet", "registry", "--repo", str(tmp_path))
    assert code == 1
    assert "reviewBy must be in the future when policy.mode is guarded_auto" in err
    code, policy, _ = cli("fleet", "policy", "--repo", str(tmp_path))
    assert code == 0
    assert policy["autoEligibleCount"] == 0
    assert policy["candidates"][0]["autonomous"]["reasons"] == ["autonomous_governance_review_expired"]
    code, status, _ = cli("fleet", "status", "--repo", str(tmp_path))
    assert code == 0
    assert status["autonomous"]["governance"]["posture"] == "review_expired"
    assert status["autonomous"]["governance"]["blocksAutonomous"] is True


def test_status_requires_fleet_state_and_rejects_bad_documents(tmp_path: Path, cli: CliRun) -> None:
    write_registry(tmp_path, [{"loopId": "loop-a"}])
    code, _, err = cli("fleet", "status", "--repo", str(tmp_path))
    assert code == 1
    assert "fleet state file not found" in err
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-a")))
    (fleet_dir(tmp_path) / "policy-state.json").write_text("{bad")
    code, _, err = cli("fleet", "status", "--repo", str(tmp_path))
    assert code == 1
    assert "invalid policy state JSON" in err
    (fleet_dir(tmp_path) / "policy-state.json").unlink()
    (fleet_dir(tmp_path) / "telemetry" / "handoff.jsonl").write_text("not json\n")
    code, status, _ = cli("fleet", "status", "--repo", str(tmp_path), "--pretty")
    assert code == 0
    assert status["latestHandoffTelemetry"] is None


# --- handoff -----------------------------------------------------------------------------------


class RecordingControl:
    """The per-loop control seam: records every call, answers by loop id (default confirmed)."""

    def __init__(self, outcomes: dict[str, int] | None = None) -> None:
        self.calls: list[fleet_commands.ControlCall] = []
        self.outcomes = outcomes or {}

    def __call__(self, call: fleet_commands.ControlCall) -> ControlOutcome:
        self.calls.append(call)
        code = self.outcomes.get(call.loop_id, 0)
        status = {0: "confirmed", 2: "ambiguous"}.get(code, "failed_command")
        return ControlOutcome(exit_code=code, document={"status": status, "confirmed": code == 0})


def handoff(repo: Path, control: RecordingControl | None = None, **options: Any) -> dict[str, Any]:
    return fleet_commands.run_fleet_handoff(
        fleet_commands.FleetPaths.for_repo(repo),
        fleet_commands.HandoffOptions(**options),
        control=control or RecordingControl(),
        clock=FrozenClock(now()),
        env={},
    )


def policy(repo: Path, trace: str | None = None) -> dict[str, Any]:
    return fleet_commands.run_fleet_policy(fleet_commands.FleetPaths.for_repo(repo), trace_id=trace, env={})


def guarded_registry(repo: Path, loops: list[dict[str, Any]], **autonomous: Any) -> None:
    autonomous.setdefault("governance", governance())
    write_registry(
        repo, loops, mode="guarded_auto", noiseControls={"dedupeWindowSeconds": 0}, autonomous=autonomous
    )


# fleet.bats #32: the plan maps unsuppressed candidates to pending cancel intents
def test_plan_maps_unsuppressed_candidates_to_pending_intents(tmp_path: Path, cli: CliRun) -> None:
    write_registry(
        tmp_path, [{"loopId": "loop-red"}, {"loopId": "loop-blue"}], suppressions={"*": ["health_degraded"]}
    )
    write_json(
        fleet_dir(tmp_path) / "state.json",
        fleet_state(result("loop-red", "failed", "critical"), result("loop-blue", health="degraded")),
    )
    policy(tmp_path)
    code, state, _ = cli(
        "fleet", "handoff", "--repo", str(tmp_path), "--trace-id", "trace-fleet-handoff-plan-1"
    )
    assert code == 0
    assert state["summary"]["intentCount"] == 2
    assert state["summary"]["pendingConfirmationCount"] == 2
    assert {i["intent"] for i in state["intents"]} == {"cancel"}
    assert "fleet_handoff_confirmation_pending" in state["reasonCodes"]
    assert state["intents"][0]["idempotencyKey"].startswith("fleet-handoff-trace-fleet-handoff-plan-1-")
    assert rows(fleet_dir(tmp_path) / "telemetry" / "handoff.jsonl")[-1]["category"] == "fleet_handoff_plan"


# fleet.bats #33: the handoff keeps the policy's eligibility classification
def test_handoff_keeps_eligibility_from_policy(tmp_path: Path) -> None:
    guarded_registry(
        tmp_path,
        [{"loopId": "loop-red"}, {"loopId": "loop-blue"}],
        allow={"categories": ["reconcile_failed"]},
    )
    write_json(
        fleet_dir(tmp_path) / "state.json",
        fleet_state(result("loop-red", "failed"), result("loop-blue", health="critical")),
    )
    policy(tmp_path)
    state = handoff(tmp_path)
    assert (state["summary"]["autoEligibleIntentCount"], state["summary"]["manualOnlyIntentCount"]) == (1, 1)
    intents = {i["loopId"]: i["autonomous"] for i in state["intents"]}
    assert intents["loop-red"]["eligible"] is True
    assert intents["loop-blue"]["reasons"] == ["category_not_allowlisted"]
    assert "fleet_handoff_auto_eligible_intents" in state["reasonCodes"]


# fleet.bats #34: execute needs --confirm and propagates trace and idempotency key
def test_execute_needs_confirm_and_propagates_trace_and_key_to_the_loop_journal(
    tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runtime(tmp_path, "loop-red")
    write_registry(tmp_path, [{"loopId": "loop-red"}])
    write_json(
        fleet_dir(tmp_path) / "policy-state.json",
        {
            "fleetId": "fleet-t",
            "traceId": "trace-exec-policy",
            "mode": "advisory",
            "candidates": [
                {
                    "candidateId": "loop-red:reconcile_failed",
                    "loopId": "loop-red",
                    "category": "reconcile_failed",
                    "suppressed": False,
                }
            ],
        },
    )
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", SIM_RUNTIME)
    base = (
        "fleet",
        "handoff",
        "--repo",
        str(tmp_path),
        "--trace-id",
        "trace-fleet-handoff-exec-1",
        "--by",
        "operator-a",
    )
    code, _, err = cli(*base, "--execute")
    assert code == 1
    assert "--execute requires --confirm" in err
    code, state, err = cli(
        *base,
        "--execute",
        "--confirm",
        "--note",
        "manual_action",
        "--timeout-seconds",
        "5",
        "--interval-seconds",
        "0",
    )
    assert code == 0, err
    assert state["summary"]["executedCount"] == 1
    assert state["intents"][0]["status"] == "executed"
    result_row = state["execution"]["results"][0]
    assert result_row["traceId"] == "trace-fleet-handoff-exec-1"
    assert result_row["control"]["status"] == "confirmed"
    control_rows = rows(tmp_path / ".superloop" / "ops-manager" / "loop-red" / "telemetry" / "control.jsonl")
    assert control_rows[-1]["traceId"] == "trace-fleet-handoff-exec-1"
    assert control_rows[-1]["idempotencyKey"] == result_row["idempotencyKey"]
    assert state["execution"]["note"] == "manual_action"


# fleet.bats #35: autonomous execute needs a guarded_auto policy
def test_autonomous_execute_requires_guarded_auto_policy(tmp_path: Path, cli: CliRun) -> None:
    write_registry(tmp_path, [{"loopId": "loop-red"}])
    code, _, err = cli("fleet", "handoff", "--repo", str(tmp_path), "--autonomous-execute")
    assert code == 1
    assert "policy state file not found" in err
    write_json(fleet_dir(tmp_path) / "policy-state.json", {"mode": "advisory", "candidates": []})
    code, _, err = cli("fleet", "handoff", "--repo", str(tmp_path), "--autonomous-execute")
    assert (code, err.strip()) == (1, "error: --autonomous-execute requires policy mode guarded_auto")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--execute", "--autonomous-execute"), "--execute and --autonomous-execute are mutually exclusive"),
        (("--confirm",), "--confirm can only be used with --execute"),
        (("--idempotency-prefix", ""), "--idempotency-prefix must be non-empty"),
        (("--timeout-seconds", "x"), "timeout and interval must be non-negative integers"),
        (("--loop", ""), "--loop requires a non-empty value"),
    ],
)
def test_handoff_flag_validation(tmp_path: Path, cli: CliRun, flags: tuple[str, ...], message: str) -> None:
    code, _, err = cli("fleet", "handoff", "--repo", str(tmp_path), *flags)
    assert (code, err.strip()) == (1, f"error: {message}")


def test_unmatched_filter_fails_closed_after_the_plan_row(tmp_path: Path) -> None:
    write_registry(tmp_path, [{"loopId": "loop-red"}])
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-red", "failed")))
    policy(tmp_path)
    control = RecordingControl()
    with pytest.raises(ContractError, match="loop filter not found in manual execution intents: ghost"):
        handoff(tmp_path, control, execute=True, confirm=True, loops=("ghost",))
    assert control.calls == []
    assert rows(fleet_dir(tmp_path) / "telemetry" / "handoff.jsonl")[-1]["category"] == "fleet_handoff_plan"


# fleet.bats #22: drill: the kill switch halts autonomy, a person executes
def test_drill_kill_switch_falls_back_to_manual(tmp_path: Path) -> None:
    guarded_registry(
        tmp_path,
        [{"loopId": "loop-red"}],
        allow={"categories": ["health_critical"], "intents": ["cancel"]},
        safety={"maxActionsPerRun": 2, "maxActionsPerLoop": 2, "cooldownSeconds": 0, "killSwitch": True},
    )
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-red", health="critical")))
    pol = policy(tmp_path)
    assert (pol["autoEligibleCount"], pol["manualOnlyCount"]) == (0, 1)
    assert "autonomous_kill_switch_enabled" in pol["candidates"][0]["autonomous"]["reasons"]
    control = RecordingControl()
    auto = handoff(tmp_path, control, autonomous_execute=True, by="ops-bot")
    assert auto["execution"]["mode"] == "autonomous"
    assert auto["execution"]["requestedIntentCount"] == 0
    assert auto["summary"]["pendingConfirmationCount"] == 1
    assert "fleet_handoff_confirmation_pending" in auto["reasonCodes"]
    assert control.calls == []
    intent_id = auto["intents"][0]["intentId"]
    manual = handoff(
        tmp_path, control, execute=True, confirm=True, intent_ids=(intent_id,), by="oncall-operator"
    )
    assert manual["execution"]["mode"] == "manual"
    assert manual["execution"]["requestedIntentCount"] == 1
    assert manual["summary"]["executedCount"] == 1
    assert manual["summary"]["pendingConfirmationCount"] == 0
    assert manual["intents"][0]["status"] == "executed"
    assert "fleet_handoff_executed" in manual["reasonCodes"]
    assert len(control.calls) == 1
    assert control.calls[0].by == "oncall-operator"
    assert control.calls[0].note == f"fleet_handoff:manual:{intent_id}"


# fleet.bats #26: manual pause blocks autonomous dispatch, manual path stays
def test_manual_pause_blocks_autonomous_dispatch_but_keeps_manual_path(tmp_path: Path) -> None:
    guarded_registry(tmp_path, [{"loopId": "loop-red"}], rollout={"pause": {"manual": True}})
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-red", "failed")))
    pol = policy(tmp_path)
    assert (pol["autoEligibleCount"], pol["manualOnlyCount"]) == (0, 1)
    assert "fleet_auto_candidates_paused" in pol["reasonCodes"]
    plan = handoff(tmp_path)
    assert (plan["summary"]["intentCount"], plan["summary"]["autoEligibleIntentCount"]) == (1, 0)
    control = RecordingControl()
    auto = handoff(tmp_path, control, autonomous_execute=True)
    assert (auto["execution"]["requestedIntentCount"], auto["summary"]["pendingConfirmationCount"]) == (0, 1)
    assert control.calls == []


def _write_execute_rows(repo: Path, *executions: dict[str, int]) -> None:
    path = fleet_dir(repo) / "telemetry" / "handoff.jsonl"
    lines = [
        {
            "timestamp": ts(600 - n),
            "category": "fleet_handoff_execute",
            "execution": {"mode": "autonomous", **execution},
        }
        for n, execution in enumerate(executions)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


# fleet.bats #27: auto-pause on an ambiguity spike keeps the manual fallback
def test_auto_pause_on_ambiguity_spike_keeps_manual_fallback(tmp_path: Path) -> None:
    guarded_registry(tmp_path, [{"loopId": "loop-red"}])
    write_json(fleet_dir(tmp_path) / "state.json", fleet_state(result("loop-red", "failed")))
    _write_execute_rows(
        tmp_path,
        {"requestedIntentCount": 2, "ambiguousCount": 1},
        {"requestedIntentCount": 2, "ambiguousCount": 1},
    )
    pol = policy(tmp_path)
    auto = pol["autonomous"]["rollout"]["pause"]["auto"]
    assert pol["autoEligibleCount"] == 0
    assert (auto["active"], auto["metrics"]["attemptedCount"], auto["metrics"]["ambiguityRate"]) == (
        True,
        4,
        0.5,
    )
    assert {"fleet_auto_candidates_paused", "fleet_auto_candidates_autopause_triggered"} <= set(
        pol["reasonCodes"]
    )
    plan = handoff(tmp_path)
    assert (
        plan["summary"]["intentCount"],
        plan["summary"]["autoEligibleIntentCount"],
        plan["summary"]["pendingConfirmationCount"],
    ) == (1, 0, 1)


# fleet.bats #28: drill: a sprite_service outage auto-pauses autonomy
def test_drill_sprite_outage_auto_pause(tmp_path: Path) -> None:
    guarded_registry(
        tmp_path,
        [
            {
                "loopId": "loop-sprite",
                "transport": "sprite_service",
                "service": {"baseUrl": "http://sprite-service.local"},
            }
        ],
        allow={"categories": ["reconcile_failed"]},
        safety={"maxActionsPerRun": 3, "maxActionsPerLoop": 3, "cooldownSeconds": 0},
        rollout={
            "canaryPercent": 100,
            "autoPause": {
                "enabled": True,
                "lookbackExecutions": 3,
                "minSampleSize": 2,
                "ambiguityRateThreshold": 0.9,
                "failureRateThreshold": 0.5,
            },
        },
    )
    write_json(
        fleet_dir(tmp_path) / "state.json",
        fleet_state(result("loop-sprite", "failed", "degraded", "sprite_service")),
    )
    _write_execute_rows(
        tmp_path, {"requestedIntentCount": 1, "failedCount": 1}, {"requestedIntentCount": 1, "failedCount": 1}
    )
    pol = policy(tmp_path)
    auto = pol["autonomous"]["rollout"]["pause"]["auto"]
    assert (auto["active"], auto["metrics"]["attemptedCount"], auto["metrics"]["failureRate"]) == (True, 2, 1)
    assert '"failureRate":1}' in (fleet_dir(tmp_path) / "policy-state.json").read_text()
    plan = handoff(tmp_path)
    assert (plan["summary"]["autoEligibleIntentCount"], plan["summary"]["pendingConfirmationCount"]) == (0, 2)
    assert all("autonomous_autopause_failure_spike" in i["autonomous"]["reasons"] for i in plan["intents"])
    control = RecordingControl()
    auto_run = handoff(tmp_path, control, autonomous_execute=True)
    assert (
        auto_run["execution"]["requestedIntentCount"],
        auto_run["summary"]["pendingConfirmationCount"],
    ) == (0, 2)
    assert "fleet_handoff_confirmation_pending" in auto_run["reasonCodes"]
    assert control.calls == []


def _eligible_policy(repo: Path, loops: list[dict[str, Any]], candidates: list[tuple[str, str]]) -> None:
    guarded_registry(repo, loops)
    write_json(
        fleet_dir(repo) / "policy-state.json",
        {
            "fleetId": "fleet-t",
            "traceId": "trace-policy-fixture",
            "mode": "guarded_auto",
            "candidates": [
                {
                    "candidateId": f"{loop_id}:{category}",
                    "loopId": loop_id,
                    "category": category,
                    "severity": "critical",
                    "confidence": "high",
                    "recommendedIntent": "cancel",
                    "suppressed": False,
                    "autonomous": {
                        "eligible": eligible,
                        "manualOnly": not eligible,
                        "reasons": [] if eligible else ["category_not_allowlisted"],
                    },
                }
                for loop_id, category in candidates
                for eligible in [not loop_id.startswith("manual")]
            ],
        },
    )


SPRITE: dict[str, Any] = {
    "transport": "sprite_service",
    "service": {"baseUrl": "http://sprite-service.local"},
}


def _handoff_projection(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": state["summary"],
        "reasonCodes": sorted(state["reasonCodes"]),
        "results": sorted(r["reasonCode"] for r in state["execution"]["results"]),
        "statuses": [(i["intentId"], i["status"]) for i in state["intents"]],
    }


# fleet.bats #31: mixed autonomous outcomes project identically in two repos
def test_mixed_autonomous_outcomes_project_identically_in_two_repos(tmp_path: Path) -> None:
    projections = []
    for name in ("one", "two"):
        repo = tmp_path / name
        loops = [{"loopId": "loop-ok"}, {"loopId": "loop-amb", **SPRITE}, {"loopId": "loop-fail", **SPRITE}]
        _eligible_policy(
            repo,
            loops,
            [
                ("loop-ok", "reconcile_failed"),
                ("loop-amb", "reconcile_failed"),
                ("loop-fail", "health_critical"),
            ],
        )
        state = handoff(
            repo,
            RecordingControl({"loop-amb": 2, "loop-fail": 1}),
            autonomous_execute=True,
            trace_id="trace-mixed",
        )
        projections.append(_handoff_projection(state))
    assert projections[0] == projections[1]
    summary = projections[0]["summary"]
    assert (summary["executedCount"], summary["ambiguousCount"], summary["failedCount"]) == (1, 1, 1)
    assert {
        "fleet_handoff_executed",
        "fleet_handoff_execution_ambiguous",
        "fleet_handoff_execution_failed",
    } <= set(projections[0]["reasonCodes"])


# fleet.bats #36: autonomous execute dispatches only eligible intents
def test_autonomous_execute_dispatches_only_eligible_intents(tmp_path: Path) -> None:
    _eligible_policy(
        tmp_path,
        [{"loopId": "loop-red"}, {"loopId": "manual-blue"}],
        [("loop-red", "reconcile_failed"), ("manual-blue", "health_critical")],
    )
    control = RecordingControl()
    state = handoff(tmp_path, control, autonomous_execute=True, by="ops-bot")
    assert state["execution"]["mode"] == "autonomous"
    assert (
        state["execution"]["requestedIntentCount"],
        state["summary"]["executedCount"],
        state["summary"]["pendingConfirmationCount"],
    ) == (1, 1, 1)
    assert {i["loopId"]: i["status"] for i in state["intents"]} == {
        "loop-red": "executed",
        "manual-blue": "pending_operator_confirmation",
    }
    assert state["execution"]["results"][0]["reasonCode"] == "control_confirmed"
    assert [call.loop_id for call in control.calls] == ["loop-red"]
    assert control.calls[0].note == "fleet_handoff:autonomous:loop-red:reconcile_failed:cancel"


# fleet.bats #37: drill: an ambiguous outcome is retry-guarded
def test_drill_ambiguous_outcome_is_retry_guarded_until_a_person_acts(tmp_path: Path) -> None:
    _eligible_policy(tmp_path, [{"loopId": "loop-red"}], [("loop-red", "reconcile_failed")])
    control = RecordingControl({"loop-red": 2})
    first = handoff(tmp_path, control, autonomous_execute=True)
    assert (first["execution"]["requestedIntentCount"], first["summary"]["ambiguousCount"]) == (1, 1)
    assert "fleet_handoff_execution_ambiguous" in first["reasonCodes"]
    assert first["intents"][0]["status"] == "execution_ambiguous"
    for _ in range(3):  # the reference allowed a retry on the third run; we never do
        again = handoff(tmp_path, control, autonomous_execute=True)
        intent = again["intents"][0]
        assert (again["execution"]["requestedIntentCount"], again["summary"]["ambiguousCount"]) == (0, 0)
        assert again["summary"]["pendingConfirmationCount"] == 1
        assert intent["autonomous"]["manualOnly"] is True
        assert "autonomous_retry_guard_ambiguous" in intent["autonomous"]["reasons"]
        assert {"fleet_handoff_retry_guarded", "fleet_handoff_confirmation_pending"} <= set(
            again["reasonCodes"]
        )
    assert len(control.calls) == 1
    control.outcomes["loop-red"] = 0
    manual = handoff(tmp_path, control, execute=True, confirm=True, by="oncall")
    assert manual["intents"][0]["status"] == "executed"
    assert "retryGuards" not in manual
    released = handoff(tmp_path, control)
    assert released["intents"][0]["autonomous"]["eligible"] is True


# fleet.bats #38: outcome to status mapping across transports
def test_status_mapping_across_transports(tmp_path: Path) -> None:
    loops = [{"loopId": "loop-ok"}, {"loopId": "loop-amb", **SPRITE}, {"loopId": "loop-fail", **SPRITE}]
    _eligible_policy(
        tmp_path,
        loops,
        [("loop-ok", "reconcile_failed"), ("loop-amb", "reconcile_failed"), ("loop-fail", "health_critical")],
    )
    control = RecordingControl({"loop-amb": 2, "loop-fail": 1})
    state = handoff(tmp_path, control, autonomous_execute=True, trace_id="trace-transports-1")
    summary = state["summary"]
    assert (summary["executedCount"], summary["ambiguousCount"], summary["failedCount"]) == (1, 1, 1)
    statuses = {i["loopId"]: i["status"] for i in state["intents"]}
    assert statuses == {
        "loop-ok": "executed",
        "loop-amb": "execution_ambiguous",
        "loop-fail": "execution_failed",
    }
    results = {r["loopId"]: r for r in state["execution"]["results"]}
    assert results["loop-ok"]["reasonCode"] == "control_confirmed"
    assert results["loop-amb"]["reasonCode"] == "control_ambiguous"
    assert results["loop-fail"]["reasonCode"] == "control_failed_command"
    assert results["loop-amb"]["traceId"] == "trace-transports-1"
    assert results["loop-fail"]["idempotencyKey"]
    assert len(control.calls) == 3
    amb = next(call for call in control.calls if call.loop_id == "loop-amb")
    assert (amb.transport, amb.service_base_url) == ("sprite_service", "http://sprite-service.local")
    ok = next(call for call in control.calls if call.loop_id == "loop-ok")
    assert ok.service_base_url is None
    row = rows(fleet_dir(tmp_path) / "telemetry" / "handoff.jsonl")[-1]
    assert row["category"] == "fleet_handoff_execute"
    assert row["execution"]["ambiguousCount"] == 1


# --- import-registry ----------------------------------------------------------------------------


def test_import_registry_prints_policy_loops_and_fleet(tmp_path: Path, cli: CliRun) -> None:
    write_registry(
        tmp_path,
        [
            {"loopId": "loop-a", "metadata": {"team": "a"}},
            {
                "loopId": "loop-b",
                "enabled": False,
                "transport": "sprite_service",
                "sprite": {"id": "s-1"},
                "service": {"baseUrl": "http://svc:8787", "tokenEnv": "SVC_TOKEN"},
            },
        ],
        fleet_id="prod-fleet",
        mode="guarded_auto",
        autonomous={"governance": governance()},
    )
    code, out, err = cli(
        "import-registry", str(fleet_dir(tmp_path) / "registry.v1.json"), "--namespace", "ops"
    )
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["FleetPolicy", "Loop", "Loop", "Fleet"]
    policy_doc, loop_a, loop_b, fleet_doc = docs
    assert policy_doc["spec"]["mode"] == "guarded_auto"
    assert "reviewWindowDays" not in policy_doc["spec"]["autonomous"]["governance"]
    assert loop_a["spec"]["source"] == {"pvc": {"claimName": "superloop-repo"}}
    assert loop_b["spec"]["service"]["tokenSecretRef"] == {
        "name": "prod-fleet-service-tokens",
        "key": "SVC_TOKEN",
    }
    assert loop_b["metadata"]["annotations"] == {"ops.superloop.dev/sprite-id": "s-1"}
    assert fleet_doc["spec"]["policyRef"] == {"name": "prod-fleet"}
    entries = {e["loopId"]: e for e in fleet_doc["spec"]["loops"]}
    assert entries["loop-b"]["enabled"] is False
    assert entries["loop-a"]["loopRef"] == {"name": "prod-fleet-loop-a"}
    assert all(d["metadata"]["namespace"] == "ops" for d in docs)


# --- fleet scenarios of the service and visibility suites ------------------------------------------


def test_autonomous_handoff_parity_between_local_and_sprite_service(
    tmp_path: Path,
    cli: CliRun,
    start_service: Callable[[Path], RunningService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local_repo, service_repo = tmp_path / "local", tmp_path / "service"
    for repo in (local_repo, service_repo):
        write_runtime(repo, "loop-target")
    service = start_service(service_repo)
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", SIM_RUNTIME)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    candidates = [("loop-target", "reconcile_failed"), ("loop-target", "health_critical")]
    _eligible_policy(local_repo, [{"loopId": "loop-target"}], candidates)
    _eligible_policy(service_repo, [service_loop("loop-target", service.url)], candidates)
    projections = []
    states = []
    for repo in (local_repo, service_repo):
        policy_file = fleet_dir(repo) / "policy-state.json"
        doc = json.loads(policy_file.read_text())
        doc["candidates"][1]["autonomous"] = {
            "eligible": False,
            "manualOnly": True,
            "reasons": ["category_not_allowlisted"],
        }
        write_json(policy_file, doc)
        code, state, err = cli(
            "fleet", "handoff", "--repo", str(repo), "--trace-id", "trace-parity-1", "--autonomous-execute",
            "--no-runtime-confirm", "--by", "ops-bot",
        )  # fmt: skip
        assert code == 0, err
        states.append(state)
        projections.append(_handoff_projection(state))
    assert projections[0] == projections[1]
    service_state = states[1]
    assert service_state["execution"]["mode"] == "autonomous"
    target = service_state["execution"]["results"][0]
    assert (target["loopId"], target["traceId"], target["reasonCode"]) == (
        "loop-target",
        "trace-parity-1",
        "control_confirmed",
    )
    control_rows = rows(
        service_repo / ".superloop" / "ops-manager" / "loop-target" / "telemetry" / "control.jsonl"
    )
    assert control_rows[-1]["transport"] == "sprite_service"
    assert control_rows[-1]["idempotencyKey"] == target["idempotencyKey"]


def _status_fixture(repo: Path, transport: str, authority: bool) -> None:
    loops = [{"loopId": "loop-target"}, {"loopId": "loop-review"}]
    if transport == "sprite_service":
        loops = [{**loop, **SPRITE} for loop in loops]
    write_registry(repo, loops)
    write_json(
        fleet_dir(repo) / "state.json",
        fleet_state(
            result("loop-target", "failed", "critical", transport),
            result("loop-review", "success", "critical", transport),
        ),
    )
    pause = {
        "active": True,
        "reasons": ["autonomous_rollout_paused_auto"],
        "manual": False,
        "auto": {
            "enabled": True,
            "active": True,
            "reasons": ["autonomous_autopause_ambiguous_spike"],
            "metrics": {"attemptedCount": 3},
        },
    }
    gov = governance(reviewWindowDays=330)
    if not authority:
        gov["authorityContextPresent"] = False
    write_json(
        fleet_dir(repo) / "policy-state.json",
        {
            "mode": "guarded_auto",
            "unsuppressedCount": 2,
            "autoEligibleCount": 1,
            "manualOnlyCount": 1,
            "summary": {
                "byAutonomyReason": {"category_not_allowlisted": 1, "autonomous_rollout_paused_auto": 1}
            },
            "autonomous": {
                "governance": gov,
                "controls": {"safety": {"killSwitch": False}},
                "rollout": {"pause": pause},
            },
            "candidates": [],
        },
    )
    write_json(
        fleet_dir(repo) / "handoff-state.json",
        {
            "mode": "guarded_auto",
            "intents": [
                {
                    "intentId": "loop-target:reconcile_failed:cancel",
                    "loopId": "loop-target",
                    "status": "execution_failed",
                    "transport": transport,
                    "autonomous": {"eligible": True, "manualOnly": False, "reasons": []},
                },
                {
                    "intentId": "loop-review:health_critical:cancel",
                    "loopId": "loop-review",
                    "status": "pending_operator_confirmation",
                    "transport": transport,
                    "autonomous": {
                        "eligible": False,
                        "manualOnly": True,
                        "reasons": ["category_not_allowlisted"],
                    },
                },
            ],
            "execution": {
                "mode": "autonomous",
                "requestedIntentCount": 1,
                "executedCount": 0,
                "ambiguousCount": 0,
                "failedCount": 1,
                "results": [
                    {
                        "intentId": "loop-target:reconcile_failed:cancel",
                        "status": "failed",
                        "reasonCode": "control_failed_command",
                    }
                ],
            },
        },
    )


def _status_projection(status: dict[str, Any]) -> dict[str, Any]:
    auto = status["autonomous"]
    gates = auto["safetyGateDecisions"]
    return {
        "governance": {
            k: auto["governance"].get(k)
            for k in ("changedBy", "changedAt", "why", "until", "posture", "blocksAutonomous")
        },
        "rollout": {k: auto["rollout"][k] for k in ("state", "autopause")},
        "outcome": auto["outcomeRollup"],
        "paths": {k: gates["byPath"][k] for k in ("policyGated", "rolloutGated", "governanceGated")},
        "codes": sorted(
            c for c in gates["suppressionReasonCodes"] if c != "autonomous_suppression_transport_gated"
        ),
    }


@pytest.mark.parametrize("authority", [True, False])
def test_status_projection_is_transport_independent_except_transport_gate(
    tmp_path: Path, cli: CliRun, authority: bool
) -> None:
    statuses = {}
    for transport in ("local", "sprite_service"):
        repo = tmp_path / transport
        _status_fixture(repo, transport, authority)
        code, status, err = cli("fleet", "status", "--repo", str(repo))
        assert code == 0, err
        statuses[transport] = status
    assert _status_projection(statuses["local"]) == _status_projection(statuses["sprite_service"])
    posture = statuses["local"]["autonomous"]["governance"]["posture"]
    assert posture == ("active" if authority else "authority_missing")
    assert statuses["sprite_service"]["autonomous"]["rollout"]["autopause"]["active"] is True
    transport_gated = {
        t: s["autonomous"]["safetyGateDecisions"]["byPath"]["transportGated"]["blockedCount"]
        for t, s in statuses.items()
    }
    assert transport_gated == {"local": 0, "sprite_service": 1}
    assert (
        "autonomous_suppression_transport_gated"
        in statuses["sprite_service"]["autonomous"]["safetyGateDecisions"]["suppressionReasonCodes"]
    )


def test_path_overrides_are_honoured_by_reconcile_and_status(tmp_path: Path, cli: CliRun) -> None:
    write_runtime(tmp_path, "loop-a")
    registry_file = tmp_path / "elsewhere" / "fleet.json"
    write_json(registry_file, {"schemaVersion": "v1", "loops": [{"loopId": "loop-a"}]})
    state_file = tmp_path / "out" / "fleet-state.json"
    telemetry_file = tmp_path / "out" / "fleet.jsonl"
    flags = (
        "--registry-file",
        str(registry_file),
        "--fleet-state-file",
        str(state_file),
        "--fleet-telemetry-file",
        str(telemetry_file),
    )
    code, state, err = cli("fleet", "reconcile", "--repo", str(tmp_path), *flags)
    assert code == 0, err
    assert state["fleetId"] == "default"
    assert json.loads(state_file.read_text()) == state
    assert rows(telemetry_file)[-1]["status"] == "success"
    assert not (fleet_dir(tmp_path) / "state.json").exists()
    code, status, err = cli("fleet", "status", "--repo", str(tmp_path), *flags)
    assert code == 0, err
    assert status["files"]["fleetStateFile"] == str(state_file)
    assert status["latestTelemetry"]["status"] == "success"


def test_import_registry_fails_closed_on_an_invalid_registry(tmp_path: Path, cli: CliRun) -> None:
    write_registry(tmp_path, [{"loopId": "a", "transport": "sprite_service"}])
    code, out, err = cli("import-registry", str(fleet_dir(tmp_path) / "registry.v1.json"))
    assert code == 1
    assert out == ""
    assert "sprite_service loops require service.baseUrl or sprite.serviceBaseUrl" in err


def test_real_control_ambiguous_and_failed_outcomes_map_to_intent_statuses(
    tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runtime(tmp_path, "loop-red")
    _eligible_policy(tmp_path, [{"loopId": "loop-red"}], [("loop-red", "reconcile_failed")])
    args = ("fleet", "handoff", "--repo", str(tmp_path), "--autonomous-execute", "--timeout-seconds", "0")
    # A runtime that accepts the cancel but never stops the run: confirmation times out -> ambiguous.
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", "true")
    code, state, err = cli(*args, "--trace-id", "trace-real-amb")
    assert code == 0, err
    assert state["intents"][0]["status"] == "execution_ambiguous"
    assert state["execution"]["results"][0]["controlExitCode"] == 2
    assert state["execution"]["results"][0]["control"]["status"] == "ambiguous"
    code, state, err = cli(*args, "--trace-id", "trace-real-amb-2")
    assert code == 0, err
    assert state["execution"]["requestedIntentCount"] == 0
    assert "autonomous_retry_guard_ambiguous" in state["intents"][0]["autonomous"]["reasons"]
    # A runtime command that fails: the manual retry is recorded as failed and the guard stays.
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", "false")
    code, state, err = cli(
        "fleet", "handoff", "--repo", str(tmp_path), "--execute", "--confirm", "--timeout-seconds", "0"
    )
    assert code == 0, err
    assert state["intents"][0]["status"] == "execution_failed"
    assert state["execution"]["results"][0]["reasonCode"] == "control_failed_command"
    assert (
        state["retryGuards"]["loop-red:reconcile_failed:cancel"]["reason"] == "autonomous_retry_guard_failed"
    )


# Runbook "Fleet Ambiguous Outcome Retry-Storm Drill", step 3, on the CLI with the real control path.
def test_retry_drill_manual_execution_after_ambiguous_runs_control_again(
    tmp_path: Path, cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runtime(tmp_path, "loop-red")
    _eligible_policy(tmp_path, [{"loopId": "loop-red"}], [("loop-red", "reconcile_failed")])
    trace = ("--trace-id", "trace-drill")
    base = ("fleet", "handoff", "--repo", str(tmp_path), "--timeout-seconds", "0", *trace)
    # 1. The runtime accepts the cancel but the run never stops: ambiguous.
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", "true")
    code, first, err = cli(*base, "--autonomous-execute")
    assert code == 0, err
    assert first["intents"][0]["status"] == "execution_ambiguous"
    intent_id = first["intents"][0]["intentId"]
    first_key = first["execution"]["results"][0]["idempotencyKey"]
    # 2. The guard blocks the storm.
    code, guarded, err = cli(*base, "--autonomous-execute")
    assert code == 0, err
    assert guarded["execution"]["requestedIntentCount"] == 0
    # 3. A person executes it by hand, same trace: control runs again (a new attempt key) and the
    # runtime (the simulator's, which really stops the run) confirms.
    monkeypatch.setenv("SUPERLOOP_RUNTIME_COMMAND", f"{sys.executable} -m superloop_ops.cli.main simulate")
    code, manual, err = cli(
        *base, "--execute", "--confirm", "--intent-id", intent_id, "--by", "oncall", "--interval-seconds", "0"
    )
    assert code == 0, err
    result = manual["execution"]["results"][0]
    assert (result["status"], result["reasonCode"]) == ("executed", "control_confirmed")
    assert result["idempotencyKey"] == f"{first_key}-attempt2"
    assert manual["intents"][0]["status"] == "executed"
    assert "retryGuards" not in manual
    assert not (tmp_path / ".superloop" / "state.json").exists()


def test_status_reads_only_the_tail_of_a_long_telemetry_log(tmp_path: Path, cli: CliRun) -> None:
    """Issue 12: the status surface needs the latest telemetry row; it read the whole log (which
    grows by a row every pass, forever) and lost the row when an old part of the log did not
    decode (a torn write long ago)."""
    write_runtime(tmp_path, "loop-a")
    registry = {"schemaVersion": "v1", "loops": [{"loopId": "loop-a"}]}
    write_json(fleet_dir(tmp_path) / "registry.v1.json", registry)
    code, _, err = cli("fleet", "reconcile", "--repo", str(tmp_path))
    assert code == 0, err
    telemetry = fleet_dir(tmp_path) / "telemetry" / "reconcile.jsonl"
    latest = telemetry.read_bytes()
    telemetry.write_bytes(b'{"status": "old", "note": "\xff\xfe torn"}\n' * 1000 + latest)
    code, status, err = cli("fleet", "status", "--repo", str(tmp_path))
    assert code == 0, err
    assert status["latestTelemetry"]["status"] == "success"
