"""docs/runbook.md has a section for every reason code the operator can put on a Loop.

The codes are gathered from where the operator makes them, not from a list kept by hand: the
health reasons (``core/loop/health.py`` and ``run_outcome.py``), the run outcomes, the ingest
failure codes and the reason codes they map to, the ordering-drift code, and the reasons a pass
is blocked (``handlers/loop.py``: the Ready condition's reason and the reconcile-error metric's
``reason`` label). Each section says what the code means, what to do and which alert pages on it
(an ``Alert:`` line); ``superloop_ops_loop_health_reason`` and
``superloop_ops_reconcile_errors_total`` know every code (none is folded into ``other``).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from superloop_ops import errors, metrics
from superloop_ops.controllers import loop_controller
from superloop_ops.core.loop import health, pass_rules, run_outcome, sequence
from superloop_ops.handlers import loop as loop_handler

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
_LITERAL = re.compile(r"(?:_reason|_tiered|build_reason)\(\s*\"([a-z_]+)\"")


def _health_codes() -> set[str]:
    """Codes written as literals where health reasons are built."""
    return {code for module in (health, run_outcome) for code in _LITERAL.findall(inspect.getsource(module))}


def _blocked_codes() -> set[str]:
    """What a blocked pass reports, one error of each kind the Loop handler maps."""
    raised = [
        loop_controller.SourceNotFoundError("x"),
        loop_handler._SecretMissingError("x"),
        errors.JournalWriteError("x"),
        loop_handler._UnexpectedError("x"),
        errors.SecretNotUsableError("x"),
        errors.InvalidSpecError("x"),
        errors.DependencyNotReadyError("x"),
    ]
    return {loop_handler._blocked_reason(exc) for exc in raised}


def emitted_loop_codes() -> set[str]:
    codes = _health_codes() | _blocked_codes() | set(run_outcome.OUTCOME_REASONS.values())
    codes |= set(pass_rules.FAILURE_CODES)
    codes |= {pass_rules.compute_failure_reason_code(code) for code in (*pass_rules.FAILURE_CODES, None)}
    codes.add(sequence.DRIFT)
    return codes


def _sections() -> dict[str, str]:
    """Reason code -> its section's text (a heading may name several codes: ``#### a, b``)."""
    part = RUNBOOK.split("\n## Reason codes\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for block in part.split("\n#### ")[1:]:
        heading, _, body = block.partition("\n")
        for code in heading.split(","):
            found[code.strip()] = body
    return found


SECTIONS = _sections()
EMITTED = sorted(emitted_loop_codes())


def test_the_gathering_sees_each_source() -> None:
    assert {"divergence_detected", "approval_waiting", "runtime_heartbeat_stale"} <= _health_codes()
    assert {"source_not_found", "secret_not_found", "journal_unwritable", "secret_not_opted_in"} <= (
        _blocked_codes()
    )
    assert len(EMITTED) >= 30


@pytest.mark.parametrize("code", EMITTED)
def test_every_reason_code_has_a_runbook_section_with_its_alert(code: str) -> None:
    assert code in SECTIONS, f"docs/runbook.md has no '#### {code}' under '## Reason codes'"
    body = SECTIONS[code]
    assert len(body.split()) >= 15, f"{code}: say what it means and what to do"
    assert re.search(r"^Alert: ", body, flags=re.M), f"{code}: no 'Alert:' line"


@pytest.mark.parametrize("code", EMITTED)
def test_the_metrics_know_every_reason_code(code: str) -> None:
    assert code in metrics.REASON_CODES


def test_the_runbook_documents_no_code_the_operator_does_not_emit() -> None:
    assert sorted(set(SECTIONS) - set(EMITTED)) == []


def test_every_alert_named_in_a_section_is_shipped() -> None:
    rules = (ROOT / "helm" / "superloop-ops" / "templates" / "prometheusrule.yaml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    named = {name for body in SECTIONS.values() for name in re.findall(r"\*\*(Superloop\w+)\*\*", body)}
    assert named
    assert named <= alerts
