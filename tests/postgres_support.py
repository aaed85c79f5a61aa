"""Reaching the test PostgreSQL server: one URL, one workspace (or schema) per test.

RECONCILER_TEST_POSTGRES: the server's URL (default postgresql://postgres@127.0.0.1:5432/test).
Where no server answers, the PostgreSQL tests skip with the reason; with
RECONCILER_TEST_POSTGRES_REQUIRED=1 (set by .ci/run) they fail instead, so CI always runs them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
URL_ENV = "RECONCILER_TEST_POSTGRES"
REQUIRED_ENV = "RECONCILER_TEST_POSTGRES_REQUIRED"
TABLES = (
    "reconciler_deployments",
    "reconciler_intents",
    "reconciler_candidates",
    "reconciler_history",
    "reconciler_applied_plans",
    "reconciler_locks",
    "reconciler_leases",
)


def postgres_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


@functools.cache
def unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]' installs it)"
    try:
        with psycopg.connect(postgres_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"no PostgreSQL server at {URL_ENV} ({first})"
    return None


def require_postgres() -> str:
    """The server URL; skips the test (fails it under .ci/run) when no server answers."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"PostgreSQL tests are required ({REQUIRED_ENV}=1): {reason}")
        pytest.skip(reason)
    return postgres_url()


def sql(query: str, *args: object, url: str | None = None) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url or postgres_url(), autocommit=True) as conn:
        cur = conn.execute(query.encode() if not args else query, args or None)
        return cur.fetchall() if cur.description else []


def drop_workspace(workspace: str) -> None:
    for table in TABLES:
        sql(
            f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN "
            f"DELETE FROM {table} WHERE workspace = '{workspace}'; END IF; END $$"
        )


def new_workspace() -> Iterator[str]:
    """A workspace of its own for one test, emptied afterwards."""
    require_postgres()
    workspace = f"t-{uuid.uuid4().hex[:12]}"
    try:
        yield workspace
    finally:
        drop_workspace(workspace)


def new_schema() -> Iterator[str]:
    """A schema of its own (a URL whose search_path is it), dropped afterwards."""
    url = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        sql(f"DROP SCHEMA {schema} CASCADE")


def reconciler_sessions(workspace: str) -> list[int]:
    """Server pids of the reconciler's sessions on `workspace`."""
    return [
        int(str(row[0]))
        for row in sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            f"reconciler % {workspace} pid %",
        )
    ]


def terminate_sessions(workspace: str, pid: int | None = None) -> int:
    """pg_terminate_backend of the reconciler's sessions on `workspace` (of one client
    process, if `pid`); how many were ended."""
    pattern = f"reconciler % {workspace} pid {pid if pid is not None else '%'}"
    rows = sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
        pattern,
    )
    return sum(1 for (ended,) in rows if ended)


class Partition:
    """A TCP proxy on loopback in front of the server, to cut one client off.

    `cut()`: every connection through it is closed and new ones are refused (the server is
    unreachable).  `blackhole()`: connections stay open and nothing passes (packets lost:
    calls hang).  `heal()`: traffic passes again.
    """

    def __init__(self, url: str | None = None) -> None:
        parts = urlsplit(url or postgres_url())
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        user = f"{netloc[0]}@" if len(netloc) == 2 else ""
        self.url = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
        self.mode = "pass"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.mode == "cut":  # cut while connecting
                    client.close()
                    upstream.close()
                    continue
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.2)  # bounded: it notices close() and cut()
        try:
            while not self._closed.is_set():
                while self.mode == "blackhole" and not self._closed.is_set():
                    time.sleep(0.02)
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    if self.mode == "cut":
                        break
                    continue
                if not data:
                    break
                while self.mode == "blackhole" and not self._closed.is_set():
                    time.sleep(0.02)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        with self._lock:
            self.mode = "cut"
            for end in self._sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed.set()
        self._threads[0].join(timeout=5)  # accepts no more
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)
