"""The intent journal: records built from intents, and resuming what a crash left open.

Every mutation of live state (create, the stop-then-create of a replace, the stop of a
prune) is journaled as an intent before its first API call.  An intent still open at
the next start is resolved from live state alone, before anything is planned:
- create / replace: a deployment launched on the project after the intent (and not the
  one a replace stopped) is ours: recorded as created, owned.  The old deployment still
  running means the replace's stop never took effect: the planner plans it again.
  Nothing running: the planner plans the create again;
- prune: the old deployment no longer running means the prune happened (record
  dropped); still running: the planner plans it again (with `--prune`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime

from reconciler import planner
from reconciler.model import Deployment, Intent, LiveDeployment, Outcome, Record
from reconciler.state import StateStore

# A deployment launched this long before an intent's time still counts as the intent's
# own (clock skew between this machine and the API).
CLOCK_SKEW = 300.0

RESULT_OF = {
    "create": "created",
    "replace": "replaced",
    "restart": "restarted",
    "prune": "pruned",
}


def launched_at(item: LiveDeployment) -> float | None:
    if not item.launched:
        return None
    try:
        return datetime.fromisoformat(item.launched.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_from_intent(intent: Intent, running: LiveDeployment) -> bool:
    """Could `running` be the deployment this intent created?"""
    if running.deploy_id == intent.old_deploy_id:
        return False
    launched = launched_at(running)
    return launched is not None and launched >= intent.created_at - CLOCK_SKEW


def record_for(
    intent: Intent,
    running: LiveDeployment,
    *,
    owned: bool,
    desired: Deployment | None = None,
    compile_id: str | None = None,
    source_modified: str | None = None,
    previous: Record | None = None,
) -> Record:
    """The record of a deployment an intent brought about.

    A restart counts one more restart in a row (the backoff's input); anything else
    starts the count again.
    """
    now = time.time()
    restarted = intent.kind == "restart"
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
        last_action=intent.kind,
        last_outcome=RESULT_OF.get(intent.kind, "created"),
        spec_json=desired.spec_json if desired else intent.spec_json,
        on_delete=desired.on_delete if desired else intent.on_delete,
        protected=desired.protected if desired else False,
        source_modified=source_modified,
        restarts=(previous.restarts if previous else 0) + 1 if restarted else 0,
        last_restart_at=now if restarted else None,
    )


def resolve_open_intents(store: StateStore, live: Sequence[LiveDeployment]) -> list[Outcome]:
    """Close the intents a previous run left open (it crashed or lost the answer)."""
    outcomes = []
    active = planner.active_by_project(live)
    intents = store.open_intents()
    records = store.records() if intents else {}
    for intent in intents:
        running = active.get(intent.project_id)
        if intent.kind == "prune":
            if running is not None and running.deploy_id == intent.old_deploy_id:
                store.close_intent(intent, "not done", detail="still running after a crash")
            else:
                store.close_intent(
                    intent, "pruned", forget=True, detail="found stopped after a crash"
                )
                outcomes.append(
                    Outcome(
                        intent.name,
                        intent.project_id,
                        "prune",
                        "pruned",
                        intent.old_deploy_id,
                        "confirmed from live state after an interrupted run",
                    )
                )
            continue
        if running is not None and is_from_intent(intent, running):
            record = record_for(intent, running, owned=True, previous=records.get(intent.name))
            store.close_intent(
                intent,
                RESULT_OF[intent.kind],
                record=record,
                detail="found after an interrupted run",
            )
            outcomes.append(
                Outcome(
                    intent.name,
                    intent.project_id,
                    intent.kind,
                    RESULT_OF[intent.kind],
                    running.deploy_id,
                    "confirmed from live state after an interrupted run",
                )
            )
        elif running is not None and running.deploy_id == intent.old_deploy_id:
            store.close_intent(intent, "not done", detail="interrupted before its stop took effect")
        else:
            store.close_intent(
                intent, "not created", detail="no deployment appeared after the intent"
            )
            if intent.kind == "replace" and running is None:
                mark_stopped(store, intent, records.get(intent.name))
    return outcomes


def mark_stopped(store: StateStore, intent: Intent, record: Record | None = None) -> None:
    """Record that a replace stopped the old deployment (the create follows or is planned).

    The planner reads it as "continuing a replace": this reconciler stopped it, not a
    person.  `record`: the current record, when the caller has it.
    """
    record = record or store.records().get(intent.name)
    if record is None or record.deploy_id != intent.old_deploy_id:
        return
    store.put_record(
        dataclasses.replace(
            record, last_action="replace", last_outcome="stopped", updated_at=time.time()
        )
    )
