"""`reconciler watch`: reconcile on every manifest change and every --resync seconds.

The only module that imports watchfiles.

Safety rules (DESIGN §9):
- a file that fails to parse or validate keeps its last good desired state; an invalid or
  half-written file never stops, prunes or recreates anything;
- a changed file is read only once its size and mtime have stopped moving (editors and git
  write in several steps); directories are watched, not inodes, so rename-into-place works;
- replaces are carried out as in apply (every stop before any create); prunes only with
  `--prune`, and only while every file is valid: what may be pruned is decided from the
  last successfully applied desired set, and a change that deletes files while others are
  invalid, or that loses most manifests at once, is suspect: no prune comes out of it;
  and a removal is pruned only once it has lasted `--prune-grace` seconds: a rename or a
  checkout in progress (old file gone, new one not yet written) stops nothing;
- failing API calls back off (the loop, exponentially with jitter, capped at --resync); a
  deployment whose creates keep failing, or that keeps dying, is recreated with capped
  exponential backoff, never in a tight loop;
- SIGTERM/SIGINT let in-flight creates finish, send no new ones, and exit 0; SIGHUP
  re-reads every file.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import watchfiles

from reconciler import snapshot
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.metrics import Metrics
from reconciler.model import Action, Deployment, LiveDeployment, Outcome, Plan
from reconciler.notify import Notifier, action_event, outcome_event
from reconciler.runtime import Runtime
from reconciler.state import Leadership, SoleLeader

log = logging.getLogger("reconciler.watch")

MANIFEST_SUFFIXES = (".yaml", ".yml")
# watchfiles wakes every `step` ms to debounce and to check the stop event: 10 ms cost
# ~0.5 % of a core idle on 10,000 files here, 50 ms ~0.2 %; 25 ms keeps a lone save's
# delivery near 30 ms.
WATCH_STEP_MS = 25
SETTLE_SECONDS = 0.02  # a file must keep its size and mtime this long before it is read
SETTLE_TRIES = 25
SUSPECT_SHRINK = 0.5  # losing more than half of the applied manifests at once is suspect
ACTING = frozenset({"create", "replace", "restart", "prune"})  # sent to the engine
HEALTH_WAIT = 120.0  # seconds a new deployment may take to be Running (as apply --wait)
PRUNE_GRACE = 10.0  # seconds a removal must last before the daemon prunes it


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def discover(paths: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Manifest files under `paths` (found as the loader finds them) with (mtime_ns, size)."""
    from reconciler import manifests

    files, _ = manifests.discover(paths)
    found: dict[str, tuple[int, int]] = {}
    for path in files:
        key = _stat_key(path) if path != "-" else None
        if key is not None:
            found[os.path.normpath(path)] = key
    return found


@dataclass
class FileEntry:
    key: tuple[int, int]
    deployments: list[Deployment]  # the last good content
    problems: list[str] = field(default_factory=list)  # why the current content is refused


@dataclass(frozen=True)
class Refresh:
    desired: list[Deployment]
    changed: list[str]
    deleted: list[str]
    invalid: dict[str, list[str]]
    suspect: bool


