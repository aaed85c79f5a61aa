"""`reconciler status`: what the store records, beside what is live."""

from __future__ import annotations

import sys
from typing import Any

from reconciler import planner, render
from reconciler.config import StatusConfig
from reconciler.errors import ReconcilerError
from reconciler.model import split_revision
from reconciler.policy.restart import backoff_until
from reconciler.runtime import connect


def run(config: StatusConfig) -> int:
    with connect(config.connection) as rt:
        records = rt.store.records()
        intents = rt.store.open_intents()
        live_error = None
        try:
            live = rt.engine.fetch_live()
        except ReconcilerError as error:
            live, live_error = [], str(error)
    active = planner.active_by_project(live)
    by_id = {item.deploy_id: item for item in live}
    rows: list[dict[str, Any]] = []
    for record in records.values():
        running = active.get(record.project_id)
        mine = by_id.get(record.deploy_id or "")
        cause = None
        if live_error:
            live_status = "unknown"
        elif running is not None and running.deploy_id != record.deploy_id:
            live_status = f"other: {running.deploy_id}"
        elif mine is not None:
            live_status = mine.status
            cause = None if mine.active else mine.cause
        else:
            live_status = "not running"
            cause = "stopped"
        until = backoff_until(record)
        revision, dirty = split_revision(record.revision)
        rows.append(
            {
                "name": record.name,
                "projectId": record.project_id,
                "compile": (record.compile_id or "-") if record.compile_verified else "unverified",
                "compileVerified": record.compile_verified,
                "node": record.node_id,
                "liveStatus": live_status,
                "deployId": record.deploy_id,
                "owned": record.owned,
                "lastAction": record.last_action,
                "lastOutcome": record.last_outcome,
                "lastActionAt": record.updated_at,
                # Why it is not running (failed | stopped | exited); None while it runs.
                "notRunning": cause,
                "restarts": record.restarts,
                "nextRestartAt": until,
                # The commit that asked for its last action (DESIGN §15), or None.
                "revision": revision,
                "dirty": dirty,
                # Paper first: the code it runs (its project's files digest), if tracked.
                "code": record.digest,
            }
        )
    if config.format == "json":
        print(
            render.dumps(
                {
                    "version": 1,
                    "deployments": rows,
                    "openIntents": len(intents),
                    "liveError": live_error,
                }
            )
        )
    else:
        print(render.status_text(rows))
        if intents:
            print(
                f"\n{len(intents)} create(s) with an unknown outcome; the next plan or apply "
                "resolves them from live state."
            )
    if live_error:
        print(f"error: live state unavailable: {live_error}", file=sys.stderr)
        return 1
    return 0
