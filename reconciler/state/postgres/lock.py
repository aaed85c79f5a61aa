"""The apply lock of a PostgreSQL workspace: a row of `reconciler_locks` with a heartbeat,
held by one connection (the `LockBackend` of the shared `HeartbeatLock`), and what
`reconciler state` reads and breaks of it.

The row is free at once when its connection's backend is gone (its process died), after
its TTL when the holder stops renewing it (a partition, a stopped process), or when the
holder was a daemon whose leadership epoch has passed.  Never a file.

A holder that cannot renew (the row was taken over, or the renewal failed) has lost the
lock: it records why in the session, stops beating, and does not release it; its intents
are refused from then on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler.errors import StateError
from reconciler.state import LockHolder

if TYPE_CHECKING:
    from reconciler.state.postgres.session import PostgresSession

log = logging.getLogger("reconciler.state")

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
_RENEW_LOCK = """
UPDATE reconciler_locks SET heartbeat_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %s)
WHERE workspace = %s AND token = %s
"""
_RELEASE_LOCK = "DELETE FROM reconciler_locks WHERE workspace = %s AND token = %s"


class LockRow:
    """The session's apply lock as its row; TTL and heartbeat are the session's."""

    def __init__(self, session: PostgresSession) -> None:
        self._session = session

    @property
    def heartbeat(self) -> float:
        return self._session.LOCK_HEARTBEAT

    def attempt(self, token: str) -> Callable[[], bool]:
        session = self._session
        # Fixed for the whole wait: the time it began, and the epoch of a daemon's fence.
        args = {
            "ws": session.workspace,
            "token": token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "epoch": session._fence[1] if session._fence else None,
            "now": time.time(),
            "ttl": session.LOCK_TTL,
        }

        def take() -> bool:
            cur = session._write("cannot take the lock", [(_TAKE_LOCK, args)])
            if cur.fetchone() is None:
                return False
            session._lock_lost = None
            return True

        return take

    def holder(self) -> str:
        holder = read_holder(self._session)
        who = holder.describe() if holder else "another reconciler"
        return f"{who} ({self._session.location}, workspace {self._session.workspace})"

    def renew(self, token: str) -> bool:
        session = self._session
        try:
            cur = session._write(
                "cannot renew the lock",
                [(_RENEW_LOCK, (session.LOCK_TTL, session.workspace, token))],
            )
            kept = cur.rowcount == 1
        except StateError as error:
            session._lock_lost = str(error)
            return False
        if not kept:
            session._lock_lost = "the lock was taken over (`state unlock`, or it expired)"
            log.error("state lock lost: %s", session._lock_lost, extra={"event": "lock_lost"})
            return False
        return True

    def release(self, token: str) -> None:
        session = self._session
        if session._lock_lost is None:
            with contextlib.suppress(StateError):
                session._write(
                    "cannot release the lock", [(_RELEASE_LOCK, (session.workspace, token))]
                )
        session._lock_lost = None


def read_holder(session: PostgresSession) -> LockHolder | None:
    """The apply lock's holder, None when the lock is free."""
    rows = session._read("cannot read the lock", _LOCK_HOLDER, (session.workspace,))
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


def break_lock(session: PostgresSession) -> None:
    """Drop the apply lock whoever holds it, and end the holder's session if it is
    still connected (`reconciler state unlock`): its writes are refused from then on."""
    cur = session._write(
        "cannot break the lock",
        [
            (
                "DELETE FROM reconciler_locks WHERE workspace = %s "
                "RETURNING backend_pid, backend_start",
                (session.workspace,),
            )
        ],
    )
    row = cur.fetchone()
    if row is not None:
        with contextlib.suppress(StateError):
            session._read(
                "cannot end the holder's session",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = %s AND backend_start = %s AND pid <> pg_backend_pid()",
                row,
            )
