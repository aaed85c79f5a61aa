"""The landing gate: a project whose earlier create may still land waits (DESIGN §6).

A run that crashed (or a leader that lost its lease) with a create in flight leaves its
intent open.  Until the latest time that create can take effect (the intent's
`lands_by`), nothing is planned for the project on a guess: a second create would be
refused at best, and the first, landing later, would be taken for someone else's.  The
journal (`engine/journal.py`) leaves such an intent open; this gate blocks every action
of its project until then, when the journal claims what landed or closes the intent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.model import ActionKind, Plan
from reconciler.policy.facts import Facts

GATE = "landing"


def clock_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def waiting_until(until: float) -> str:
    return f"an earlier create may still land; waiting until {clock_time(until)}"


def gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """Every action of a project still waiting for an earlier create is `blocked`."""
    if not facts.landing:
        return plan
    out = []
    for action in plan.actions:
        until = facts.landing.get(action.project_id)
        if action.held is None and until is not None and now < until:
            action = action.holding(GATE, waiting_until(until), until, as_kind=ActionKind.BLOCKED)
        out.append(action)
    return plan.with_actions(out)
