"""What the daemon knows after each reconcile, kept for the status page (DESIGN §14).

`build` is pure: it joins the desired manifests, the last plan, the live list the loop
already read, the records and the history into JSON-ready data, with every value of a
referenced secret masked.  `StatusBoard` hands the latest one from the reconcile thread
to the HTTP server's threads.  Nothing here calls the API: the page costs no request.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import secrets
from reconciler.model import (
    Action,
    ActionKind,
    Deployment,
    LiveDeployment,
    Outcome,
    Record,
    Revision,
    split_revision,
)
from reconciler.state import HistoryEntry

VERSION = 1
HISTORY_LIMIT = 50

# What each planned action means for a deployment, in words and a tone (the page's
# colour: ok | busy | warn | bad).  The words are what a reader needs; colour only helps.
_PLANNED = {
    ActionKind.NOOP: ("in sync", "ok"),
    ActionKind.CREATE: ("creating", "busy"),
    ActionKind.REPLACE: ("replacing", "busy"),
    ActionKind.RESTART: ("restarting", "warn"),
    ActionKind.CONFLICT: ("conflict", "bad"),
    ActionKind.BLOCKED: ("blocked", "bad"),
    ActionKind.DEFERRED: ("deferred", "warn"),
    ActionKind.WAITING: ("waiting", "busy"),
}
_DRIFT = {"failed": ("failed", "bad"), "stopped": ("stopped", "warn"), "exited": ("exited", "warn")}


def _status(
    action: Action | None, outcome: Outcome | None, retry_in: float | None
) -> tuple[str, str]:
    if outcome is not None:
        if outcome.failed:
            return ("failed", "bad")
        if outcome.result.in_sync:
            return ("in sync", "ok")
    if action is None:
        return ("unknown", "warn")
    kind = action.action
    if kind.starts and retry_in is not None:
        return ("backing off", "warn")
    if kind is ActionKind.DRIFT:
        return _DRIFT.get(action.cause, ("not running", "warn"))
    if kind is ActionKind.BLOCKED and action.cause:
        return ("backing off", "warn")  # a restart waiting out its backoff
    if kind is ActionKind.NOOP and action.adopt:
        return ("adopting", "busy")
    return _PLANNED.get(kind, (kind.value, "warn"))


def _live_status(
    record: Record | None,
    action: Action | None,
    outcome: Outcome | None,
    live: Mapping[str, LiveDeployment],
) -> tuple[str, str | None]:
    """(the live status, the deployment id) of what the manifest's project runs for it."""
    if outcome is not None and outcome.deploy_id and outcome.result.in_sync:
        return ("Running", outcome.deploy_id)  # health was awaited before the outcome
    deploy_id = (action.deploy_id if action else None) or (record.deploy_id if record else None)
    seen = live.get(deploy_id or "")
    if seen is None:
        return ("not running", deploy_id)
    return (seen.status, seen.deploy_id)


def deployment_row(
    desired: Deployment,
    action: Action | None,
    outcome: Outcome | None,
    record: Record | None,
    live: Mapping[str, LiveDeployment],
    retry_in: float | None,
    now: float,
) -> dict[str, Any]:
    status, tone = _status(action, outcome, retry_in)
    live_status, deploy_id = _live_status(record, action, outcome, live)
    brokerage, environment = desired.identity
    reason = action.reason if action is not None else ""
    if outcome is not None and outcome.failed:
        reason = f"{outcome.action} {outcome.result}" + (
            f": {outcome.detail}" if outcome.detail else ""
        )
    elif outcome is not None:
        reason = f"{outcome.result}: {reason}" if reason else outcome.result
    elif retry_in is not None and action is not None and action.action != "noop":
        reason = f"{reason}; backing off after failures: next try in {retry_in:.0f}s"
    return {
        "name": desired.name,
        "projectId": desired.project_id,
        "brokerage": brokerage,
        "environment": environment,
        "compile": desired.compile_id,
        "source": desired.source,
        "labels": dict(desired.labels),
        "status": status,
        "tone": tone,
        "action": action.action if action is not None else None,
        "reason": reason,
        "retryAt": now + retry_in if retry_in is not None else None,
        "liveStatus": live_status,
        "deployId": deploy_id,
        "lastAction": record.last_action if record else None,
        "lastOutcome": record.last_outcome if record else None,
        "lastActionAt": record.updated_at if record else None,
        # Paper first: the code it runs (the digest of its project's files), if tracked.
        "code": record.digest if record else None,
    }


