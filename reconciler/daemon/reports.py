"""What the daemon tells people about a reconcile: structured log lines, notifications and
metrics, each said once per episode, not on every resync (a drift, a block, a pending
prune that does not change is reported when it starts)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from reconciler.metrics import Metrics
from reconciler.model import Action, ActionKind, Outcome, Result
from reconciler.notify import Notifier, action_event, outcome_event
from reconciler.policy import prune
from reconciler.sources import Refresh

log = logging.getLogger("reconciler.watch")

# A held prune, by the gate that holds it: its log event and level.
_PRUNE_EVENTS = {
    prune.FLAG: ("prune_pending", logging.WARNING),
    prune.SUPPRESSED: ("prune_suppressed", logging.WARNING),
    prune.GRACE: ("prune_deferred", logging.INFO),
}


class Reports:
    def __init__(self, metrics: Metrics, notifier: Notifier) -> None:
        self.metrics = metrics
        self.notifier = notifier
        # What was said once, by episode key; only the keys of the plan last reported are
        # kept (`plan`), so the set does not grow with every deployment a daemon has seen in
        # weeks, and an episode that ended and comes back is news again.
        self._reported: set[str] = set()
        self._current: set[str] = set()
        self._reported_invalid: dict[str, tuple[str, ...]] = {}

    def files(self, refresh: Refresh) -> None:
        if refresh.changed or refresh.deleted:
            log.info(
                "manifests changed",
                extra={
                    "event": "manifests_changed",
                    "changed": len(refresh.changed),
                    "deleted": len(refresh.deleted),
                },
            )
        invalid = refresh.desired.invalid
        for path, problems in invalid.items():
            if self._reported_invalid.get(path) != problems:
                for problem in problems:
                    log.error(
                        "invalid manifest kept at its last good content: %s",
                        problem,
                        extra={"event": "invalid_manifest", "file": path},
                    )
        self._reported_invalid = dict(invalid)
        self.metrics.invalid_manifests.set(len(invalid))
        if refresh.suspect:
            log.warning(
                "suspect change (files deleted while others are invalid, or most "
                "manifests gone at once): nothing will be pruned from it",
                extra={"event": "suspect_change"},
            )

    def resolved(self, outcome: Outcome) -> None:
        log.info(
            "resolved an interrupted create",
            extra={
                "event": "intent_resolved",
                "deployment": outcome.name,
                "deploy_id": outcome.deploy_id,
            },
        )

    def outcome(self, outcome: Outcome, action: Action | None) -> None:
        if outcome.result is Result.IN_SYNC and action is not None and not action.renamed_from:
            return  # a record brought up to date (onDelete, a restart count): not news
        self.metrics.actions.labels(outcome.action, outcome.result).inc()
        self.notifier.send(outcome_event(outcome, action))
        level = logging.ERROR if outcome.failed else logging.INFO
        log.log(
            level,
            "%s %s: %s",
            outcome.action,
            outcome.name,
            outcome.result,
            extra={
                "event": outcome.action,
                "deployment": outcome.name,
                "project": outcome.project_id,
                "result": outcome.result,
                "deploy_id": outcome.deploy_id,
                "detail": outcome.detail,
            },
        )

    def plan(self, actions: Sequence[Action], gone_since: Mapping[str, float]) -> None:
        """Every action of a reconcile's plan worth a word; an episode no longer in the
        plan is forgotten (said again should it come back)."""
        self._current = set()
        for action in actions:
            self.action(action, gone_since.get(action.name or ""))
        self._reported &= self._current

    def action(self, action: Action, since: float | None = None) -> None:
        """A planned action worth a word: drift, a held prune, unmanaged, conflict,
        blocked.  `since`: for a prune waiting out its grace, when its removal began."""
        kind = action.action
        if kind in (ActionKind.RESTART, ActionKind.DRIFT):
            self._drift(action)
        elif kind is ActionKind.DEFERRED:
            key = f"deferred:{action.name}:{action.deferred}:{action.window}:{action.opens_at}"
            self._once(key, logging.INFO, "deferred", action, action.reason)
        elif kind is ActionKind.WAITING and action.held is not None:
            # One line per reason's kind (soaking, awaiting approval), not per progress.
            key = f"waiting:{action.name}:{action.held.gate}:{action.digest}:{action.cause}"
            self._once(key, logging.INFO, "waiting", action, action.reason)
        elif kind is ActionKind.PRUNE and action.held is not None:
            event, level = _PRUNE_EVENTS.get(action.held.gate, ("prune_held", logging.INFO))
            key = (
                f"prune_deferred:{action.name}:{since}"
                if action.held.gate == prune.GRACE
                else f"prune:{action.name}:{action.held.gate}"
            )
            self._once(key, level, event, action, action.held.why)
        elif kind in (ActionKind.UNMANAGED, ActionKind.CONFLICT, ActionKind.BLOCKED):
            if action.release:
                return
            if kind is ActionKind.BLOCKED and action.cause:
                self._drift(action)  # a restart backing off: still one episode
            level = logging.INFO if kind is ActionKind.UNMANAGED else logging.ERROR
            key = f"{kind}:{action.name}:{action.deploy_id}:{action.reason}"
            self._once(key, level, kind.value, action, action.reason)

    def _drift(self, action: Action) -> None:
        """A managed deployment found not running: logged and counted once per episode
        (a deployment, and why it is not running), not on every resync."""
        key = f"drift:{action.name}:{action.deploy_id}:{action.cause}"
        self._current.add(key)
        if key in self._reported:
            return
        self.metrics.drift.labels(action.cause or "stopped").inc()
        self._once(key, logging.WARNING, "drift", action, action.reason)

    def _once(self, key: str, level: int, event: str, action: Action, why: str) -> None:
        """Log what does not change between resyncs once, not on every loop."""
        self._current.add(key)
        if key in self._reported:
            return
        self._reported.add(key)
        if event in ("drift", "blocked", "conflict", "deferred"):
            self.notifier.send(action_event(event, action))
        log.log(
            level,
            "%s %s: %s",
            event,
            action.name or action.deploy_id,
            why,
            extra={
                "event": event,
                "deployment": action.name,
                "project": action.project_id,
                "deploy_id": action.deploy_id,
                **({"cause": action.cause} if action.cause else {}),
            },
        )
