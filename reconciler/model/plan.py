"""The plan: actions (each carrying what it acts on), the holds gates put on them, the
plan itself, and the outcomes of carrying it out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.kinds import ActionKind, Result
from reconciler.model.values import Deployment, Record, Revision


@dataclass(frozen=True)
class Change:
    """One field of a replaced deployment's spec: `path` dotted, values as shown (no secret)."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "from": self.before, "to": self.after}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(str(data["path"]), data.get("from"), data.get("to"))


_ABSENT = object()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def spec_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[Change, ...]:
    """Field-by-field differences of two normalised spec views (lists compared whole).

    Both views come from `Deployment.spec_view`, so defaults are already filled in and a
    default spelled out is never a change; secrets are placeholders on both sides.
    """
    if before is None:
        return ()
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten(before, "", old)
    _flatten(after, "", new)
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if a != b:
            changes.append(Change(path, None if a is _ABSENT else a, None if b is _ABSENT else b))
    return tuple(changes)


@dataclass(frozen=True)
class Hold:
    """Why a gate of `policy/` holds an action back, and until when.

    `until`: when it may be tried again (Unix time), or None (until something changes: a
    flag, a file, a person).  A held action is shown and reported, never carried out.
    """

    gate: str  # the gate that holds it: restart-backoff, prune-flag, prune-grace, ...
    why: str
    until: float | None = None


@dataclass(frozen=True)
class Action:
    """One decision of the plan, carrying what it acts on: the engine carries it out from
    these fields alone (nothing is derived again between plan and apply)."""

    action: ActionKind
    name: str | None  # None for `unmanaged` with no record
    project_id: int
    reason: str
    spec_hash: str | None = None
    deploy_id: str | None = None  # the live deployment concerned (a replace's, prune's target)
    adopt: bool = False  # a noop that records a matching deployment we did not create
    changes: tuple[Change, ...] = ()  # replace: what changed, field by field
    release: bool = False  # unmanaged: an adopted deployment whose record is dropped
    cause: str = ""  # restart, drift: failed | stopped | exited
    # The manifest was renamed: the record of OLD (same project, same deployment) becomes
    # this manifest's, ownership included; apply moves it before anything else.
    renamed_from: str | None = None
    # -- what it acts on: not part of the JSON plan, not compared ---------------------
    desired: Deployment | None = field(default=None, compare=False, repr=False)
    # The record it acts from (a renamed manifest's: the old record under the new name).
    record: Record | None = field(default=None, compare=False, repr=False)
    # `compileId: latest`: the project's `modified` the plan read (the compile's source).
    modified: str | None = field(default=None, compare=False)
    # restart, drift: what live state shows (`L-1 is RuntimeError, it failed: ...`).
    observed: str = field(default="", compare=False)
    held: Hold | None = None
    # deferred: the action that waits (replace | prune), its window, when that opens.
    deferred: ActionKind | None = None
    window: str | None = None
    opens_at: float | None = None
    # What a gate let through and says so (a window ignored): recorded in history.
    note: str = field(default="", compare=False)
    # Paper first (DESIGN §17): the create reads its project's code digest and records it
    # (a paper source, a promoted deployment) ...
    tracks_code: bool = field(default=False, compare=False)
    # ... and, for a promoted deployment, sends nothing unless it is this one.
    digest: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if type(self.action) is not ActionKind:  # a saved plan, a test: spelled as text
            object.__setattr__(self, "action", ActionKind(self.action))

    @property
    def carried_out(self) -> bool:
        """It is sent to the API now: it acts and no gate holds it."""
        return self.action.acts and self.held is None

    @property
    def refreshes(self) -> bool:
        """A noop whose record is to be brought up to date: what is recorded with the
        deployment but never compared (onDelete, protected, its window) changed, or it has
        restarts in a row that may now reset (the engine decides, by the clock)."""
        record, desired = self.record, self.desired
        return (
            self.action is ActionKind.NOOP
            and record is not None
            and desired is not None
            and (
                record.on_delete != desired.on_delete
                or record.protected != desired.protected
                or record.window_json != desired.window_json
                or not record.spec_json
                or record.restarts > 0
            )
        )

    @property
    def verb(self) -> str:
        """The word the plan shows: the kind, or what a noop/unmanaged does (adopt, ...)."""
        if self.adopt:
            return "adopt"
        if self.renamed_from and self.action is ActionKind.NOOP:
            return "rename"
        if self.release:
            return "release"
        return self.action.value

    @property
    def key(self) -> tuple[str, str, str]:
        """(verb, name, target): what a saved plan must list alike to be applied."""
        subject = self.name or f"(no manifest) {self.project_id}"
        return (self.verb, subject, self.deploy_id or "")

    def holding(
        self,
        gate: str,
        why: str,
        until: float | None = None,
        *,
        as_kind: ActionKind | None = None,
        **fields: Any,
    ) -> Action:
        """This action held back by `gate`.  `as_kind`: shown as that kind instead (a
        restart backing off is `blocked`), with `why` as its reason; `fields`: others
        to change with it."""
        hold = Hold(gate, why, until)
        if as_kind is not None:
            fields.update(action=as_kind, reason=why)
        return dataclasses.replace(self, held=hold, **fields)

    def noting(self, text: str) -> Action:
        return dataclasses.replace(self, note=text)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action.value,
            "name": self.name,
            "projectId": self.project_id,
            "reason": self.reason,
        }
        if self.deploy_id:
            out["deployId"] = self.deploy_id
        if self.spec_hash:
            out["specHash"] = self.spec_hash
        if self.adopt:
            out["adopt"] = True
        if self.release:
            out["release"] = True
        if self.cause:
            out["cause"] = self.cause
        if self.renamed_from:
            out["renamedFrom"] = self.renamed_from
        if self.action is ActionKind.DEFERRED:
            out["deferred"] = self.deferred.value if self.deferred else None
            out["window"] = self.window
            out["opensAt"] = _iso(self.opens_at)
        if self.action is ActionKind.REPLACE or self.deferred is ActionKind.REPLACE:
            out["changes"] = [change.to_json() for change in self.changes]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        return cls(
            action=ActionKind(str(data["action"])),
            name=data.get("name"),
            project_id=int(data["projectId"]),
            reason=str(data.get("reason", "")),
            spec_hash=data.get("specHash"),
            deploy_id=data.get("deployId"),
            adopt=bool(data.get("adopt", False)),
            changes=tuple(Change.from_json(c) for c in data.get("changes") or ()),
            release=bool(data.get("release", False)),
            cause=str(data.get("cause") or ""),
            renamed_from=data.get("renamedFrom"),
            deferred=ActionKind(data["deferred"]) if data.get("deferred") else None,
            window=data.get("window"),
            opens_at=_from_iso(data.get("opensAt")),
        )


