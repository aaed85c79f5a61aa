"""Recorded state: the only module that imports sqlite3.

`StateStore` is the interface the engine speaks (a PostgreSQL backend for shared,
multi-runner use can implement the same methods).  `SqliteStateStore` is the embedded
default: one file, WAL, `synchronous=FULL` so an intent is on disk before the create it
announces is sent.

Correctness never depends on this file surviving: the planner reads live state and never
creates on a project that already runs a deployment.  The store adds ownership (only what
we created may ever be pruned), the intent journal (exactly-once across crashes within a
store's life) and history.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.errors import StateError, StateLockedError
from reconciler.model import Intent, Record

DEFAULT_STATE_PATH = ".reconciler/state.db"
SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        project_id INTEGER NOT NULL,
        spec_hash TEXT NOT NULL,
        deploy_id TEXT,
        owned INTEGER NOT NULL,
        compile_id TEXT,
        node_id TEXT,
        compile_verified INTEGER NOT NULL DEFAULT 1,
        created_at REAL,
        updated_at REAL,
        last_action TEXT,
        last_outcome TEXT
    );
    CREATE TABLE intents (
        attempt_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        project_id INTEGER NOT NULL,
        spec_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        closed_at REAL,
        outcome TEXT,
        deploy_id TEXT
    );
    CREATE INDEX intents_open ON intents(closed_at) WHERE closed_at IS NULL;
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        name TEXT,
        project_id INTEGER,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        deploy_id TEXT,
        detail TEXT
    );
    CREATE TABLE applied_plans (nonce TEXT PRIMARY KEY, applied_at REAL NOT NULL);
    CREATE TABLE lock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
}


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    name: str | None
    project_id: int | None
    action: str
    outcome: str
    deploy_id: str | None
    detail: str | None


class StateStore(Protocol):
    """What the engine needs from a state backend."""

    def lock(self, timeout: float = ...) -> contextlib.AbstractContextManager[None]: ...
    def records(self) -> dict[str, Record]: ...
    def put_record(self, record: Record) -> None: ...
    def open_intents(self) -> list[Intent]: ...
    def begin_intents(self, items: Sequence[tuple[str, int, str]]) -> list[Intent]: ...
    def close_intent(
        self,
        intent: Intent,
        outcome: str,
        *,
        record: Record | None = None,
        detail: str | None = None,
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
    ) -> None: ...
    def history(self, limit: int = ...) -> list[HistoryEntry]: ...
    def claim_plan(self, nonce: str) -> bool: ...
    def close(self) -> None: ...


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record_from_row(row: sqlite3.Row) -> Record:
    return Record(
        name=row["name"],
        project_id=row["project_id"],
        spec_hash=row["spec_hash"],
        deploy_id=row["deploy_id"],
        owned=bool(row["owned"]),
        compile_id=row["compile_id"],
        node_id=row["node_id"],
        compile_verified=bool(row["compile_verified"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_action=row["last_action"],
        last_outcome=row["last_outcome"],
    )


class SqliteStateStore:
    """SQLite state file; safe to share between threads of one process."""

    LOCK_TTL = 30.0  # seconds a lock lives without a heartbeat

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mutex = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
            )
            self._db.row_factory = sqlite3.Row
            self._initialise()
        except sqlite3.DatabaseError as error:
            raise StateError(f"cannot use state file {self.path}: {error}") from None
        except OSError as error:
            raise StateError(f"cannot open state file {self.path}: {error.strerror}") from None
        self._lock_token: str | None = None
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _initialise(self, patience: float = 30.0) -> None:
        """WAL mode and migrations, waiting out another process doing the same.

        Switching a new file to WAL takes an exclusive lock and SQLite answers "database is
        locked" at once (without its busy handler) when two processes open a new state
        file together, so that step is retried here, bounded.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                self._db.execute("PRAGMA busy_timeout=30000")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._migrate()
                return
            except sqlite3.OperationalError as error:
                busy = "locked" in str(error) or "busy" in str(error)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.02 + random.random() * 0.05)

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row["value"]) if row else 0
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"state file {self.path} has schema version {current}, newer than this "
                    f"reconciler understands ({SCHEMA_VERSION}); upgrade qc-live-reconciler"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        self._release_lock()
        with self._mutex:
            self._db.close()

    # -- lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold the store's apply lock; wait at most `timeout` seconds for it."""
        self._acquire_lock(timeout)
        try:
            yield
        finally:
            self._release_lock()

    def _acquire_lock(self, timeout: float) -> None:
        token = uuid.uuid4().hex
        host = socket.gethostname()
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            with self._tx() as db:
                row = db.execute("SELECT * FROM lock WHERE id = 1").fetchone()
                free = (
                    row is None
                    or row["expires_at"] < now
                    or (row["host"] == host and not _pid_alive(row["pid"]))
                )
                if free:
                    db.execute(
                        "INSERT OR REPLACE INTO lock VALUES (1, ?, ?, ?, ?, ?)",
                        (token, os.getpid(), host, now, now + self.LOCK_TTL),
                    )
            if free:
                break
            assert row is not None
            if time.monotonic() >= deadline:
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["acquired_at"]))
                raise StateLockedError(
                    f"state is locked by pid {row['pid']} on {row['host']} since {since} "
                    f"({self.path}); waited {timeout:g}s"
                )
            time.sleep(0.1)
        self._lock_token = token
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, name="state-lock-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(self.LOCK_TTL / 3):
            with contextlib.suppress(sqlite3.Error), self._tx() as db:
                db.execute(
                    "UPDATE lock SET expires_at = ? WHERE token = ?",
                    (time.time() + self.LOCK_TTL, self._lock_token),
                )

    def _release_lock(self) -> None:
        if self._lock_token is None:
            return
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        with contextlib.suppress(sqlite3.Error), self._tx() as db:
            db.execute("DELETE FROM lock WHERE token = ?", (self._lock_token,))
        self._lock_token = None

    # -- records ---------------------------------------------------------------------

    def records(self) -> dict[str, Record]:
        with self._mutex:
            rows = self._db.execute("SELECT * FROM deployments ORDER BY name").fetchall()
        return {row["name"]: _record_from_row(row) for row in rows}

    def put_record(self, record: Record) -> None:
        with self._tx() as db:
            self._put(db, record)

    @staticmethod
    def _put(db: sqlite3.Connection, record: Record) -> None:
        db.execute(
            "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.name,
                record.project_id,
                record.spec_hash,
                record.deploy_id,
                int(record.owned),
                record.compile_id,
                record.node_id,
                int(record.compile_verified),
                record.created_at,
                record.updated_at,
                record.last_action,
                record.last_outcome,
            ),
        )

    # -- intents ---------------------------------------------------------------------

    def open_intents(self) -> list[Intent]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT * FROM intents WHERE closed_at IS NULL ORDER BY created_at"
            ).fetchall()
        return [
            Intent(r["attempt_id"], r["name"], r["project_id"], r["spec_hash"], r["created_at"])
            for r in rows
        ]

    def begin_intents(self, items: Sequence[tuple[str, int, str]]) -> list[Intent]:
        """Journal creates (name, projectId, spec hash) durably, in one transaction."""
        now = time.time()
        intents = [Intent(uuid.uuid4().hex, name, pid, spec, now) for name, pid, spec in items]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO intents(attempt_id, name, project_id, spec_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(i.attempt_id, i.name, i.project_id, i.spec_hash, i.created_at) for i in intents],
            )
        return intents

    def close_intent(
        self,
        intent: Intent,
        outcome: str,
        *,
        record: Record | None = None,
        detail: str | None = None,
    ) -> None:
        """Close an intent, record its result and append history, atomically."""
        now = time.time()
        deploy_id = record.deploy_id if record else None
        with self._tx() as db:
            db.execute(
                "UPDATE intents SET closed_at = ?, outcome = ?, deploy_id = ? WHERE attempt_id = ?",
                (now, outcome, deploy_id, intent.attempt_id),
            )
            if record is not None:
                self._put(db, record)
            self._history(
                db, now, "create", outcome, intent.name, intent.project_id, deploy_id, detail
            )

    # -- history ---------------------------------------------------------------------

    @staticmethod
    def _history(
        db: sqlite3.Connection,
        at: float,
        action: str,
        outcome: str,
        name: str | None,
        project_id: int | None,
        deploy_id: str | None,
        detail: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO history(at, name, project_id, action, outcome, deploy_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, name, project_id, action, outcome, deploy_id, detail),
        )

    def add_history(
        self,
        action: str,
        outcome: str,
        *,
        name: str | None = None,
        project_id: int | None = None,
        deploy_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self._tx() as db:
            self._history(db, time.time(), action, outcome, name, project_id, deploy_id, detail)

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT * FROM history ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            HistoryEntry(
                r["at"],
                r["name"],
                r["project_id"],
                r["action"],
                r["outcome"],
                r["deploy_id"],
                r["detail"],
            )
            for r in rows
        ]

    # -- plans -----------------------------------------------------------------------

    def claim_plan(self, nonce: str) -> bool:
        """Mark a saved plan as applied; False if it was applied before."""
        with self._tx() as db:
            try:
                db.execute("INSERT INTO applied_plans VALUES (?, ?)", (nonce, time.time()))
            except sqlite3.IntegrityError:
                return False
        return True


def state_path(path: str | None) -> str:
    """The state database: `--state`, else RECONCILER_STATE, else the default."""
    return path or os.environ.get("RECONCILER_STATE") or DEFAULT_STATE_PATH


def manifest_cache_path(state: str) -> str:
    """Beside the state database: parsed manifests kept between runs (no secrets)."""
    directory, name = os.path.split(state)
    return os.path.join(directory, f"{os.path.splitext(name)[0]}.manifest-cache.json")


def open_store(path: str | None) -> SqliteStateStore:
    return SqliteStateStore(state_path(path))
