"""Promotion engine: gather evidence, call the pure promotion core, persist what it decided.

Files keep the reference layout under ``<repo>/.superloop/ops-manager/fleet/`` (every path
overridable; a path given by the caller is used and echoed exactly as given). State files are
replaced atomically, telemetry rows are appended whole, and the registry (the CLI's local mode)
is patched atomically with only the promotion fields changed.

The collaborator seams of the contract (§0.4) are argument-list runners: ``StepRunner`` takes the
child command's arguments and returns its exit status and combined output. The CLI supplies
in-process runners by default and external commands when the ``OPS_MANAGER_*_SCRIPT`` variables
are set; tests pass stubs. The fleet status producer is a plain callable for the same reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from superloop_ops import clock as clock_mod
from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact
from superloop_ops.core.fleet import fleet_registry
from superloop_ops.core.promotion import apply_rules, promotion_gates, promotion_orchestrate
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import ContractError
from superloop_ops.journal import files

__all__ = [
    "ApplyOptions",
    "CiOptions",
    "DrillEvidenceText",
    "GatesOptions",
    "PromotionPaths",
    "StatusProducer",
    "StepFailedError",
    "StepResult",
    "StepRunner",
    "append_step_summary",
    "build_command_runner",
    "build_default_status_producer",
    "build_script_status_producer",
    "fetch_evidence_text",
    "resolve_trace_id",
    "run_promotion_apply",
    "run_promotion_ci",
    "run_promotion_gates",
    "run_promotion_orchestrate",
]


@dataclasses.dataclass(frozen=True)
class PromotionPaths:
    """Default promotion artifact paths (absolute, derived from the absolute repo path)."""

    repo: Path

    @property
    def fleet(self) -> Path:
        return self.repo / ".superloop" / "ops-manager" / "fleet"

    def default(self, name: str) -> str:
        relative = {
            "registry_file": "registry.v1.json",
            "shadow_state_file": "shadow-state.json",
            "handoff_telemetry_file": "telemetry/handoff.jsonl",
            "drill_state_file": "drills/promotion.v1.json",
            "promotion_state_file": "promotion-state.json",
            "promotion_telemetry_file": "telemetry/promotion.jsonl",
            "ci_result_file": "promotion-ci-result.json",
            "ci_summary_file": "promotion-ci-summary.md",
            "apply_state_file": "promotion-apply-state.json",
            "apply_telemetry_file": "telemetry/promotion-apply.jsonl",
            "orchestrate_result_file": "promotion-orchestrate-result.json",
            "orchestrate_summary_file": "promotion-orchestrate-summary.md",
        }[name]
        return str(self.fleet / relative)

    def pick(self, name: str, given: str | None) -> str:
        """The path exactly as given, or the absolute default."""
        return given if given else self.default(name)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """A child step's exit status and its stdout and stderr captured together."""

    exit_code: int
    output: str


StepRunner = Callable[[Sequence[str]], StepResult]
StatusProducer = Callable[[Path], Any]


class StepFailedError(Exception):
    """A child step failed: the caller copies ``output`` to stderr and exits with ``exit_code``."""

    def __init__(self, exit_code: int, output: str) -> None:
        super().__init__(output)
        self.exit_code = exit_code
        self.output = output


