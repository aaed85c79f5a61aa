"""`reconciler status`: what the store records, beside what is live."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler import planner, render
from reconciler.errors import ReconcilerError
from reconciler.runtime import connect


def run(args: argparse.Namespace) -> int:
    with connect(args) as rt:
        records = rt.store.records()
        intents = rt.store.open_intents()
        live_error = None
        try:
            active = planner.active_by_project(rt.engine.fetch_live())
        except ReconcilerError as error:
            active, live_error = {}, str(error)
    rows: list[dict[str, Any]] = []
    for record in records.values():
        running = active.get(record.project_id)
        if live_error:
            live_status = "unknown"
        elif running is None:
            live_status = "not running"
        elif running.deploy_id == record.deploy_id:
            live_status = running.status
        else:
            live_status = f"other: {running.deploy_id}"
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
            }
        )
    if args.format == "json":
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
