"""`reconciler state`: list, show, history, forget, unlock, copy -- on either backend.

Nothing here talks to the QuantConnect API: these commands read and change the store only
(`forget` leaves the deployment running).  Locations are printed with any password redacted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from reconciler import render
from reconciler.config import StateConfig
from reconciler.errors import ConfigError, StateLockedError
from reconciler.model import Intent, Record, short_revision, split_revision
from reconciler.state import (
    HistoryEntry,
    StateStore,
    format_time,
    is_postgres,
    open_store,
    redact,
    workspace_name,
)


def run(config: StateConfig) -> int:
    command: Callable[[StateConfig, StateStore], int] = COMMANDS[config.state_command]
    store = open_store(config.connection.state_location, config.connection.workspace_name)
    try:
        return command(config, store)
    finally:
        store.close()


# -- values as the user sees them ------------------------------------------------------


def record_json(record: Record) -> dict[str, Any]:
    return {
        "name": record.name,
        "projectId": record.project_id,
        "deployId": record.deploy_id,
        "owned": record.owned,
        "specHash": record.spec_hash,
        "compileId": record.compile_id,
        "compileVerified": record.compile_verified,
        "nodeId": record.node_id,
        "onDelete": record.on_delete,
        "protected": record.protected,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "lastAction": record.last_action,
        "lastOutcome": record.last_outcome,
        "restarts": record.restarts,
        "lastRestartAt": record.last_restart_at,
        "sourceModified": record.source_modified,
        "digest": record.digest,
        "spec": record.spec,
        **_revision_json(record.revision),
    }


def intent_json(intent: Intent) -> dict[str, Any]:
    return {
        "attemptId": intent.attempt_id,
        "kind": intent.kind,
        "name": intent.name,
        "projectId": intent.project_id,
        "oldDeployId": intent.old_deploy_id,
        "createdAt": intent.created_at,
        "landsBy": intent.lands_by,  # null: no create was sent under it
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "action": entry.action,
        "outcome": entry.outcome,
        "name": entry.name,
        "projectId": entry.project_id,
        "deployId": entry.deploy_id,
        "detail": entry.detail,
        **_revision_json(entry.revision),
    }


def _revision_json(stored: str | None) -> dict[str, Any]:
    """`revision` (the full SHA, or null) and `dirty` of a recorded revision."""
    sha, dirty = split_revision(stored)
    return {"revision": sha, "dirty": dirty}


def _when(at: float | None) -> str:
    return format_time(at) if at is not None else "-"


def _where(store: StateStore) -> dict[str, str]:
    return {"state": store.location, "workspace": store.workspace}


def _named(store: StateStore) -> str:
    """The store in a sentence: a PostgreSQL state with its workspace (a file has one)."""
    if is_postgres(store.location):
        return f"{store.location} (workspace {store.workspace})"
    return store.location


def _print_json(value: dict[str, Any]) -> None:
    print(render.dumps({"version": 1, **value}))


# -- the subcommands -------------------------------------------------------------------


def list_records(config: StateConfig, store: StateStore) -> int:
    records = list(store.records().values())
    intents = store.open_intents()
    if config.format == "json":
        _print_json(
            {
                **_where(store),
                "deployments": [record_json(r) for r in records],
                "openIntents": [intent_json(i) for i in intents],
            }
        )
        return 0
    if records:
        rows = [["NAME", "PROJECT", "DEPLOY ID", "OWNED", "LAST ACTION", "UPDATED"]]
        rows += [
            [
                r.name,
                str(r.project_id),
                r.deploy_id or "-",
                "yes" if r.owned else "no (adopted)",
                f"{r.last_action or '-'}: {r.last_outcome or '-'}",
                _when(r.updated_at),
            ]
            for r in records
        ]
        print(render.table(rows[0], rows[1:]))
        print()
    print(
        f"{len(records)} record(s) in {_named(store)}"
        + (f"; {len(intents)} open intent(s)" if intents else "")
    )
    return 0


def _record_or_fail(store: StateStore, name: str | None) -> Record:
    record = store.records().get(name or "")
    if record is None:
        raise ConfigError(
            f"no record named {name!r} in {_named(store)} (`reconciler state list` shows them)"
        )
    return record


def show(config: StateConfig, store: StateStore) -> int:
    record = _record_or_fail(store, config.name)
    intents = [i for i in store.open_intents() if i.name == record.name]
    if config.format == "json":
        _print_json(
            {
                **_where(store),
                "deployment": record_json(record),
                "openIntents": [intent_json(i) for i in intents],
            }
        )
        return 0
    fields = [
        ("name", record.name),
        ("project", str(record.project_id)),
        ("deploy id", record.deploy_id or "-"),
        ("owned", "yes (created by this reconciler)" if record.owned else "no (adopted)"),
        ("compile", (record.compile_id or "-") if record.compile_verified else "unverified"),
        ("node", record.node_id or "-"),
        ("on delete", record.on_delete),
        ("protected", "yes" if record.protected else "no"),
        ("spec hash", record.spec_hash),
        ("last action", f"{record.last_action or '-'}: {record.last_outcome or '-'}"),
        ("revision", short_revision(record.revision)),
        ("created", _when(record.created_at)),
        ("updated", _when(record.updated_at)),
        ("restarts", str(record.restarts)),
    ]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        print(f"{label.ljust(width)}  {value}")
    for intent in intents:
        sent = (
            f"a create it sent may land until {_when(intent.lands_by)}"
            if intent.lands_by is not None
            else "no create sent"
        )
        print(
            f"open intent: {intent.kind} since {_when(intent.created_at)} ({sent}; outcome "
            "unknown; the next plan or apply resolves it from live state)"
        )
    return 0


def history(config: StateConfig, store: StateStore) -> int:
    entries = list(reversed(store.history(config.limit, name=config.name)))
    if config.format == "json":
        _print_json({**_where(store), "history": [history_json(e) for e in entries]})
        return 0
    if not entries:
        print("No history" + (f" for {config.name}" if config.name else "") + ".")
        return 0
    rows = [["TIME", "ACTION", "OUTCOME", "NAME", "PROJECT", "DEPLOY ID", "REVISION", "DETAIL"]]
    rows += [
        [
            _when(e.at),
            e.action,
            e.outcome,
            e.name or "-",
            str(e.project_id) if e.project_id is not None else "-",
            e.deploy_id or "-",
            short_revision(e.revision),
            e.detail or "",
        ]
        for e in entries
    ]
    print(render.table(rows[0], rows[1:]))
    return 0


def forget(config: StateConfig, store: StateStore) -> int:
    with store.lock(timeout=30):
        record = _record_or_fail(store, config.name)
        store.forget_record(
            record.name,
            action="forget",
            outcome="forgotten",
            detail="`reconciler state forget`: the deployment was left running",
        )
    if config.format == "json":
        _print_json({**_where(store), "forgotten": record_json(record)})
        return 0
    print(
        f"Forgot {record.name} (project {record.project_id}, deployment "
        f"{record.deploy_id or '-'}). The deployment keeps running and is no longer managed: "
        "while its manifest remains, the next apply adopts it (never pruned)."
    )
    return 0


def unlock(config: StateConfig, store: StateStore) -> int:
    holder = store.lock_holder()
    if holder is None:
        if config.format == "json":
            _print_json({**_where(store), "locked": False, "unlocked": False})
        else:
            print(f"Not locked ({_named(store)}).")
        return 0
    if config.format != "json":
        print(f"Locked by {holder.describe()}: {holder.why}.")
    if holder.alive is not False and not config.force:
        raise ConfigError(
            f"refusing to unlock: the holder ({holder.describe()}) looks alive ({holder.why}); "
            "stop it first, or pass --force if you know it is gone"
        )
    store.break_lock()
    try:
        with store.lock(timeout=5):
            pass
    except StateLockedError as error:
        raise StateLockedError(f"still locked after unlocking: {error}") from None
    if config.format == "json":
        _print_json(
            {
                **_where(store),
                "locked": True,
                "unlocked": True,
                "holder": {
                    "pid": holder.pid,
                    "host": holder.host,
                    "since": holder.since,
                    "alive": holder.alive,
                    "why": holder.why,
                },
            }
        )
    else:
        print("Unlocked: the lock is free (checked by taking it).")
    return 0


def _same_state(source: StateStore, target: str, target_workspace: str) -> bool:
    if is_postgres(target):
        return redact(target) == source.location and target_workspace == source.workspace
    return not is_postgres(source.location) and (
        os.path.realpath(target) == os.path.realpath(source.location)
    )


def copy(config: StateConfig, source: StateStore) -> int:
    to_workspace = workspace_name(config.to_workspace or config.connection.workspace_name)
    to = config.to or ""  # required by the parser
    if _same_state(source, to, to_workspace):
        raise ConfigError("the copy's target is its source; give another --to or --to-workspace")
    target = open_store(to, to_workspace)
    try:
        with source.lock(timeout=30), target.lock(timeout=30):
            snapshot = source.export_state()
            held = len(target.records())
            if (held or target.open_intents()) and not config.force:
                raise ConfigError(
                    f"refusing to copy: {_named(target)} already has {held} record(s); pass "
                    "--force to replace what it holds"
                )
            snapshot.history.append(
                HistoryEntry(
                    time.time(),
                    None,
                    None,
                    "copy",
                    "copied",
                    None,
                    f"copied from {_named(source)}",
                )
            )
            target.import_state(snapshot)
        counts = {
            "records": len(snapshot.records),
            "openIntents": len(snapshot.intents),
            "history": len(snapshot.history) - 1,
            "appliedPlans": len(snapshot.plans),
        }
        if config.format == "json":
            _print_json(
                {
                    "from": _where(source),
                    "to": _where(target),
                    "copied": counts,
                    "replaced": bool(config.force),
                }
            )
        else:
            print(
                f"Copied {counts['records']} record(s), {counts['openIntents']} open "
                f"intent(s), {counts['history']} history entries and {counts['appliedPlans']} "
                f"applied plan(s) from {_named(source)} to {_named(target)}."
            )
    finally:
        target.close()
    return 0


COMMANDS: dict[str, Callable[[StateConfig, StateStore], int]] = {
    "list": list_records,
    "show": show,
    "history": history,
    "forget": forget,
    "unlock": unlock,
    "copy": copy,
}
