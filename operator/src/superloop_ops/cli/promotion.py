"""``superloop-ops promotion <gates|ci|apply|orchestrate>``: the promotion runbook commands.

Flags, defaults, messages, documents and exit codes follow the contract (promotion §1-§4):
``gates`` exits 2 on a hold under ``--fail-on-hold``; ``ci`` passes the evaluator's status
through (0 on a skip); ``orchestrate`` passes a failing child's status through unchanged.

Child steps (the evaluator under ``ci``, ``ci`` and ``apply`` under ``orchestrate``) run in this
process by default, with their output captured as a child process's would be. The contract's
``OPS_MANAGER_*_SCRIPT`` variables replace a child with an external command, called with a real
argument list (values containing spaces stay one argument).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from superloop_ops import clock as clock_mod
from superloop_ops.cli._common import emit
from superloop_ops.core.promotion import apply_rules, promotion_gates, promotion_orchestrate
from superloop_ops.engine.promotion import promotion_commands
from superloop_ops.errors import ContractError

__all__ = ["add_arguments", "run"]

STATUS_SCRIPT_ENV = "OPS_MANAGER_FLEET_STATUS_SCRIPT"
GATES_SCRIPT_ENV = "OPS_MANAGER_PROMOTION_GATES_SCRIPT"
CI_SCRIPT_ENV = "OPS_MANAGER_PROMOTION_CI_SCRIPT"
APPLY_SCRIPT_ENV = "OPS_MANAGER_PROMOTION_APPLY_SCRIPT"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

_THRESHOLDS = promotion_orchestrate.THRESHOLD_FLAGS
_THRESHOLD_DEFAULTS = {
    "window_executions": "20",
    "min_sample_size": "20",
    "max_ambiguity_rate": "0.2",
    "max_failure_rate": "0.2",
    "max_manual_backlog": "5",
    "max_drill_age_hours": "168",
}
_HELP = {
    "gates": "evaluate the five promotion gates (promote or hold)",
    "ci": "CI wrapper: gates result JSON + markdown summary, optional skip on missing evidence",
    "apply": "apply a governed rollout step (expand, resume, rollback) to the fleet registry",
    "orchestrate": "run CI, then (apply/rollback mode) one governed apply; result + summary",
}


class _ContractParser(argparse.ArgumentParser):
    """Usage errors exit 1 (usage on stdout, ``error: ...`` on stderr), never argparse's 2.

    Exit 2 means "hold under --fail-on-hold" in this contract; a mistyped flag in a CI job must
    not look like a hold.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unknown argument: {extras[0]}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stdout)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(1)


def _add_gates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=None, help="repository root (required)")
    for flag in ("fleet-status-file", "handoff-telemetry-file", "drill-state-file"):
        parser.add_argument(f"--{flag}", default=None, metavar="PATH")
    parser.add_argument("--promotion-state-file", default=None, metavar="PATH")
    parser.add_argument("--promotion-telemetry-file", default=None, metavar="PATH")
    for flag, key in _THRESHOLDS:
        parser.add_argument(flag, dest=key, default=_THRESHOLD_DEFAULTS[key])
    parser.add_argument("--trace-id", default=None)
    parser.add_argument("--fail-on-hold", action="store_true", help="exit 2 when the decision is hold")
    parser.add_argument("--pretty", action="store_true", help="indent the stdout document")


def _add_ci(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=None, help="repository root (required)")
    for flag in (
        "fleet-status-file",
        "handoff-telemetry-file",
        "drill-state-file",
        "promotion-state-file",
        "promotion-telemetry-file",
        "summary-file",
        "result-file",
    ):
        parser.add_argument(f"--{flag}", default=None, metavar="PATH")
    for flag, key in _THRESHOLDS:
        parser.add_argument(flag, dest=key, default=None, help="forwarded to the evaluator")
    parser.add_argument("--trace-id", default=None)
    parser.add_argument("--fail-on-hold", action="store_true", help="exit 2 when the decision is hold")
    parser.add_argument(
        "--skip-on-missing-evidence",
        action="store_true",
        help="exit 0 with decision skipped when evidence is absent",
    )
    parser.add_argument("--pretty", action="store_true", help="indent the stdout document")


