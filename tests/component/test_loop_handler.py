"""Loop and HandoffIntent handlers called directly: real files, a real simulator and sprite
service on 127.0.0.1, and an in-memory ``KubeEdge`` standing in for the API server."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest

from helpers.operator_fakes import SIM_RUNTIME, FakeEdge, build_context, build_frozen_clock
from superloop_ops import main as _operator_main  # noqa: F401  (registers every handler)
from superloop_ops.cli import sprite_service as sprite_cli
from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers import loop as loop_handlers
from superloop_ops.handlers.context import OperatorContext
from superloop_ops.journal import files
from superloop_ops.service import server as service_server
from superloop_ops.sim.simulator import Simulator

NS = "team-a"
TOKEN = "s3cret-token"


@pytest.fixture
def clock() -> FrozenClock:
    return build_frozen_clock()


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge(NS)


def _context(tmp_path: Path, edge: FakeEdge, clock: FrozenClock, **pvcs: Path) -> OperatorContext:
    return build_context(
        tmp_path, edge, clock, pvcs, control_confirm_timeout_seconds=20, status_refresh_seconds=300
    )


def _loop(name: str, loop_id: str, claim: str = "claim-a", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name},
        "spec": {"loopId": loop_id, "transport": "local", "source": {"pvc": {"claimName": claim}}},
    }
    body["spec"].update(spec)
    return body


def _cond(body: Mapping[str, Any], cond_type: str) -> dict[str, Any]:
    for cond in body["status"]["conditions"]:
        if cond["type"] == cond_type:
            return dict(cond)
    raise AssertionError(f"no {cond_type} condition in {body['status']}")


def _sim(tmp_path: Path, clock: FrozenClock, scenario: str, ticks: int) -> tuple[Simulator, Path]:
    sim = Simulator(tmp_path / "sim", clock, loops=1, scenarios=[scenario], loop_prefix=scenario)
    sim.run(ticks)
    return sim, sim.repo_of(f"{scenario}-1")


def test_local_loop_reaches_status_and_skips_unchanged_writes(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    sim, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("l1", "running-1"))
    report = loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx)
    assert report.outcome == "success"
    body = edge.get("loops", "l1")
    status = body["status"]
    assert status["lifecycle"] == "running"
    assert status["healthStatus"] == "healthy"
    assert status["transport"] == "local"
    assert status["cursor"]["eventLineOffset"] == status["state"]["cursor"]["eventLineCount"]
    assert _cond(body, "Ready")["status"] == "True"
    assert _cond(body, "Ready")["observedGeneration"] == 1
    assert _cond(body, "Diverged")["status"] == "False"
    assert edge.reasons("l1") == ["LifecycleChanged"]
    # the journal lives under the state dir, one tree per namespace, reference layout
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "running-1"
    assert (ops / "state.json").is_file()
    assert (ops / "telemetry" / "reconcile.jsonl").is_file()
    assert not (repo / ".superloop" / "ops-manager").exists()
    # the first empty batches change the transition/sequence blocks (previousLast drops to null)...
    for _ in range(2):
        clock.advance(5)
        assert loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx).status_written
    # ...then nothing new: no status write
    patches = len(edge.status_patches)
    clock.advance(5)
    again = loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx)
    assert not again.status_written
    assert len(edge.status_patches) == patches
    # the runtime moves on: written again
    sim.run(3)
    assert loop_handlers.reconcile_loop(edge.get("loops", "l1"), ctx).status_written
    rendered = ctx.metrics.render().decode()
    assert 'superloop_ops_loop_lifecycle_state{loop="l1",namespace="team-a",state="running"} 1.0' in rendered


def test_lifecycle_transition_and_divergence_appear_with_events(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    _, repo = _sim(tmp_path, clock, "contradiction", 14)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("div", "contradiction-1"))
    loop_handlers.reconcile_loop(edge.get("loops", "div"), ctx)
    body = edge.get("loops", "div")
    assert body["status"]["state"]["divergence"]["any"] is True
    diverged = _cond(body, "Diverged")
    assert (diverged["status"], diverged["reason"]) == ("True", "DivergenceDetected")
    assert "DivergenceDetected" in edge.reasons("div")
    assert "divergence_detected" in body["status"]["reasonCodes"]


def test_missing_pvc_directory_is_a_condition_not_a_crash(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    ctx = _context(tmp_path, edge, clock)
    edge.add("loops", _loop("l2", "nowhere", claim="absent-claim"))
    report = loop_handlers.reconcile_loop(edge.get("loops", "l2"), ctx)
    assert report.outcome == "blocked"
    assert report.retry_after is not None
    body = edge.get("loops", "l2")
    ready = _cond(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SourceNotFound")
    assert "absent-claim" in ready["message"]
    assert _cond(body, "Healthy")["status"] == "Unknown"
    assert edge.reasons("l2") == ["SourceNotFound"]
    # a repeat does not write or post again
    assert not loop_handlers.reconcile_loop(edge.get("loops", "l2"), ctx).status_written
    assert edge.reasons("l2") == ["SourceNotFound"]
    # the directory appears (the mount root maps the namespace's absent-claim -> <root>/<ns>/absent-claim)
    sim = Simulator(
        tmp_path / "mounts" / NS, clock, loops=1, scenarios=["running"], loop_prefix="absent-claim"
    )
    sim.run(3)
    body["spec"]["loopId"] = "absent-claim-1"
    body["spec"]["source"]["pvc"]["subPath"] = ""
    edge.objects[("loops", NS, "l2")] = body
    ctx2 = _context(tmp_path, edge, clock)
    sim_repo = tmp_path / "mounts" / NS / "absent-claim-1"
    body["spec"]["source"]["pvc"]["claimName"] = "absent-claim-1"
    assert sim_repo.is_dir()
    assert loop_handlers.reconcile_loop(edge.get("loops", "l2"), ctx2).outcome == "success"
    assert _cond(edge.get("loops", "l2"), "Ready")["status"] == "True"
    assert "ReconcileRecovered" in edge.reasons("l2")


def test_suspend_stops_reconciling(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    _, repo = _sim(tmp_path, clock, "running", 3)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("l3", "running-1", suspend=True))
    report = loop_handlers.reconcile_loop(edge.get("loops", "l3"), ctx)
    assert report.outcome == "suspended"
    assert _cond(edge.get("loops", "l3"), "Ready")["reason"] == "Suspended"
    assert not (tmp_path / "state" / NS / ".superloop" / "ops-manager" / "running-1" / "state.json").exists()


def test_replay_annotation_is_handled_once(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    _, repo = _sim(tmp_path, clock, "complete", 20)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    body = edge.add("loops", _loop("l4", "complete-1"))
    loop_handlers.reconcile_loop(edge.get("loops", "l4"), ctx)
    reconcile_log = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "complete-1" / "telemetry"
    body["metadata"]["annotations"] = {"ops.superloop.dev/replay": "from-start"}
    loop_handlers.reconcile_loop(edge.get("loops", "l4"), ctx)
    loop_handlers.reconcile_loop(edge.get("loops", "l4"), ctx)
    rows = files.read_jsonl(reconcile_log / "reconcile.jsonl")
    assert [row["fromStart"] for row in rows] == [False, True, False]
    assert rows[1]["cursorOffsetBefore"] == 0
    assert rows[1]["eventsIngested"] == rows[0]["eventsIngested"]
    assert body["status"]["replayHandled"] == "from-start@"
    assert edge.reasons("l4").count("ReplayedFromStart") == 1


def test_unchanged_passes_issue_no_get_and_no_patch(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: a pass works from the watched body; when nothing changed it sends nothing."""
    _, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("quiet", "running-1"))
    for _ in range(3):  # the first passes settle the transition and sequence blocks
        loop_handlers.reconcile_loop(edge.get("loops", "quiet"), ctx)
        clock.advance(5)
    patches, gets = len(edge.status_patches), edge.gets
    for _ in range(5):
        clock.advance(5)
        assert not loop_handlers.reconcile_loop(edge.get("loops", "quiet"), ctx).status_written
    assert (len(edge.status_patches), edge.gets) == (patches, gets)
    assert gets == 0


