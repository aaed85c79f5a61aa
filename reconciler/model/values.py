"""The values of the three views: desired (a manifest's Deployment, its secrets as
references), live (the API's deployments and nodes), recorded (the state's records and
intents), and the revision the manifests were read at."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from reconciler import brokerages
from reconciler.model.kinds import ActionKind

if TYPE_CHECKING:
    from reconciler.model.promotion import Promotion

DEFAULT_VERSION_ID = "-1"

# Statuses in which a live deployment occupies its project (the API runs one per project).
ACTIVE_STATUSES = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})


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
    window: str | None = None  # spec.window: the name of its DeployWindow
    window_json: str | None = None  # that window's definition (recorded with it)
    promotion: Promotion | None = None  # spec.promotion: only code passed on paper (§17)

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any], file: str, line: int = 0) -> Deployment:
        """Build from a document that already passed schema validation."""
        import os.path

        base_dir = os.path.dirname(file) or "."
        spec = data["spec"]
        metadata = data["metadata"]
        providers = spec.get("dataProviders")
        promotion = spec.get("promotion")
        if promotion:  # paper first: its module is loaded only where a manifest promotes
            from reconciler.model.promotion import Promotion
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
            window=spec.get("window"),
            promotion=Promotion.from_spec(promotion) if promotion else None,
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
    window_json: str | None = None  # its DeployWindow's definition, gating a later prune
    digest: str | None = None  # the code it runs (files digest; paper first, DESIGN §17)

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
    digest: str | None = None  # paper first: the code a promotion's create deploys
    # The latest time a create sent under this intent can still take effect at the API
    # (Unix time), stamped durably before each send; None: no create was ever sent.
    lands_by: float | None = None

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
        digest: str | None = None,
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
            digest,
        )


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