def _iso(at: float | None) -> str | None:
    """ISO 8601 UTC ending in Z, as the JSON of DESIGN §16 has times."""
    if at is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    # One line each for what concerns the whole plan (an interlock that refused prunes).
    notes: tuple[str, ...] = ()
    # The commit the manifests were read at: every action is traced to it (DESIGN §15).
    revision: Revision | None = None

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys((kind.value for kind in ActionKind), 0)
        for action in self.actions:
            counts[action.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(action.action.is_change for action in self.actions)

    @property
    def refused(self) -> list[Action]:
        """Actions that cannot be carried out (blocked, conflict): exit 1."""
        return [action for action in self.actions if action.action.refused]

    def of_kind(self, kind: ActionKind | str) -> list[Action]:
        return [action for action in self.actions if action.action == kind]

    @property
    def held(self) -> list[Action]:
        return [action for action in self.actions if action.held is not None]

    @property
    def carries_out(self) -> bool:
        """Something is sent to the API (a create, stop or liquidate)."""
        return any(action.carried_out for action in self.actions)

    def with_actions(self, actions: Iterable[Action]) -> Plan:
        return dataclasses.replace(self, actions=tuple(actions))

    def acting(self) -> Plan:
        """What changes something, live or recorded: carried-out actions, adoptions,
        releases, renames, and the noops whose record the engine brings up to date.  A
        daemon hands only these to the engine (an unchanged report, a noop in sync, is
        not written on every resync)."""
        return self.with_actions(
            a
            for a in self.actions
            if a.carried_out or a.adopt or a.release or a.renamed_from or a.refreshes
        )


@dataclass(frozen=True)
class Outcome:
    """What became of one action: every layer shows these (table, JSON, logs, metrics)."""

    name: str | None
    project_id: int
    action: ActionKind
    result: Result
    deploy_id: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if type(self.action) is not ActionKind:
            object.__setattr__(self, "action", ActionKind(self.action))
        if type(self.result) is not Result:
            object.__setattr__(self, "result", Result(self.result))

    @property
    def failed(self) -> bool:
        return self.result.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "projectId": self.project_id,
            "action": self.action.value,
            "result": self.result.value,
            "deployId": self.deploy_id,
            "detail": self.detail,
        }
