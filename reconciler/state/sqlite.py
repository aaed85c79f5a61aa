"""The SQLite state store: the embedded default, and the only module that imports sqlite3.

One file, WAL, `synchronous=FULL` while an intent is written, so it is on disk before the
create it announces is sent.  A SQLite store holds one workspace; its lock is a row with a
heartbeat (two processes on one machine take turns).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import StateError
from reconciler.model import Intent, Record
from reconciler.state import (
    DEFAULT_WORKSPACE,
    HistoryEntry,
    LockHolder,
    SoleLeader,
    StateSnapshot,
    format_time,
)
from reconciler.state.heartbeat import HeartbeatLock

if TYPE_CHECKING:
    from reconciler.model.promotion import Candidate

SCHEMA_VERSION = 7

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
    # Day 2: what a replace diffs against, what a prune does, and the replace/prune journal.
    2: """
    ALTER TABLE deployments ADD COLUMN spec_json TEXT;
    ALTER TABLE deployments ADD COLUMN on_delete TEXT NOT NULL DEFAULT 'stop';
    ALTER TABLE deployments ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deployments ADD COLUMN source_modified TEXT;
    ALTER TABLE intents ADD COLUMN kind TEXT NOT NULL DEFAULT 'create';
    ALTER TABLE intents ADD COLUMN old_deploy_id TEXT;
    ALTER TABLE intents ADD COLUMN spec_json TEXT;
    ALTER TABLE intents ADD COLUMN on_delete TEXT NOT NULL DEFAULT 'stop';
    """,
    # Restart backoff, persisted so a crash loop is not reset by a restart of ours.
    3: """
    ALTER TABLE deployments ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deployments ADD COLUMN last_restart_at REAL;
    """,
    # GitOps: the commit that asked for each action (DESIGN §15).
    4: """
    ALTER TABLE deployments ADD COLUMN revision TEXT;
    ALTER TABLE intents ADD COLUMN revision TEXT;
    ALTER TABLE history ADD COLUMN revision TEXT;
    """,
    # Deploy windows: a deployment's window, recorded so that a prune stays gated by it.
    5: """
    ALTER TABLE deployments ADD COLUMN window_json TEXT;
    """,
    # Paper first: the code each deployment runs, and the candidates with their evidence.
    6: """
    ALTER TABLE deployments ADD COLUMN digest TEXT;
    ALTER TABLE intents ADD COLUMN digest TEXT;
    CREATE TABLE candidates (
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (name, digest)
    );
    """,
    # Ownership after a crash: when a create sent under an intent can no longer land.  An
    # intent left open by an older version may have sent one: it gets the longest span a
    # create of that version could take (compile, attempts, timeouts), from its start.
    7: """
    ALTER TABLE intents ADD COLUMN lands_by REAL;
    UPDATE intents SET lands_by = created_at + 900 WHERE closed_at IS NULL;
    """,
}

_RECORD_COLUMNS = (
    "name", "project_id", "spec_hash", "deploy_id", "owned", "compile_id", "node_id",
    "compile_verified", "created_at", "updated_at", "last_action", "last_outcome",
    "spec_json", "on_delete", "protected", "source_modified", "restarts", "last_restart_at",
    "revision", "window_json", "digest",
)  # fmt: skip
_INTENT_COLUMNS = (
    "attempt_id", "name", "project_id", "spec_hash", "created_at", "kind", "old_deploy_id",
    "spec_json", "on_delete", "revision", "digest", "lands_by",
)  # fmt: skip


class _Stamp:
    """An intent's `lands_by`, queued for the next combined durable write."""

    __slots__ = ("attempt_id", "done", "error", "lands_by")

    def __init__(self, attempt_id: str, lands_by: float) -> None:
        self.attempt_id, self.lands_by = attempt_id, lands_by
        self.done = False
        self.error: sqlite3.Error | None = None


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
        spec_json=row["spec_json"],
        on_delete=row["on_delete"],
        protected=bool(row["protected"]),
        source_modified=row["source_modified"],
        restarts=row["restarts"],
        last_restart_at=row["last_restart_at"],
        revision=row["revision"],
        window_json=row["window_json"],
        digest=row["digest"],
    )


def _intent_from_row(row: sqlite3.Row) -> Intent:
    return Intent(**{column: row[column] for column in _INTENT_COLUMNS})


