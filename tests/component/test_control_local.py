"""The local control path against simulator-written repositories (real files, real subprocesses).

Confirmation polling uses a frozen clock whose ``sleep`` also ticks the simulator, so the
"runtime" makes progress between polls exactly as a live run would, without wall-clock waits.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.cli import main as cli_main
from superloop_ops.clock import FrozenClock
from superloop_ops.engine.loop import control_run
from superloop_ops.errors import ContractError
from superloop_ops.sim.simulator import Simulator
from superloop_ops.transports import local as local_transport

SIM_RUNTIME = (sys.executable, "-m", "superloop_ops.cli.main", "simulate")
START = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)


class Harness:
    """A simulated loop plus a clock whose sleep advances time and ticks the runtime."""

    def __init__(self, root: Path, scenario: str, *, ticks: int = 12, tick_on_sleep: bool = True) -> None:
        self.clock = FrozenClock(START)
        self.sim = Simulator(root, self.clock, loops=1, scenarios=[scenario])
        self.loop = self.sim.loops[0]
        self.tick_on_sleep = tick_on_sleep
        self.sleeps: list[float] = []
        for _ in range(ticks):
            self.clock.advance(1)
            self.sim.step()

    @property
    def repo(self) -> Path:
        return self.loop.repo

    @property
    def ops(self) -> Path:
        return self.repo / ".superloop" / "ops-manager" / self.loop.loop_id

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.sleep(seconds)
        if self.tick_on_sleep:
            self.sim.step()

    def request(self, intent: str = "cancel", **overrides: Any) -> control_run.ControlRequest:
        fields: dict[str, Any] = {
            "repo": self.repo,
            "loop_id": self.loop.loop_id,
            "intent": intent,
            "trace_id": "trace-control-local-1",
            "runtime_command": SIM_RUNTIME,
            "timeout_seconds": 10,
            "interval_seconds": 2,
        }
        fields.update(overrides)
        return control_run.ControlRequest(**fields)

    def execute(self, intent: str, **overrides: Any) -> control_run.ControlOutcome:
        return control_run.execute_control(
            self.request(intent, **overrides), now_fn=self.clock.now, sleep=self.sleep
        )

    def rows(self, name: str) -> list[dict[str, Any]]:
        path = self.ops / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def snapshot(self) -> dict[str, Any]:
        return local_transport.fetch_snapshot(
            self.repo, self.loop.loop_id, trace_id=None, now=self.clock.now()
        )


def test_cancel_executes_and_confirms(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    assert h.snapshot()["run"]["status"] == "running"
    outcome = h.execute("cancel")
    assert outcome.status == "confirmed"
    assert outcome.exit_code == 0
    intent = h.rows("intents.jsonl")[-1]
    assert intent["intent"] == "cancel"
    assert intent["traceId"] == "trace-control-local-1"
    assert intent["command"].endswith(f"simulate cancel --repo {h.repo}")
    assert "Cancelled loop state." in intent["commandOutput"]
    assert intent["confirm"]["reason"] == "inactive_not_running"
    control = h.rows("telemetry/control.jsonl")[-1]
    assert control["status"] == "confirmed"
    assert control["traceId"] == "trace-control-local-1"
    assert "reasonCode" not in control
    invocation = h.rows("telemetry/control-invocations.jsonl")[-1]
    assert invocation["execution"]["status"] == "succeeded"
    assert invocation["traceId"] == "trace-control-local-1"
    assert invocation["confirmation"]["status"] == "confirmed"
    assert invocation["outcome"]["status"] == "confirmed"
    # the run process stops: no more events after the cancel
    lines = h.loop.events_file.read_text().count("\n")
    h.sim.step()
    assert h.loop.events_file.read_text().count("\n") == lines


def test_approve_executes_and_confirms_completion(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval")
    assert h.snapshot()["run"]["status"] == "awaiting_approval"
    outcome = h.execute("approve", by="ops-user", note="Looks good")
    assert outcome.status == "confirmed"
    approval_event = [
        json.loads(line)
        for line in h.loop.events_file.read_text().splitlines()
        if "approval_decision" in line
    ]
    assert approval_event[0]["role"] == "human"
    assert approval_event[0]["status"] == "approved"
    assert approval_event[0]["data"] == {
        "status": "approved",
        "by": "ops-user",
        "note": "Looks good",
        "at": approval_event[0]["timestamp"],
    }
    decisions = (h.loop.loop_dir / "decisions.jsonl").read_text().splitlines()
    assert json.loads(decisions[-1])["decision"] == "approved"
    assert "- Note: Looks good" in (h.loop.loop_dir / "decisions.md").read_text()
    invocation = h.rows("telemetry/control-invocations.jsonl")[-1]
    assert invocation["intent"] == "approve"
    assert invocation["confirmation"]["status"] == "confirmed"
    assert invocation["confirmation"]["outcome"]["reason"] == "completion_observed"
    # the simulated runtime consumed the approval and completed
    assert h.snapshot()["run"]["status"] == "complete"


def test_approval_json_is_rewritten_like_the_runtime(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval", tick_on_sleep=False)
    before = json.loads((h.loop.loop_dir / "approval.json").read_text())
    outcome = h.execute("reject", by="alice", note="nope", do_confirm=False)
    assert outcome.status == "executed_unconfirmed"
    after = json.loads((h.loop.loop_dir / "approval.json").read_text())
    stamp = after["decided_at"]
    assert after == {
        **before,
        "status": "rejected",
        "decision": {"status": "rejected", "by": "alice", "note": "nope", "at": stamp},
        "decided_at": stamp,
        "decided_by": "alice",
        "decided_note": "nope",
    }


def test_reject_is_confirmed_by_the_decision_event(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval", tick_on_sleep=False)
    outcome = h.execute("reject", by="alice")
    assert outcome.status == "confirmed"
    assert outcome.intent_row["confirm"]["reason"] == "rejection_observed"
    assert outcome.intent_row["confirm"]["attempts"] == 1


def test_approve_without_pending_request_fails_command(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    outcome = h.execute("approve", by="bob")
    assert outcome.status == "failed_command"
    assert outcome.exit_code == 1
    assert outcome.record.execution_status == "failed_command"
    assert outcome.record.confirmation_status == "not_attempted"
    assert outcome.intent_row["commandOutput"] == "error: no approval request found for loop 'sim-loop-1'"
    control = h.rows("telemetry/control.jsonl")[-1]
    assert control["reasonCode"] == "control_failed_command"


def test_second_decision_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval", tick_on_sleep=False)
    assert h.execute("reject", do_confirm=False).status == "executed_unconfirmed"
    again = h.execute("approve", do_confirm=False)
    assert again.status == "failed_command"
    assert "approval request is not pending (status=rejected)" in again.intent_row["commandOutput"]


def test_failing_runtime_command_records_exit_code_and_tail(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    script = "import sys\nfor i in range(60): print(f'line {i}\\r')\nsys.exit(7)"
    outcome = h.execute("cancel", runtime_command=(sys.executable, "-c", script))
    assert outcome.status == "failed_command"
    assert outcome.record.exit_code == 7
    output = outcome.intent_row["commandOutput"].splitlines()
    assert output[0] == "line 20"
    assert output[-1] == "line 59"
    assert len(output) == 40


def test_missing_runtime_command_is_a_failed_command(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    outcome = h.execute("cancel", runtime_command=(str(tmp_path / "no-such-superloop"),))
    assert outcome.status == "failed_command"
    assert outcome.record.exit_code == 127


def test_confirmation_timeout_is_ambiguous(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    noop = (sys.executable, "-c", "print('pretending to cancel')")
    outcome = h.execute("cancel", runtime_command=noop, timeout_seconds=5, interval_seconds=2)
    assert outcome.status == "ambiguous"
    assert outcome.exit_code == 2
    confirm = outcome.intent_row["confirm"]
    assert confirm["confirmed"] is False
    assert confirm["reason"] == "timeout"
    assert confirm["attempts"] == 4  # t=0,2,4,6 -> the fourth sees 6 >= 5
    assert confirm["observedStatus"] == "running"
    assert confirm["observedActive"] is True
    assert h.sleeps == [2, 2, 2]
    assert outcome.record.confirm_exit_code == 1
    assert h.rows("telemetry/control.jsonl")[-1]["reasonCode"] == "control_ambiguous"
    assert h.rows("telemetry/control.jsonl")[-1]["durationSeconds"] == 6


def test_timeout_zero_means_one_attempt_and_interval_zero_sleeps_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running")
    noop = (sys.executable, "-c", "pass")
    once = h.execute("cancel", runtime_command=noop, timeout_seconds=0, interval_seconds=0)
    assert once.intent_row["confirm"]["attempts"] == 1
    assert h.sleeps == []
    twice = h.execute("cancel", runtime_command=noop, timeout_seconds=1, interval_seconds=0)
    assert twice.intent_row["confirm"]["attempts"] == 2
    assert h.sleeps == [1]
    invocation = h.rows("telemetry/control-invocations.jsonl")[-1]
    assert invocation["request"]["intervalSeconds"] == 0  # echoed as given


def test_replayed_key_never_repeats_the_side_effect(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval", tick_on_sleep=False)
    first = h.execute("reject", idempotency_key="key-1", do_confirm=False)
    assert first.status == "executed_unconfirmed"
    decisions = (h.loop.loop_dir / "decisions.jsonl").read_text()
    replay = h.execute("reject", idempotency_key="key-1", do_confirm=False)
    assert replay.replayed is True
    assert replay.status == "executed_unconfirmed"  # the recorded outcome, not "approval not pending"
    assert (h.loop.loop_dir / "decisions.jsonl").read_text() == decisions
    invocations = h.rows("telemetry/control-invocations.jsonl")
    assert [row["execution"]["replayed"] for row in invocations] == [False, True]


def test_replay_across_a_process_restart(tmp_path: Path) -> None:
    """The journal, not memory, is the idempotency record: a fresh process replays too."""
    h = Harness(tmp_path, "running", tick_on_sleep=False)
    env = {**os.environ, "SUPERLOOP_RUNTIME_COMMAND": " ".join(SIM_RUNTIME)}
    argv = [
        sys.executable,
        "-m",
        "superloop_ops.cli.main",
        "control",
        "--repo",
        str(h.repo),
        "--loop",
        h.loop.loop_id,
        "--intent",
        "cancel",
        "--idempotency-key",
        "restart-1",
        "--timeout-seconds",
        "0",
        "--trace-id",
        "trace-restart",
    ]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "confirmed"
    # the loop is started again; a second blind cancel would stop it
    h.sim.loops[0].cancelled = False
    h.sim._write_state(h.loop, active=True)
    second = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert second.returncode == 0, second.stderr
    assert (h.repo / ".superloop" / "state.json").is_file()
    assert h.rows("telemetry/control-invocations.jsonl")[-1]["execution"]["replayed"] is True


def test_interrupted_execution_is_not_repeated(tmp_path: Path) -> None:
    """A claimed key without a result (crash mid-action) is resolved from evidence, never re-run."""
    h = Harness(tmp_path, "running", tick_on_sleep=False)
    h.ops.mkdir(parents=True, exist_ok=True)
    (h.ops / "control-claims.jsonl").write_text(
        json.dumps({"timestamp": "2026-03-01T09:00:00Z", "idempotencyKey": "crash-1", "intent": "cancel"})
        + "\n"
    )
    outcome = h.execute("cancel", idempotency_key="crash-1")
    assert outcome.status == "ambiguous"  # the loop still runs: the cancel did not happen
    assert outcome.record.execution_status == "interrupted"
    assert (h.repo / ".superloop" / "state.json").is_file()  # not executed again
    # once the evidence shows the effect, the same key resolves as confirmed
    (h.repo / ".superloop" / "state.json").unlink()
    (h.ops / "intents.jsonl").unlink()
    assert h.execute("cancel", idempotency_key="crash-1").status == "confirmed"


def test_claim_is_written_before_the_side_effect(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running", tick_on_sleep=False)
    probe = tmp_path / "claims-seen.txt"
    claims = h.ops / "control-claims.jsonl"
    script = (
        f"import pathlib; pathlib.Path({str(probe)!r}).write_text(pathlib.Path({str(claims)!r}).read_text())"
    )
    h.execute(
        "cancel", idempotency_key="order-1", runtime_command=(sys.executable, "-c", script), do_confirm=False
    )
    assert json.loads(probe.read_text())["idempotencyKey"] == "order-1"


def test_cli_validation_errors_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = Harness(tmp_path, "running", ticks=1)
    base = ["control", "--repo", str(h.repo), "--loop", h.loop.loop_id]
    cases = [
        (["--intent", "unknown"], "intent must be one of: cancel, approve, reject"),
        ([], "--intent is required"),
        (
            ["--intent", "cancel", "--timeout-seconds", "-1"],
            "timeout and interval must be non-negative integers",
        ),
        (["--intent", "cancel", "--retry-attempts", "0"], "--retry-attempts must be an integer >= 1"),
        (["--intent", "cancel", "--transport", "sprite_service"], "--service-base-url is required"),
        (
            ["--intent", "cancel", "--transport", "carrier-pigeon"],
            "--transport must be local or sprite_service",
        ),
    ]
    for extra, message in cases:
        assert cli_main.main([*base, *extra]) == 1
        assert message in capsys.readouterr().err
    assert not h.ops.exists()


def test_cli_prints_the_intents_row_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = Harness(tmp_path, "running")
    code = cli_main.main(
        [
            "control",
            "--repo",
            str(h.repo),
            "--loop",
            h.loop.loop_id,
            "--intent",
            "cancel",
            "--no-confirm",
            "--runtime-command",
            " ".join(SIM_RUNTIME),
            "--by",
            "carol",
            "--trace-id",
            "cli-1",
        ]
    )
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    assert row == h.rows("intents.jsonl")[-1]
    assert row["status"] == "executed_unconfirmed"
    assert row["requestedBy"] == "carol"
    assert row["idempotencyKey"].startswith("cancel-")
    invocation = h.rows("telemetry/control-invocations.jsonl")[-1]
    assert invocation["confirmation"] == {"attempted": False, "status": "skipped", "exitCode": 0}


def test_key_reused_for_another_intent_fails_closed(tmp_path: Path) -> None:
    h = Harness(tmp_path, "awaiting_approval", tick_on_sleep=False)
    h.execute("reject", idempotency_key="shared", do_confirm=False)
    rows = len(h.rows("intents.jsonl"))
    with pytest.raises(ContractError, match="idempotency key 'shared' was already used for intent 'reject'"):
        h.execute("approve", idempotency_key="shared", do_confirm=False)
    assert len(h.rows("intents.jsonl")) == rows


def test_failed_snapshots_count_as_not_confirmed(tmp_path: Path) -> None:
    h = Harness(tmp_path, "running", tick_on_sleep=False)
    calls: list[int] = []

    def flaky(repo: Path, loop_id: str, *, trace_id: str | None, now: dt.datetime) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            raise ContractError("invalid JSON in final events line")
        return local_transport.fetch_snapshot(repo, loop_id, trace_id=trace_id, now=now)

    result = control_run.poll_confirmation(
        h.repo, h.loop.loop_id, "cancel", timeout_seconds=10, interval_seconds=1,
        now_fn=h.clock.now, sleep=h.sleep, fetch_snapshot=flaky,
    )  # fmt: skip
    assert result.confirmed is False
    assert result.document["observedStatus"] == "running"  # observed once snapshots worked
    assert result.document["attempts"] == 11
    (h.repo / ".superloop" / "state.json").unlink()
    calls.clear()
    again = control_run.poll_confirmation(
        h.repo, h.loop.loop_id, "cancel", timeout_seconds=10, interval_seconds=1,
        now_fn=h.clock.now, sleep=h.sleep, fetch_snapshot=flaky,
    )  # fmt: skip
    assert again.confirmed is True
    assert again.document["attempts"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loop_id": "../x"}, "invalid loop id"),
        ({"transport": "smoke"}, "--transport must be local or sprite_service"),
        ({"transport": "sprite_service"}, "--service-base-url is required"),
        ({"timeout_seconds": -1}, "timeout and interval must be non-negative integers"),
        ({"retry_attempts": 0}, "--retry-attempts must be an integer >= 1"),
        ({"retry_backoff_seconds": -1}, "--retry-backoff-seconds must be a non-negative integer"),
        ({"intent": "pause"}, "intent must be one of"),
    ],
)
def test_engine_validation_fails_before_any_row(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    h = Harness(tmp_path, "running", ticks=1)
    fields = {"intent": "cancel", **overrides}
    request = h.request(**fields)
    with pytest.raises(ContractError, match=message):
        control_run.execute_control(request, now_fn=h.clock.now, sleep=h.sleep)
    assert not h.ops.exists()


def test_ops_dir_override_journals_only_there(tmp_path: Path) -> None:
    """The operator's journal tree receives the rows and the claim; the repository receives none."""
    h = Harness(tmp_path / "repo", "running")
    journal = tmp_path / "state" / ".superloop" / "ops-manager" / h.loop.loop_id
    outcome = h.execute("cancel", ops_dir=journal, idempotency_key="cancel-ops-dir-1")
    assert outcome.status == "confirmed"
    assert not h.ops.exists()
    intents = [json.loads(line) for line in (journal / "intents.jsonl").read_text().splitlines()]
    assert [row["idempotencyKey"] for row in intents] == ["cancel-ops-dir-1"]
    assert (journal / "telemetry" / "control.jsonl").read_text().count("\n") == 1
    assert (journal / "telemetry" / "control-invocations.jsonl").read_text().count("\n") == 1
    # a replay of the same key is answered from the override journal, not re-executed
    again = h.execute("cancel", ops_dir=journal, idempotency_key="cancel-ops-dir-1")
    assert again.replayed
    assert not h.ops.exists()