def history_row(entry: HistoryEntry) -> dict[str, Any]:
    revision, dirty = split_revision(entry.revision)
    return {
        "at": entry.at,
        "name": entry.name,
        "projectId": entry.project_id,
        "action": entry.action,
        "outcome": entry.outcome,
        "deployId": entry.deploy_id,
        "detail": entry.detail,
        "revision": revision,
        "dirty": dirty,
    }


def masked(value: Any, values: Sequence[str]) -> Any:
    """The value with every secret value replaced (an API message may echo one back)."""
    if isinstance(value, str):
        return secrets.mask(value, values)
    if isinstance(value, Mapping):
        return {key: masked(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, values) for item in value]
    return value


def build(
    *,
    desired: Sequence[Deployment],
    actions: Sequence[Action],
    outcomes: Sequence[Outcome],
    live: Sequence[LiveDeployment],
    records: Mapping[str, Record],
    invalid: Mapping[str, Sequence[str]],
    history: Sequence[HistoryEntry],
    retry_in: Mapping[str, float],
    phase: str,
    now: float,
    revision: Revision | None = None,
    windows: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The page's data (`/api/status` without its `role`), secrets masked."""
    by_name = {a.name: a for a in actions if a.name}
    done = {o.name: o for o in outcomes if o.name}
    by_id = {item.deploy_id: item for item in live}
    rows = [
        deployment_row(
            d,
            by_name.get(d.name),
            done.get(d.name),
            records.get(d.name),
            by_id,
            retry_in.get(d.name),
            now,
        )
        for d in sorted(desired, key=lambda d: d.name)
    ]
    data = {
        "version": VERSION,
        "generatedAt": now,
        "phase": phase,  # "applying" while this reconcile's actions run, else "idle"
        "lastError": None,
        "source": _source(revision),
        "windows": [dict(w) for w in windows],
        "summary": {
            "deployments": len(rows),
            "inSync": sum(1 for r in rows if r["status"] == "in sync"),
            "needAttention": sum(1 for r in rows if r["tone"] in ("warn", "bad")),
            "invalidFiles": len(invalid),
        },
        "deployments": rows,
        "invalidFiles": [
            {"file": path, "problems": list(problems)} for path, problems in sorted(invalid.items())
        ],
        "history": [history_row(entry) for entry in history[:HISTORY_LIMIT]],
    }
    values = secrets.known_values(secrets.referenced(desired))
    result: dict[str, Any] = masked(data, values)
    return result


def _source(revision: Revision | None) -> dict[str, Any] | None:
    if revision is None:
        return None
    return {**revision.to_json(), "subject": revision.subject}


def empty(now: float | None = None) -> dict[str, Any]:
    """Before the first reconcile (or while standing by)."""
    return {
        "version": VERSION,
        "generatedAt": time.time() if now is None else now,
        "phase": "starting",
        "lastError": None,
        "source": None,
        "windows": [],
        "summary": {"deployments": 0, "inSync": 0, "needAttention": 0, "invalidFiles": 0},
        "deployments": [],
        "invalidFiles": [],
        "history": [],
    }


class StatusBoard:
    """The latest snapshot, written by the reconcile thread, read by the HTTP threads.

    A published snapshot is never changed in place: readers get a deep copy.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = empty()
        self._values: Sequence[str] = ()

    def publish(self, data: dict[str, Any], desired: Sequence[Deployment] = ()) -> None:
        """`data` from `build`; `desired`'s secret values are masked in later errors too."""
        values = secrets.known_values(secrets.referenced(desired))
        with self._lock:
            self._data = data
            self._values = values

    def failed(self, error: str) -> None:
        """A reconcile failed: what was known stays, with the error beside it."""
        with self._lock:
            values = self._values or secrets.known_values(())
            data = dict(self._data)
            data["lastError"] = {"at": time.time(), "message": secrets.mask(error, values)}
            data["phase"] = "idle"
            self._data = data

    def current(self, role: str) -> dict[str, Any]:
        with self._lock:
            data = copy.deepcopy(self._data)
        data["role"] = role
        return data
