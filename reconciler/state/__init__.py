"""Recorded state: the store interface, and the backend a location names.

`StateStore` is what the engine and the commands speak.  Two backends implement it:
- `sqlite.SqliteStateStore`: a local file (the default, `.reconciler/state.db`), one
  workspace, for one machine;
- `postgres.PostgresStateStore`: a `postgresql://` URL, many workspaces in one database,
  for CI runners that keep nothing and for highly available daemons (DESIGN §12).

Each backend is the only place that imports its driver (sqlite3, psycopg); psycopg is
imported only when a `postgresql://` location is opened, and is an optional extra.  Both
hold their apply lock through `heartbeat.HeartbeatLock`.

Correctness never depends on the store surviving: the planner reads live state and never
creates on a project that already runs a deployment.  The store adds ownership (only what
we created may ever be pruned), the intent journal (exactly-once across crashes within a
store's life) and history.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from reconciler.errors import ConfigError
from reconciler.model import Intent, Record

if TYPE_CHECKING:
    from reconciler.model.promotion import Candidate
    from reconciler.state.sqlite import SCHEMA_VERSION as SCHEMA_VERSION
    from reconciler.state.sqlite import SqliteStateStore as SqliteStateStore

DEFAULT_STATE_PATH = ".reconciler/state.db"
DEFAULT_WORKSPACE = "default"
DEFAULT_LEASE = 10.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POSTGRES_EXTRA = "pip install 'qc-live-reconciler[postgres]'"
WORKSPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    name: str | None
    project_id: int | None
    action: str
    outcome: str
    deploy_id: str | None
    detail: str | None
    revision: str | None = None  # the commit that asked for it (Revision.stored)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a store's apply lock, and whether it is known to be alive.

    `alive`: True (its heartbeat is fresh, or its process runs on this host), False (its
    process is gone, or its heartbeat stopped), None (cannot tell).
    """

    pid: int
    host: str
    since: float
    alive: bool | None
    why: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {format_time(self.since)}"


@dataclass
class StateSnapshot:
    """Everything a workspace holds, for `reconciler state copy` (oldest history first)."""

    records: list[Record] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)  # open intents
    history: list[HistoryEntry] = field(default_factory=list)
    plans: list[tuple[str, float]] = field(default_factory=list)  # (nonce, applied_at)
    candidates: list[Candidate] = field(default_factory=list)  # paper first (DESIGN §17)


class Leadership(Protocol):
    """Which of several daemons on one workspace acts (DESIGN §12)."""

    @property
    def role(self) -> str: ...  # "leader" | "standby"
    def may_act(self) -> bool: ...
    def start(self, on_change: Callable[[str], None]) -> None: ...
    def stop(self) -> None: ...


class StateStore(Protocol):
    """What the engine and the commands need from a state backend."""

    @property
    def location(self) -> str: ...  # for messages: a URL's password redacted
    @property
    def workspace(self) -> str: ...
    def lock(self, timeout: float = ...) -> contextlib.AbstractContextManager[None]: ...
    def records(self) -> dict[str, Record]: ...
    def put_record(self, record: Record) -> None: ...
    def forget_record(
        self,
        name: str,
        *,
        action: str,
        outcome: str,
        detail: str,
        revision: str | None = None,
    ) -> None: ...
    def rename_record(self, old: str, record: Record, *, detail: str) -> None: ...
    def open_intents(self) -> list[Intent]: ...
    def begin_intents(self, items: Sequence[tuple[str, int, str] | Intent]) -> list[Intent]: ...
    def mark_sending(self, intent: Intent, lands_by: float) -> None: ...
    def close_intent(
        self,
        intent: Intent,
        outcome: str,
        *,
        record: Record | None = None,
        detail: str | None = None,
        forget: bool = False,
    ) -> None: ...
    def add_history(
        self,
        action: str,
        outcome: str,
        *,
        name: str | None = None,
        project_id: int | None = None,
        deploy_id: str | None = None,
        detail: str | None = None,
        revision: str | None = None,
    ) -> None: ...
    def history(self, limit: int = ..., name: str | None = ...) -> list[HistoryEntry]: ...
    def stopped_by_us(self, deploy_ids: Collection[str]) -> set[str]: ...
    def candidates(self, name: str | None = None) -> list[Candidate]: ...
    def put_candidates(self, candidates: Sequence[Candidate]) -> None: ...
    def claim_plan(self, nonce: str) -> bool: ...
    def lock_holder(self) -> LockHolder | None: ...
    def break_lock(self) -> None: ...
    def export_state(self) -> StateSnapshot: ...
    def import_state(self, snapshot: StateSnapshot) -> None: ...
    def leadership(self, lease: float) -> Leadership: ...
    def close(self) -> None: ...


class SoleLeader:
    """A store only one daemon can use (SQLite): that daemon always leads."""

    role = "leader"

    def may_act(self) -> bool:
        return True

    def start(self, on_change: Callable[[str], None]) -> None:
        on_change(self.role)

    def stop(self) -> None:
        return None


# -- locations -------------------------------------------------------------------------


def is_postgres(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def redact(location: str) -> str:
    """The location safe to print: `postgresql://user:***@host/db` (also `?password=`)."""
    if not is_postgres(location):
        return location
    try:
        parts = urlsplit(location)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k == "password" else v) for k, v in pairs], safe="*", quote_via=quote
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return location.split("://", 1)[0] + "://***"


def check_workspace(workspace: str) -> str:
    if not WORKSPACE_PATTERN.match(workspace):
        raise ConfigError(
            f"workspace {workspace!r} is not a valid name: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 63 characters"
        )
    return workspace


def workspace_name(workspace: str | None) -> str:
    """`--workspace`, else RECONCILER_WORKSPACE, else `default`."""
    return check_workspace(workspace or os.environ.get("RECONCILER_WORKSPACE") or DEFAULT_WORKSPACE)


def state_path(path: str | None) -> str:
    """The state location: `--state`, else RECONCILER_STATE, else the default."""
    return path or os.environ.get("RECONCILER_STATE") or DEFAULT_STATE_PATH


def manifest_cache_path(state: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    """Parsed manifests kept between runs (no secrets): beside a state file, and under
    `.reconciler/` locally for a PostgreSQL state (the cache never goes to the database)."""
    if is_postgres(state):
        return os.path.join(".reconciler", f"postgres-{workspace}.manifest-cache.json")
    directory, name = os.path.split(state)
    return os.path.join(directory, f"{os.path.splitext(name)[0]}.manifest-cache.json")


def open_store(location: str | None, workspace: str | None = None) -> StateStore:
    """The store a location names: a `postgresql://` URL, or a SQLite file path."""
    where = state_path(location)
    if is_postgres(where):
        try:
            from reconciler.state.postgres import PostgresStateStore
        except ImportError as error:
            if getattr(error, "name", "") and not str(error.name).startswith("psycopg"):
                raise
            raise ConfigError(
                f"a postgresql:// state needs psycopg, which is not installed: {POSTGRES_EXTRA}"
            ) from None
        return PostgresStateStore(where, workspace_name(workspace))
    from reconciler.state.sqlite import SqliteStateStore

    return SqliteStateStore(where)


def format_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def __getattr__(name: str) -> Any:
    # Names that lived in the single-module `reconciler.state` before the split.
    if name in ("SqliteStateStore", "SCHEMA_VERSION"):
        from reconciler.state import sqlite

        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
