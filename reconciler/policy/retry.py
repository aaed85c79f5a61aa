"""The per-deployment retry gate of the daemon: a create, replace or restart that failed is
tried again with capped exponential backoff, never in a tight loop (DESIGN §9).

`RetryBook` is the daemon's memory of failures (in memory: it spaces out API calls that
keep failing; a deployment that keeps dying after it started is spaced out by the restart
backoff, which lives in the store).  `gate` is pure: it reads the book's times as facts.
"""

from __future__ import annotations

from reconciler.model import Outcome, Plan
from reconciler.policy.facts import Facts
from reconciler.policy.throttle import Throttle

GATE = "retry"
RETRY = Throttle(base=2.0, cap=600.0, jitter=(0.8, 1.2))


class RetryBook:
    def __init__(self, throttle: Throttle = RETRY) -> None:
        self.throttle = throttle
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}

    def record(self, name: str, outcome: Outcome, now: float) -> None:
        """After a create, replace or restart of `name` was carried out."""
        if not outcome.failed:
            self._failures.pop(name, None)
            self._not_before.pop(name, None)
            return
        count = self._failures.get(name, 0) + 1
        self._failures[name] = count
        self._not_before[name] = now + self.throttle.delay(count)

    def retry_after(self, now: float) -> dict[str, float]:
        """The deployments still backing off, with the time each may be tried again."""
        return {name: t for name, t in self._not_before.items() if t > now}


def gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """A start (create, replace, restart) of a deployment that is backing off waits."""
    if not facts.retry_after:
        return plan
    out = []
    for action in plan.actions:
        until = facts.retry_after.get(action.name or "")
        if action.action.starts and action.held is None and until is not None and now < until:
            action = action.holding(
                GATE, f"backing off after failures: next try in {until - now:.0f}s", until
            )
        out.append(action)
    return plan.with_actions(out)
