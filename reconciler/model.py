"""Small frozen values every layer speaks: desired, live, recorded, and the plan.

Parse at the edge (manifests, API answers, the state store), pass these inside.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler import brokerages

DEFAULT_VERSION_ID = "-1"

# Statuses in which a live deployment occupies its project (the API runs one per project).
ACTIVE_STATUSES = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})

ACTION_KINDS = (
    "create", "replace", "restart", "prune", "drift", "blocked", "conflict", "noop", "unmanaged",
)  # fmt: skip
# Actions that change what is live (`plan --detailed-exitcode` exits 2 for them).
CHANGE_KINDS = frozenset({"create", "replace", "restart", "prune"})
# Actions the plan cannot carry out: they make plan and apply exit 1.
REFUSED_KINDS = frozenset({"blocked", "conflict"})

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

    @property
    def spec(self) -> dict[str, Any] | None:
        if not self.spec_json:
            return None
        value = json.loads(self.spec_json)
        return value if isinstance(value, dict) else None


# Intent kinds: one journaled intent per mutation of live state.
INTENT_KINDS = ("create", "replace", "restart", "prune")


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
    kind: str = "create"
    old_deploy_id: str | None = None
    spec_json: str | None = None
    on_delete: str = DEFAULT_ON_DELETE

    @classmethod
    def new(
        cls,
        name: str,
        project_id: int,
        spec_hash: str,
        *,
        kind: str = "create",
        old_deploy_id: str | None = None,
        spec_json: str | None = None,
        on_delete: str = DEFAULT_ON_DELETE,
        now: float | None = None,
    ) -> Intent:
        return cls(
            uuid.uuid4().hex,
            name,
            project_id,
            spec_hash,
            time.time() if now is None else now,
            kind,
            old_deploy_id,
            spec_json,
            on_delete,
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
class Action:
    action: str  # one of ACTION_KINDS
    name: str | None  # None for `unmanaged` with no record
    project_id: int
    reason: str
    spec_hash: str | None = None
    deploy_id: str | None = None  # the live deployment concerned, if any
    adopt: bool = False  # a noop that records a matching deployment we did not create
    changes: tuple[Change, ...] = ()  # replace: what changed, field by field
    release: bool = False  # unmanaged: an adopted deployment whose record is dropped
    cause: str = ""  # restart, drift: failed | stopped | exited
    # The manifest was renamed: the record of OLD (same project, same deployment) becomes
    # this manifest's, ownership included; apply moves it before anything else.
    renamed_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
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
        if self.action == "replace":
            out["changes"] = [change.to_json() for change in self.changes]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        return cls(
            action=str(data["action"]),
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

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTION_KINDS, 0)
        for action in self.actions:
            counts[action.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(action.action in CHANGE_KINDS for action in self.actions)

    @property
    def refused(self) -> list[Action]:
        """Actions that cannot be carried out (blocked, conflict): exit 1."""
        return [action for action in self.actions if action.action in REFUSED_KINDS]

    def of_kind(self, kind: str) -> list[Action]:
        return [action for action in self.actions if action.action == kind]


# Outcome results that make apply exit 1.
FAILED_RESULTS = frozenset({"failed", "unknown", "skipped", "conflict", "blocked"})


@dataclass(frozen=True)
class Outcome:
    """What became of one action: every layer shows these (table, JSON, logs, metrics)."""

    name: str | None
    project_id: int
    action: str
    result: str  # created | replaced | pruned | released | adopted | in sync | pending | ...
    deploy_id: str | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.result in FAILED_RESULTS

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "projectId": self.project_id,
            "action": self.action,
            "result": self.result,
            "deployId": self.deploy_id,
            "detail": self.detail,
        }
