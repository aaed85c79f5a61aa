"""The daemon's loop: the reconcile cycle on every manifest change, every --resync seconds,
and when a held action comes due (a prune's grace).

Safety rules (DESIGN §9), each kept where it belongs:
- the files source keeps an invalid or half-written file at its last good content, and
  says when a change is suspect;
- the gates of `policy/` hold prunes without `--prune`, from a suspect or partly invalid
  read, and until a removal has lasted `--prune-grace`; they space out a deployment whose
  starts keep failing (the retry gate) or that keeps dying (the restart backoff);
- a reconcile that fails (the API, the state lock) backs off, exponentially with jitter,
  capped at --resync;
- SIGTERM/SIGINT let in-flight calls finish, send no new ones, and exit 0; SIGHUP
  re-reads every file.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from reconciler import policy, snapshot
from reconciler.cycle import Cycle, CycleResult, Hooks
from reconciler.daemon.reports import Reports
from reconciler.errors import ReconcilerError
from reconciler.metrics import Metrics
from reconciler.model import Action, ActionKind, Outcome, Plan
from reconciler.notify import Notifier
from reconciler.policy import landing, prune, windows
from reconciler.policy.retry import RetryBook
from reconciler.policy.throttle import Throttle
from reconciler.runtime import Runtime
from reconciler.sources import DesiredSet, Refresh
from reconciler.state import Leadership, SoleLeader

if TYPE_CHECKING:
    from reconciler.sources import Source

log = logging.getLogger("reconciler.watch")

HEALTH_WAIT = 120.0  # seconds a new deployment may take to be Running (as apply --wait)
PRUNE_GRACE = 10.0  # seconds a removal must last before the daemon prunes it
LOCK_TIMEOUT = 30.0
PRUNE_PENDING = "pending: start watch with --prune to carry it out"
PRUNE_SUPPRESSED = "suppressed: some manifest files are invalid or the change is suspect"
# Holds whose end the loop wakes for (others wait for the next change or resync): a prune's
# grace, a deploy window's opening, and the end of the wait for a create that may still land.
WAKING_GATES = frozenset({prune.GRACE, windows.GATE, landing.GATE})


class _DaemonHooks(Hooks):
    def __init__(self, daemon: Daemon, refresh: Refresh) -> None:
        self.daemon, self.refresh = daemon, refresh

    def resolved(self, outcome: Outcome) -> None:
        self.daemon.reports.resolved(outcome)

    def review(self, result: CycleResult) -> Plan | None:
        """What the plan says is reported before anything is sent (a drift is news at
        once, not after the health wait); only what changes something is handed to the
        engine: a noop or a report is not written to the history on every resync."""
        self.daemon.planned(self.refresh.desired, result.plan, result.at)
        acting = result.plan.acting()
        self.daemon.publish(self.refresh, result, [], "applying" if acting.actions else "idle")
        return acting


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        source: Source,
        metrics: Metrics,
        resync: float,
        stop: threading.Event,
        *,
        prune: bool = False,
        prune_grace: float = PRUNE_GRACE,
        notifier: Notifier | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.rt = runtime
        # With a PostgreSQL state several daemons share a workspace and one leads.
        self.leadership = leadership or SoleLeader()
        self.prune = prune
        self.prune_grace = prune_grace
        self.notifier = notifier or Notifier([])
        self.reports = Reports(metrics, self.notifier)
        self.source = source
        self.metrics = metrics
        self.resync = resync
        self.stop = stop
        self.wake = threading.Event()
        self.changed = threading.Event()
        self.reread = threading.Event()
        self.retries = RetryBook()
        self.loop_backoff = Throttle(base=1.0, cap=resync, jitter=(0.8, 1.2))
        self.loop_failures = 0
        # name -> when (Unix time) its removal was first planned for pruning
        self.gone_since: dict[str, float] = {}
        self.wake_at: float | None = None  # when the earliest waking hold comes due
        self.window_rows: list[dict[str, object]] = []  # the deploy windows, for the page
        self.cycle = Cycle(
            runtime.engine,
            runtime.store,
            lock_timeout=LOCK_TIMEOUT,
            health_wait=HEALTH_WAIT,
            should_stop=self._should_stop,
        )

    # -- one reconcile -----------------------------------------------------------------

    def reconcile(self, reread_all: bool = False) -> bool:
        started = time.monotonic()
        try:
            self._reconcile(reread_all)
        except ReconcilerError as error:
            self.metrics.board.failed(str(error))
            self.metrics.reconciles.labels("error").inc()
            self.metrics.errors.labels(type(error).__name__).inc()
            log.error("reconcile failed: %s", error, extra={"event": "reconcile_failed"})
            ok = False
        else:
            self.metrics.reconciles.labels("ok").inc()
            self.metrics.last_success.set(time.time())
            ok = True
        finally:
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)
            self.metrics.last_loop = time.monotonic()
        return ok

    def _reconcile(self, reread_all: bool) -> None:
        self.wake_at = None  # set again by any hold still waiting to come due
        refresh = self.source.refresh(reread_all)
        self.reports.files(refresh)
        desired = refresh.desired
        self.notifier.watch_secrets(desired.deployments)
        self.notifier.at_revision(desired.revision)
        revision = desired.revision
        self.metrics.set_source(
            revision.kind if revision else "files", revision.stored if revision else None
        )
        self.metrics.manifests.set(len(desired.deployments))
        self.rt.prepare(desired.deployments)
        now = time.time()
        whole = not refresh.suspect and not desired.invalid
        facts = policy.Facts(
            prune_pending=None if self.prune else PRUNE_PENDING,
            # An invalid file keeps its last good content, but one that was never valid
            # since start has none: its deployments would look removed.  No prune then.
            prune_suppressed=None if whole else PRUNE_SUPPRESSED,
            prune_grace=self.prune_grace,
            gone_since=self.gone_since,
            retry_after=self.retries.retry_after(now),
        )
        result = self.cycle.run(desired, facts, hooks=_DaemonHooks(self, refresh))
        acting = {a.name: a for a in result.plan.acting().actions}
        done = time.time()
        for outcome in result.outcomes:
            action = acting.get(outcome.name)
            self.reports.outcome(outcome, action)
            if action is not None and action.action.starts:
                self.retries.record(action.name or "", outcome, done)
        if whole:
            self.source.reconciled(desired)
        self.metrics.backing_off.set(len(self.retries.retry_after(done)))
        if acting:
            self.publish(refresh, result, result.outcomes, "idle")

    def planned(self, desired: DesiredSet, plan: Plan, now: float) -> None:
        """A reconcile's plan, gated, before anything is carried out: the removals'
        grace counted, every action worth a word reported, the next wake-up set."""
        self.gone_since = prune.track_removals(self.gone_since, plan, now)
        self.reports.plan(plan.actions, self.gone_since)
        self._wake_for(plan.held)
        self.window_rows = self._windows(desired, now)
        self.metrics.deferred_actions.set(len(plan.of_kind(ActionKind.DEFERRED)))

    def _windows(self, desired: DesiredSet, now: float) -> list[dict[str, object]]:
        """Each deploy window of the desired set now: on /metrics and the status page."""
        rows = []
        for name, text in sorted(desired.windows.items()):
            found = windows.schedule(windows.Window.from_json(text), now)
            until = found.next_close if found.open else found.next_open
            rows.append(
                {"name": name, "calendar": found.window.calendar, "open": found.open,
                 "until": until, "error": found.error}
            )  # fmt: skip
        self.metrics.set_windows({str(r["name"]): bool(r["open"]) for r in rows})
        return rows

    def _wake_for(self, held: list[Action]) -> None:
        dues = [
            a.held.until
            for a in held
            if a.held is not None and a.held.until is not None and a.held.gate in WAKING_GATES
        ]
        self.wake_at = min(dues, default=None)

    def publish(
        self, refresh: Refresh, result: CycleResult, outcomes: list[Outcome], phase: str
    ) -> None:
        """What the status page shows: from what this reconcile read, no API call."""
        now = time.time()
        data = snapshot.build(
            desired=refresh.desired.deployments,
            actions=result.plan.actions,
            outcomes=outcomes,
            live=result.views.live,
            records=self.rt.store.records(),
            invalid=refresh.desired.invalid,
            history=self.rt.store.history(snapshot.HISTORY_LIMIT),
            retry_in={name: t - now for name, t in self.retries.retry_after(now).items()},
            phase=phase,
            now=now,
            revision=refresh.desired.revision,
            windows=self.window_rows,
        )
        self.metrics.board.publish(data, refresh.desired.deployments)

    # -- the loop --------------------------------------------------------------------

    def _should_stop(self) -> bool:
        """Asked before each call is sent: shutting down, or no longer the leader."""
        return self.stop.is_set() or not self.leadership.may_act()

    def on_role(self, role: str) -> None:
        """The leadership changed hands (called from its thread)."""
        self.metrics.set_role(role)
        log.info(
            "%s",
            "leading: this daemon acts" if role == "leader" else "standing by: another leads",
            extra={"event": role},
        )
        self.wake.set()

    def _lead(self) -> bool:
        """Stand by (alive and ready) while another daemon leads; True once this one may
        act, False when asked to stop."""
        while not self.leadership.may_act():
            if self.stop.is_set():
                return False
            self.metrics.last_loop = time.monotonic()
            self.wake.wait(timeout=0.25)
            self.wake.clear()
        return not self.stop.is_set()

    def _on_file_change(self) -> None:
        self.changed.set()
        self.wake.set()

    def _next_wait(self, ok: bool, next_resync: float) -> float:
        """When (monotonic) the loop reconciles next, unless a change comes first."""
        if not ok:
            # The API (or the state lock) failed: back off, whatever files do meanwhile;
            # the next reconcile re-stats every file, so no change is lost.
            self.loop_failures += 1
            return time.monotonic() + self.loop_backoff.delay(self.loop_failures)
        self.loop_failures = 0
        if self.wake_at is None:
            return next_resync
        return min(next_resync, time.monotonic() + max(0.0, self.wake_at - time.time()))

    def run(self) -> None:
        watcher = threading.Thread(
            target=self.source.watch,
            args=(self.stop, self._on_file_change),
            name="source-watch",
            daemon=True,
        )
        watcher.start()
        ok = self._lead() and self.reconcile()
        next_resync = time.monotonic() + self.resync
        while not self.stop.is_set():
            wait_until = self._next_wait(ok, next_resync)
            while not self.stop.is_set():
                remaining = wait_until - time.monotonic()
                if remaining <= 0 or self.reread.is_set() or (ok and self.changed.is_set()):
                    break
                self.wake.wait(timeout=remaining)
                self.wake.clear()
            if self.stop.is_set() or not self._lead():
                break
            reread = self.reread.is_set()
            self.reread.clear()
            self.changed.clear()
            ok = self.reconcile(reread_all=reread)
            if reread or time.monotonic() >= next_resync:
                next_resync = time.monotonic() + self.resync
        watcher.join(timeout=5)
