"""Small frozen values every layer speaks: desired, live, recorded, and the plan.

Parse at the edge (manifests, API answers, the state store), pass these inside.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from reconciler import brokerages

DEFAULT_VERSION_ID = "-1"

# Statuses in which a live deployment occupies its project (the API runs one per project).
ACTIVE_STATUSES = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})


class ActionKind(StrEnum):
    """What the plan does about one deployment (DESIGN §5, §11).  A `StrEnum`: it compares
    equal to, prints as and serialises as its name (`"create"`), as the JSON plan has it."""

    CREATE = "create"
    REPLACE = "replace"
    RESTART = "restart"
    PRUNE = "prune"
    DRIFT = "drift"
    BLOCKED = "blocked"
    CONFLICT = "conflict"
    NOOP = "noop"
    UNMANAGED = "unmanaged"

    @property
    def starts(self) -> bool:
        """It sends a create (a replace's second half, a restart)."""
        return self in _STARTS

    @property
    def stops(self) -> bool:
        """It stops a running deployment (a replace's first half, a prune)."""
        return self in _STOPS

    @property
    def acts(self) -> bool:
        """It is sent to the API: one journaled intent."""
        return self in _STARTS or self in _STOPS

    @property
    def is_change(self) -> bool:
        """A change the plan will make: `plan --detailed-exitcode` exits 2 for it."""
        return self in _STARTS or self in _STOPS

    @property
    def refused(self) -> bool:
        """The plan cannot carry it out: plan and apply exit 1."""
        return self in (ActionKind.BLOCKED, ActionKind.CONFLICT)

    @property
    def done(self) -> Result:
        """The result of carrying it out (create -> created ...); only for kinds that act."""
        return _DONE_RESULT[self]


_STARTS = frozenset({ActionKind.CREATE, ActionKind.REPLACE, ActionKind.RESTART})
_STOPS = frozenset({ActionKind.REPLACE, ActionKind.PRUNE})


class Result(StrEnum):
    """What became of one action (DESIGN §6, §13): the outcome table's RESULT column."""

    CREATED = "created"
    REPLACED = "replaced"
    RESTARTED = "restarted"
    PRUNED = "pruned"
    ADOPTED = "adopted"
    RELEASED = "released"
    IN_SYNC = "in sync"
    PENDING = "pending"  # a prune without --prune
    DRIFT = "drift"
    UNTOUCHED = "untouched"
    BLOCKED = "blocked"
    CONFLICT = "conflict"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the outcome of a call is not known yet: the next run checks
    SKIPPED = "skipped"  # shutting down: not sent

    @property
    def failed(self) -> bool:
        """It makes apply exit 1."""
        return self in _FAILED

    @property
    def started(self) -> bool:
        """A new deployment was started: health after apply watches it."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED)

    @property
    def changed(self) -> bool:
        """Live state changed (the GitHub Action's `has-changes`)."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED, Result.PRUNED)

    @property
    def in_sync(self) -> bool:
        """The deployment now runs what its manifest says."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED, Result.ADOPTED)


_FAILED = frozenset(
    {Result.FAILED, Result.UNKNOWN, Result.SKIPPED, Result.CONFLICT, Result.BLOCKED}
)
_DONE_RESULT = {
    ActionKind.CREATE: Result.CREATED,
    ActionKind.REPLACE: Result.REPLACED,
    ActionKind.RESTART: Result.RESTARTED,
    ActionKind.PRUNE: Result.PRUNED,
}

ON_DELETE = ("stop", "liquidate")
DEFAULT_ON_DELETE = "stop"
RESTART_POLICIES = ("OnFailure", "Always", "Never")
DEFAULT_RESTART_POLICY = "OnFailure"

# Why a managed deployment is not running (DESIGN §11), from its live status.
FAILED_STATUSES = frozenset({"RuntimeError", "DeployError", "Invalid"})
STOPPED_STATUSES = frozenset({"Stopped", "Liquidated", "Deleted"})
EXITED_STATUSES = frozenset({"Completed"})


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: an environment variable or a file beside the manifest."""

    source: str  # "env" | "file"
    name: str  # variable name, or the path as written in the manifest
    base_dir: str = "."

    def placeholder(self) -> str:
        return f"<from {self.source} {self.name}>"


def _with_placeholders(value: Any) -> Any:
    """The value with every SecretRef replaced by its placeholder text (safe to show)."""
    if isinstance(value, SecretRef):
        return value.placeholder()
    if isinstance(value, Mapping):
        return {key: _with_placeholders(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_placeholders(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_secret_refs(value: Any, base_dir: str) -> Any:
    """Turn `{fromEnv: X}` / `{fromFile: Y}` mappings into SecretRef values, recursively."""
    if isinstance(value, Mapping):
        if set(value) == {"fromEnv"}:
            return SecretRef("env", str(value["fromEnv"]), base_dir)
        if set(value) == {"fromFile"}:
            return SecretRef("file", str(value["fromFile"]), base_dir)
        return {key: parse_secret_refs(item, base_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [parse_secret_refs(item, base_dir) for item in value]
    return value


@dataclass(frozen=True, eq=False)
class Deployment:
    """One desired live deployment, from a validated manifest."""

    name: str
    project_id: int
    compile_id: str
    node_id: str
    version_id: str
    brokerage: Mapping[str, Any]  # manifest form; secrets are SecretRef values
    data_providers: Mapping[str, Any] | None = None
    automatic_redeploy: bool | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # "file:line" of the manifest document
    # Lifecycle settings: recorded with the deployment, never part of the compared spec.
    on_delete: str = DEFAULT_ON_DELETE
    protected: bool = False
    restart_policy: str = DEFAULT_RESTART_POLICY

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any], file: str, line: int = 0) -> Deployment:
        """Build from a document that already passed schema validation."""
        import os.path

        base_dir = os.path.dirname(file) or "."
        spec = data["spec"]
        metadata = data["metadata"]
        providers = spec.get("dataProviders")
        return cls(
            name=str(metadata["name"]),
            project_id=int(spec["projectId"]),
            compile_id=str(spec["compileId"]),
            node_id=str(spec["nodeId"]),
            version_id=str(spec.get("versionId", DEFAULT_VERSION_ID)),
            brokerage=parse_secret_refs(spec["brokerage"], base_dir),  # a new dict
            data_providers=parse_secret_refs(providers, base_dir) if providers else None,
            automatic_redeploy=spec.get("automaticRedeploy"),
            labels=dict(metadata.get("labels") or {}),
            source=f"{file}:{line}" if line else file,
            on_delete=str(spec.get("onDelete", DEFAULT_ON_DELETE)),
            protected=bool(spec.get("protected", False)),
            restart_policy=str(spec.get("restartPolicy", DEFAULT_RESTART_POLICY)),
        )

    def spec_view(self) -> dict[str, Any]:
        """The normalised spec with secrets as placeholders: what is shown and hashed.

        Defaults are filled in and omitted optionals left out, so two manifests that
        differ only in spelling out a default hash the same (no phantom changes).
        """
        view: dict[str, Any] = {
            "projectId": self.project_id,
            "compileId": self.compile_id,
            "nodeId": self.node_id,
            "versionId": self.version_id,
            # The seed's empty unused fields (`user: ""` for Tradier) say nothing: dropped.
            "brokerage": _with_placeholders(brokerages.normalised(self.brokerage)),
        }
        if self.data_providers:
            view["dataProviders"] = _with_placeholders(self.data_providers)
        if self.automatic_redeploy:
            view["automaticRedeploy"] = True
        return view

    @cached_property
    def spec_json(self) -> str:
        """The normalised spec as canonical JSON (no secret values): what is recorded."""
        return canonical_json(self.spec_view())

    @cached_property
    def spec_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.spec_json.encode()).hexdigest()[:32]

    @cached_property
    def identity(self) -> tuple[str, str]:
        """(brokerage, environment) as `/live/list` would report this deployment."""
        return brokerages.identity(brokerages.to_wire(_with_placeholders(self.brokerage)))


@dataclass(frozen=True)
class LiveDeployment:
    """One entry of `/live/list`: a past or current deployment."""

    project_id: int
    deploy_id: str
    status: str
    brokerage: str = ""
    environment: str = ""
    launched: str | None = None
    stopped: str | None = None
    error: str = ""  # why it ended, as the API says (a failed brokerage login, ...)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def cause(self) -> str:
        """Why it is not running: failed | stopped (by a person) | exited | running."""
        if self.active:
            return "running"
        if self.status in FAILED_STATUSES:
            return "failed"
        if self.status in EXITED_STATUSES:
            return "exited"
        return "stopped"


@dataclass(frozen=True)
class Node:
    """A live node of the organisation (`projects/nodes/read`)."""

    id: str
    name: str
    sku: str = ""
    busy: bool = False
    used_by: str | None = None
    project_id: int | None = None  # what runs on it, when busy
    project_name: str | None = None
    active: bool = False


@dataclass(frozen=True)
class Record:
    """What the state store remembers about one manifest name."""

    name: str
    project_id: int
    spec_hash: str
    deploy_id: str | None
    owned: bool  # created by this reconciler (only these may ever be pruned)
    compile_id: str | None = None
    node_id: str | None = None
    compile_verified: bool = True
    created_at: float | None = None
    updated_at: float | None = None
    last_action: str | None = None
    last_outcome: str | None = None
    spec_json: str | None = None  # the normalised spec applied (placeholders, no secrets)
    on_delete: str = DEFAULT_ON_DELETE  # what a prune does, known after the manifest is gone
    protected: bool = False
    source_modified: str | None = None  # `compileId: latest`: the project's `modified` built
    restarts: int = 0  # restarts in a row (reset once it has stayed Running 30 minutes)
    last_restart_at: float | None = None
    revision: str | None = None  # the commit of its last action (Revision.stored)

    @property
    def spec(self) -> dict[str, Any] | None:
        if not self.spec_json:
            return None
        value = json.loads(self.spec_json)
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Intent:
    """A mutation journaled before its API call and not yet closed.

    `create`: a new deployment.  `replace`: stop `old_deploy_id`, then create (one intent
    for both halves).  `prune`: stop or liquidate `old_deploy_id` (`on_delete`).
    """

    attempt_id: str
    name: str
    project_id: int
    spec_hash: str
    created_at: float
    kind: ActionKind = ActionKind.CREATE  # one that acts: create, replace, restart, prune
    old_deploy_id: str | None = None
    spec_json: str | None = None
    on_delete: str = DEFAULT_ON_DELETE
    revision: str | None = None  # the commit that asked for it (Revision.stored)

    def __post_init__(self) -> None:
        if type(self.kind) is not ActionKind:  # as stores and older callers spell it
            object.__setattr__(self, "kind", ActionKind(self.kind))

    @classmethod
    def new(
        cls,
        name: str,
        project_id: int,
        spec_hash: str,
        *,
        kind: ActionKind | str = ActionKind.CREATE,
        old_deploy_id: str | None = None,
        spec_json: str | None = None,
        on_delete: str = DEFAULT_ON_DELETE,
        now: float | None = None,
        revision: str | None = None,
    ) -> Intent:
        return cls(
            uuid.uuid4().hex,
            name,
            project_id,
            spec_hash,
            time.time() if now is None else now,
            ActionKind(kind),
            old_deploy_id,
            spec_json,
            on_delete,
            revision,
        )


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
class Revision:
    """The commit the manifests were read at (DESIGN §15)."""

    kind: str  # "files" (a work tree) | "git" (a git source)
    sha: str  # the full commit SHA
    dirty: bool = False  # a manifest under the paths differs from the commit (files only)
    url: str | None = None  # git: the repository, as given (it carries no credentials)
    ref: str | None = None  # git: the ref followed (None: the remote's default branch)
    subject: str = ""  # the commit's subject line (the status page shows it)

    @property
    def short(self) -> str:
        """The first 12 characters, `+dirty` when dirty: how history shows it."""
        return self.sha[:12] + ("+dirty" if self.dirty else "")

    @property
    def stored(self) -> str:
        """As the state records it with each intent, record and history entry."""
        return self.sha + (DIRTY if self.dirty else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "revision": self.sha,
            "dirty": self.dirty,
            "url": self.url,
            "ref": self.ref,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Revision | None:
        """The `source` of a JSON plan; None when it names no commit."""
        if not data or not data.get("revision"):
            return None
        return cls(
            str(data.get("kind") or "files"),
            str(data["revision"]),
            bool(data.get("dirty")),
            data.get("url"),
            data.get("ref"),
            str(data.get("subject") or ""),
        )


DIRTY = "+dirty"


def split_revision(stored: str | None) -> tuple[str | None, bool]:
    """(the SHA, dirty) of a revision as the state records it."""
    if not stored:
        return None, False
    return stored.removesuffix(DIRTY), stored.endswith(DIRTY)


def short_revision(stored: str | None) -> str:
    """`3b5f156cf4a5`, `3b5f156cf4a5+dirty`, or `-`."""
    sha, dirty = split_revision(stored)
    return "-" if sha is None else sha[:12] + (DIRTY if dirty else "")


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

    def __post_init__(self) -> None:
        if type(self.action) is not ActionKind:  # a saved plan, a test: spelled as text
            object.__setattr__(self, "action", ActionKind(self.action))

    @property
    def kind(self) -> ActionKind:
        return self.action

    @property
    def carried_out(self) -> bool:
        """It is sent to the API now: it acts and no gate holds it."""
        return self.action.acts and self.held is None

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
        if self.action is ActionKind.REPLACE:
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
        )


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
        releases, renames.  A daemon hands only these to the engine (an unchanged report,
        a noop, is not written to the history on every resync)."""
        return self.with_actions(
            a for a in self.actions if a.carried_out or a.adopt or a.release or a.renamed_from
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
