"""Policy: pure gates over a plan, `(plan, facts, now) -> plan`.

A gate holds some actions back, each with why and until (`model.Hold`); it never adds an
action, never reads a clock or the API, never writes.  A rule that must hold for every way
of running (`plan`, `apply`, the daemon) is a gate here, in one place:

    restart   the restart backoff (DESIGN §11)
    retry     the daemon's per-deployment backoff after failed starts
    prune     the --prune flag, a suspect read of the manifests, the daemon's prune grace
    windows   deploy windows: replace and prune only while the market is closed
    calendars market sessions (exchange_calendars, fx, none) for the windows
    throttle  the one backoff helper every delay is computed with

The cycle applies `GATES` in order, then the node pre-flight (which needs to know which
prunes still free their node).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.model import Plan
from reconciler.policy import prune, restart, retry, windows
from reconciler.policy.facts import Facts

Gate = Callable[[Plan, Facts, float], Plan]

GATES: tuple[Gate, ...] = (
    restart.gate,
    retry.gate,
    windows.gate,
    prune.flag_gate,
    prune.suppressed_gate,
    prune.grace_gate,
)


def gate(plan: Plan, facts: Facts, now: float, gates: Sequence[Gate] = GATES) -> Plan:
    for one in gates:
        plan = one(plan, facts, now)
    return plan


__all__ = ["GATES", "Facts", "Gate", "gate"]
