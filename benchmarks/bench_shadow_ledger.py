"""Shadow ledger cost: one pass of the pure rules (match, resolve, add, prune, figures) by ledger size.

The ledger holds ``N`` decisions (a tenth open, on a tenth as many loops), the fleet has a tenth
as many HandoffIntents with a person's manual execution each, and the pass proposes a tenth as
many new candidates. Each size runs ``--runs`` times in this process; the median and the best are
printed (the machine is shared, so the best is the cost and the median shows the noise).

    .venv/bin/python benchmarks/bench_shadow_ledger.py [--sizes 1000,5000] [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import shadow_agreement

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
CONFIG = shadow_agreement.ShadowConfig(1800, 604_800, 0.9, 20, True)


def _inputs(size: int) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any]]:
    loops = max(size // 10, 1)
    decisions = [
        {
            "decidedAt": format_ts(NOW - dt.timedelta(minutes=i)),
            "loopId": f"loop-{i % loops}",
            "category": "health_critical",
            "intent": "cancel",
            "decision": "execute",
            "reasons": [],
            "human": None if i < loops else "approved",
            "agreed": None if i < loops else True,
        }
        for i in range(size)
    ]
    intents = [
        {
            "metadata": {"name": f"hi-{i}", "annotations": {}},
            "spec": {
                "intent": "cancel",
                "candidate": {"candidateId": f"loop-{i}:health_critical", "category": "health_critical"},
            },
            "status": {
                "mode": "manual",
                "startedAt": format_ts(NOW - dt.timedelta(seconds=30)),
                "idempotencyKey": f"k-{i}",
            },
        }
        for i in range(loops)
    ]
    candidates = [
        {
            "loopId": f"new-{i}",
            "category": "health_critical",
            "candidateId": f"new-{i}:health_critical",
            "recommendedIntent": "cancel",
            "suppressed": False,
            "autonomous": {"shadow": {"decision": "hold", "reasons": ["autonomous_cooldown_active"]}},
        }
        for i in range(loops)
    ]
    state = {"mode": "shadow", "updatedAt": format_ts(NOW), "traceId": "t", "candidates": candidates}
    return decisions, intents, state


def _one_pass(decisions: list[dict[str, Any]], intents: list[Any], state: dict[str, Any]) -> float:
    start = time.perf_counter()
    update = shadow_agreement.update_ledger(
        decisions=decisions,
        consumed=[],
        policy_state=state,
        actions=shadow_agreement.read_human_actions(intents, {}, NOW),
        config=CONFIG,
        fleet_id="bench",
        now=NOW,
    )
    shadow_agreement.compute_agreement(update.decisions, CONFIG, NOW)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print("| decisions | open | intents | new | median ms | best ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        decisions, intents, state = _inputs(size)
        times = [_one_pass(decisions, intents, state) * 1000 for _ in range(args.runs)]
        tenth = max(size // 10, 1)
        print(
            f"| {size} | {tenth} | {tenth} | {tenth} | {statistics.median(times):.1f} | {min(times):.1f} |"
        )


if __name__ == "__main__":
    main()