class DesiredTracker:
    """Per-file last good desired state; re-reads only files whose stat changed."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.files: dict[str, FileEntry] = {}
        self.last_applied: set[str] = set()

    def _settle(self, files: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Wait (bounded) until none of `files` is still being written."""
        keys = {f: _stat_key(f) for f in files}
        for _ in range(SETTLE_TRIES):
            time.sleep(SETTLE_SECONDS)
            again = {f: _stat_key(f) for f in keys}
            if again == keys:
                break
            keys = again
        return {f: k for f, k in keys.items() if k is not None}

    def refresh(self, reread_all: bool = False) -> Refresh:
        from reconciler import validation

        current = discover(self.paths)
        changed = sorted(
            f
            for f, key in current.items()
            if reread_all or f not in self.files or self.files[f].key != key
        )
        deleted = sorted(f for f in self.files if f not in current)
        if changed:
            settled = self._settle(changed)
            report = validation.validate_paths(sorted(settled))
            good: dict[str, list[Deployment]] = {f: [] for f in settled}
            for manifest in report.manifests:
                good.setdefault(os.path.normpath(manifest.file), []).append(
                    Deployment.from_manifest(manifest.data, manifest.file, manifest.line)
                )
            problems: dict[str, list[str]] = {}
            for problem in report.problems:
                problems.setdefault(os.path.normpath(problem.file), []).append(str(problem))
            for path, key in settled.items():
                refused = problems.get(path, [])
                previous = self.files.get(path)
                kept = previous.deployments if previous else []
                self.files[path] = FileEntry(key, kept if refused else good.get(path, []), refused)
        for path in deleted:
            del self.files[path]
        invalid = {f: e.problems for f, e in sorted(self.files.items()) if e.problems}
        desired = self._merge(set(changed))
        names = {d.name for d in desired}
        lost = len(self.last_applied - names)
        suspect = bool(deleted and invalid) or (
            len(self.last_applied) >= 4 and lost > SUSPECT_SHRINK * len(self.last_applied)
        )
        return Refresh(desired, changed, deleted, invalid, suspect)

    def _merge(self, fresh: set[str]) -> list[Deployment]:
        """The union of last good contents; on a clash the older file's manifest wins."""
        ordered = sorted(
            ((path in fresh, path, d) for path, e in self.files.items() for d in e.deployments),
            key=lambda item: (item[0], item[1]),
        )
        names: set[str] = set()
        projects: set[int] = set()
        merged = []
        for _, path, d in ordered:
            if d.name in names or d.project_id in projects:
                log.error(
                    "manifest refused: name or projectId already used by another file",
                    extra={
                        "event": "duplicate",
                        "file": path,
                        "deployment": d.name,
                        "project": d.project_id,
                    },
                )
                continue
            names.add(d.name)
            projects.add(d.project_id)
            merged.append(d)
        return merged


