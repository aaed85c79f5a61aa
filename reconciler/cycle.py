"""One reconcile, used by `plan` (dry: nothing written, nothing sent), `apply` (once) and
the daemon (in a loop).  Its steps, each a method below:

    lock      the store's apply lock (not for a dry run: it writes nothing)
    read      live state (one list call), open intents resolved, the records, the
              projects' `modified` (compileId: latest), what the journal says we stopped
    decide    the pure planner, then the gates of `policy/`, then the node pre-flight
    review    the caller's say: print and confirm, check a saved plan, publish a snapshot
    apply     the engine carries out the reviewed plan, nothing else
    settle    health after apply: outside the lock (another runner need not wait for it)

What differs between the three ways of running is handed in: the desired set, the facts
the gates judge by (flags, what a daemon remembers), and `Hooks` (how progress is shown).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler import planner, policy, secrets
from reconciler.engine import Engine, fingerprints, journal
from reconciler.model import Deployment, LiveDeployment, Outcome, Plan, Record
from reconciler.sources import DesiredSet
from reconciler.state import StateStore

LiveReader = Callable[[], list[LiveDeployment]]


@dataclass(frozen=True)
class Ask:
    """What a run asks beyond the manifests: `--replace`, `--restart`, `--max-prunes`."""

    force_replace: frozenset[str] = frozenset()
    force_restart: frozenset[str] = frozenset()
    max_prunes: int = planner.DEFAULT_MAX_PRUNES


@dataclass(frozen=True)
class Views:
    """What a plan is made from: the three views, and what else the planner read."""

    desired: Sequence[Deployment]
    recorded: Mapping[str, Record]
    live: Sequence[LiveDeployment]
    projects: Mapping[int, str] = field(default_factory=dict)
    stopped_by_us: frozenset[str] = frozenset()
    # Projects waiting for an earlier create that may still land (projectId -> until).
    landing: Mapping[int, float] = field(default_factory=dict)

    def fingerprints(self) -> dict[str, str]:
        return fingerprints(self.desired, self.recorded, self.live, self.projects)


@dataclass(frozen=True)
class CycleResult:
    """One reconcile's result: what it read, resolved, planned and what became of it."""

    views: Views
    resolved: list[Outcome]  # intents an earlier run left open, found done
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    applied: bool = False  # the reviewed plan was handed to the engine
    at: float = 0.0  # the time the gates judged by


class Hooks:
    """How a way of running takes part in the cycle; the defaults do nothing."""

    def resolved(self, outcome: Outcome) -> None:
        """An intent an earlier run left open was found done."""

    def review(self, result: CycleResult) -> Plan | None:
        """The plan to carry out (under the lock), or None to carry out nothing."""
        return result.plan

    def progress(self, outcome: Outcome, done: int, total: int) -> None:
        """One stop or create finished."""

    def waiting(self, started: int, wait: float) -> None:
        """Health after apply starts watching `started` new deployments."""

    def unhealthy(self, outcome: Outcome) -> None:
        """Health after apply found a new deployment failed (or still starting)."""


class Cycle:
    def __init__(
        self,
        engine: Engine,
        store: StateStore,
        *,
        lock_timeout: float = 60.0,
        health_wait: float = 120.0,
        should_stop: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.store = store
        self.lock_timeout = lock_timeout
        self.health_wait = health_wait
        self.should_stop = should_stop
        self.clock = clock

    def run(
        self,
        desired: DesiredSet,
        facts: policy.Facts,
        ask: Ask | None = None,
        *,
        hooks: Hooks | None = None,
        dry: bool = False,
        live: LiveReader | None = None,
    ) -> CycleResult:
        """One reconcile of `desired`; `dry`: plan only (nothing written, nothing sent)."""
        hooks = hooks or Hooks()
        with self.lock(dry):
            views, resolved = self.read(desired.deployments, live, dry, hooks)
            now = self.clock()
            plan = self.decide(views, facts, ask or Ask(), now)
            plan = dataclasses.replace(plan, revision=desired.revision)
            result = CycleResult(views, resolved, plan, at=now)
            if dry:
                return result
            chosen = hooks.review(result)
            if chosen is None:
                return result
            outcomes = self.apply(chosen, hooks)
        outcomes = self.settle(outcomes, views, hooks, chosen)
        return dataclasses.replace(result, outcomes=outcomes, applied=True)

    # -- the steps ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, dry: bool) -> Iterator[None]:
        if dry:
            yield
            return
        with self.store.lock(timeout=self.lock_timeout):
            yield

    def read(
        self,
        desired: Sequence[Deployment],
        live_reader: LiveReader | None,
        dry: bool,
        hooks: Hooks,
    ) -> tuple[Views, list[Outcome]]:
        live = _masked(desired, live_reader() if live_reader else self.engine.fetch_live())
        intents = self.store.open_intents()
        recorded = self.store.records()
        resolved: list[Outcome] = []
        landing: dict[int, float] = {}
        if intents:
            resolutions = journal.resolve(intents, recorded, live, self.clock())
            landing = journal.landing(resolutions)
            if dry:
                recorded = journal.overlay(recorded, resolutions)
                resolved = [r.report for r in resolutions if r.report is not None]
            else:
                resolved = journal.commit(self.store, resolutions)
                recorded = self.store.records()
                for outcome in resolved:
                    hooks.resolved(outcome)
        asked = planner.unrecorded_stopped(desired, recorded, live)
        ours = frozenset(self.store.stopped_by_us(asked)) if asked else frozenset()
        projects = self.engine.fetch_projects(desired)
        return Views(desired, recorded, live, projects, ours, landing), resolved

    def decide(self, views: Views, facts: policy.Facts, ask: Ask, now: float) -> Plan:
        plan = planner.plan(
            views.desired,
            views.recorded,
            views.live,
            projects=views.projects,
            force_replace=ask.force_replace,
            force_restart=ask.force_restart,
            max_prunes=ask.max_prunes,
            stopped_by_us=views.stopped_by_us,
        )
        if views.landing:
            facts = dataclasses.replace(facts, landing=views.landing)
        plan = policy.gate(plan, facts, now)
        # The nodes are read only when the plan would start something: a plan with no
        # changes costs one list call.
        if any(a.carried_out and a.action.starts for a in plan.actions):
            plan = planner.preflight(plan, self.engine.fetch_nodes(views.desired))
        return plan

    def apply(self, plan: Plan, hooks: Hooks) -> list[Outcome]:
        return self.engine.apply(plan, progress=hooks.progress, should_stop=self.should_stop)

    def settle(
        self, outcomes: list[Outcome], views: Views, hooks: Hooks, plan: Plan
    ) -> list[Outcome]:
        started = sum(1 for o in outcomes if o.result.started)
        if not started or self.health_wait <= 0:
            return outcomes
        hooks.waiting(started, self.health_wait)
        values = secrets.known_values(secrets.referenced(views.desired))
        revision = plan.revision.stored if plan.revision else None
        checked = self.engine.await_health(
            outcomes, self.health_wait, self.should_stop, values, revision
        )
        for before, after in zip(outcomes, checked, strict=True):
            if after != before:
                hooks.unhealthy(after)
        return checked


def _masked(desired: Sequence[Deployment], live: list[LiveDeployment]) -> list[LiveDeployment]:
    """Live state whose error texts (quoted in plan reasons: drift, restart) carry no
    secret value: the API may echo one back, as in a failed brokerage login."""
    if not any(item.error for item in live):
        return live
    values = secrets.known_values(secrets.referenced(desired))
    return [
        dataclasses.replace(item, error=secrets.mask(item.error, values)) if item.error else item
        for item in live
    ]
