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

__all__ = ["CONTROL_POINTS", "ENV", "HANDOFF_POINTS", "reach"]

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


#: The operator's steps around one HandoffIntent execution (handlers.handoff_intent), in order;
#: the control run's own points fall between the two.
HANDOFF_POINTS: Final = ("handoff.executing_status", "handoff.outcome_status")


def reach(point: str) -> None:
    """Die here (SIGKILL) when the environment names this point."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