def _add_apply(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=None, help="repository root (required)")
    parser.add_argument("--intent", default=None, help="expand | resume | rollback")
    parser.add_argument("--expand-step", default="25", help="canary points added by expand (1..100)")
    parser.add_argument("--by", default=None, help="accountable approver (required)")
    parser.add_argument("--approval-ref", default=None, help="change / approval record (required)")
    parser.add_argument("--rationale", default=None, help="why (required)")
    parser.add_argument("--review-by", default=None, help="review deadline YYYY-MM-DDTHH:MM:SSZ (required)")
    for flag in ("registry-file", "promotion-state-file", "apply-state-file", "apply-telemetry-file"):
        parser.add_argument(f"--{flag}", default=None, metavar="PATH")
    parser.add_argument("--idempotency-key", default=None, help="replay the earlier record with this key")
    parser.add_argument("--trace-id", default=None)
    parser.add_argument("--pretty", action="store_true", help="indent the stdout document")


def _add_orchestrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=None, help="repository root (required)")
    parser.add_argument("--mode", default=None, help="dry_run | apply | rollback")
    parser.add_argument("--apply-intent", default="expand", help="expand | resume (apply mode)")
    parser.add_argument("--expand-step", default="25", help="canary points added by expand (1..100)")
    for flag in ("fleet-status-file", "handoff-telemetry-file", "drill-state-file"):
        parser.add_argument(f"--{flag}", default=None, metavar="PATH")
    for flag, key in _THRESHOLDS:
        parser.add_argument(flag, dest=key, default=None, help="forwarded to CI")
    parser.add_argument("--skip-on-missing-evidence", action="store_true")
    parser.add_argument(
        "--fail-on-hold",
        action="store_true",
        help="a hold stops the run with exit 2, before apply (this also blocks a rollback)",
    )
    for flag in ("promotion-ci-result-file", "promotion-ci-summary-file", "result-file", "summary-file"):
        parser.add_argument(f"--{flag}", default=None, metavar="PATH")
    parser.add_argument("--idempotency-key", default=None)
    parser.add_argument("--trace-id", default=None)
    for flag in ("by", "approval-ref", "rationale", "review-by"):
        parser.add_argument(f"--{flag}", default=None, help="required in apply and rollback modes")
    parser.add_argument("--pretty", action="store_true", help="indent the stdout document")


_ADDERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "gates": _add_gates,
    "ci": _add_ci,
    "apply": _add_apply,
    "orchestrate": _add_orchestrate,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="promotion_command", metavar="PROMOTION_COMMAND", required=True, parser_class=_ContractParser
    )
    for name, adder in _ADDERS.items():
        adder(sub.add_parser(name, help=_HELP[name], description=_HELP[name]))


# ---------------------------------------------------------------------------------------------
# helpers


def _require_repo_flag(repo: str | None) -> str:
    if not repo:
        raise ContractError("--repo is required")
    return repo


def _resolve_repo(repo: str) -> Path:
    """The logical absolute path (symlinks kept), as ``cd && pwd`` gives it."""
    path = Path(repo)
    if not path.is_dir():
        raise ContractError(f"repo directory not found: {repo}")
    return Path(os.path.abspath(path))


def _in_process(command: str) -> promotion_commands.StepRunner:
    """Run one of our own subcommands here, capturing stdout and stderr together."""

    def run_child(argv: Sequence[str]) -> promotion_commands.StepResult:
        parser = _ContractParser(prog=f"superloop-ops promotion {command}")
        _ADDERS[command](parser)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                code = _dispatch(command, parser.parse_args(list(argv)))
            except ContractError as exc:
                print(f"error: {exc}", file=sys.stderr)
                code = 1
            except SystemExit as exc:  # argparse rejected the arguments
                code = exc.code if isinstance(exc.code, int) else 1
        return promotion_commands.StepResult(code, buffer.getvalue())

    return run_child


def _runner(env: str, command: str) -> promotion_commands.StepRunner:
    script = os.environ.get(env)
    return promotion_commands.build_command_runner(script) if script else _in_process(command)


def _step_summary() -> str | None:
    return os.environ.get(STEP_SUMMARY_ENV) or None


# ---------------------------------------------------------------------------------------------
# commands


