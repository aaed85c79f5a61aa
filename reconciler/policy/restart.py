"""The restart backoff (DESIGN §11): a deployment that keeps dying is not restarted in a
tight loop.  After 3 restarts in a row the next waits 1, 2, 4 ... minutes, at most an
hour; the count resets once the deployment has stayed Running for 30 minutes (the engine
resets it when it records the noop); `apply --restart NAME` skips the wait.

The count and the time of the last restart live in the store (the record), so the gate
holds for `plan`, `apply` and the daemon alike, across runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.model import ActionKind, Plan, Record
from reconciler.policy.facts import Facts
from reconciler.policy.throttle import Throttle

GATE = "restart-backoff"
BACKOFF = Throttle(base=60.0, cap=3600.0, free=2)  # the 3rd restart in a row waits 1 minute
STABLE_AFTER = 1800.0  # seconds Running after which the count starts again


def backoff_until(record: Record) -> float | None:
    """When the next restart may run, once restarts in a row reached the threshold."""
    if record.last_restart_at is None:
        return None
    wait = BACKOFF.delay(record.restarts)
    return record.last_restart_at + wait if wait else None


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """A restart whose backoff has not run out is `blocked` until it has."""
    out = []
    for action in plan.actions:
        record = action.record
        if (
            action.action is ActionKind.RESTART
            and action.held is None
            and record is not None
            and action.name not in facts.force_restart
        ):
            until = backoff_until(record)
            if until is not None and now < until:
                why = (
                    f"{action.observed}; backing off after {record.restarts} restarts in a "
                    f"row: next try at {utc(until)} (or `apply --restart {action.name}`)"
                )
                action = action.holding(GATE, why, until, as_kind=ActionKind.BLOCKED)
        out.append(action)
    return plan.with_actions(out)
