"""Policy: pure gates over a plan, `(plan, facts, now) -> plan`.

A gate holds some actions back, each with why and until (`model.Hold`); it never adds an
action, never reads a clock or the API, never writes.  A rule that must hold for every way
of running (`plan`, `apply`, the daemon) is a gate here, in one place:

    landing   a project whose earlier create may still land (after a crash) waits
    restart   the restart backoff (DESIGN §11)
    retry     the daemon's per-deployment backoff after failed starts
    prune     the --prune flag, a suspect read of the manifests, the daemon's prune grace
    promotion paper first: a promoted deployment starts only with code passed on paper
    windows   deploy windows: replace and prune only while the market is closed
    calendars market sessions (exchange_calendars, fx, none) for the windows
    throttle  the one backoff helper every delay is computed with

The cycle applies `GATES` in order, then the node pre-flight (which needs to know which
prunes still free their node).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.model import Action, ActionKind, Plan
from reconciler.policy import landing, prune, restart, retry
from reconciler.policy.facts import Facts

Gate = Callable[[Plan, Facts, float], Plan]

# The deploy windows' holds (policy/windows.py): waiting for an opening, and an
# `--ignore-window` its window refuses.
WINDOW_GATE = "window"
WINDOW_DENIED = "window-override-denied"


def window_definition(action: Action) -> str | None:
    """The deploy window that gates this action, as recorded: a replace's manifest's, a
    prune's (of a running deployment) recorded with it; None: not gated."""
    if action.action is ActionKind.REPLACE and action.desired is not None:
        return action.desired.window_json
    if action.action is ActionKind.PRUNE and action.deploy_id and action.record is not None:
        return action.record.window_json
    return None


def promotion_gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """Paper first's gate (policy/promotion.py), loaded only where a manifest promotes."""
    if not facts.promotions:
        return plan
    from reconciler.policy import promotion

    return promotion.gate(plan, facts, now)


def windows_gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """The deploy windows' gate; its module (and the calendars) loaded only for a plan
    that has an action a window gates."""
    if not any(a.held is None and window_definition(a) for a in plan.actions):
        return plan
    from reconciler.policy import windows

    return windows.gate(plan, facts, now)


GATES: tuple[Gate, ...] = (
    landing.gate,
    restart.gate,
    retry.gate,
    promotion_gate,
    windows_gate,
    prune.flag_gate,
    prune.suppressed_gate,
    prune.grace_gate,
)


def gate(plan: Plan, facts: Facts, now: float, gates: Sequence[Gate] = GATES) -> Plan:
    for one in gates:
        plan = one(plan, facts, now)
    return plan


__all__ = [
    "GATES",
    "WINDOW_DENIED",
    "WINDOW_GATE",
    "Facts",
    "Gate",
    "gate",
    "promotion_gate",
    "window_definition",
    "windows_gate",
]
