"""``superloop-ops promotion`` end to end on real repository directories.

Ports of the 19 scenarios of the reference's four promotion bats suites (gates 6, CI 3, apply 5,
orchestrate 5), then the recommended regressions of promotion §6.5 that need files or child
commands. Evidence timestamps and review deadlines are relative to the wall clock (the CLI reads
it); no calendar date that can pass is hard-coded. Orchestrate scenarios inject stub CI and
apply commands through the contract's ``OPS_MANAGER_PROMOTION_*_SCRIPT`` variables, as the
reference's tests do, as real executables.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from superloop_ops.cli import main as cli_main
from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import format_ts

ENV_NAMES = (
    "OPS_MANAGER_TRACE_ID",
    "GITHUB_STEP_SUMMARY",
    "OPS_MANAGER_FLEET_STATUS_SCRIPT",
    "OPS_MANAGER_PROMOTION_GATES_SCRIPT",
    "OPS_MANAGER_PROMOTION_CI_SCRIPT",
    "OPS_MANAGER_PROMOTION_APPLY_SCRIPT",
    "PROMOTION_STUB_DECISION",
    "PROMOTION_STUB_APPLY_LOG",
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli_main.main(["promotion", *argv])
        except SystemExit as exc:  # usage errors exit from the parser, as at the real entry point
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def ts(delta: dt.timedelta = dt.timedelta()) -> str:
    return format_ts(SystemClock().now() + delta)


def hours_ago(hours: int) -> str:
    return ts(-dt.timedelta(hours=hours))


def future(days: int = 300) -> str:
    return ts(dt.timedelta(days=days))


def fleet_dir(repo: Path) -> Path:
    return repo / ".superloop" / "ops-manager" / "fleet"


def make_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    (fleet_dir(repo) / "telemetry").mkdir(parents=True)
    (fleet_dir(repo) / "drills").mkdir(parents=True)
    return repo


def write_status(
    path: Path,
    *,
    posture: str = "active",
    blocks: bool = False,
    backlog: int = 2,
    autopause: bool = False,
    transport: bool = True,
    codes: tuple[str, ...] = (),
) -> Path:
    by_path: dict[str, Any] = {
        "policyGated": {"blockedCount": 0, "byReason": {}},
        "rolloutGated": {"blockedCount": 0, "byReason": {}},
        "governanceGated": {"blockedCount": 0, "reasonCodes": []},
    }
    if transport:
        by_path["transportGated"] = {"blockedCount": 0, "byReason": {}}
    document = {
        "schemaVersion": "v1",
        "autonomous": {
            "enabled": True,
            "governance": {"posture": posture, "blocksAutonomous": blocks, "reasonCodes": list(codes)},
            "outcomeRollup": {"manual_backlog": backlog},
            "rollout": {"autopause": {"active": autopause}},
            "safetyGateDecisions": {"byPath": by_path},
        },
    }
    path.write_text(json.dumps(document))
    return path


def write_handoff(
    path: Path, runs: int, attempted: int = 1, executed: int = 1, ambiguous: int = 0, failed: int = 0
) -> Path:
    row = {
        "timestamp": ts(),
        "category": "fleet_handoff_execute",
        "execution": {
            "mode": "autonomous",
            "requestedIntentCount": attempted,
            "executedCount": executed,
            "ambiguousCount": ambiguous,
            "failedCount": failed,
        },
    }
    path.write_text("".join(json.dumps(row) + "\n" for _ in range(runs)))
    return path


def write_drills(path: Path, completed_at: str | None = None, status: str = "pass") -> Path:
    when = completed_at or hours_ago(1)
    drills = [
        {"id": drill_id, "status": status, "completedAt": when}
        for drill_id in ("kill_switch", "sprite_service_outage", "ambiguous_retry_guard")
    ]
    path.write_text(json.dumps({"schemaVersion": "v1", "updatedAt": ts(), "drills": drills}))
    return path


def evidence(tmp_path: Path, **status: Any) -> list[str]:
    """Passing evidence (unless overridden) as explicit gate flags."""
    return [
        "--fleet-status-file",
        str(write_status(tmp_path / "status.json", **status)),
        "--handoff-telemetry-file",
        str(write_handoff(tmp_path / "handoff.jsonl", 20)),
        "--drill-state-file",
        str(write_drills(tmp_path / "drills.json")),
    ]


def write_registry(repo: Path, canary: int, paused: bool, *, review_by: str | None = None) -> Path:
    path = fleet_dir(repo) / "registry.v1.json"
    document = {
        "schemaVersion": "v1",
        "fleetId": "fleet-phase11",
        "loops": [{"loopId": "loop-a", "transport": "local"}, {"loopId": "loop-b", "transport": "local"}],
        "policy": {
            "mode": "guarded_auto",
            "autonomous": {
                "governance": {
                    "actor": "seed-user",
                    "approvalRef": "CAB-000",
                    "rationale": "seed",
                    "changedAt": hours_ago(24),
                    "reviewBy": review_by or future(),
                },
                "rollout": {"canaryPercent": canary, "pause": {"manual": paused}},
            },
        },
    }
    path.write_text(json.dumps(document, indent=2))
    return path


def write_decision(repo: Path, decision: str) -> Path:
    path = fleet_dir(repo) / "promotion-state.json"
    path.write_text(json.dumps({"schemaVersion": "v1", "summary": {"decision": decision, "reasonCodes": []}}))
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def governance_flags(review_by: str | None = None, rationale: str = "phase11-expand") -> list[str]:
    return [
        "--by",
        "ops-user",
        "--approval-ref",
        "CAB-111",
        "--rationale",
        rationale,
        "--review-by",
        review_by or future(),
    ]


# =============================================================================================
# ops-manager-promotion-gates.bats


def test_gates_promote_when_all_gates_pass(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, out, _ = run("gates", "--repo", str(repo), *evidence(tmp_path))
    assert code == 0
    assert json.loads(out)["summary"]["decision"] == "promote"
    state = read_json(fleet_dir(repo) / "promotion-state.json")
    assert state["summary"]["gateFailCount"] == 0
    telemetry = lines(fleet_dir(repo) / "telemetry" / "promotion.jsonl")
    assert len(telemetry) == 1
    assert telemetry[0] == state == json.loads(out)


def test_gates_hold_when_governance_authority_missing(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    flags = evidence(tmp_path)
    write_status(
        tmp_path / "status.json",
        posture="authority_missing",
        blocks=True,
        codes=("autonomous_governance_authority_missing",),
    )
    code, out, _ = run("gates", "--repo", str(repo), *flags)
    summary = json.loads(out)["summary"]
    assert code == 0
    assert summary["decision"] == "hold"
    assert "governance" in summary["failedGates"]
    assert summary["reasonCodes"] == [
        "promotion_governance_authority_missing",
        "promotion_governance_blocks_autonomous",
        "promotion_governance_posture_not_active",
    ]


def test_gates_hold_when_sample_below_minimum(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    flags = evidence(tmp_path)
    write_handoff(tmp_path / "handoff.jsonl", 3)
    code, out, _ = run("gates", "--repo", str(repo), *flags)
    summary = json.loads(out)["summary"]
    assert code == 0
    assert summary["failedGates"] == ["outcome_reliability"]
    assert summary["reasonCodes"] == ["promotion_autonomous_sample_insufficient"]


def test_gates_hold_when_autopause_active_and_paths_incomplete(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    flags = evidence(tmp_path)
    write_status(tmp_path / "status.json", autopause=True, transport=False)
    code, out, _ = run("gates", "--repo", str(repo), *flags)
    summary = json.loads(out)["summary"]
    assert code == 0
    assert "safety_suppression" in summary["failedGates"]
    assert {"promotion_autopause_active", "promotion_suppression_paths_missing"} <= set(
        summary["reasonCodes"]
    )


def test_gates_fail_closed_when_drill_evidence_missing(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    flags = evidence(tmp_path)
    flags[flags.index("--drill-state-file") + 1] = str(tmp_path / "no-such-drills.json")
    code, out, _ = run("gates", "--repo", str(repo), *flags)
    summary = json.loads(out)["summary"]
    assert code == 0
    assert summary["decision"] == "hold"
    assert "drill_recency" in summary["failedGates"]
    assert "promotion_drill_state_missing" in summary["reasonCodes"]


def test_gates_fail_on_hold_exits_2_with_the_document(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, out, _ = run("gates", "--repo", str(repo), *evidence(tmp_path, backlog=10), "--fail-on-hold")
    assert code == 2
    summary = json.loads(out)["summary"]
    assert summary["decision"] == "hold"
    assert summary["reasonCodes"] == ["promotion_manual_backlog_exceeded"]
    # Both artifacts are written before the non-zero exit.
    assert read_json(fleet_dir(repo) / "promotion-state.json")["summary"]["decision"] == "hold"


# =============================================================================================
# ops-manager-promotion-ci.bats


def test_ci_skips_with_success_when_evidence_missing(tmp_path: Path, run: Run) -> None:
    repo = tmp_path / "repo-skip"
    repo.mkdir()
    result_file, summary_file = tmp_path / "result-skip.json", tmp_path / "summary-skip.md"
    code, _, _ = run(
        "ci", "--repo", str(repo), "--skip-on-missing-evidence",
        "--result-file", str(result_file), "--summary-file", str(summary_file),
    )  # fmt: skip
    assert code == 0
    result = read_json(result_file)
    assert result["summary"]["decision"] == "skipped"
    assert "promotion_ci_missing_evidence" in result["summary"]["reasonCodes"]
    assert "Decision: `skipped`" in summary_file.read_text()
    # The evaluator did not run: no promotion state or telemetry.
    assert not (fleet_dir(repo) / "promotion-state.json").exists()


def test_ci_emits_promote_decision_and_markdown(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path, "repo-promote")
    result_file, summary_file = tmp_path / "result-promote.json", tmp_path / "summary-promote.md"
    code, out, _ = run(
        "ci", "--repo", str(repo), *evidence(tmp_path, backlog=1),
        "--result-file", str(result_file), "--summary-file", str(summary_file),
    )  # fmt: skip
    assert code == 0
    assert read_json(result_file)["summary"]["decision"] == "promote"
    assert "Decision: `promote`" in summary_file.read_text()
    # The CI result is the promotion state document itself.
    assert read_json(result_file) == read_json(fleet_dir(repo) / "promotion-state.json") == json.loads(out)


def test_ci_propagates_hold_exit_code_with_fail_on_hold(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path, "repo-hold")
    result_file, summary_file = tmp_path / "result-hold.json", tmp_path / "summary-hold.md"
    code, _, _ = run(
        "ci", "--repo", str(repo), *evidence(tmp_path, backlog=99),
        "--result-file", str(result_file), "--summary-file", str(summary_file), "--fail-on-hold",
    )  # fmt: skip
    assert code == 2
    result = read_json(result_file)
    assert result["summary"]["decision"] == "hold"
    assert "promotion_manual_backlog_exceeded" in result["summary"]["reasonCodes"]
    assert "Decision: `hold`" in summary_file.read_text()


# =============================================================================================
# ops-manager-promotion-apply.bats


def test_apply_expand_changes_canary_and_clears_pause(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 25, True)
    write_decision(repo, "promote")
    code, out, _ = run(
        "apply", "--repo", str(repo), "--intent", "expand", "--expand-step", "25", *governance_flags()
    )
    assert code == 0
    record = json.loads(out)
    assert record["rollout"]["after"] == {"canaryPercent": 50, "manualPause": False}
    saved = read_json(registry)
    assert saved["policy"]["autonomous"]["rollout"] == {"canaryPercent": 50, "pause": {"manual": False}}
    assert saved["policy"]["autonomous"]["governance"]["actor"] == "ops-user"
    assert read_json(fleet_dir(repo) / "promotion-apply-state.json") == record
    assert len(lines(fleet_dir(repo) / "telemetry" / "promotion-apply.jsonl")) == 1


def test_apply_expand_fails_on_hold_decision(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 25, True)
    before = registry.read_text()
    write_decision(repo, "hold")
    code, out, err = run("apply", "--repo", str(repo), "--intent", "expand", *governance_flags())
    assert code != 0
    assert "intent expand requires promotion decision promote" in out + err
    assert registry.read_text() == before


def test_apply_rollback_is_safety_allowed_on_hold(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 70, False)
    write_decision(repo, "hold")
    code, out, _ = run("apply", "--repo", str(repo), "--intent", "rollback", *governance_flags())
    assert code == 0
    after = json.loads(out)["rollout"]["after"]
    assert after == {"canaryPercent": 70, "manualPause": True}
    assert read_json(registry)["policy"]["autonomous"]["rollout"]["pause"]["manual"] is True


def test_apply_requires_governance_metadata(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    write_registry(repo, 25, True)
    write_decision(repo, "promote")
    flags = governance_flags()[2:]  # without --by
    code, out, err = run("apply", "--repo", str(repo), "--intent", "resume", *flags)
    assert code != 0
    assert "--by is required" in out + err


def test_apply_idempotent_replay_does_not_mutate_or_append(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 40, True)
    write_decision(repo, "promote")
    telemetry = fleet_dir(repo) / "telemetry" / "promotion-apply.jsonl"
    code, _, _ = run(
        "apply", "--repo", str(repo), "--intent", "expand", "--expand-step", "20",
        "--idempotency-key", "replay-key-1", *governance_flags(),
    )  # fmt: skip
    assert code == 0
    assert read_json(registry)["policy"]["autonomous"]["rollout"]["canaryPercent"] == 60
    flags = governance_flags(rationale="different")
    flags[flags.index("--approval-ref") + 1] = "CAB-999"
    code, out, _ = run(
        "apply", "--repo", str(repo), "--intent", "expand", "--expand-step", "30",
        "--idempotency-key", "replay-key-1", *flags,
    )  # fmt: skip
    assert code == 0
    replay = json.loads(out)
    assert replay["replayed"] is True
    assert replay["governance"]["approvalRef"] == "CAB-111"
    assert read_json(registry)["policy"]["autonomous"]["rollout"]["canaryPercent"] == 60
    assert len(lines(telemetry)) == 1
    assert read_json(fleet_dir(repo) / "promotion-apply-state.json") == replay


# =============================================================================================
# ops-manager-promotion-orchestrate.bats (stub CI and apply commands)

CI_STUB = """
import json, os, pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else ""
assert value("--repo") and value("--result-file") and value("--summary-file")
decision = os.environ.get("PROMOTION_STUB_DECISION", "promote")
for flag in ("--result-file", "--summary-file"):
    pathlib.Path(value(flag)).parent.mkdir(parents=True, exist_ok=True)