class RetryGate:
    """Capped exponential backoff per deployment for failed creates, replaces and restarts.

    In memory: it spaces out API calls that keep failing.  A deployment that keeps dying
    after it started is spaced out by the restart backoff, which lives in the store.
    """

    def __init__(self, base: float = 2.0, cap: float = 600.0) -> None:
        self.base, self.cap = base, cap
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}

    def delay(self, count: int) -> float:
        growth = float(2 ** max(0, count - 1))
        return min(self.cap, self.base * growth) * random.uniform(0.8, 1.2)

    def allowed(self, name: str, now: float) -> bool:
        return self._not_before.get(name, 0.0) <= now

    def waiting(self, now: float) -> int:
        return sum(1 for t in self._not_before.values() if t > now)

    def next_try(self, now: float) -> dict[str, float]:
        """Seconds until each deployment that is backing off may be tried again."""
        return {name: t - now for name, t in self._not_before.items() if t > now}

    def record(self, name: str, outcome: Outcome, now: float) -> None:
        if not outcome.failed:
            self._failures.pop(name, None)
            self._not_before.pop(name, None)
            return
        count = self._failures.get(name, 0) + 1
        self._failures[name] = count
        self._not_before[name] = now + self.delay(count)


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        tracker: DesiredTracker,
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
        # name -> when (monotonic) its prune was first planned; the earliest one to come due
        self._gone_since: dict[str, float] = {}
        self._prune_due: float | None = None
        self.notifier = notifier or Notifier([])
        self.tracker = tracker
        self.metrics = metrics
        self.resync = resync
        self.stop = stop
        self.wake = threading.Event()
        self.changed = threading.Event()
        self.reread = threading.Event()
        self.gate = RetryGate()
        self.loop_failures = 0
        self._reported: set[str] = set()
        self._reported_invalid: dict[str, list[str]] = {}

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
        self._prune_due = None  # set again by any prune still waiting out its grace
        refresh = self.tracker.refresh(reread_all)
        self._report_files(refresh)
        desired = refresh.desired
        self.notifier.watch_secrets(desired)
        self.metrics.manifests.set(len(desired))
        self.rt.prepare(desired)
        live = self.rt.engine.fetch_live()
        with self.rt.store.lock(timeout=30):
            for outcome in self.rt.engine.resolve_open_intents(live):
                log.info(
                    "resolved an interrupted create",
                    extra={
                        "event": "intent_resolved",
                        "deployment": outcome.name,
                        "deploy_id": outcome.deploy_id,
                    },
                )
            plan, _ = self.rt.engine.make_plan(desired, live)
            # An invalid file keeps its last good content, but one that was never valid
            # since start has none: its deployments would look removed.  No prune then.
            prune_ok = self.prune and not refresh.suspect and not refresh.invalid
            planned = plan
            plan = self._gate(plan, prune_ok)
            acting = [
                a
                for a in plan.actions
                if a.action in ACTING or a.adopt or a.release or a.renamed_from
            ]
            self._publish(refresh, planned, live, [], "applying" if acting else "idle")
            outcomes = (
                self.rt.engine.apply(
                    Plan(tuple(acting)), desired, prune=prune_ok, should_stop=self._should_stop
                )
                if acting
                else []
            )
        # Outside the lock: watching new deployments start changes nothing.
        outcomes = self.rt.engine.await_health(outcomes, HEALTH_WAIT, self._should_stop)
        now = time.monotonic()
        by_name = {a.name: a for a in acting}
        for outcome in outcomes:
            self.metrics.actions.labels(outcome.action, outcome.result).inc()
            action = by_name.get(outcome.name)
            self.notifier.send(outcome_event(outcome, action))
            if action is not None and action.action in ("create", "replace", "restart"):
                self.gate.record(action.name or "", outcome, now)
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
        for action in plan.actions:
            self._report_other(action)
        if not refresh.suspect and not refresh.invalid:
            self.tracker.last_applied = {d.name for d in desired}
        self.metrics.backing_off.set(self.gate.waiting(now))
        if acting:
            self._publish(refresh, planned, live, outcomes, "idle")

    def _publish(
        self,
        refresh: Refresh,
        plan: Plan,
        live: list[LiveDeployment],
        outcomes: list[Outcome],
        phase: str,
    ) -> None:
        """What the status page shows: from what this reconcile read, no API call."""
        data = snapshot.build(
            desired=refresh.desired,
            actions=plan.actions,
            outcomes=outcomes,
            live=live,
            records=self.rt.store.records(),
            invalid=refresh.invalid,
            history=self.rt.store.history(snapshot.HISTORY_LIMIT),
            retry_in=self.gate.next_try(time.monotonic()),
            phase=phase,
            now=time.time(),
        )
        self.metrics.board.publish(data, refresh.desired)

    def _gate(self, plan: Plan, prune_ok: bool) -> Plan:
        now = time.monotonic()
        kept = []
        for action in plan.actions:
            if action.action in ("restart", "drift"):
                self._report_drift(action)
            if action.action in ("create", "replace", "restart") and not self.gate.allowed(
                action.name or "", now
            ):
                continue  # backing off: reported when it was deferred
            if action.action == "prune" and not prune_ok:
                self._report_once(
                    f"prune:{action.name}:{self.prune}",
                    logging.WARNING,
                    "prune_pending" if not self.prune else "prune_suppressed",
                    action,
                    "pending: start watch with --prune to carry it out"
                    if not self.prune
                    else "suppressed: some manifest files are invalid or the change is suspect",
                )
                continue
            if action.action == "prune" and not self._grace_over(action, now):
                continue
            kept.append(action)
        planned = {a.name for a in plan.actions if a.action == "prune"}
        self._gone_since = {n: t for n, t in self._gone_since.items() if n in planned}
        return Plan(tuple(kept))

    def _grace_over(self, action: Action, now: float) -> bool:
        """Whether this prune's removal has lasted --prune-grace seconds.  Until then it is
        deferred (a rename or checkout in progress brings the manifest back, or its new
        name takes the record over) and the loop wakes when it comes due."""
        name = action.name or ""
        since = self._gone_since.setdefault(name, now)
        due = since + self.prune_grace
        if now >= due:
            return True
        self._prune_due = due if self._prune_due is None else min(self._prune_due, due)
        self._report_once(
            f"prune_deferred:{name}:{since}",
            logging.INFO,
            "prune_deferred",
            action,
            f"its manifest is gone; pruned in {due - now:.1f} s (--prune-grace) unless it "
            "comes back meanwhile",
        )
        return False

    def _report_drift(self, action: Action) -> None:
        """A managed deployment found not running: logged and counted once per episode
        (a deployment, and why it is not running), not on every resync."""
        key = f"drift:{action.name}:{action.deploy_id}:{action.cause}"
        if key in self._reported:
            return
        self.metrics.drift.labels(action.cause or "stopped").inc()
        self._report_once(key, logging.WARNING, "drift", action, action.reason)

    def _report_files(self, refresh: Refresh) -> None:
        if refresh.changed or refresh.deleted:
            log.info(
                "manifests changed",
                extra={
                    "event": "manifests_changed",
                    "changed": len(refresh.changed),
                    "deleted": len(refresh.deleted),
                },
            )
        for path, problems in refresh.invalid.items():
            if self._reported_invalid.get(path) != problems:
                for problem in problems:
                    log.error(
                        "invalid manifest kept at its last good content: %s",
                        problem,
                        extra={"event": "invalid_manifest", "file": path},
                    )
        self._reported_invalid = dict(refresh.invalid)
        self.metrics.invalid_manifests.set(len(refresh.invalid))
        if refresh.suspect:
            log.warning(
                "suspect change (files deleted while others are invalid, or most "
                "manifests gone at once): nothing will be pruned from it",
                extra={"event": "suspect_change"},
            )

    def _report_other(self, action: Action) -> None:
        if action.action in ("unmanaged", "conflict", "blocked") and not action.release:
            if action.action == "blocked" and action.cause:
                self._report_drift(action)  # a restart backing off: still one episode
            level = logging.INFO if action.action == "unmanaged" else logging.ERROR
            key = f"{action.action}:{action.name}:{action.deploy_id}:{action.reason}"
            self._report_once(key, level, action.action, action, action.reason)

    def _report_once(self, key: str, level: int, event: str, action: Action, why: str) -> None:
        """Log what does not change between resyncs once, not on every loop."""
        if key in self._reported:
            return
        self._reported.add(key)
        if event in ("drift", "blocked", "conflict"):
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

    # -- the loop --------------------------------------------------------------------

    def _watch_files(self) -> None:
        roots = sorted(
            {
                p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))
                for p in self.tracker.paths
            }
        )

        def manifests_only(change: watchfiles.Change, path: str) -> bool:
            return path.endswith(MANIFEST_SUFFIXES)

        try:
            for _ in watchfiles.watch(
                *roots,
                watch_filter=manifests_only,
                debounce=1600,
                step=WATCH_STEP_MS,
                stop_event=self.stop,
                rust_timeout=500,
                yield_on_timeout=False,
                raise_interrupt=False,
            ):
                self.changed.set()
                self.wake.set()
        except (OSError, RuntimeError) as error:
            log.error(
                "file watching failed; falling back to --resync only: %s",
                error,
                extra={"event": "watch_failed"},
            )

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

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch_files, name="watchfiles", daemon=True)
        watcher.start()
        ok = self._lead() and self.reconcile()
        next_resync = time.monotonic() + self.resync
        while not self.stop.is_set():
            if ok:
                self.loop_failures = 0
                wait_until = min(next_resync, self._prune_due or next_resync)
            else:
                # The API (or the state lock) failed: back off, whatever files do meanwhile;
                # the next reconcile re-stats every file, so no change is lost.
                self.loop_failures += 1
                backoff = min(self.resync, 2.0 ** (self.loop_failures - 1))
                wait_until = time.monotonic() + backoff * random.uniform(0.8, 1.2)
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


def install_signals(stop: threading.Event, daemon_ref: Callable[[], Daemon | None]) -> None:
    def on_stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "stopping: finishing in-flight work",
            extra={"event": "stopping", "signal": signal.Signals(signum).name},
        )
        stop.set()
        daemon = daemon_ref()
        if daemon is not None:
            daemon.wake.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        daemon = daemon_ref()
        if daemon is not None:
            daemon.reread.set()
            daemon.wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def check_paths(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"cannot watch {', '.join(missing)}: no such file or directory")
