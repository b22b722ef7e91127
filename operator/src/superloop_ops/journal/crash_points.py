"""Named crash points for fault tests: ``SUPERLOOP_OPS_CRASH_AT=<point>`` kills the process there.

A process that reaches the named point sends itself SIGKILL, exactly as an OOM kill or a node
loss would stop it: no cleanup, no ``finally``. Tests run real subprocesses with the variable set
to prove that the next run completes or records what happened. Unset (always, in production),
``reach`` is one environment lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = [
    "AUTONOMOUS_POINTS",
    "CONTROL_POINTS",
    "ENV",
    "HANDOFF_POINTS",
    "RECONCILE_POINTS",
    "SERVICE_POINTS",
    "reach",
]

ENV: Final = "SUPERLOOP_OPS_CRASH_AT"

#: The writes of one local approve/reject, in order (engine.loop.control_run).
CONTROL_POINTS: Final = (
    "control.claim",
    "approval.plan",
    "approval.approval_file",
    "approval.decisions_row",
    "approval.decisions_md",
    "approval.event",
    "control.invocation_row",
    "control.control_row",
    "control.intent_row",
)

#: The sprite-service path of a control run (engine.loop.control_run): before the request is sent.
#: After the service answers, the run writes the same three rows as the local path.
SERVICE_POINTS: Final = ("control.service_request",)

#: The operator's steps around one HandoffIntent execution (handlers.handoff_intent), in order;
#: the control run's own points fall between the two.
HANDOFF_POINTS: Final = ("handoff.executing_status", "handoff.outcome_status")

#: The operator's steps around one guarded_auto execution (controllers.autonomous_runner), in
#: order: before ``executing`` is recorded, before the outcome is recorded, and after the runner
#: returns but before the fleet pass journals the execution; the control run's points fall
#: between the first two.
AUTONOMOUS_POINTS: Final = (
    "autonomous.executing_status",
    "autonomous.outcome_status",
    "autonomous.fleet_record",
)


#: The commits of one reconcile pass (engine.loop.reconcile_pass), in order: after the state
#: commit (the cursor not yet written), after the cursor's rename (the pass's rows not yet
#: written), after the rows are written (the cursor commit not yet made durable).
RECONCILE_POINTS: Final = ("reconcile.cursor", "reconcile.rows", "reconcile.cursor_commit")


def reach(point: str) -> None:
    """Die here (SIGKILL) when the environment names this point."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