result = {"schemaVersion": "v1", "summary": {"decision": decision, "failedGates": [], "reasonCodes": []}}
pathlib.Path(value("--result-file")).write_text(json.dumps(result) + "\\n")
pathlib.Path(value("--summary-file")).write_text(f"stub summary decision={decision}\\n")
print(json.dumps({"summary": {"decision": decision}}))
sys.exit(2 if "--fail-on-hold" in args and decision == "hold" else 0)
"""

APPLY_STUB = """
import json, os, pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else ""
intent = value("--intent")
state = value("--promotion-state-file")
decision = json.loads(pathlib.Path(state).read_text())["summary"]["decision"]
if intent != "rollback" and decision != "promote":
    print(f"error: intent {intent} requires promotion decision promote (found: {decision})", file=sys.stderr)
    sys.exit(7)
entry = {"intent": intent, "expandStep": value("--expand-step"),
         "idempotencyKey": value("--idempotency-key"), "traceId": value("--trace-id"),
         "promotionStateFile": state, "by": value("--by"), "approvalRef": value("--approval-ref"),
         "rationale": value("--rationale"), "reviewBy": value("--review-by")}
with open(os.environ["PROMOTION_STUB_APPLY_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
record = {"schemaVersion": "v1", "status": "applied", "intent": intent, "promotionDecision": decision}
print(json.dumps(record))
"""


def write_stub(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the CI and apply stubs; returns the apply log path."""
    log = tmp_path / "apply-log.jsonl"
    monkeypatch.setenv("OPS_MANAGER_PROMOTION_CI_SCRIPT", write_stub(tmp_path / "ci-stub.py", CI_STUB))
    monkeypatch.setenv(
        "OPS_MANAGER_PROMOTION_APPLY_SCRIPT", write_stub(tmp_path / "apply-stub.py", APPLY_STUB)
    )
    monkeypatch.setenv("PROMOTION_STUB_APPLY_LOG", str(log))
    return log


def test_orchestrate_dry_run_previews_without_apply(
    tmp_path: Path, run: Run, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMOTION_STUB_DECISION", "hold")
    repo = make_repo(tmp_path)
    code, out, _ = run("orchestrate", "--repo", str(repo), "--mode", "dry_run")
    assert code == 0
    result = json.loads(out)
    assert (result["mode"], result["status"], result["decision"]) == ("dry_run", "preview", "hold")
    assert result["apply"]["executed"] is False
    assert not stubs.exists()
    assert read_json(fleet_dir(repo) / "promotion-orchestrate-result.json") == result


def test_orchestrate_apply_forwards_idempotency_and_trace(
    tmp_path: Path, run: Run, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMOTION_STUB_DECISION", "promote")
    repo = make_repo(tmp_path)
    code, out, _ = run(
        "orchestrate", "--repo", str(repo), "--mode", "apply", "--apply-intent", "expand",
        "--expand-step", "30", "--idempotency-key", "idmp-01", "--trace-id", "trace-01", *governance_flags(),
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "applied"
    assert result["apply"]["executed"] is True
    assert result["apply"]["intent"] == "expand"
    logged = lines(stubs)
    assert len(logged) == 1
    assert (logged[0]["expandStep"], logged[0]["idempotencyKey"], logged[0]["traceId"]) == (
        "30",
        "idmp-01",
        "trace-01",
    )
    assert logged[0]["promotionStateFile"] == str(fleet_dir(repo) / "promotion-ci-result.json")


def test_orchestrate_apply_passes_through_decision_gating_failure(
    tmp_path: Path, run: Run, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMOTION_STUB_DECISION", "hold")
    repo = make_repo(tmp_path)
    code, out, err = run(
        "orchestrate", "--repo", str(repo), "--mode", "apply", "--apply-intent", "resume", *governance_flags()
    )
    assert code == 7
    assert "requires promotion decision promote" in out + err
    assert not (fleet_dir(repo) / "promotion-orchestrate-result.json").exists()


def test_orchestrate_rollback_runs_on_hold(
    tmp_path: Path, run: Run, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMOTION_STUB_DECISION", "hold")
    repo = make_repo(tmp_path)
    code, out, _ = run("orchestrate", "--repo", str(repo), "--mode", "rollback", *governance_flags())
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "rolled_back"
    assert result["apply"]["intent"] == "rollback"
    assert [entry["intent"] for entry in lines(stubs)] == ["rollback"]
    assert lines(stubs)[0]["expandStep"] == ""


def test_orchestrate_requires_governance_in_apply_mode(tmp_path: Path, run: Run, stubs: Path) -> None:
    repo = make_repo(tmp_path)
    code, out, err = run("orchestrate", "--repo", str(repo), "--mode", "apply")
    assert code != 0
    assert "--by is required for mode apply" in out + err
    assert not stubs.exists()


# =============================================================================================
# §6.5 regressions and further CLI contract checks


def test_orchestrate_real_chain_rollback_on_skipped_and_apply_fails(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 40, False)
    code, out, err = run(
        "orchestrate",
        "--repo",
        str(repo),
        "--mode",
        "apply",
        "--skip-on-missing-evidence",
        *governance_flags(),
    )
    assert code == 1
    assert "intent expand requires promotion decision promote (found: skipped)" in err
    code, out, _ = run(
        "orchestrate", "--repo", str(repo), "--mode", "rollback", "--skip-on-missing-evidence",
        *governance_flags(rationale="incident rollback to manual pause"),
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert (result["status"], result["decision"]) == ("rolled_back", "skipped")
    assert result["summary"]["reasonCodes"] == ["promotion_ci_missing_evidence"]
    assert result["apply"]["record"]["decision"] == "skipped"
    saved = read_json(registry)["policy"]["autonomous"]
    assert saved["rollout"]["pause"]["manual"] is True
    assert saved["governance"]["rationale"] == "incident rollback to manual pause"


def test_orchestrate_fail_on_hold_blocks_a_rollback(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 40, False)
    before = registry.read_text()
    code, out, err = run(
        "orchestrate", "--repo", str(repo), "--mode", "rollback", "--fail-on-hold",
        *evidence(tmp_path, backlog=50), *governance_flags(),
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert json.loads(err)["summary"]["decision"] == "hold"
    assert registry.read_text() == before
    assert not (fleet_dir(repo) / "promotion-orchestrate-result.json").exists()
    assert read_json(fleet_dir(repo) / "promotion-ci-result.json")["summary"]["decision"] == "hold"


def test_orchestrate_real_chain_expand_with_spaces_and_step_summary(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    repo = make_repo(tmp_path)
    registry = write_registry(repo, 25, True)
    code, out, _ = run(
        "orchestrate", "--repo", str(repo), "--mode", "apply", "--expand-step", "30", "--pretty",
        "--trace-id", "trace-xyz", *evidence(tmp_path),
        *governance_flags(rationale="promotion rollout mutation"),
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert out.startswith("{\n  ")
    assert result["apply"]["record"]["traceId"] == "trace-xyz"
    assert result["apply"]["record"]["rollout"]["after"] == {"canaryPercent": 55, "manualPause": False}
    assert (
        read_json(registry)["policy"]["autonomous"]["governance"]["rationale"] == "promotion rollout mutation"
    )
    # The CI section (appended by the CI step), then the orchestration section.
    text = step_summary.read_text()
    assert text.index("## Ops Manager Promotion CI") < text.index("## Ops Manager Promotion Orchestration")
    assert "Apply intent: `expand`" in text
    assert read_json(fleet_dir(repo) / "promotion-state.json")["traceId"] == "trace-xyz"


def test_ci_skip_summary_lists_missing_paths_in_backticks(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, out, _ = run(
        "ci", "--repo", str(repo), "--skip-on-missing-evidence", "--fleet-status-file", "absent-status.json",
        "--max-ambiguity-rate", "abc",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["summary"]["missingEvidencePaths"] == [
        "absent-status.json",
        str(fleet_dir(repo) / "telemetry" / "handoff.jsonl"),
        str(fleet_dir(repo) / "drills" / "promotion.v1.json"),
    ]
    summary = (fleet_dir(repo) / "promotion-ci-summary.md").read_text()
    assert "- `absent-status.json`\n" in summary
    assert f"- `{fleet_dir(repo) / 'drills' / 'promotion.v1.json'}`\n" in summary


def test_ci_evaluator_errors_pass_through_without_result(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, out, err = run("ci", "--repo", str(repo), *evidence(tmp_path), "--window-executions", "0")
    assert code == 1
    assert out == ""
    assert "error: --window-executions must be an integer >= 1" in err
    assert not (fleet_dir(repo) / "promotion-ci-result.json").exists()
    code, _, err = run("ci", "--repo", str(repo), "--fleet-status-file", "nope.json")
    assert code == 1
    assert "fleet status file not found: nope.json" in err


def test_ci_summary_names_artifact_paths(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, _, _ = run(
        "ci", "--repo", str(repo), *evidence(tmp_path, backlog=9), "--promotion-state-file", "st.json"
    )
    assert code == 0
    summary = (fleet_dir(repo) / "promotion-ci-summary.md").read_text()
    assert "Failed gates: manual_backlog\n" in summary
    assert f"Result JSON: `{fleet_dir(repo) / 'promotion-ci-result.json'}`\n" in summary
    assert "Promotion state: `st.json`\n" in summary
    assert (tmp_path / "st.json").is_file()


@pytest.mark.parametrize(
    ("content", "message"), [("", "invalid fleet status JSON"), ("{bad", "invalid fleet status JSON")]
)
def test_gates_invalid_status_file(tmp_path: Path, run: Run, content: str, message: str) -> None:
    repo = make_repo(tmp_path)
    (tmp_path / "status.json").write_text(content)
    code, out, err = run("gates", "--repo", str(repo), "--fleet-status-file", "status.json")
    assert code == 1
    assert out == ""
    assert err.strip() == f"error: {message}: status.json"


def test_gates_status_producer_override_and_trace_env(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path)
    write_status(tmp_path / "status.json")
    producer = write_stub(
        tmp_path / "status-stub.py",
        f"import sys\nassert sys.argv[1:] == ['--repo', {str(repo)!r}]\n"
        f"print(open({str(tmp_path / 'status.json')!r}).read())\n",
    )
    monkeypatch.setenv("OPS_MANAGER_FLEET_STATUS_SCRIPT", producer)
    monkeypatch.setenv("OPS_MANAGER_TRACE_ID", "trace-from-env")
    write_handoff(fleet_dir(repo) / "telemetry" / "handoff.jsonl", 20)
    write_drills(fleet_dir(repo) / "drills" / "promotion.v1.json")
    code, out, _ = run("gates", "--repo", str(repo))
    document = json.loads(out)
    assert code == 0
    assert document["summary"]["decision"] == "promote"
    assert document["traceId"] == "trace-from-env"
    assert document["source"]["fleetStatusSource"] == "generated"
    assert document["source"]["fleetStatusFile"] is None
    failing = write_stub(tmp_path / "fail-stub.py", "import sys\nsys.exit(3)\n")
    monkeypatch.setenv("OPS_MANAGER_FLEET_STATUS_SCRIPT", failing)
    code, _, err = run("gates", "--repo", str(repo))
    assert (code, err.strip()) == (1, f"error: failed to read fleet status via {failing}")
    garbage = write_stub(tmp_path / "garbage-stub.py", "print('not json')\n")
    monkeypatch.setenv("OPS_MANAGER_FLEET_STATUS_SCRIPT", garbage)
    code, _, err = run("gates", "--repo", str(repo))
    assert (code, err.strip()) == (1, "error: fleet status output was not valid JSON")


def test_gates_flag_errors(tmp_path: Path, run: Run) -> None:
    code, _, err = run("gates", "--window-executions", "0")
    assert (code, err.strip()) == (1, "error: --repo is required")
    code, _, err = run("gates", "--repo", str(tmp_path), "--max-failure-rate", "1.5")
    assert (code, err.strip()) == (1, "error: --max-failure-rate must be a number between 0 and 1")
    code, _, err = run("gates", "--repo", str(tmp_path / "missing"))
    assert code == 1


def test_apply_review_by_rules(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    write_registry(repo, 25, True)
    write_decision(repo, "promote")
    for value, message in (
        (ts(dt.timedelta(days=3)).replace("Z", ".000Z"), "--review-by must be an ISO-8601 timestamp"),
        (ts(dt.timedelta(days=3)).replace("Z", "+00:00"), "--review-by must be an ISO-8601 timestamp"),
        (hours_ago(1), "--review-by must be in the future"),
    ):
        code, _, err = run(
            "apply", "--repo", str(repo), "--intent", "resume", *governance_flags(review_by=value)
        )
        assert (code, err.strip()) == (1, f"error: {message}")
    assert not (fleet_dir(repo) / "promotion-apply-state.json").exists()


def test_apply_state_and_registry_errors(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    code, _, err = run("apply", "--repo", str(repo), "--intent", "rollback", *governance_flags())
    assert err.strip() == f"error: promotion state file not found: {fleet_dir(repo) / 'promotion-state.json'}"
    (fleet_dir(repo) / "promotion-state.json").write_text("")
    code, _, err = run("apply", "--repo", str(repo), "--intent", "rollback", *governance_flags())
    assert err.strip() == "error: promotion state missing summary.decision"
    write_decision(repo, "hold")
    code, _, err = run("apply", "--repo", str(repo), "--intent", "rollback", *governance_flags())
    assert code == 1
    assert err.startswith("error: failed to read/validate fleet registry")
    registry = write_registry(repo, 25, True)
    document = read_json(registry)
    document["policy"]["mode"] = "advisory"
    registry.write_text(json.dumps(document))
    code, _, err = run("apply", "--repo", str(repo), "--intent", "rollback", *governance_flags())
    assert (code, err.strip()) == (1, "error: promotion apply requires policy.mode guarded_auto")
    # Telemetry directories exist even after failures (created before any check).
    assert (fleet_dir(repo) / "telemetry").is_dir()


def test_apply_replay_needs_no_registry_and_renews_expired_governance(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    write_decision(repo, "promote")
    telemetry = fleet_dir(repo) / "telemetry" / "promotion-apply.jsonl"
    telemetry.write_text(
        json.dumps({"idempotencyKey": "old-key", "intent": "expand", "status": "applied"}) + "\n"
    )
    code, out, _ = run(
        "apply",
        "--repo",
        str(repo),
        "--intent",
        "rollback",
        "--idempotency-key",
        "old-key",
        *governance_flags(),
    )
    assert code == 0
    assert json.loads(out) == {
        "idempotencyKey": "old-key",
        "intent": "expand",
        "status": "applied",
        "replayed": True,
    }
    # An expired review in the registry does not block the apply that renews it.
    registry = write_registry(repo, 10, True, review_by=hours_ago(2))
    code, out, _ = run("apply", "--repo", str(repo), "--intent", "resume", *governance_flags())
    assert code == 0
    governance = read_json(registry)["policy"]["autonomous"]["governance"]
    assert governance["actor"] == "ops-user"
    assert json.loads(out)["rollout"]["after"] == {"canaryPercent": 10, "manualPause": False}


def test_apply_relative_paths_are_echoed_as_given(tmp_path: Path, run: Run) -> None:
    repo = make_repo(tmp_path)
    write_registry(repo, 25, True)
    (tmp_path / "state.json").write_text(json.dumps({"summary": {"decision": "promote"}}))
    code, out, _ = run(
        "apply", "--repo", "repo", "--intent", "expand", "--promotion-state-file", "state.json",
        "--apply-state-file", "out/apply.json", *governance_flags(),
    )  # fmt: skip
    assert code == 0
    record = json.loads(out)
    assert record["files"]["promotionStateFile"] == "state.json"
    assert record["files"]["applyStateFile"] == "out/apply.json"
    assert record["files"]["registryFile"] == str(fleet_dir(repo) / "registry.v1.json")
    assert read_json(tmp_path / "out" / "apply.json") == record


def test_usage_errors_exit_1_not_the_hold_code(tmp_path: Path, run: Run) -> None:
    code, out, err = run("ci", "--repo", str(tmp_path), "--bogus", "x")
    assert code == 1
    assert out.startswith("usage: superloop-ops promotion ci")
    assert err.strip() == "error: unknown argument: --bogus"
    code, out, err = run("orchestrate", "--repo", str(tmp_path), "--mode")
    assert code == 1
    assert err.strip() == "error: argument --mode: expected one argument"


def test_concurrent_applies_with_one_key_apply_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from superloop_ops.core.promotion import apply_rules
    from superloop_ops.engine.promotion import promotion_commands

    repo = make_repo(tmp_path)
    registry = write_registry(repo, 10, True)
    write_decision(repo, "promote")
    request = apply_rules.build_apply_request(
        intent="expand", expand_step="5", by="ops", approval_ref="CAB-7", rationale="race",
        review_by=future(), idempotency_key="same-key",
    )  # fmt: skip
    options = promotion_commands.ApplyOptions(repo=repo, request=request)
    with ThreadPoolExecutor(max_workers=6) as pool:
        records = list(pool.map(lambda _: promotion_commands.run_promotion_apply(options), range(6)))
    assert sum(1 for record in records if "replayed" not in record) == 1
    assert read_json(registry)["policy"]["autonomous"]["rollout"]["canaryPercent"] == 15
    assert len(lines(fleet_dir(repo) / "telemetry" / "promotion-apply.jsonl")) == 1
