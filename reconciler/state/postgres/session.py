"""The session of a PostgreSQL store: its connection, the transactions every write is sent
in, and what a failure is told as.

Durability: the session commits asynchronously (`synchronous_commit=off`), except an
intent's transaction, which is durable before the API call it announces is sent (and a
claimed plan nonce).  What else a server crash could lose (a closed intent, history, a
record) is re-derived from live state by the next run, as with SQLite.

A lost connection is never silently replaced while the apply lock is held: the write fails
with a `StateError`, the engine sends nothing more, and intents already written stay open
for the next run to resolve from live state.

Fencing: a daemon's every write begins by checking, in its transaction, that its lease
still has its epoch (`set_fence`); an intent's, that this run still holds its apply lock.
Errors never show the URL's password (`describe_error`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from reconciler.errors import StateError, StateFencedError, StateLockedError
from reconciler.state import redact
from reconciler.state.heartbeat import HeartbeatLock
from reconciler.state.postgres.lock import LockRow
from reconciler.state.postgres.schema import migrate

Params = Sequence[Any] | Mapping[str, Any]  # a statement's parameters

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


class PostgresSession:
    """One workspace's connection to a PostgreSQL database, and the apply lock it holds
    (the lock belongs to the connection: it is free once the connection's backend is gone);
    safe to share between threads of one process."""

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
        self._durable_queue: list[_Pending] = []
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._apply_lock = HeartbeatLock(LockRow(self))
        # Why this run's apply lock is no longer its own (set by the heartbeat or a failed
        # write while it is held): its intents are refused, and it is not released.
        self._lock_lost: str | None = None
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
            if self._apply_lock.token is not None:
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
            migrate(conn, self._location, self.describe_error)
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
            token = self._apply_lock.token
            if own_lock and token is not None:
                if self._lock_lost is not None:
                    raise self._lost_lock(self._lock_lost)
                prefix.append(("SELECT reconciler_holds_lock(%s, %s)", (self._workspace, token)))
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
        if self._apply_lock.token is None:
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

    def _combined(self, *statements: tuple[str, Params], durable: bool = False) -> None:
        """Writes whose loss a crash may cause (a closed intent, a record, history: the
        next run re-derives them from live state), committed together with the writes
        other threads queued meanwhile, in one transaction and one round trip.

        Returns once they are committed; raises their transaction's error.  Whichever
        waiting thread gets the connection first writes everything queued (flat combining),
        so 64 workers closing intents cost a handful of transactions, not 64.
        `durable`: writes that must be on the server's disk, under this run's apply lock,
        before an API call (a create's `lands_by`), queued apart from the others.
        """
        pending = _Pending(statements)
        with self._queue_lock:
            (self._durable_queue if durable else self._queue).append(pending)
        with self._mutex:
            if not pending.done:
                with self._queue_lock:
                    if durable:
                        batch, self._durable_queue = self._durable_queue, []
                    else:
                        batch, self._queue = self._queue, []
                error: StateError | None = None
                try:
                    self._write(
                        "cannot journal a create about to be sent"
                        if durable
                        else "cannot record outcomes",
                        [s for item in batch for s in item.statements],
                        durable=durable,
                        own_lock=durable,
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

    def close(self) -> None:
        self._apply_lock.release()
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
