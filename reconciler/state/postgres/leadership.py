"""Highly available `watch` on PostgreSQL (`PostgresLeadership`): one lease row per
workspace with an epoch (a fencing token).

Every write of a daemon checks, in its transaction, that the lease still has its epoch and
has not expired (the session's fence); a leader that cannot renew stops acting at half the
lease, before any other daemon could take it over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from reconciler.errors import StateError
from reconciler.state.postgres.session import PostgresSession

log = logging.getLogger("reconciler.state")

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


class PostgresLeadership:
    """One leader per workspace: a lease row with an epoch, renewed every lease/4.

    A standby tries to take the lease every lease/4, so a dead or partitioned leader is
    replaced within lease + lease/4 of its last renewal.  The leader may act only while its
    last successful renewal started less than lease/2 ago: a leader that cannot renew stops
    acting long before its lease could pass to another daemon, and every write it still
    makes is fenced by its epoch in the database.
    """

    def __init__(self, store: PostgresSession, lease: float) -> None:
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
