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
from typing import TYPE_CHECKING

from reconciler import planner, policy, secrets
from reconciler.engine import Engine, fingerprints, journal
from reconciler.model import Deployment, LiveDeployment, Outcome, Plan, Record

if TYPE_CHECKING:
    from reconciler.model.promotion import Candidate, Evidence, Paper
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
    # Paper first: each promoted manifest's candidates and code (DESIGN §17).
    promotions: Mapping[str, Evidence] = field(default_factory=dict)
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
        promotions = self.promotions(desired, recorded, live, dry)
        return Views(desired, recorded, live, projects, ours, promotions, landing), resolved

    def promotions(
        self,
        desired: Sequence[Deployment],
        recorded: Mapping[str, Record],
        live: Sequence[LiveDeployment],
        dry: bool,
    ) -> dict[str, Evidence]:
        """Paper first: one look at each promoted manifest's paper twin (a sample of its
        equity while Running), the candidates judged, and the live project's code.  A dry
        run judges the same way and writes nothing."""
        promoted = [d for d in desired if d.promotion is not None]
        if not promoted:
            return {}
        from reconciler.model.promotion import Evidence
        from reconciler.policy import promotion

        by_name = {d.name: d for d in desired}
        # The deployment occupying the project, else its latest: `launched` is to the
        # second, so the latest alone may pick a stopped one launched in the same second.
        latest = {**planner.latest_by_project(live), **planner.active_by_project(live)}
        now = self.clock()
        out: dict[str, Evidence] = {}
        changed: list[Candidate] = []
        for d in promoted:
            rule = d.promotion
            assert rule is not None
            paper, note = self._paper(by_name.get(rule.source), rule.source, recorded, latest)
            stored = self.store.candidates(d.name)
            judged = promotion.advance(stored, d.name, rule, paper, now)
            changed += [c for c in judged if c not in stored]
            code = self.engine.fetch_code(d.project_id)
            out[d.name] = Evidence(rule, judged, code, paper, note)
        if changed and not dry:
            self.store.put_candidates(changed)
        return out

    def _paper(
        self,
        source: Deployment | None,
        name: str,
        recorded: Mapping[str, Record],
        latest: Mapping[int, LiveDeployment],
    ) -> tuple[Paper | None, str]:
        """The paper twin's latest deployment as this reconcile sees it, or why none."""
        from reconciler.model.promotion import Paper

        if source is None:
            return None, f"no candidate: paper manifest {name} is not among these manifests"
        item = latest.get(source.project_id)
        if item is None:
            return None, f"no candidate yet: paper deployment {name} has not run"
        record = recorded.get(name)
        ours = record is not None and record.deploy_id == item.deploy_id
        digest = record.digest if ours and record is not None else None
        untracked = ""
        if digest is None:
            untracked = (
                f"no candidate yet: the code of paper deployment {item.deploy_id} ({name}) is "
                "not known (started before its code was tracked, or not by this reconciler); "
                f"`reconciler apply --replace {name}` starts a soak"
            )
        equity = None
        if item.status == "Running" and digest is not None:
            equity = self.engine.fetch_equity(source.project_id, item.deploy_id)
        paper = Paper(
            item.deploy_id,
            item.status,
            item.cause,
            item.error,
            digest,
            record.created_at if ours and record is not None else None,
            equity,
            untracked,
        )
        return paper, untracked

    def decide(self, views: Views, facts: policy.Facts, ask: Ask, now: float) -> Plan:
        if views.promotions:
            facts = dataclasses.replace(facts, promotions=views.promotions)
        targets = {n: e.target for n, e in views.promotions.items() if e.target is not None}
        plan = planner.plan(
            views.desired,
            views.recorded,
            views.live,
            projects=views.projects,
            force_replace=ask.force_replace,
            force_restart=ask.force_restart,
            max_prunes=ask.max_prunes,
            stopped_by_us=views.stopped_by_us,
            promoted=targets,
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
