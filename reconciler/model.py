"""Small frozen values every layer speaks: desired, live, recorded, and the plan.

Parse at the edge (manifests, API answers, the state store), pass these inside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler import brokerages

DEFAULT_VERSION_ID = "-1"

# Statuses in which a live deployment occupies its project (the API runs one per project).
ACTIVE_STATUSES = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})

ACTION_KINDS = ("create", "replace", "prune", "conflict", "noop", "unmanaged")
CHANGE_KINDS = frozenset({"create", "replace", "prune"})


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
            "brokerage": _with_placeholders(self.brokerage),
        }
        if self.data_providers:
            view["dataProviders"] = _with_placeholders(self.data_providers)
        if self.automatic_redeploy:
            view["automaticRedeploy"] = True
        return view

    @cached_property
    def spec_hash(self) -> str:
        digest = hashlib.sha256(canonical_json(self.spec_view()).encode())
        return "sha256:" + digest.hexdigest()[:32]

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

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


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


@dataclass(frozen=True)
class Intent:
    """A create that was journaled before its API call and not yet closed."""

    attempt_id: str
    name: str
    project_id: int
    spec_hash: str
    created_at: float


@dataclass(frozen=True)
class Action:
    action: str  # one of ACTION_KINDS
    name: str | None  # None for `unmanaged`
    project_id: int
    reason: str
    spec_hash: str | None = None
    deploy_id: str | None = None  # the live deployment concerned, if any
    adopt: bool = False  # a noop that records a matching deployment we did not create

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
        )


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTION_KINDS, 0)
        for action in self.actions:
            counts[action.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(action.action in CHANGE_KINDS for action in self.actions)

    def of_kind(self, kind: str) -> list[Action]:
        return [action for action in self.actions if action.action == kind]