def _journal_stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(root.rglob("*")) if f.is_file()}


def _assert_idle_passes(
    edge: FakeEdge, ctx: OperatorContext, clock: FrozenClock, name: str, journal: Path, *, step: float
) -> None:
    """Three periodic passes ``step`` seconds apart are idle: no journal write, no API call, no Event."""
    before = (_journal_stamps(journal), len(edge.status_patches), edge.gets, len(edge.events))
    for _ in range(3):
        clock.advance(step)
        assert loop_handlers.reconcile_loop(edge.get("loops", name), ctx, force=False).outcome == "idle"
    assert (_journal_stamps(journal), len(edge.status_patches), edge.gets, len(edge.events)) == before


def test_idle_periodic_pass_writes_nothing_until_something_changes_or_is_due(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12: a periodic pass over unchanged artifacts is a few stat() calls: no journal
    write, no API call; an appended event, a spec change or a lag reaching its threshold makes
    the next pass a full one."""
    sim, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("idle", "running-1"))
    assert loop_handlers.reconcile_loop(edge.get("loops", "idle"), ctx).outcome == "success"
    _assert_idle_passes(edge, ctx, clock, "idle", tmp_path / "state" / NS, step=5)
    assert 'superloop_ops_loop_idle_passes_total{namespace="team-a"} 3.0' in ctx.metrics.render().decode()

    sim.run(1)  # the runtime appends an event: a full pass
    appended = loop_handlers.reconcile_loop(edge.get("loops", "idle"), ctx, force=False)
    assert appended.outcome == "success"
    lines = len((repo / ".superloop" / "loops" / "running-1" / "events.jsonl").read_text().splitlines())
    assert edge.get("loops", "idle")["status"]["cursor"]["eventLineCount"] == lines == 5

    edge.get("loops", "idle")["metadata"]["generation"] = 2  # a spec change: a full pass
    assert loop_handlers.reconcile_loop(edge.get("loops", "idle"), ctx, force=False).outcome == "success"
    assert loop_handlers.reconcile_loop(edge.get("loops", "idle"), ctx, force=False).outcome == "idle"

    clock.advance(301)  # the lags reach the degraded ingest lag (300 s): due
    due = loop_handlers.reconcile_loop(edge.get("loops", "idle"), ctx, force=False)
    assert due.outcome == "success"
    assert edge.get("loops", "idle")["status"]["health"]["metrics"]["ingestLagSeconds"] >= 300


def test_by_default_an_idle_loop_past_every_threshold_stays_idle_for_days(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """Issue 12 at 10,000 Loops: with the default settings (no status refresh) a finished Loop
    whose lags crossed every threshold is not passed in full again, nor its status rewritten,
    until something changes; then it is."""
    _, repo = _sim(tmp_path, clock, "complete", 12)
    ctx = build_context(tmp_path, edge, clock, {"claim-a": repo}, control_confirm_timeout_seconds=20)
    assert ctx.settings.status_refresh_seconds == 0.0
    edge.add("loops", _loop("done", "complete-1"))
    clock.advance(2 * 86_400)  # every lag (events, and the files' mtimes) is past its critical threshold
    assert loop_handlers.reconcile_loop(edge.get("loops", "done"), ctx).outcome == "success"
    (memo,) = ctx.idle_memos.values()
    assert memo.due is None  # nothing ahead by the mere passing of time
    _assert_idle_passes(edge, ctx, clock, "done", tmp_path / "state" / NS, step=86_400)
    edge.get("loops", "done")["metadata"]["generation"] = 2  # a spec change: a full pass again
    assert loop_handlers.reconcile_loop(edge.get("loops", "done"), ctx, force=False).outcome == "success"


def test_a_pass_does_not_parse_the_status(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    """The pass reads spec and metadata; a stored status the model would reject (left by another
    version) neither blocks it nor costs a parse every pass."""
    _, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    body = edge.add("loops", _loop("odd", "running-1"))
    body["status"] = {"conditions": "not a list", "observedGeneration": "x"}
    report = loop_handlers.reconcile_loop(edge.get("loops", "odd"), ctx)
    assert report.outcome == "success"
    assert edge.get("loops", "odd")["status"]["lifecycle"] == "running"


def test_stale_body_conflicts_then_is_read_again(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    """A body older than the stored object (a watch event not yet seen) is caught by the patch's
    resourceVersion; the pass reads the object once and writes on the fresh version."""
    sim, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("racy", "running-1"))
    loop_handlers.reconcile_loop(edge.get("loops", "racy"), ctx)
    stale = json.loads(json.dumps(edge.get("loops", "racy")))
    edge.patch_annotations(loop_handlers.loop_ref(stale), {"example.com/touched": "yes"})
    sim.run(3)
    clock.advance(5)
    report = loop_handlers.reconcile_loop(stale, ctx)
    assert report.status_written
    assert (edge.conflicts, edge.gets) == (1, 1)
    assert edge.get("loops", "racy")["status"]["cursor"] == report.status["cursor"]


def test_an_object_that_keeps_changing_still_gets_its_status(
    tmp_path: Path, edge: FakeEdge, clock: FrozenClock
) -> None:
    """While kopf patches its annotations around a create, each fresh read can be outdated by
    the time the patch arrives; the last attempt goes without the precondition."""
    sim, repo = _sim(tmp_path, clock, "running", 4)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    edge.add("loops", _loop("busy", "running-1"))
    loop_handlers.reconcile_loop(edge.get("loops", "busy"), ctx)
    stale = json.loads(json.dumps(edge.get("loops", "busy")))
    edge.patch_annotations(loop_handlers.loop_ref(stale), {"example.com/touched": "yes"})
    edge.churn = 5
    sim.run(3)
    clock.advance(5)
    report = loop_handlers.reconcile_loop(stale, ctx)
    assert report.status_written
    assert edge.conflicts == 2
    assert edge.get("loops", "busy")["status"]["cursor"] == report.status["cursor"]


def test_replay_on_a_stale_body_runs_once(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    """A replay request the stored status already records as handled does not run again even
    when the pass gets a body from before that write."""
    _, repo = _sim(tmp_path, clock, "complete", 20)
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})
    body = edge.add("loops", _loop("l5", "complete-1"))
    body["metadata"]["annotations"] = {"ops.superloop.dev/replay": "from-start"}
    stale = json.loads(json.dumps(body))
    loop_handlers.reconcile_loop(edge.get("loops", "l5"), ctx)
    loop_handlers.reconcile_loop(stale, ctx)
    rows = files.read_jsonl(
        tmp_path
        / "state"
        / NS
        / ".superloop"
        / "ops-manager"
        / "complete-1"
        / "telemetry"
        / "reconcile.jsonl"
    )
    assert [row["fromStart"] for row in rows] == [True, False]


def test_sprite_service_loop_and_missing_secret(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> None:
    _, repo = _sim(tmp_path, clock, "running", 5)
    config = sprite_cli.build_config(repo.resolve(), token=TOKEN, runtime_command=SIM_RUNTIME)
    server = service_server.build_server(config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        ctx = _context(tmp_path, edge, clock)
        spec = {
            "loopId": "running-1",
            "transport": "sprite_service",
            "service": {
                "baseUrl": f"http://127.0.0.1:{server.port}",
                "tokenSecretRef": {"name": "svc-token", "key": "token"},
                "retryBackoffSeconds": 0,
            },
        }
        edge.add("loops", {"metadata": {"name": "s1"}, "spec": spec})
        report = loop_handlers.reconcile_loop(edge.get("loops", "s1"), ctx)
        assert report.outcome == "blocked"
        assert _cond(edge.get("loops", "s1"), "Ready")["reason"] == "SecretNotFound"
        edge.secrets[(NS, "svc-token")] = {"token": TOKEN}
        report = loop_handlers.reconcile_loop(edge.get("loops", "s1"), ctx)
        assert report.outcome == "success"
        status = edge.get("loops", "s1")["status"]
        assert status["lifecycle"] == "running"
        assert status["transportHealth"]["lastResult"] == "success"
        # the token never lands in the status or the journal
        assert TOKEN not in json.dumps(status)
        ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "running-1"
        assert all(TOKEN not in p.read_text() for p in ops.rglob("*") if p.is_file())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    # service gone: transport_unreachable
    clock.advance(5)
    report = loop_handlers.reconcile_loop(edge.get("loops", "s1"), ctx)
    assert report.outcome == "failed"
    body = edge.get("loops", "s1")
    assert "transport_unreachable" in body["status"]["reasonCodes"]
    assert _cond(body, "Ready")["reason"] == "ServiceRequestFailed"


@pytest.fixture
def approval_setup(tmp_path: Path, edge: FakeEdge, clock: FrozenClock) -> tuple[OperatorContext, Simulator]:
    sim, repo = _sim(tmp_path, clock, "awaiting_approval", 20)
    approval = json.loads(
        (repo / ".superloop" / "loops" / "awaiting_approval-1" / "approval.json").read_text()
    )
    assert approval["status"] == "pending"
    ctx = _context(tmp_path, edge, clock, **{"claim-a": repo})

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        sim.step()

    ctx.sleep = sleep
    edge.add("loops", _loop("la", "awaiting_approval-1"))
    return ctx, sim


def _intent(name: str, intent: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "HandoffIntent",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"loopRef": {"name": "la"}, "intent": intent},
    }


APPROVED = {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "alice"}


def test_unapproved_intent_never_executes_then_approval_executes_once(
    tmp_path: Path, edge: FakeEdge, approval_setup: tuple[OperatorContext, Simulator]
) -> None:
    ctx, sim = approval_setup
    body = edge.add("handoffintents", _intent("hi1", "approve"))
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi1"), ctx)
    assert report.phase == "pending_operator_confirmation"
    assert not report.executed
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "awaiting_approval-1"
    assert not (ops / "intents.jsonl").exists()
    # incomplete approval: reported, not executed
    body["metadata"]["annotations"] = {"ops.superloop.dev/approved": "true"}
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi1"), ctx)
    assert not report.executed
    assert _cond(edge.get("handoffintents", "hi1"), "Approved")["reason"] == "ApprovalInvalid"
    body["metadata"]["annotations"] = dict(APPROVED)
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi1"), ctx)
    assert report.executed
    status = edge.get("handoffintents", "hi1")["status"]
    assert status["phase"] == "executed"
    assert status["approvedBy"] == "alice"
    assert status["result"]["execution"]["status"] == "confirmed"
    assert _cond(edge.get("handoffintents", "hi1"), "Executed")["status"] == "True"
    phases = [patch["phase"] for name, patch in edge.status_patches if name == "hi1" and "phase" in patch]
    assert phases[-2:] == ["executing", "executed"]
    # the simulator shows the effect: the approval was consumed and the run completed
    events_file = (
        sim.repo_of("awaiting_approval-1") / ".superloop" / "loops" / "awaiting_approval-1" / "events.jsonl"
    )
    names = [json.loads(line)["event"] for line in events_file.read_text().splitlines() if line.strip()]
    assert names.count("approval_consumed") == 1
    assert names[-1] == "loop_complete"
    # journal: three control rows in the state tree, with the approver; executing recorded first
    rows = files.read_jsonl(ops / "intents.jsonl")
    assert [(r["intent"], r["requestedBy"], r["status"]) for r in rows] == [("approve", "alice", "confirmed")]
    handoff = files.read_jsonl(ops / "telemetry" / "handoff-intents.jsonl")
    assert [r["phase"] for r in handoff] == ["executing", "executed"]
    assert len(files.read_jsonl(ops / "telemetry" / "control-invocations.jsonl")) == 1
    # again (same approval, resume after restart): nothing runs a second time
    fresh = _context(tmp_path, edge, ctx.clock)  # type: ignore[arg-type]
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi1"), fresh)
    assert not report.executed
    assert len(files.read_jsonl(ops / "intents.jsonl")) == 1
    assert edge.reasons("hi1") == ["AwaitingApproval", "ApprovalInvalid", "Executing", "Executed"]
    rendered = ctx.metrics.render().decode()
    assert 'intent="approve"' in rendered
    assert 'status="executed"' in rendered


def test_executing_without_outcome_becomes_ambiguous_and_never_reruns(
    tmp_path: Path, edge: FakeEdge, approval_setup: tuple[OperatorContext, Simulator]
) -> None:
    ctx, sim = approval_setup
    body = edge.add("handoffintents", _intent("hi2", "reject", dict(APPROVED)))
    body["status"] = {
        "phase": "executing",
        "approvedBy": "alice",
        "idempotencyKey": "reject-crashed-1",
        "result": {"attempt": 1, "approval": {"by": "alice", "fingerprint": "alice||"}},
    }
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi2"), ctx)
    assert not report.executed
    status = edge.get("handoffintents", "hi2")["status"]
    assert status["phase"] == "execution_ambiguous"
    assert status["reasonCodes"] == ["control_ambiguous"]
    executed = _cond(edge.get("handoffintents", "hi2"), "Executed")
    assert (executed["status"], executed["reason"]) == ("Unknown", "ExecutionAmbiguous")
    repo = sim.repo_of("awaiting_approval-1")
    approval = json.loads(
        (repo / ".superloop" / "loops" / "awaiting_approval-1" / "approval.json").read_text()
    )
    assert approval["status"] == "pending"  # the reject never ran
    # the same approval again: still nothing
    assert not intent_handlers.reconcile_intent(edge.get("handoffintents", "hi2"), ctx).executed
    # a new approval (new approved-at stamp) retries with a new key
    # (stamped now: an approval older than the policy's age limit lapses instead, issue 15)
    stamp = format_ts(ctx.clock.now())
    body["metadata"]["annotations"] = {**APPROVED, "ops.superloop.dev/approved-at": stamp}
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi2"), ctx)
    assert report.executed
    status = edge.get("handoffintents", "hi2")["status"]
    assert status["idempotencyKey"].endswith("-attempt2")
    assert status["result"]["previousAttempts"][0]["phase"] == "execution_ambiguous"
    assert status["phase"] in ("executed", "execution_ambiguous")


def test_recovery_uses_the_journal_outcome_when_present(
    tmp_path: Path, edge: FakeEdge, approval_setup: tuple[OperatorContext, Simulator]
) -> None:
    ctx, _ = approval_setup
    ops = tmp_path / "state" / NS / ".superloop" / "ops-manager" / "awaiting_approval-1"
    files.append_jsonl(ops / "intents.jsonl", [{"idempotencyKey": "cancel-k1", "status": "confirmed"}])
    body = edge.add("handoffintents", _intent("hi3", "cancel", dict(APPROVED)))
    body["status"] = {"phase": "executing", "approvedBy": "alice", "idempotencyKey": "cancel-k1"}
    intent_handlers.reconcile_intent(edge.get("handoffintents", "hi3"), ctx)
    assert edge.get("handoffintents", "hi3")["status"]["phase"] == "executed"


def _metric(ctx: OperatorContext, name: str, **labels: str) -> float | None:
    return ctx.metrics.registry.get_sample_value(name, labels)


def test_every_pass_is_counted_and_a_waiting_intent_is_exported(
    tmp_path: Path, edge: FakeEdge, approval_setup: tuple[OperatorContext, Simulator]
) -> None:
    ctx, _ = approval_setup
    assert loop_handlers.reconcile_loop(edge.get("loops", "la"), ctx).outcome == "success"
    edge.add("loops", _loop("blocked", "nowhere", claim="absent-claim"))
    assert loop_handlers.reconcile_loop(edge.get("loops", "blocked"), ctx).outcome == "blocked"
    passes = "superloop_ops_reconcile_passes_total"
    assert _metric(ctx, passes, namespace=NS, kind="Loop", result="error") == 1
    assert _metric(ctx, passes, namespace=NS, kind="Loop", result="success") == 1
    stamp = _metric(ctx, "superloop_ops_last_successful_pass_timestamp_seconds", namespace=NS, kind="Loop")
    assert stamp == ctx.clock.now().timestamp()
    body = edge.add("handoffintents", _intent("hi-wait", "approve"))
    body["metadata"]["creationTimestamp"] = "2026-01-02T03:04:05Z"
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-wait"), ctx)
    intent_handlers.observe_waiting(ctx, body, report.phase)
    assert _metric(ctx, passes, namespace=NS, kind="HandoffIntent", result="success") == 1
    since = "superloop_ops_intent_awaiting_approval_since_timestamp_seconds"
    assert _metric(ctx, since, namespace=NS, intent="hi-wait", loop="la") == 1767323045.0
    assert _metric(ctx, "superloop_ops_intents_awaiting_approval", namespace=NS) == 1
    body["metadata"]["annotations"] = dict(APPROVED)
    report = intent_handlers.reconcile_intent(edge.get("handoffintents", "hi-wait"), ctx)
    intent_handlers.observe_waiting(ctx, body, report.phase)
    assert report.executed
    assert _metric(ctx, since, namespace=NS, intent="hi-wait", loop="la") is None
    assert _metric(ctx, "superloop_ops_intents_awaiting_approval", namespace=NS) == 0


def test_no_loop_handler_needs_a_task_or_a_finalizer_per_loop() -> None:
    """Issue 12: one scheduler, no kopf daemon (one asyncio task and one live body per Loop), and
    so nothing that needs kopf's finalizer on a Loop."""
    registry = kopf.get_default_registry()
    spawning = [h for h in registry._spawning.get_all_handlers() if "loops" in repr(h.selector)]
    deleting = [
        h
        for h in registry._changing.get_all_handlers()
        if "loops" in repr(h.selector) and h.reason is not None and "delete" in str(h.reason)
    ]
    assert spawning == []
    assert all(h.requires_finalizer is False for h in deleting)
