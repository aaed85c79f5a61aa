"""The PostgreSQL state store: shared state for many runners; the only module that imports
psycopg (an optional extra: `pip install 'qc-live-reconciler[postgres]'`).

One database holds any number of workspaces (`--workspace`); every row carries its
workspace.  The schema is versioned in `reconciler_meta` and migrated in the database, under
a transaction-level advisory lock so that runners starting together migrate once.

Durability: the session commits asynchronously (`synchronous_commit=off`), except an
intent's transaction, which is durable before the API call it announces is sent (and a
claimed plan nonce).  What else a server crash could lose (a closed intent, history, a
record) is re-derived from live state by the next run, as with SQLite.

The apply lock is a row (`reconciler_locks`) with a heartbeat, held by one connection: it
is free at once when that connection's backend is gone (its process died), after its TTL
when the holder stops renewing it (a partition, a stopped process), or when the holder was
a daemon whose leadership epoch has passed.  Never a file.

A lost connection is never silently replaced while the lock is held: the write fails with
a `StateError`, the engine sends nothing more, and intents already written stay open for
the next run to resolve from live state.

Highly available `watch` (`PostgresLeadership`): one lease row per workspace with an epoch
(a fencing token).  Every write of a daemon checks, in its transaction, that the lease
still has its epoch and has not expired; a leader that cannot renew stops acting at half
the lease, before any other daemon could take it over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from reconciler.errors import StateError, StateFencedError, StateLockedError
from reconciler.model import Intent, Record
from reconciler.state import (
    HistoryEntry,
    LockHolder,
    StateSnapshot,
    redact,
)

log = logging.getLogger("reconciler.state")

Params = Sequence[Any] | Mapping[str, Any]  # a statement's parameters

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE reconciler_deployments (
        workspace text NOT NULL,
        name text NOT NULL,
        project_id bigint NOT NULL,
        spec_hash text NOT NULL,
        deploy_id text,
        owned boolean NOT NULL,
        compile_id text,
        node_id text,
        compile_verified boolean NOT NULL DEFAULT true,
        created_at double precision,
        updated_at double precision,
        last_action text,
        last_outcome text,
        spec_json text,
        on_delete text NOT NULL DEFAULT 'stop',
        protected boolean NOT NULL DEFAULT false,
        source_modified text,
        restarts integer NOT NULL DEFAULT 0,
        last_restart_at double precision,
        PRIMARY KEY (workspace, name)
    );
    CREATE TABLE reconciler_intents (
        workspace text NOT NULL,
        attempt_id text NOT NULL,
        name text NOT NULL,
        project_id bigint NOT NULL,
        spec_hash text NOT NULL,
        created_at double precision NOT NULL,
        kind text NOT NULL DEFAULT 'create',
        old_deploy_id text,
        spec_json text,
        on_delete text NOT NULL DEFAULT 'stop',
        closed_at double precision,
        outcome text,
        deploy_id text,
        PRIMARY KEY (workspace, attempt_id)
    );
    CREATE INDEX reconciler_intents_open ON reconciler_intents (workspace, created_at)
        WHERE closed_at IS NULL;
    CREATE TABLE reconciler_history (
        id bigserial PRIMARY KEY,
        workspace text NOT NULL,
        at double precision NOT NULL,
        name text,
        project_id bigint,
        action text NOT NULL,
        outcome text NOT NULL,
        deploy_id text,
        detail text
    );
    CREATE INDEX reconciler_history_by_workspace ON reconciler_history (workspace, id);
    CREATE TABLE reconciler_applied_plans (
        workspace text NOT NULL,
        nonce text NOT NULL,
        applied_at double precision NOT NULL,
        PRIMARY KEY (workspace, nonce)
    );
    CREATE TABLE reconciler_locks (
        workspace text PRIMARY KEY,
        token text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        backend_pid integer NOT NULL,
        backend_start timestamptz,
        epoch bigint,
        acquired_at double precision NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE reconciler_leases (
        workspace text PRIMARY KEY,
        holder text NOT NULL,
        epoch bigint NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        acquired_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    -- Fencing: the first statement of a daemon's every write transaction.
    CREATE FUNCTION reconciler_fence(p_workspace text, p_holder text, p_epoch bigint)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM reconciler_leases
        WHERE workspace = p_workspace AND holder = p_holder AND epoch = p_epoch
          AND expires_at > clock_timestamp()
        FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the lease of workspace % has passed from epoch %',
                p_workspace, p_epoch USING ERRCODE = 'RF001';
        END IF;
    END $$;
    -- The first statement of a run's intents: its apply lock is still its own.
    CREATE FUNCTION reconciler_holds_lock(p_workspace text, p_token text)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM reconciler_locks
        WHERE workspace = p_workspace AND token = p_token AND expires_at > clock_timestamp()
        FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the apply lock of workspace % expired or was taken over',
                p_workspace USING ERRCODE = 'RL001';
        END IF;
    END $$
    """,
}

_RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
_INTENT_COLUMNS = tuple(f.name for f in dataclasses.fields(Intent))
_HISTORY_COLUMNS = ("at", "name", "project_id", "action", "outcome", "deploy_id", "detail")

_RECORD_HEAD = f"INSERT INTO reconciler_deployments (workspace, {', '.join(_RECORD_COLUMNS)})"
_RECORD_TAIL = " ON CONFLICT (workspace, name) DO UPDATE SET " + ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _RECORD_COLUMNS if c != "name"
)
_PUT_RECORD = (
    f"{_RECORD_HEAD} VALUES (%s, {', '.join(['%s'] * len(_RECORD_COLUMNS))}){_RECORD_TAIL}"
)
_INTENT_HEAD = f"INSERT INTO reconciler_intents (workspace, {', '.join(_INTENT_COLUMNS)})"
_HISTORY_HEAD = f"INSERT INTO reconciler_history (workspace, {', '.join(_HISTORY_COLUMNS)})"
_DELETE_RECORD = "DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s"
_FORGET_RECORD = """
WITH gone AS (
    DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s
    RETURNING project_id, deploy_id
)
INSERT INTO reconciler_history (workspace, at, name, project_id, action, outcome, deploy_id,
    detail)
SELECT %s, %s, %s, (SELECT project_id FROM gone), %s, %s, (SELECT deploy_id FROM gone), %s
"""
_INSERT_HISTORY = f"{_HISTORY_HEAD} VALUES (%s, {', '.join(['%s'] * len(_HISTORY_COLUMNS))})"