def _history_from_row(r: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(
        r["at"], r["name"], r["project_id"], r["action"], r["outcome"], r["deploy_id"],
        r["detail"], r["revision"],
    )  # fmt: skip


class SqliteStateStore:
    """SQLite state file; safe to share between threads of one process."""

    LOCK_TTL = 30.0  # seconds a lock lives without a heartbeat

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mutex = threading.RLock()
        self._stamps_lock = threading.Lock()
        self._stamps: list[_Stamp] = []
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
        self._apply_lock = HeartbeatLock(_LockRow(self))

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def workspace(self) -> str:
        return DEFAULT_WORKSPACE  # a SQLite file holds one workspace

    # -- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction.  `durable`: on disk (fsync) before this returns.

        Only an intent must be durable before the API call it announces.  Everything
        else (closing an intent, history, records) can be re-derived from live state if a
        crash loses it: a lost close leaves the intent open, and the next run resolves it
        from live state.  Those commits skip the fsync (WAL, synchronous=NORMAL: atomic,
        and durable at the next fsync).
        """
        with self._mutex:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

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
                self._db.execute("PRAGMA synchronous=NORMAL")
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
        self._apply_lock.release()
        with self._mutex:
            self._db.close()

    # -- lock ------------------------------------------------------------------------

    def lock(self, timeout: float = 60.0) -> contextlib.AbstractContextManager[None]:
        """Hold the store's apply lock; wait at most `timeout` seconds for it."""
        return self._apply_lock.held(timeout)

    def _acquire_lock(self, timeout: float) -> None:
        """Take the lock without a `with` (a process that means to die holding it)."""
        self._apply_lock.acquire(timeout)

    # -- records ---------------------------------------------------------------------

    def records(self) -> dict[str, Record]:
        with self._mutex:
            rows = self._db.execute("SELECT * FROM deployments ORDER BY name").fetchall()
        return {row["name"]: _record_from_row(row) for row in rows}

    def put_record(self, record: Record) -> None:
        with self._tx() as db:
            self._put(db, record)

    def forget_record(
        self,
        name: str,
        *,
        action: str,
        outcome: str,
        detail: str,
        revision: str | None = None,
    ) -> None:
        """Drop a record (its deployment was pruned, or is released), with history."""
        with self._tx() as db:
            row = db.execute(
                "SELECT project_id, deploy_id FROM deployments WHERE name = ?", (name,)
            ).fetchone()
            db.execute("DELETE FROM deployments WHERE name = ?", (name,))
            self._history(
                db,
                time.time(),
                action,
                outcome,
                name,
                row["project_id"] if row else None,
                row["deploy_id"] if row else None,
                detail,
                revision,
            )

    def rename_record(self, old: str, record: Record, *, detail: str) -> None:
        """Move the record of `old` to `record.name` (a renamed manifest), in one
        transaction, with history under both names."""
        with self._tx() as db:
            db.execute("DELETE FROM deployments WHERE name = ?", (old,))
            self._put(db, record)
            at = time.time()
            for name in (old, record.name):
                self._history(
                    db, at, "rename", "renamed", name, record.project_id, record.deploy_id,
                    detail, record.revision,
                )  # fmt: skip

    @staticmethod
    def _put(db: sqlite3.Connection, record: Record) -> None:
        values = {column: getattr(record, column) for column in _RECORD_COLUMNS}
        values["owned"] = int(record.owned)
        values["compile_verified"] = int(record.compile_verified)
        values["protected"] = int(record.protected)
        db.execute(
            f"INSERT OR REPLACE INTO deployments ({', '.join(_RECORD_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in _RECORD_COLUMNS)})",
            values,
        )

    # -- intents ---------------------------------------------------------------------

    def open_intents(self) -> list[Intent]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT * FROM intents WHERE closed_at IS NULL ORDER BY created_at"
            ).fetchall()
        return [_intent_from_row(r) for r in rows]

    def begin_intents(self, items: Sequence[tuple[str, int, str] | Intent]) -> list[Intent]:
        """Journal mutations durably (fsync), in one transaction, before any is sent.

        An item is an `Intent` (see `Intent.new`) or, for a create, (name, projectId,
        spec hash).
        """
        now = time.time()
        intents = [
            item if isinstance(item, Intent) else Intent.new(*item, now=now) for item in items
        ]
        with self._tx(durable=True) as db:
            db.executemany(
                f"INSERT INTO intents ({', '.join(_INTENT_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _INTENT_COLUMNS)})",
                [{c: getattr(i, c) for c in _INTENT_COLUMNS} for i in intents],
            )
        return intents

    def mark_sending(self, intent: Intent, lands_by: float) -> None:
        """Durably (fsync), before a create is sent under `intent`: the latest time it can
        still take effect.  A run resolving the intent after a crash waits until then."""
        stamp = _Stamp(intent.attempt_id, lands_by)
        with self._stamps_lock:
            self._stamps.append(stamp)
        with self._mutex:
            if not stamp.done:
                # Flat combining: whichever thread gets the store first writes every stamp
                # queued meanwhile, in one transaction and one fsync (64 concurrent creates
                # cost a handful of fsyncs, not 64).
                with self._stamps_lock:
                    batch, self._stamps = self._stamps, []
                error: sqlite3.Error | None = None
                try:
                    with self._tx(durable=True) as db:
                        db.executemany(
                            "UPDATE intents SET lands_by = MAX(COALESCE(lands_by, 0), ?) "
                            "WHERE attempt_id = ?",
                            [(s.lands_by, s.attempt_id) for s in batch],
                        )
                except sqlite3.Error as failed:
                    error = failed
                for item in batch:
                    item.done, item.error = True, error
        if stamp.error is not None:
            raise StateError(f"cannot journal a create about to be sent: {stamp.error}")

    def close_intent(
        self,
        intent: Intent,
        outcome: str,
        *,
        record: Record | None = None,
        detail: str | None = None,
        forget: bool = False,
    ) -> None:
        """Close an intent, record its result (or drop the record) and append history,
        atomically."""
        now = time.time()
        deploy_id = record.deploy_id if record else intent.old_deploy_id
        with self._tx() as db:
            db.execute(
                "UPDATE intents SET closed_at = ?, outcome = ?, deploy_id = ? WHERE attempt_id = ?",
                (now, outcome, deploy_id, intent.attempt_id),
            )
            if record is not None:
                self._put(db, record)
            elif forget:
                db.execute("DELETE FROM deployments WHERE name = ?", (intent.name,))
            self._history(
                db, now, intent.kind, outcome, intent.name, intent.project_id, deploy_id,
                detail, intent.revision,
            )  # fmt: skip

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
        revision: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO history(at, name, project_id, action, outcome, deploy_id, detail, "
            "revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, name, project_id, action, outcome, deploy_id, detail, revision),
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
        revision: str | None = None,
    ) -> None:
        with self._tx() as db:
            self._history(
                db, time.time(), action, outcome, name, project_id, deploy_id, detail, revision
            )

    def history(self, limit: int = 100, name: str | None = None) -> list[HistoryEntry]:
        """The latest `limit` entries (of one deployment name, if given), newest first."""
        where, args = ("WHERE name = ?", (name, limit)) if name is not None else ("", (limit,))
        with self._mutex:
            rows = self._db.execute(
                f"SELECT * FROM history {where} ORDER BY id DESC LIMIT ?", args
            ).fetchall()
        return [_history_from_row(r) for r in rows]

    def stopped_by_us(self, deploy_ids: Collection[str]) -> set[str]:
        """Which of these deployments the journal shows this reconciler stopping (a prune,
        or a replace's stop): a stop of ours, never "someone else's" (DESIGN §11)."""
        ids = sorted(set(deploy_ids))
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        with self._mutex:
            rows = self._db.execute(
                f"SELECT DISTINCT deploy_id FROM history WHERE deploy_id IN ({marks}) AND "
                "((action = 'prune' AND outcome = 'pruned') OR "
                "(action = 'stop' AND outcome = 'stopped'))",
                ids,
            ).fetchall()
        return {str(row["deploy_id"]) for row in rows}

    # -- candidates (paper first) ------------------------------------------------------

    def candidates(self, name: str | None = None) -> list[Candidate]:
        """Every candidate offered to `name` (or to any manifest), oldest first."""
        from reconciler.model.promotion import Candidate

        where, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        with self._mutex:
            rows = self._db.execute(
                f"SELECT name, digest, data FROM candidates {where} ORDER BY updated_at", args
            ).fetchall()
        return [Candidate.from_json(r["name"], r["digest"], r["data"]) for r in rows]

    def put_candidates(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            return
        with self._tx() as db:
            self._put_candidates(db, candidates)

    @staticmethod
    def _put_candidates(db: sqlite3.Connection, candidates: Sequence[Candidate]) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO candidates(name, digest, data, updated_at) VALUES (?, ?, ?, ?)",
            [(c.name, c.digest, c.to_json(), c.seen_at) for c in candidates],
        )

    # -- plans -----------------------------------------------------------------------

    def claim_plan(self, nonce: str) -> bool:
        """Mark a saved plan as applied; False if it was applied before."""
        with self._tx() as db:
            try:
                db.execute("INSERT INTO applied_plans VALUES (?, ?)", (nonce, time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    # -- administration (`reconciler state`) ------------------------------------------

    def lock_holder(self) -> LockHolder | None:
        """The apply lock's holder, None when the lock is free."""
        with self._mutex:
            row = self._db.execute("SELECT * FROM lock WHERE id = 1").fetchone()
        if row is None:
            return None
        pid, host = int(row["pid"]), str(row["host"])
        if row["expires_at"] < time.time():
            alive: bool | None = False
            why = f"its heartbeat stopped at {format_time(row['expires_at'] - self.LOCK_TTL)}"
        elif host == socket.gethostname():
            alive = _pid_alive(pid)
            why = "its process is running" if alive else "its process is gone"
        else:
            alive, why = True, "its heartbeat is recent"
        return LockHolder(pid, host, float(row["acquired_at"]), alive, why)

    def break_lock(self) -> None:
        """Drop the apply lock whoever holds it (`reconciler state unlock`)."""
        with self._tx() as db:
            db.execute("DELETE FROM lock WHERE id = 1")

    def export_state(self) -> StateSnapshot:
        with self._mutex:
            history = self._db.execute("SELECT * FROM history ORDER BY id").fetchall()
            plans = self._db.execute(
                "SELECT nonce, applied_at FROM applied_plans ORDER BY applied_at"
            ).fetchall()
        return StateSnapshot(
            records=list(self.records().values()),
            intents=self.open_intents(),
            history=[_history_from_row(r) for r in history],
            plans=[(str(r["nonce"]), float(r["applied_at"])) for r in plans],
            candidates=self.candidates(),
        )

    def import_state(self, snapshot: StateSnapshot) -> None:
        """Make this store a copy of `snapshot` (what it held before is replaced)."""
        with self._tx(durable=True) as db:
            for table in ("deployments", "intents", "history", "applied_plans", "candidates"):
                db.execute(f"DELETE FROM {table}")
            for record in snapshot.records:
                self._put(db, record)
            db.executemany(
                f"INSERT INTO intents ({', '.join(_INTENT_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _INTENT_COLUMNS)})",
                [{c: getattr(i, c) for c in _INTENT_COLUMNS} for i in snapshot.intents],
            )
            db.executemany(
                "INSERT INTO history(at, name, project_id, action, outcome, deploy_id, detail, "
                "revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [dataclasses.astuple(h) for h in snapshot.history],
            )
            db.executemany("INSERT INTO applied_plans VALUES (?, ?)", snapshot.plans)
            self._put_candidates(db, snapshot.candidates)

    def leadership(self, lease: float) -> SoleLeader:
        """One file, one machine: the daemon using it always leads."""
        return SoleLeader()


class _LockRow:
    """The apply lock as the row `lock` (id 1) with an expiry, renewed every TTL/3.

    Free when it is missing, expired, or held by a process of this host that is gone.  It
    is never lost while held: a renewal that fails is tried again at the next beat.
    """

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store
        self._seen: sqlite3.Row | None = None  # the holder the last attempt found

    @property
    def heartbeat(self) -> float:
        return self._store.LOCK_TTL / 3

    def attempt(self, token: str) -> Callable[[], bool]:
        host = socket.gethostname()

        def take() -> bool:
            now = time.time()
            with self._store._tx() as db:
                row = db.execute("SELECT * FROM lock WHERE id = 1").fetchone()
                free = (
                    row is None
                    or row["expires_at"] < now
                    or (row["host"] == host and not _pid_alive(row["pid"]))
                )
                if free:
                    db.execute(
                        "INSERT OR REPLACE INTO lock VALUES (1, ?, ?, ?, ?, ?)",
                        (token, os.getpid(), host, now, now + self._store.LOCK_TTL),
                    )
            self._seen = row
            return free

        return take

    def holder(self) -> str:
        row = self._seen
        assert row is not None  # an attempt found the lock held
        since = format_time(row["acquired_at"])
        return f"pid {row['pid']} on {row['host']} since {since} ({self._store.path})"

    def renew(self, token: str) -> bool:
        with contextlib.suppress(sqlite3.Error), self._store._tx() as db:
            db.execute(
                "UPDATE lock SET expires_at = ? WHERE token = ?",
                (time.time() + self._store.LOCK_TTL, token),
            )
        return True

    def release(self, token: str) -> None:
        with contextlib.suppress(sqlite3.Error), self._store._tx() as db:
            db.execute("DELETE FROM lock WHERE token = ?", (token,))