def _run_gates(args: argparse.Namespace) -> int:
    repo = _require_repo_flag(args.repo)
    thresholds = promotion_gates.GateThresholds.from_flags(
        **{key: getattr(args, key) for _, key in _THRESHOLDS}
    )
    script = os.environ.get(STATUS_SCRIPT_ENV)
    clock = clock_mod.SystemClock()
    evaluation = promotion_commands.run_promotion_gates(
        promotion_commands.GatesOptions(
            repo=_resolve_repo(repo),
            thresholds=thresholds,
            fleet_status_file=args.fleet_status_file or None,
            handoff_telemetry_file=args.handoff_telemetry_file,
            drill_state_file=args.drill_state_file,
            promotion_state_file=args.promotion_state_file,
            promotion_telemetry_file=args.promotion_telemetry_file,
            trace_id=args.trace_id,
        ),
        status_producer=promotion_commands.build_script_status_producer(script) if script else None,
        clock=clock,
    )
    emit(evaluation.document, args.pretty)
    return 2 if args.fail_on_hold and not evaluation.promote else 0


def _run_ci(args: argparse.Namespace) -> int:
    repo = _resolve_repo(_require_repo_flag(args.repo))
    outcome = promotion_commands.run_promotion_ci(
        promotion_commands.CiOptions(
            repo=repo,
            fleet_status_file=args.fleet_status_file or None,
            handoff_telemetry_file=args.handoff_telemetry_file,
            drill_state_file=args.drill_state_file,
            promotion_state_file=args.promotion_state_file,
            promotion_telemetry_file=args.promotion_telemetry_file,
            summary_file=args.summary_file,
            result_file=args.result_file,
            thresholds={key: getattr(args, key) for _, key in _THRESHOLDS if getattr(args, key)},
            trace_id=args.trace_id,
            fail_on_hold=args.fail_on_hold,
            skip_on_missing_evidence=args.skip_on_missing_evidence,
            pretty=args.pretty,
        ),
        evaluator=_runner(GATES_SCRIPT_ENV, "gates"),
        step_summary=_step_summary(),
    )
    emit(outcome.document, args.pretty)
    return outcome.exit_code


def _run_apply(args: argparse.Namespace) -> int:
    repo = _require_repo_flag(args.repo)
    request = apply_rules.build_apply_request(
        intent=args.intent,
        expand_step=args.expand_step,
        by=args.by,
        approval_ref=args.approval_ref,
        rationale=args.rationale,
        review_by=args.review_by,
        idempotency_key=args.idempotency_key,
    )
    record = promotion_commands.run_promotion_apply(
        promotion_commands.ApplyOptions(
            repo=_resolve_repo(repo),
            request=request,
            registry_file=args.registry_file,
            promotion_state_file=args.promotion_state_file,
            apply_state_file=args.apply_state_file,
            apply_telemetry_file=args.apply_telemetry_file,
            trace_id=args.trace_id,
        )
    )
    emit(record, args.pretty)
    return 0


def _run_orchestrate(args: argparse.Namespace) -> int:
    repo = _require_repo_flag(args.repo)
    request = promotion_orchestrate.build_orchestrate_request(
        mode=args.mode,
        apply_intent=args.apply_intent,
        expand_step=args.expand_step,
        fleet_status_file=args.fleet_status_file,
        handoff_telemetry_file=args.handoff_telemetry_file,
        drill_state_file=args.drill_state_file,
        **{key: getattr(args, key) for _, key in _THRESHOLDS},
        skip_on_missing_evidence=args.skip_on_missing_evidence,
        fail_on_hold=args.fail_on_hold,
        idempotency_key=args.idempotency_key,
        trace_id=args.trace_id,
        by=args.by,
        approval_ref=args.approval_ref,
        rationale=args.rationale,
        review_by=args.review_by,
    )
    result = promotion_commands.run_promotion_orchestrate(
        request,
        repo=_resolve_repo(repo),
        ci_runner=_runner(CI_SCRIPT_ENV, "ci"),
        apply_runner=_runner(APPLY_SCRIPT_ENV, "apply"),
        ci_result_file=args.promotion_ci_result_file,
        ci_summary_file=args.promotion_ci_summary_file,
        result_file=args.result_file,
        summary_file=args.summary_file,
        step_summary=_step_summary(),
    )
    emit(result, args.pretty)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "gates": _run_gates,
    "ci": _run_ci,
    "apply": _run_apply,
    "orchestrate": _run_orchestrate,
}


def _dispatch(command: str, args: argparse.Namespace) -> int:
    try:
        code = _COMMANDS[command](args)
    except promotion_commands.StepFailedError as exc:
        # A child failed: its own output goes to stderr and its status is ours (contract).
        output = exc.output if exc.output.endswith("\n") or not exc.output else exc.output + "\n"
        sys.stderr.write(output)
        code = exc.exit_code
    return code


def run(args: argparse.Namespace) -> int:
    code = _dispatch(args.promotion_command, args)
    sys.stdout.flush()
    return code