def _values(head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> list[tuple[str, Params]]:
    """One multi-row INSERT (none for no rows)."""
    if not rows:
        return []
    one = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
    return [(f"{head} VALUES {', '.join([one] * len(rows))}{tail}", [v for r in rows for v in r])]


# The apply lock: taken when free, expired, held by a connection that is gone, or held by
# a daemon whose leadership epoch has passed.
_TAKE_LOCK = """
INSERT INTO reconciler_locks AS l (workspace, token, pid, host, backend_pid, backend_start,
    epoch, acquired_at, heartbeat_at, expires_at)
SELECT %(ws)s, %(token)s, %(pid)s, %(host)s, pg_backend_pid(), a.backend_start, %(epoch)s,
    %(now)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(ttl)s)
FROM (SELECT max(backend_start) AS backend_start FROM pg_stat_activity
      WHERE pid = pg_backend_pid()) a
ON CONFLICT (workspace) DO UPDATE SET
    token = EXCLUDED.token, pid = EXCLUDED.pid, host = EXCLUDED.host,
    backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start,
    epoch = EXCLUDED.epoch, acquired_at = EXCLUDED.acquired_at,
    heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
   OR NOT EXISTS (SELECT 1 FROM pg_stat_activity s
                  WHERE s.pid = l.backend_pid AND s.backend_start = l.backend_start)
   OR l.epoch < (SELECT e.epoch FROM reconciler_leases e WHERE e.workspace = l.workspace)
RETURNING token
"""
_LOCK_HOLDER = """
SELECT l.pid, l.host, l.acquired_at,
       l.expires_at > clock_timestamp() AS fresh,
       EXISTS (SELECT 1 FROM pg_stat_activity s
               WHERE s.pid = l.backend_pid AND s.backend_start = l.backend_start) AS connected,
       l.epoch < (SELECT e.epoch FROM reconciler_leases e WHERE e.workspace = l.workspace)
           AS superseded,
       extract(epoch FROM clock_timestamp() - l.heartbeat_at) AS heartbeat_age
FROM reconciler_locks l WHERE l.workspace = %s
"""
_TAKE_LEASE = """
INSERT INTO reconciler_leases AS l (workspace, holder, epoch, pid, host, acquired_at,
    renewed_at, expires_at)
VALUES (%(ws)s, %(holder)s, 1, %(pid)s, %(host)s, clock_timestamp(), clock_timestamp(),
    clock_timestamp() + make_interval(secs => %(lease)s))
ON CONFLICT (workspace) DO UPDATE SET
    holder = EXCLUDED.holder, epoch = l.epoch + 1, pid = EXCLUDED.pid, host = EXCLUDED.host,
    acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
RETURNING epoch
"""
_RENEW_LEASE = """
UPDATE reconciler_leases SET renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE workspace = %(ws)s AND holder = %(holder)s AND epoch = %(epoch)s
  AND expires_at > clock_timestamp()
RETURNING epoch
"""
_SESSION = (
    "SET synchronous_commit TO off; "
    "SET statement_timeout TO '60s'; "
    "SET idle_in_transaction_session_timeout TO '60s'; "
    # The server notices a client that vanished (a host crash, a partition) in ~25 s.
    "SET tcp_keepalives_idle TO 10; SET tcp_keepalives_interval TO 5; "
    "SET tcp_keepalives_count TO 3"
)
# libpq connection defaults, unless the URL sets them: a bounded connect, and a socket
# that gives up on an unreachable server instead of waiting for TCP's ~15 minutes.
_CLIENT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


class _Pending:
    """A write queued for the next combined transaction."""

    __slots__ = ("done", "error", "statements")

    def __init__(self, statements: Sequence[tuple[str, Params]]) -> None:
        self.statements = statements
        self.done = False
        self.error: StateError | None = None


class PostgresStateStore:
    """One workspace of a PostgreSQL database; safe to share between threads of one process."""

    LOCK_TTL = 30.0  # seconds the apply lock lives without a heartbeat
    LOCK_HEARTBEAT = 5.0

    def __init__(self, url: str, workspace: str) -> None:
        self._url = url
        self._workspace = workspace
        self._location = redact(url)
        try:
            params = pg_conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            raise StateError(f"cannot use state {self._location}: not a valid URL") from None
        self._secrets = [str(v) for k, v in params.items() if k == "password" and v]
        if os.environ.get("PGPASSWORD"):
            self._secrets.append(os.environ["PGPASSWORD"])
        self._connect_args = {k: v for k, v in _CLIENT_DEFAULTS.items() if k not in params}
        self._mutex = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock_token: str | None = None
        self._lock_lost: str | None = None
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        # Set by a daemon's leadership: (holder, epoch) every write is fenced with.
        self._fence: tuple[str, int] | None = None
        with self._mutex:
            self._connection()

    @property
    def location(self) -> str:
        return self._location

    @property
    def workspace(self) -> str:
        return self._workspace

    # -- plumbing --------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.replace(self._url, self._location)

    def describe_error(self, doing: str, error: BaseException) -> StateError:
        detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        return StateError(
            f"state database {self._location} (workspace {self._workspace}): {doing}: "
            f"{self._scrub(detail) or type(error).__name__}"
        )

    def connect(self, purpose: str) -> psycopg.Connection[tuple[Any, ...]]:
        """A new session (autocommit; asynchronous commits unless a transaction says)."""
        name = f"reconciler {purpose} {self._workspace} pid {os.getpid()}"[:63]
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, application_name=name, **self._connect_args
            )
        except psycopg.Error as error:
            raise self.describe_error("cannot connect", error) from None
        try:
            conn.execute(_SESSION)
        except psycopg.Error as error:
            conn.close()
            raise self.describe_error("cannot set up the session", error) from None
        return conn

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The store's session (under `_mutex`).  A lost one is replaced only while no lock
        is held: mid-apply, a lost connection stops the run (nothing more is sent)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            if self._lock_token is not None:
                self._lock_lost = "the connection to the state database was lost"
                raise StateError(
                    f"lost the connection to the state database {self._location} (workspace "
                    f"{self._workspace}) while holding its lock: nothing more is sent; the next "
                    "run resolves the open intents from live state"
                )
            conn.close()
            self._conn = None
        conn = self.connect("store")
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()  # refused (a newer schema, say): no session left to the collector
            raise
        self._conn = conn
        return conn

    def _write(
        self,
        doing: str,
        statements: Sequence[tuple[str, Params]],
        *,
        durable: bool = False,
        own_lock: bool = False,
    ) -> psycopg.ClientCursor[tuple[Any, ...]]:
        """Statements sent as one message, which PostgreSQL runs as one transaction.

        One message, so no round trip happens inside the transaction: a client cut off
        mid-way leaves no transaction open on the server, holding row locks a failover
        would wait for.  A daemon's writes begin with its fence (its epoch must still
        lead); `own_lock`: with the check that this run still holds its apply lock;
        `durable`: committed synchronously (on the server's disk) before this returns.
        The cursor is left on the last statement's result.
        """
        with self._mutex:
            conn = self._connection()
            cur = psycopg.ClientCursor(conn)
            prefix: list[tuple[str, Params]] = []
            if durable:
                prefix.append(("SET LOCAL synchronous_commit TO on", ()))
            if self._fence is not None:
                prefix.append(
                    ("SELECT reconciler_fence(%s, %s, %s)", (self._workspace, *self._fence))
                )
            if own_lock and self._lock_token is not None:
                if self._lock_lost is not None:
                    raise self._lost_lock(self._lock_lost)
                prefix.append(
                    ("SELECT reconciler_holds_lock(%s, %s)", (self._workspace, self._lock_token))
                )
            try:
                text = ";\n".join(
                    cur.mogrify(query, args) if args else query
                    for query, args in (*prefix, *statements)
                )
                cur.execute(text.encode(), prepare=False)
                while cur.nextset():
                    pass
            except psycopg.Error as error:
                raise self._failed(error, doing) from None
            return cur

    def _failed(self, error: psycopg.Error, doing: str) -> StateError:
        """The StateError for a failed write: fenced, lock lost, connection lost, other."""
        if error.sqlstate == "RF001":
            epoch = self._fence[1] if self._fence else 0
            return StateFencedError(
                f"this daemon no longer leads workspace {self._workspace} (epoch {epoch} "
                "passed or expired): nothing more is written or sent"
            )
        if error.sqlstate == "RL001":
            self._lock_lost = "it expired or was taken over"
            return self._lost_lock(self._lock_lost)
        conn = self._conn
        if conn is None or not (conn.closed or conn.broken):
            return self.describe_error(doing, error)
        if self._lock_token is None:
            return self.describe_error(f"{doing}: the connection was lost", error)
        self._lock_lost = "the connection to the state database was lost"
        return self.describe_error(
            f"{doing}: the connection was lost; nothing more is sent, the next run resolves "
            "open intents from live state",
            error,
        )

    def _lost_lock(self, why: str) -> StateLockedError:
        return StateLockedError(
            f"lost the state lock of workspace {self._workspace} ({why}): nothing was sent"
        )

    def _read(self, doing: str, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._mutex:
            conn = self._connection()
            try:
                return conn.execute(query, args).fetchall()
            except psycopg.Error as error:
                raise self.describe_error(doing, error) from None

    def _combined(self, *statements: tuple[str, Params]) -> None:
        """Writes whose loss a crash may cause (a closed intent, a record, history: the
        next run re-derives them from live state), committed together with the writes
        other threads queued meanwhile, in one transaction and one round trip.

        Returns once they are committed; raises their transaction's error.  Whichever
        waiting thread gets the connection first writes everything queued (flat combining),
        so 64 workers closing intents cost a handful of transactions, not 64.
        """
        pending = _Pending(statements)
        with self._queue_lock:
            self._queue.append(pending)
        with self._mutex:
            if not pending.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                error: StateError | None = None
                try:
                    self._write(
                        "cannot record outcomes", [s for item in batch for s in item.statements]
                    )
                except StateError as failed:
                    error = failed
                for item in batch:
                    item.done, item.error = True, error
        if pending.error is not None:
            raise pending.error

    def set_fence(self, holder: str, epoch: int) -> None:
        """From now on every write checks that `holder` still leads with `epoch`."""
        self._fence = (holder, epoch)

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        try:
            row = conn.execute(
                "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
            ).fetchone()
            current = int(row[0]) if row else 0
        except psycopg.errors.UndefinedTable:
            current = 0
        except psycopg.Error as error:
            raise self.describe_error("cannot read the schema version", error) from None
        if current == SCHEMA_VERSION:
            return
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('reconciler:migrate:' || "
                    "current_schema()))"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS reconciler_meta "
                    "(key text PRIMARY KEY, value text NOT NULL)"
                )
                row = conn.execute(
                    "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StateError(
                        f"state database {self._location} has schema version {current}, newer "
                        f"than this reconciler understands ({SCHEMA_VERSION}); upgrade "
                        "qc-live-reconciler"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    conn.execute(_MIGRATIONS[version].encode())
                conn.execute(
                    "INSERT INTO reconciler_meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(SCHEMA_VERSION),),
                )
        except psycopg.Error as error:
            raise self.describe_error("cannot migrate the schema", error) from None

    def close(self) -> None:
        self._release_lock()
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- lock ------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold the workspace's apply lock; wait at most `timeout` seconds for it."""
        self._acquire_lock(timeout)
        try:
            yield
        finally:
            self._release_lock()

    def _acquire_lock(self, timeout: float) -> None:
        token = uuid.uuid4().hex
        args = {
            "ws": self._workspace,
            "token": token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "epoch": self._fence[1] if self._fence else None,
            "now": time.time(),
            "ttl": self.LOCK_TTL,
        }
        deadline = time.monotonic() + timeout
        while True:
            cur = self._write("cannot take the lock", [(_TAKE_LOCK, args)])
            if cur.fetchone() is not None:
                break
            if time.monotonic() >= deadline:
                holder = self.lock_holder()
                who = holder.describe() if holder else "another reconciler"
                raise StateLockedError(
                    f"state is locked by {who} ({self._location}, workspace "
                    f"{self._workspace}); waited {timeout:g}s; if that process is gone, "
                    "`reconciler state unlock` frees it"
                )
            time.sleep(0.1)
        self._lock_token, self._lock_lost = token, None
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, name="state-lock-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(self.LOCK_HEARTBEAT):
            try:
                cur = self._write(
                    "cannot renew the lock",
                    [
                        (
                            "UPDATE reconciler_locks SET heartbeat_at = clock_timestamp(), "
                            "expires_at = clock_timestamp() + make_interval(secs => %s) "
                            "WHERE workspace = %s AND token = %s",
                            (self.LOCK_TTL, self._workspace, self._lock_token),
                        )
                    ],
                )
                kept = cur.rowcount == 1
            except StateError as error:
                self._lock_lost = str(error)
                return
            if not kept:
                self._lock_lost = "the lock was taken over (`state unlock`, or it expired)"
                log.error("state lock lost: %s", self._lock_lost, extra={"event": "lock_lost"})
                return

    def _release_lock(self) -> None:
        token = self._lock_token
        if token is None:
            return
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        self._lock_token = None
        if self._lock_lost is None:
            with contextlib.suppress(StateError):
                self._write(
                    "cannot release the lock",
                    [
                        (
                            "DELETE FROM reconciler_locks WHERE workspace = %s AND token = %s",
                            (self._workspace, token),
                        )
                    ],
                )
        self._lock_lost = None

    # -- records ---------------------------------------------------------------------

    def records(self) -> dict[str, Record]:
        rows = self._read(
            "cannot read records",
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM reconciler_deployments "
            "WHERE workspace = %s ORDER BY name",
            (self._workspace,),
        )
        return {row[0]: Record(*row) for row in rows}

    def put_record(self, record: Record) -> None:
        self._combined((_PUT_RECORD, self._record_args(record)))

    def _record_args(self, record: Record) -> tuple[Any, ...]:
        return (self._workspace, *(getattr(record, c) for c in _RECORD_COLUMNS))

    def forget_record(self, name: str, *, action: str, outcome: str, detail: str) -> None:
        """Drop a record (its deployment was pruned, or is released), with history."""
        args = (self._workspace, name, self._workspace, time.time(), name, action, outcome,
                detail)  # fmt: skip
        self._combined((_FORGET_RECORD, args))

    def rename_record(self, old: str, record: Record, *, detail: str) -> None:
        """Move the record of `old` to `record.name` (a renamed manifest), in one
        transaction, with history under both names."""
        at, project, deploy = time.time(), record.project_id, record.deploy_id
        history = [
            (
                _INSERT_HISTORY,
                (self._workspace, at, name, project, "rename", "renamed", deploy, detail),
            )
            for name in (old, record.name)
        ]
        self._combined(
            (_DELETE_RECORD, (self._workspace, old)),
            (_PUT_RECORD, self._record_args(record)),
            *history,
        )

    # -- intents ---------------------------------------------------------------------

    def open_intents(self) -> list[Intent]:
        rows = self._read(
            "cannot read intents",
            f"SELECT {', '.join(_INTENT_COLUMNS)} FROM reconciler_intents "
            "WHERE workspace = %s AND closed_at IS NULL ORDER BY created_at",
            (self._workspace,),
        )
        return [Intent(*row) for row in rows]

    def begin_intents(self, items: Sequence[tuple[str, int, str] | Intent]) -> list[Intent]:
        """Journal mutations durably, in one transaction, before any is sent.

        Refused (StateLockedError) when this run's lock is no longer its own, and
        (StateFencedError) when a daemon's leadership has passed.
        """
        now = time.time()
        intents = [
            item if isinstance(item, Intent) else Intent.new(*item, now=now) for item in items
        ]
        rows = [(self._workspace, *(getattr(i, c) for c in _INTENT_COLUMNS)) for i in intents]
        if rows:
            self._write(
                "cannot write intents", _values(_INTENT_HEAD, rows), durable=True, own_lock=True
            )
        return intents

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
        atomically (in one transaction with other threads' writes of the moment)."""
        now = time.time()
        deploy_id = record.deploy_id if record else intent.old_deploy_id
        closing = (now, outcome, deploy_id, self._workspace, intent.attempt_id)
        history = (self._workspace, now, intent.name, intent.project_id, intent.kind, outcome,
                   deploy_id, detail)  # fmt: skip
        statements: list[tuple[str, Params]] = [
            (
                "UPDATE reconciler_intents SET closed_at = %s, outcome = %s, deploy_id = %s "
                "WHERE workspace = %s AND attempt_id = %s",
                closing,
            )
        ]
        if record is not None:
            statements.append((_PUT_RECORD, self._record_args(record)))
        elif forget:
            statements.append(
                (
                    "DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s",
                    (self._workspace, intent.name),
                )
            )
        statements.append((_INSERT_HISTORY, history))
        self._combined(*statements)

    # -- history ---------------------------------------------------------------------

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
        args = (self._workspace, time.time(), name, project_id, action, outcome, deploy_id,
                detail)  # fmt: skip
        self._combined((_INSERT_HISTORY, args))

    def history(self, limit: int = 100, name: str | None = None) -> list[HistoryEntry]:
        """The latest `limit` entries (of one deployment name, if given), newest first."""
        where = "workspace = %s" + (" AND name = %s" if name is not None else "")
        args = (self._workspace, name, limit) if name is not None else (self._workspace, limit)
        rows = self._read(
            "cannot read history",
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM reconciler_history "
            f"WHERE {where} ORDER BY id DESC LIMIT %s",
            args,
        )
        return [HistoryEntry(*row) for row in rows]

    def stopped_by_us(self, deploy_ids: Collection[str]) -> set[str]:
        """Which of these deployments the journal shows this reconciler stopping (a prune,
        or a replace's stop): a stop of ours, never "someone else's" (DESIGN §11)."""
        ids = sorted(set(deploy_ids))
        if not ids:
            return set()
        rows = self._read(
            "cannot read history",
            "SELECT DISTINCT deploy_id FROM reconciler_history WHERE workspace = %s AND "
            "deploy_id = ANY(%s) AND ((action = 'prune' AND outcome = 'pruned') OR "
            "(action = 'stop' AND outcome = 'stopped'))",
            (self._workspace, ids),
        )
        return {str(row[0]) for row in rows}

    # -- plans -----------------------------------------------------------------------

    def claim_plan(self, nonce: str) -> bool:
        """Mark a saved plan as applied; False if it was applied before."""
        cur = self._write(
            "cannot claim the plan",
            [
                (
                    "INSERT INTO reconciler_applied_plans VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (self._workspace, nonce, time.time()),
                )
            ],
            durable=True,
        )
        return cur.rowcount == 1

    # -- administration (`reconciler state`) ------------------------------------------

    def lock_holder(self) -> LockHolder | None:
        rows = self._read("cannot read the lock", _LOCK_HOLDER, (self._workspace,))
        if not rows:
            return None
        pid, host, since, fresh, connected, superseded, age = rows[0]
        if superseded:
            alive, why = False, "it was taken by a daemon that no longer leads"
        elif not connected:
            alive, why = False, "its database session is gone"
        elif not fresh:
            alive, why = False, f"its heartbeat stopped {float(age):.0f}s ago"
        else:
            alive, why = True, f"its session is connected, heartbeat {float(age):.0f}s ago"
        return LockHolder(int(pid), str(host), float(since), alive, why)

    def break_lock(self) -> None:
        """Drop the apply lock whoever holds it, and end the holder's session if it is
        still connected (`reconciler state unlock`): its writes are refused from then on."""
        cur = self._write(
            "cannot break the lock",
            [
                (
                    "DELETE FROM reconciler_locks WHERE workspace = %s "
                    "RETURNING backend_pid, backend_start",
                    (self._workspace,),
                )
            ],
        )
        row = cur.fetchone()
        if row is not None:
            with contextlib.suppress(StateError):
                self._read(
                    "cannot end the holder's session",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid = %s AND backend_start = %s AND pid <> pg_backend_pid()",
                    row,
                )

    def export_state(self) -> StateSnapshot:
        ws = (self._workspace,)
        history = self._read(
            "cannot read history",
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM reconciler_history "
            "WHERE workspace = %s ORDER BY id",
            ws,
        )
        plans = self._read(
            "cannot read plans",
            "SELECT nonce, applied_at FROM reconciler_applied_plans WHERE workspace = %s "
            "ORDER BY applied_at",
            ws,
        )
        return StateSnapshot(
            records=list(self.records().values()),
            intents=self.open_intents(),
            history=[HistoryEntry(*row) for row in history],
            plans=[(str(nonce), float(at)) for nonce, at in plans],
        )

    def import_state(self, snapshot: StateSnapshot) -> None:
        """Make this workspace a copy of `snapshot` (what it held before is replaced)."""
        ws = self._workspace
        statements: list[tuple[str, Params]] = [
            (f"DELETE FROM {table} WHERE workspace = %s", (ws,))
            for table in (
                "reconciler_deployments",
                "reconciler_intents",
                "reconciler_history",
                "reconciler_applied_plans",
            )
        ]
        statements += _values(
            _RECORD_HEAD, [self._record_args(r) for r in snapshot.records], _RECORD_TAIL
        )
        intents = [(ws, *(getattr(i, c) for c in _INTENT_COLUMNS)) for i in snapshot.intents]
        statements += _values(_INTENT_HEAD, intents)
        statements += _values(
            _HISTORY_HEAD,
            [(ws, *(getattr(h, c) for c in _HISTORY_COLUMNS)) for h in snapshot.history],
        )
        statements += _values(
            "INSERT INTO reconciler_applied_plans", [(ws, n, at) for n, at in snapshot.plans]
        )
        self._write("cannot import state", statements, durable=True)

    def leadership(self, lease: float) -> PostgresLeadership:
        return PostgresLeadership(self, lease)


class PostgresLeadership:
    """One leader per workspace: a lease row with an epoch, renewed every lease/4.

    A standby tries to take the lease every lease/4, so a dead or partitioned leader is
    replaced within lease + lease/4 of its last renewal.  The leader may act only while its
    last successful renewal started less than lease/2 ago: a leader that cannot renew stops
    acting long before its lease could pass to another daemon, and every write it still
    makes is fenced by its epoch in the database.
    """

    def __init__(self, store: PostgresStateStore, lease: float) -> None:
        self.store = store
        self.lease = lease
        self.holder = uuid.uuid4().hex
        self.epoch: int | None = None
        self._renewed_at: float | None = None  # monotonic start of the last good renewal
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unreachable = False
        # Until this daemon leads, any write it attempts is refused.
        store.set_fence(self.holder, 0)

    @property
    def role(self) -> str:
        return "leader" if self.may_act() else "standby"

    def may_act(self) -> bool:
        renewed = self._renewed_at
        return (
            self.epoch is not None
            and renewed is not None
            and time.monotonic() - renewed < self.lease / 2
        )

    def start(self, on_change: Callable[[str], None]) -> None:
        """Campaign and renew in one thread; report role changes from another, which
        never waits on the database (a renewal can hang on a partitioned network: the
        role still turns to standby at lease/2)."""
        self._threads = [
            threading.Thread(target=self._campaign, name="leadership", daemon=True),
            threading.Thread(target=self._report, args=(on_change,), name="role", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _campaign(self) -> None:
        while True:
            self._step()
            if self._stop.wait(self.lease / 4):
                return

    def _report(self, on_change: Callable[[str], None]) -> None:
        role = ""
        while True:
            if self.role != role:
                role = self.role
                on_change(role)
            if self._stop.wait(min(0.1, self.lease / 8)):
                return

    def _args(self) -> dict[str, Any]:
        return {
            "ws": self.store.workspace,
            "holder": self.holder,
            "epoch": self.epoch,
            "lease": self.lease,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    def _step(self) -> None:
        started = time.monotonic()
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                if self._conn is not None:
                    self._conn.close()
                self._conn = self.store.connect("leadership")
            if self.epoch is not None:
                renewed = self._conn.execute(_RENEW_LEASE, self._args()).fetchone()
                self._unreachable = False
                if renewed is not None:
                    self._renewed_at = started
                    return
                log.warning(
                    "lost the lease of workspace %s (epoch %d)",
                    self.store.workspace,
                    self.epoch,
                    extra={"event": "lease_lost", "epoch": self.epoch},
                )
                self.epoch, self._renewed_at = None, None
            row = self._conn.execute(_TAKE_LEASE, self._args()).fetchone()
            if row is not None:
                epoch = int(row[0])
                self.store.set_fence(self.holder, epoch)  # before it may act
                self.epoch, self._renewed_at = epoch, started
        except (psycopg.Error, StateError) as error:
            if not self._unreachable:  # once per outage, not on every attempt
                self._unreachable = True
                message = (
                    error
                    if isinstance(error, StateError)
                    else (self.store.describe_error("cannot renew or take the lease", error))
                )
                log.warning("leadership: %s", message, extra={"event": "lease_unreachable"})
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        else:
            self._unreachable = False  # the take above answered

    def stop(self) -> None:
        """Stop campaigning; a leader hands the lease over at once (ends it now)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if any(thread.is_alive() for thread in self._threads):
            return  # a renewal hung on a partition: the lease expires by itself
        leading = self.may_act()
        self._renewed_at = None
        try:
            if leading and self._conn is not None and not self._conn.closed:
                self._conn.execute(
                    "UPDATE reconciler_leases SET expires_at = clock_timestamp() "
                    "WHERE workspace = %(ws)s AND holder = %(holder)s AND epoch = %(epoch)s",
                    self._args(),
                )
        except psycopg.Error:
            pass  # it expires by itself
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
