"""The intent journal: records built from intents, and resuming what a crash left open.

Every mutation of live state (create, the stop-then-create of a replace, the stop of a
prune) is journaled as an intent before its first API call.  An intent still open at
the next start is resolved from live state alone, before anything is planned:
- create / replace / restart: a deployment launched on the project within the intent's
  span (from its start to `lands_by`, the latest time a create it sent could take effect;
  and not the one a replace stopped) is ours: claimed as created, owned.  One launched
  outside the span is not ours: the intent is closed "not created" and the planner adopts
  the deployment (or reports a conflict), as with no journal at all.  The old deployment
  still running means the replace's stop never took effect: the planner plans it again.
  Nothing running: while a create it sent may still land (before `lands_by`) the intent
  stays open and the project waits (the landing gate of `policy/` blocks it); after
  that, or when no create was ever sent, the planner plans the create again.

Closing a young intent "not created" on a guess would let a create still in flight from
a dead runner (a SIGKILL'd apply, a failed-over leader) land afterwards and be adopted
as someone else's: never pruned, the reconciler having lost track of what it started.
- prune: the old deployment no longer running means the prune happened (record
  dropped); still running: the planner plans it again (with `--prune`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from reconciler import planner
from reconciler.model import ActionKind, Deployment, Intent, LiveDeployment, Outcome, Record, Result
from reconciler.policy.landing import clock_time, waiting_until
from reconciler.state import StateStore

# A deployment launched this long before an intent's time still counts as the intent's
# own (clock skew between this machine and the API).
CLOCK_SKEW = 300.0


def launched_at(item: LiveDeployment) -> float | None:
    if not item.launched:
        return None
    try:
        return datetime.fromisoformat(item.launched.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def landing_deadline(sent_at: float, in_flight_bound: float, margin: float) -> float:
    """The latest time a create sent at `sent_at` can take effect at the API: the client
    has its answer or gave up within `in_flight_bound`; `margin` covers a server that
    still acts on a request for a while after its client stopped waiting (or died)."""
    return sent_at + in_flight_bound + margin


def is_from_intent(intent: Intent, running: LiveDeployment) -> bool:
    """Could `running` be the deployment this intent created?  Launched within the
    intent's span: from its start (less the clock skew: the API's clock is not ours) to
    `lands_by`, the latest time a create it sent could take effect.  An intent that never
    sent a create (`lands_by` None) created nothing.  No skew is allowed past `lands_by`:
    a doubt there makes the deployment adopted (never pruned), not owned."""
    if running.deploy_id == intent.old_deploy_id or intent.lands_by is None:
        return False
    launched = launched_at(running)
    return launched is not None and intent.created_at - CLOCK_SKEW <= launched <= intent.lands_by


def span(intent: Intent) -> str:
    end = clock_time(intent.lands_by) if intent.lands_by is not None else "no create sent"
    return f"{clock_time(intent.created_at)} to {end}"


def record_for(
    intent: Intent,
    running: LiveDeployment,
    *,
    owned: bool,
    desired: Deployment | None = None,
    compile_id: str | None = None,
    source_modified: str | None = None,
    previous: Record | None = None,
    now: float | None = None,
    digest: str | None = None,
) -> Record:
    """The record of a deployment an intent brought about.

    A restart counts one more restart in a row (the backoff's input); anything else
    starts the count again.
    """
    now = time.time() if now is None else now
    restarted = intent.kind is ActionKind.RESTART
    return Record(
        name=intent.name,
        project_id=intent.project_id,
        spec_hash=intent.spec_hash,
        deploy_id=running.deploy_id,
        owned=owned,
        compile_id=compile_id or (desired.compile_id if desired else None),
        node_id=desired.node_id if desired else None,
        compile_verified=compile_id is not None,
        created_at=now,
        updated_at=now,
        last_action=intent.kind.value,
        last_outcome=intent.kind.done.value,
        spec_json=desired.spec_json if desired else intent.spec_json,
        on_delete=desired.on_delete if desired else intent.on_delete,
        protected=desired.protected if desired else False,
        window_json=desired.window_json
        if desired
        else (previous.window_json if previous else None),
        source_modified=source_modified,
        restarts=(previous.restarts if previous else 0) + 1 if restarted else 0,
        last_restart_at=now if restarted else None,
        revision=intent.revision,
        # The code it runs: as read at its create, else the code its intent was to deploy
        # (a promotion's, so a create found after a crash is not promoted again).
        digest=digest if digest is not None else (intent.digest if owned else None),
    )


@dataclass(frozen=True)
class Resolution:
    """How one intent left open by an earlier run is closed, decided from live state."""

    intent: Intent
    outcome: str  # the intent's outcome in the journal: created, pruned, not done, ...
    detail: str
    record: Record | None = None  # the record it leaves (a create found after a crash)
    forget: bool = False  # the record goes (a prune found done)
    stopped: Record | None = None  # a replace found stopped: its record, marked so
    report: Outcome | None = None  # what the run reports of it, if anything
    # Not closed: a create it sent may still land before this time (Unix time); its
    # project waits until then (the landing gate).
    until: float | None = None

    @property
    def waiting(self) -> bool:
        return self.until is not None


def resolve(
    intents: Sequence[Intent],
    records: Mapping[str, Record],
    live: Sequence[LiveDeployment],
    now: float,
) -> list[Resolution]:
    """Decide how to close the intents a previous run left open (it crashed or lost the
    answer), from live state alone.  Pure: `commit` writes the decisions, `overlay` shows
    what the records would be after them (a dry `plan` writes nothing)."""
    active = planner.active_by_project(live)
    out = []
    for intent in intents:
        running = active.get(intent.project_id)
        confirmed = "confirmed from live state after an interrupted run"
        if intent.kind is ActionKind.PRUNE:
            if running is not None and running.deploy_id == intent.old_deploy_id:
                out.append(Resolution(intent, "not done", "still running after a crash"))
            else:
                report = Outcome(
                    intent.name, intent.project_id, ActionKind.PRUNE, Result.PRUNED,
                    intent.old_deploy_id, confirmed,
                )  # fmt: skip
                out.append(
                    Resolution(
                        intent, "pruned", "found stopped after a crash", forget=True, report=report
                    )
                )
        elif running is not None and is_from_intent(intent, running):
            done = intent.kind.done
            record = record_for(
                intent, running, owned=True, previous=records.get(intent.name), now=now
            )
            report = Outcome(
                intent.name, intent.project_id, intent.kind, done, running.deploy_id, confirmed
            )
            detail = (
                f"claimed after a crash: launched {running.launched}, within the "
                f"intent's span ({span(intent)})"
            )
            out.append(Resolution(intent, done.value, detail, record, report=report))
        elif running is not None and running.deploy_id == intent.old_deploy_id:
            out.append(Resolution(intent, "not done", "interrupted before its stop took effect"))
        elif running is not None:
            detail = (
                f"deployment {running.deploy_id} (launched {running.launched or 'unknown'}) "
                f"runs, not launched within the intent's span ({span(intent)}): not ours"
            )
            out.append(Resolution(intent, "not created", detail))
        elif intent.lands_by is not None and now < intent.lands_by:
            why = waiting_until(intent.lands_by)
            out.append(Resolution(intent, "waiting", why, until=intent.lands_by))
        else:
            stopped = None
            if intent.kind is ActionKind.REPLACE:
                stopped = stopped_record(intent, records.get(intent.name), now)
            detail = (
                "no deployment appeared after the intent"
                if intent.lands_by is not None
                else "no create was sent"
            )
            out.append(Resolution(intent, "not created", detail, stopped=stopped))
    return out


def landing(resolutions: Sequence[Resolution]) -> dict[int, float]:
    """The projects that wait for a create that may still land, and until when."""
    out: dict[int, float] = {}
    for r in resolutions:
        if r.until is not None:
            out[r.intent.project_id] = max(r.until, out.get(r.intent.project_id, 0.0))
    return out


def commit(store: StateStore, resolutions: Sequence[Resolution]) -> list[Outcome]:
    """Close the intents as decided; the outcomes worth reporting."""
    for r in resolutions:
        if r.waiting:
            continue  # left open: the landing gate holds its project
        store.close_intent(r.intent, r.outcome, record=r.record, detail=r.detail, forget=r.forget)
        if r.stopped is not None:
            store.put_record(r.stopped)
    return [r.report for r in resolutions if r.report is not None]


def overlay(records: Mapping[str, Record], resolutions: Sequence[Resolution]) -> dict[str, Record]:
    """The records as they will be once `resolutions` are committed."""
    out = dict(records)
    for r in resolutions:
        if r.forget:
            out.pop(r.intent.name, None)
        for record in (r.record, r.stopped):
            if record is not None:
                out[record.name] = record
    return out


def stopped_record(intent: Intent, record: Record | None, now: float) -> Record | None:
    """The record marked as stopped by a replace (the create follows or is planned), or
    None when it is not the replaced deployment's.

    The planner reads it as "continuing a replace": this reconciler stopped it, not a
    person."""
    if record is None or record.deploy_id != intent.old_deploy_id:
        return None
    return dataclasses.replace(
        record, last_action="replace", last_outcome="stopped", updated_at=now
    )