def build_command_runner(command: str) -> StepRunner:
    """Run an external command (an ``OPS_MANAGER_*_SCRIPT`` override) with a real argument list."""

    def run(argv: Sequence[str]) -> StepResult:
        try:
            done = subprocess.run(
                [command, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
            )
        except OSError as exc:
            return StepResult(127, f"{command}: {exc}\n")
        return StepResult(done.returncode, done.stdout.decode("utf-8", errors="replace"))

    return run


def resolve_trace_id(given: str | None) -> str:
    """``--trace-id``, else ``OPS_MANAGER_TRACE_ID``, else a fresh lower-case UUID (§0.3)."""
    return given or os.environ.get(fleet_commands.TRACE_ENV) or fleet_commands.generate_trace_id()


def append_step_summary(markdown: str, step_summary: str | None) -> None:
    """Append to the GitHub job summary when ``GITHUB_STEP_SUMMARY`` names a file."""
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as handle:
            handle.write(markdown)


def _parse_json(text: str) -> Any:
    """One JSON document (surrounding whitespace allowed); raises ValueError otherwise."""
    return json.loads(text)


def _write_text(path: str, text: str) -> None:
    files.write_text_atomic(Path(path), text)


def _ensure_parent(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# gates


def build_default_status_producer(clock: clock_mod.Clock | None = None) -> StatusProducer:
    """The in-process fleet status surface (``fleet status`` with default paths)."""

    def produce(repo: Path) -> Any:
        try:
            return fleet_commands.run_fleet_status(fleet_commands.FleetPaths.for_repo(repo), clock=clock)
        except ContractError as exc:
            raise ContractError(f"failed to read fleet status via fleet status: {exc}") from exc

    return produce


def build_script_status_producer(script: str) -> StatusProducer:
    """An external status producer (``OPS_MANAGER_FLEET_STATUS_SCRIPT``), called with ``--repo``."""

    def produce(repo: Path) -> Any:
        try:
            done = subprocess.run([script, "--repo", str(repo)], capture_output=True, check=False)
        except OSError as exc:
            raise ContractError(f"failed to read fleet status via {script}") from exc
        if done.returncode != 0:
            raise ContractError(f"failed to read fleet status via {script}")
        try:
            return _parse_json(done.stdout.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ContractError("fleet status output was not valid JSON") from exc

    return produce


def fetch_evidence_text(path: str) -> str | None:
    """The file's text, None when it is not a regular file; undecodable bytes read as invalid."""
    target = Path(path)
    if not target.is_file():
        return None
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "\0"  # not JSON: the gates see it as invalid evidence
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class GatesOptions:
    """Flags of one gates evaluation (paths as given, or None for the defaults)."""

    repo: Path
    thresholds: promotion_gates.GateThresholds = dataclasses.field(
        default_factory=promotion_gates.GateThresholds
    )
    fleet_status_file: str | None = None
    handoff_telemetry_file: str | None = None
    drill_state_file: str | None = None
    promotion_state_file: str | None = None
    promotion_telemetry_file: str | None = None
    trace_id: str | None = None
    registry_file: str | None = None
    """The registry whose ``policy.autonomous.shadow`` block adds the shadow_agreement gate."""
    shadow_state_file: str | None = None
    """The shadow ledger the shadow_agreement gate reads."""


@dataclasses.dataclass(frozen=True)
class DrillEvidenceText:
    """Drill evidence read somewhere other than a file (the operator's ConfigMap).

    ``text`` None means missing; ``source`` is echoed as ``source.drillStateFile``.
    """

    source: str
    text: str | None


def _load_status_file(path: str) -> Any:
    if not Path(path).is_file():
        raise ContractError(f"fleet status file not found: {path}")
    value = files.read_json(Path(path))
    if value is None:
        # read_json returns None for a literal ``null`` too; that document is valid JSON.
        try:
            return _parse_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ContractError(f"invalid fleet status JSON: {path}") from exc
    return value


def _read_shadow_evidence(
    paths: PromotionPaths, options: GatesOptions
) -> promotion_gates.ShadowEvidence | None:
    """The shadow ledger, when the registry's policy asks for the shadow_agreement gate."""
    registry = files.read_json(Path(paths.pick("registry_file", options.registry_file)))
    ledger = Path(paths.pick("shadow_state_file", options.shadow_state_file))
    text = ledger.read_text(encoding="utf-8") if ledger.is_file() else None
    return promotion_gates.build_shadow_evidence(registry, text)


def run_promotion_gates(
    options: GatesOptions,
    *,
    status_producer: StatusProducer | None = None,
    clock: clock_mod.Clock | None = None,
    drill_evidence: DrillEvidenceText | None = None,
) -> promotion_gates.PromotionEvaluation:
    """Evaluate the five gates; write the state file and append the telemetry row (§1.6).

    ``drill_evidence`` replaces the drill state file (the operator reads a ConfigMap).
    """
    clk = clock or clock_mod.SystemClock()
    paths = PromotionPaths(options.repo)
    trace_id = resolve_trace_id(options.trace_id)
    if options.fleet_status_file:
        status = _load_status_file(options.fleet_status_file)
    else:
        status = (status_producer or build_default_status_producer(clk))(options.repo)
    sources = promotion_gates.GateSources(
        repo_path=str(options.repo),
        fleet_status_file=options.fleet_status_file or None,
        handoff_telemetry_file=paths.pick("handoff_telemetry_file", options.handoff_telemetry_file),
        drill_state_file=(
            drill_evidence.source
            if drill_evidence is not None
            else paths.pick("drill_state_file", options.drill_state_file)
        ),
        promotion_state_file=paths.pick("promotion_state_file", options.promotion_state_file),
        promotion_telemetry_file=paths.pick("promotion_telemetry_file", options.promotion_telemetry_file),
    )
    evaluation = promotion_gates.build_promotion_evaluation(
        status=status,
        handoff=promotion_gates.build_handoff_evidence(fetch_evidence_text(sources.handoff_telemetry_file)),
        drills=promotion_gates.build_drill_evidence(
            drill_evidence.text
            if drill_evidence is not None
            else fetch_evidence_text(sources.drill_state_file)
        ),
        thresholds=options.thresholds,
        sources=sources,
        trace_id=trace_id,
        now=clk.now(),
        shadow=_read_shadow_evidence(paths, options),
    )
    files.write_json_atomic(Path(sources.promotion_state_file), evaluation.document)
    files.append_jsonl(Path(sources.promotion_telemetry_file), [evaluation.document])
    return evaluation


# ---------------------------------------------------------------------------------------------
# CI wrapper


@dataclasses.dataclass(frozen=True)
class CiOptions:
    """Flags of one CI run; thresholds stay strings (the evaluator validates them)."""

    repo: Path
    fleet_status_file: str | None = None
    handoff_telemetry_file: str | None = None
    drill_state_file: str | None = None
    promotion_state_file: str | None = None
    promotion_telemetry_file: str | None = None
    summary_file: str | None = None
    result_file: str | None = None
    thresholds: Mapping[str, str] = dataclasses.field(default_factory=dict)
    trace_id: str | None = None
    fail_on_hold: bool = False
    skip_on_missing_evidence: bool = False
    pretty: bool = False


@dataclasses.dataclass(frozen=True)
class CiOutcome:
    """The CI result document and the exit status to propagate (the evaluator's, or 0 on skip)."""

    exit_code: int
    document: JsonObject


def run_promotion_ci(
    options: CiOptions,
    *,
    evaluator: StepRunner,
    clock: clock_mod.Clock | None = None,
    step_summary: str | None = None,
) -> CiOutcome:
    """Skip cleanly on missing evidence (skip mode), else run the evaluator and render its result.

    Raises ``StepFailedError`` when the evaluator's output is not JSON (nothing is written then).
    """
    clk = clock or clock_mod.SystemClock()
    paths = PromotionPaths(options.repo)
    handoff = paths.pick("handoff_telemetry_file", options.handoff_telemetry_file)
    drills = paths.pick("drill_state_file", options.drill_state_file)
    state = paths.pick("promotion_state_file", options.promotion_state_file)
    telemetry = paths.pick("promotion_telemetry_file", options.promotion_telemetry_file)
    summary_file = paths.pick("ci_summary_file", options.summary_file)
    result_file = paths.pick("ci_result_file", options.result_file)
    _ensure_parent(summary_file)
    _ensure_parent(result_file)
    missing = [
        path
        for path in (options.fleet_status_file, handoff, drills)
        if path is not None and not Path(path).is_file()
    ]
    if options.skip_on_missing_evidence and missing:
        document = promotion_gates.build_ci_skip_result(str(options.repo), missing, clk.now())
        markdown = promotion_gates.build_ci_skip_summary(missing)
        files.write_json_atomic(Path(result_file), document)
        _write_text(summary_file, markdown)
        append_step_summary(markdown, step_summary)
        return CiOutcome(0, document)
    argv = ["--repo", str(options.repo), "--handoff-telemetry-file", handoff, "--drill-state-file", drills]
    argv += ["--promotion-state-file", state, "--promotion-telemetry-file", telemetry]
    if options.fleet_status_file:
        argv += ["--fleet-status-file", options.fleet_status_file]
    for flag, key in promotion_orchestrate.THRESHOLD_FLAGS:
        if value := options.thresholds.get(key):
            argv += [flag, value]
    if options.trace_id:
        argv += ["--trace-id", options.trace_id]
    if options.pretty:
        argv.append("--pretty")
    if options.fail_on_hold:
        argv.append("--fail-on-hold")
    step = evaluator(argv)
    try:
        document = _parse_json(step.output)
    except ValueError as exc:
        raise StepFailedError(step.exit_code, step.output) from exc
    markdown = promotion_gates.build_ci_summary(
        document, result_file=result_file, promotion_state_file=state, promotion_telemetry_file=telemetry
    )
    files.write_json_atomic(Path(result_file), document)
    _write_text(summary_file, markdown)
    append_step_summary(markdown, step_summary)
    return CiOutcome(step.exit_code, document)


# ---------------------------------------------------------------------------------------------
# apply


@dataclasses.dataclass(frozen=True)
class ApplyOptions:
    """One apply: the validated request plus paths (as given, or None for the defaults)."""

    repo: Path
    request: apply_rules.ApplyRequest
    registry_file: str | None = None
    promotion_state_file: str | None = None
    apply_state_file: str | None = None
    apply_telemetry_file: str | None = None
    trace_id: str | None = None


def _read_apply_rows(path: Path) -> list[Any]:
    """Apply telemetry as a JSON stream; an unparsable file silently disables replay (contract)."""
    text = fetch_evidence_text(str(path))
    if text is None:
        return []
    try:
        return promotion_gates.parse_json_stream(text)
    except ValueError:
        return []


@contextlib.contextmanager
def _apply_lock(telemetry: Path) -> Iterator[None]:
    """One apply at a time per journal: the replay check and the registry patch must not
    interleave (two concurrent calls with one key would otherwise both apply)."""
    with (telemetry.parent / f".{telemetry.name}.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_registry_raw(path: Path) -> JsonObject:
    details = "registry file not found"
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            details = "invalid fleet registry JSON"
        else:
            if isinstance(raw, dict):
                return raw
            details = "registry must be a JSON object"
    raise ContractError(f"failed to read/validate fleet registry\n - {details}: {path}")


def run_promotion_apply(options: ApplyOptions, *, clock: clock_mod.Clock | None = None) -> JsonObject:
    """Apply one governed step to the registry file, or replay an earlier record (§3.2).

    The original registry's expired review deadline is not an error here: the apply replaces
    the governance block, and the patched registry is validated in full (deadline included).
    """
    now = (clock or clock_mod.SystemClock()).now()
    request = options.request
    paths = PromotionPaths(options.repo)
    registry_file = paths.pick("registry_file", options.registry_file)
    state_file = paths.pick("promotion_state_file", options.promotion_state_file)
    apply_state = paths.pick("apply_state_file", options.apply_state_file)
    apply_telemetry = paths.pick("apply_telemetry_file", options.apply_telemetry_file)
    trace_id = resolve_trace_id(options.trace_id)
    _ensure_parent(apply_state)
    _ensure_parent(apply_telemetry)

    if not Path(state_file).is_file():
        raise ContractError(f"promotion state file not found: {state_file}")
    text = fetch_evidence_text(state_file) or ""
    try:
        promotion_state = _parse_json(text) if text.strip() else None
    except ValueError as exc:
        raise ContractError(f"invalid promotion state JSON: {state_file}") from exc
    decision = apply_rules.select_decision(promotion_state)
    apply_rules.check_apply_allowed(request, decision, now)

    files_used = {
        "registryFile": registry_file,
        "promotionStateFile": state_file,
        "applyStateFile": apply_state,
        "applyTelemetryFile": apply_telemetry,
    }
    with _apply_lock(Path(apply_telemetry)):
        return _apply_locked(request, decision=decision, now=now, trace_id=trace_id, files_used=files_used)


def _apply_locked(
    request: apply_rules.ApplyRequest,
    *,
    decision: Any,
    now: dt.datetime,
    trace_id: str,
    files_used: Mapping[str, str],
) -> JsonObject:
    """Steps 7-15 of §3.2 (replay, registry, patch, record), under the journal's apply lock."""
    registry_file = files_used["registryFile"]
    apply_state = files_used["applyStateFile"]
    apply_telemetry = files_used["applyTelemetryFile"]
    prior = apply_rules.find_replay_record(
        _read_apply_rows(Path(apply_telemetry)), request.idempotency_key
    )
    if prior is not None:
        record = apply_rules.build_replay_record(prior)
        files.write_json_atomic(Path(apply_state), record)
        return record

    raw = _read_registry_raw(Path(registry_file))
    errors = [
        error
        for error in fleet_registry.compute_registry_errors(raw, now)
        if not error.endswith("must be in the future when policy.mode is guarded_auto")
    ]
    if errors:
        raise ContractError(
            "\n".join(["failed to read/validate fleet registry", *(f" - {e}" for e in errors)])
        )
    apply_rules.require_guarded_auto(raw)
    outcome = apply_rules.compute_promotion_apply(
        request=request,
        decision=decision,
        posture=apply_rules.read_registry_posture(raw),
        fleet_id=fleet_registry.build_normalized_registry(raw, registry_file)["fleetId"],
        trace_id=trace_id,
        now=now,
        files=files_used,
    )
    assert outcome.after is not None
    assert outcome.governance is not None
    patched = apply_rules.build_patched_registry(raw, outcome.after, outcome.governance)
    errors = fleet_registry.compute_registry_errors(patched, now)
    if errors:
        raise ContractError("\n".join(["mutated registry failed validation", *(f" - {e}" for e in errors)]))
    files.write_json_atomic(Path(registry_file), patched, pretty=True)
    files.write_json_atomic(Path(apply_state), outcome.record)
    files.append_jsonl(Path(apply_telemetry), [outcome.record])
    return outcome.record


# ---------------------------------------------------------------------------------------------
# orchestrate


def run_promotion_orchestrate(
    request: promotion_orchestrate.OrchestrateRequest,
    *,
    repo: Path,
    ci_runner: StepRunner,
    apply_runner: StepRunner,
    ci_result_file: str | None = None,
    ci_summary_file: str | None = None,
    result_file: str | None = None,
    summary_file: str | None = None,
    clock: clock_mod.Clock | None = None,
    step_summary: str | None = None,
) -> JsonObject:
    """CI, then apply when the mode asks for it; write the result and summary (§4.3).

    A failing step raises ``StepFailedError`` carrying its own exit status and output.
    """
    clk = clock or clock_mod.SystemClock()
    paths = PromotionPaths(repo)
    ci_result = paths.pick("ci_result_file", ci_result_file)
    ci_summary = paths.pick("ci_summary_file", ci_summary_file)
    result_path = paths.pick("orchestrate_result_file", result_file)
    summary_path = paths.pick("orchestrate_summary_file", summary_file)
    _ensure_parent(result_path)
    _ensure_parent(summary_path)

    ci = ci_runner(promotion_orchestrate.build_ci_argv(request, str(repo), ci_result, ci_summary))
    if ci.exit_code != 0:
        raise StepFailedError(ci.exit_code, ci.output)
    if not Path(ci_result).is_file():
        raise ContractError(f"promotion CI result file not found: {ci_result}")
    try:
        ci_document = _parse_json(Path(ci_result).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"invalid promotion CI result JSON: {ci_result}") from exc

    record: Any | None = None
    apply_argv = promotion_orchestrate.build_apply_argv(request, str(repo), ci_result)
    if apply_argv is not None:
        applied = apply_runner(apply_argv)
        if applied.exit_code != 0:
            raise StepFailedError(applied.exit_code, applied.output)
        try:
            record = _parse_json(applied.output)
        except ValueError as exc:
            raise ContractError("promotion apply output was not valid JSON") from exc

    result = promotion_orchestrate.build_orchestrate_result(
        request=request,
        ci_result=ci_document,
        apply_record=record,
        files={
            "resultFile": result_path,
            "summaryFile": summary_path,
            "promotionCiResultFile": ci_result,
            "promotionCiSummaryFile": ci_summary,
        },
        now=clk.now(),
    )
    markdown = promotion_orchestrate.build_orchestrate_summary(result)
    files.write_text_atomic(Path(result_path), dumps_compact(result) + "\n")
    _write_text(summary_path, markdown)
    append_step_summary(markdown, step_summary)
    return result
