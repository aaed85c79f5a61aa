"""The state store interface on both backends, and what only PostgreSQL has: workspaces,
migrations in the database, a lock that survives no dead holder, redacted passwords."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from reconciler.errors import ConfigError, StateError, StateFencedError, StateLockedError
from reconciler.model import Intent, Record
from reconciler.state import (
    HistoryEntry,
    StateSnapshot,
    StateStore,
    is_postgres,
    manifest_cache_path,
    open_store,
    redact,
)
from tests.postgres_support import new_schema, new_workspace, postgres_url, sql

CANARY_PASSWORD = "pw-Canary-4411-not-for-output"


@pytest.fixture
def workspace() -> Iterator[str]:
    yield from new_workspace()


@pytest.fixture
def other_workspace() -> Iterator[str]:
    yield from new_workspace()


@pytest.fixture
def schema_url() -> Iterator[str]:
    yield from new_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s = open_store(str(tmp_path / "state.db"))
        yield s
        s.close()
        return
    for workspace in new_workspace():
        s = open_store(postgres_url(), workspace)
        yield s
        s.close()


def record(name: str, project_id: int, deploy_id: str = "L-1", owned: bool = True) -> Record:
    return Record(
        name, project_id, f"sha256:{name}", deploy_id, owned, "c-1", "LN-1", True, 1.0, 2.0,
        "create", "created", '{"projectId": 1}', "liquidate", True, "2026-01-01", 2, 3.5,
    )  # fmt: skip


# -- the interface, on both backends ----------------------------------------------------


def test_records_round_trip_every_field(store: StateStore) -> None:
    store.put_record(record("a", 1))
    store.put_record(record("b", 2, owned=False))
    store.put_record(record("a", 1, deploy_id="L-2"))  # replaced, not duplicated
    assert store.records() == {
        "a": record("a", 1, deploy_id="L-2"),
        "b": record("b", 2, "L-1", False),
    }


def test_intents_stay_open_until_closed_atomically_with_record_and_history(
    store: StateStore,
) -> None:
    first, second, prune = store.begin_intents(
        [
            ("a", 1, "h1"),
            ("b", 2, "h2"),
            Intent.new("c", 3, "h3", kind="prune", old_deploy_id="L-c", on_delete="liquidate"),
        ]
    )
    assert sorted((i.name, i.kind) for i in store.open_intents()) == [
        ("a", "create"), ("b", "create"), ("c", "prune"),
    ]  # fmt: skip
    assert prune in store.open_intents()
    store.close_intent(first, "created", record=record("a", 1, "L-9"))
    store.put_record(record("c", 3, "L-c"))
    store.close_intent(prune, "pruned", forget=True, detail="stopped")
    assert [i.name for i in store.open_intents()] == ["b"]
    assert set(store.records()) == {"a"}
    entries = store.history()
    assert [(e.action, e.outcome, e.name, e.deploy_id) for e in entries] == [
        ("prune", "pruned", "c", "L-c"),
        ("create", "created", "a", "L-9"),
    ]
    assert second.attempt_id == store.open_intents()[0].attempt_id


def test_a_create_about_to_be_sent_stamps_its_intent_durably(store: StateStore) -> None:
    """`lands_by`: unset until a create is sent; a later send only moves it later; it
    survives the store being opened again (another runner reads it after a crash)."""
    (intent,) = store.begin_intents([("a", 1, "h")])
    assert store.open_intents()[0].lands_by is None
    store.mark_sending(intent, 2_000.0)
    store.mark_sending(intent, 1_500.0)  # a stamp is never moved earlier
    assert store.open_intents()[0].lands_by == 2_000.0
    store.mark_sending(intent, 2_500.0)  # a retry, sent later
    assert [i.lands_by for i in store.open_intents()] == [2_500.0]


def test_stamps_of_concurrent_creates_are_all_written(store: StateStore) -> None:
    import threading

    intents = store.begin_intents([(f"n{i}", i + 1, "h") for i in range(32)])
    threads = [
        threading.Thread(target=store.mark_sending, args=(intent, 1_000.0 + n))
        for n, intent in enumerate(intents)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    stamped = {i.name: i.lands_by for i in store.open_intents()}
    assert stamped == {f"n{n}": 1_000.0 + n for n in range(32)}


def test_history_of_one_name_newest_first(store: StateStore) -> None:
    for n in range(5):
        store.add_history("create", f"o{n}", name="a" if n % 2 == 0 else "b", project_id=n)
    store.forget_record("a", action="release", outcome="released", detail="gone")
    assert [e.outcome for e in store.history(name="a")] == ["released", "o4", "o2", "o0"]
    assert [e.outcome for e in store.history(2)] == ["released", "o4"]


def test_a_rename_moves_the_record_in_one_write_with_history_under_both_names(
    store: StateStore,
) -> None:
    store.put_record(record("old", 1, "L-7"))
    store.put_record(record("other", 2))
    moved = record("new", 1, "L-7")
    store.rename_record("old", moved, detail="manifest renamed from old to new")
    assert store.records() == {"new": moved, "other": record("other", 2)}
    for name in ("old", "new"):
        (entry,) = store.history(name=name)
        assert (entry.action, entry.outcome, entry.project_id, entry.deploy_id) == (
            "rename", "renamed", 1, "L-7",
        )  # fmt: skip
        assert entry.detail == "manifest renamed from old to new"


def test_a_plan_nonce_is_claimed_once(store: StateStore) -> None:
    assert store.claim_plan("n1") is True
    assert store.claim_plan("n1") is False
    assert store.claim_plan("n2") is True


def test_export_then_import_is_a_copy(store: StateStore, tmp_path: Path) -> None:
    store.put_record(record("a", 1))
    store.begin_intents([("b", 2, "h2")])
    store.add_history("adopt", "adopted", name="a", project_id=1, deploy_id="L-1")
    store.claim_plan("nonce-1")
    snapshot = store.export_state()
    other = open_store(str(tmp_path / "copy.db"))
    try:
        other.put_record(record("stale", 9))
        other.import_state(snapshot)
        assert other.records() == store.records()
        assert other.open_intents() == store.open_intents()
        assert other.history() == store.history()
        assert other.claim_plan("nonce-1") is False
    finally:
        other.close()


def test_lock_is_exclusive_and_names_its_holder(store: StateStore) -> None:
    other = open_store(
        postgres_url() if is_postgres(store.location) else store.location, store.workspace
    )
    try:
        with store.lock(timeout=1):
            holder = store.lock_holder()
            assert holder is not None and holder.alive
            assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
            started = time.monotonic()
            with pytest.raises(StateLockedError) as raised, other.lock(timeout=0.5):
                pass
            assert time.monotonic() - started >= 0.4
            assert f"state is locked by pid {os.getpid()} on {socket.gethostname()} since " in (
                str(raised.value)
            )
        assert store.lock_holder() is None
        with other.lock(timeout=0.5):
            pass
    finally:
        other.close()


# -- PostgreSQL only -----------------------------------------------------------------------


def test_workspaces_sharing_a_database_are_separate_and_locked_separately(
    workspace: str, other_workspace: str
) -> None:
    first = open_store(postgres_url(), workspace)
    second = open_store(postgres_url(), other_workspace)
    try:
        first.put_record(record("a", 1))
        first.begin_intents([("x", 5, "h")])
        assert second.records() == {} and second.open_intents() == []
        with first.lock(timeout=1), second.lock(timeout=1):
            pass
    finally:
        first.close()
        second.close()


def test_lock_of_a_killed_holder_is_free_at_once(workspace: str) -> None:
    holder = _holder(workspace, "held = s.lock(5); held.__enter__()")
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        store = open_store(postgres_url(), workspace)
        try:
            started = time.monotonic()
            with store.lock(timeout=5):
                pass
            assert time.monotonic() - started < 2  # its session ended with it, not a TTL
        finally:
            store.close()
    finally:
        _reap(holder)


def test_stopped_holder_loses_the_lock_after_its_ttl_and_is_fenced(workspace: str) -> None:
    # A holder frozen (SIGSTOP: a partition, a paused VM) keeps its session but stops its
    # heartbeat: the lock passes on after its TTL, and the frozen holder, once it runs
    # again, can journal nothing.
    holder = _holder(
        workspace,
        "s.LOCK_TTL = 1.0; s.LOCK_HEARTBEAT = 0.2; held = s.lock(5); held.__enter__()",
        then="s.begin_intents([('late', 1, 'h')])",
    )
    store = open_store(postgres_url(), workspace)
    try:
        holder.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with store.lock(timeout=10):
            waited = time.monotonic() - started
            holder.send_signal(signal.SIGCONT)
            assert holder.stdin is not None
            holder.stdin.write("go\n")
            holder.stdin.flush()
            out, _ = holder.communicate(timeout=30)
        assert 0.5 <= waited < 5, waited
        assert "StateLockedError" in out and "lost the state lock" in out, out
        assert store.open_intents() == []
    finally:
        holder.send_signal(signal.SIGCONT)
        _reap(holder)
        store.close()


def _holder(workspace: str, setup: str, then: str = "") -> subprocess.Popen[str]:
    code = (
        "import sys\n"
        "from reconciler.state import open_store\n"
        f"s = open_store({postgres_url()!r}, {workspace!r})\n"
        f"{setup}\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        f"    {then or 'pass'}\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "locked", line + (proc.stdout.read() if proc.poll() is not None else "")
    return proc


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_a_write_of_a_daemon_that_lost_its_epoch_is_refused(workspace: str) -> None:
    store = open_store(postgres_url(), workspace)
    try:
        leadership = store.leadership(1.0)
        with pytest.raises(StateFencedError):
            store.put_record(record("a", 1))  # not yet elected: nothing written
        changes: list[str] = []
        leadership.start(changes.append)
        deadline = time.monotonic() + 5
        while "leader" not in changes:  # elected, and told
            assert time.monotonic() < deadline
            time.sleep(0.02)
        store.put_record(record("a", 1))
        sql("UPDATE reconciler_leases SET epoch = epoch + 1 WHERE workspace = %s", workspace)
        with pytest.raises(StateFencedError, match="no longer leads"):
            store.begin_intents([("b", 2, "h")])
        assert store.open_intents() == []
        leadership.stop()
    finally:
        store.close()


def test_a_deposed_leader_cannot_stamp_a_create_so_it_sends_none(workspace: str) -> None:
    """The stamp before each send is fenced like an intent: a leader whose epoch passed
    (failed over while it compiled, or between retries) gets an error, not a send."""
    store = open_store(postgres_url(), workspace)
    try:
        leadership = store.leadership(1.0)
        changes: list[str] = []
        leadership.start(changes.append)
        deadline = time.monotonic() + 5
        while "leader" not in changes:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (intent,) = store.begin_intents([("b", 2, "h")])
        sql("UPDATE reconciler_leases SET epoch = epoch + 1 WHERE workspace = %s", workspace)
        with pytest.raises(StateFencedError, match="no longer leads"):
            store.mark_sending(intent, 9_999.0)
        assert [i.lands_by for i in store.open_intents()] == [None]
        leadership.stop()
    finally:
        store.close()


def test_schema_is_migrated_once_by_runners_starting_together(schema_url: str) -> None:
    opener = (
        "import sys, time\n"
        "from reconciler.state import open_store\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "open_store(sys.argv[1], 'w').close()\n"
    )
    start = time.time() + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", opener, schema_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    assert all(code == 0 for code, _ in results), results
    schema = schema_url.rsplit("%3D", 1)[1]
    tables = {
        str(name)
        for (name,) in sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema
        )
    }
    assert tables == {
        "reconciler_meta", "reconciler_deployments", "reconciler_intents", "reconciler_history",
        "reconciler_applied_plans", "reconciler_locks", "reconciler_leases",
        "reconciler_candidates",
    }  # fmt: skip


def test_newer_schema_is_refused(schema_url: str) -> None:
    open_store(schema_url, "w").close()
    schema = schema_url.rsplit("%3D", 1)[1]
    sql(f"UPDATE {schema}.reconciler_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="schema version 99, newer than this reconciler"):
        open_store(schema_url, "w")


def test_password_is_never_shown() -> None:
    url = postgres_url()
    assert redact("postgresql://u:secret@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert redact("postgres://u:p%40ss@[::1]/db") == "postgres://u:***@[::1]/db"
    assert "s3" not in redact("postgresql:///db?host=/tmp&password=s3&user=u")
    assert redact(".reconciler/state.db") == ".reconciler/state.db"
    parts = urlsplit(url)
    with_password = urlunsplit(
        parts._replace(netloc=f"postgres:{CANARY_PASSWORD}@{parts.hostname}:{parts.port or 5432}")
    )
    missing_db = with_password.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StateError) as raised:
        open_store(missing_db, "w")
    assert CANARY_PASSWORD not in str(raised.value)
    assert ":***@" in str(raised.value) and "no_such_database_here" in str(raised.value)
    refused = f"postgresql://postgres:{CANARY_PASSWORD}@127.0.0.1:1/test"
    with pytest.raises(StateError) as raised:
        open_store(refused, "w")
    assert CANARY_PASSWORD not in str(raised.value) and "cannot connect" in str(raised.value)


def test_workspace_names_are_checked_and_the_cache_stays_local() -> None:
    with pytest.raises(ConfigError, match="not a valid name"):
        open_store(postgres_url(), "../etc")
    assert manifest_cache_path(postgres_url(), "prod") == os.path.join(
        ".reconciler", "postgres-prod.manifest-cache.json"
    )
    assert manifest_cache_path(".reconciler/state.db") == os.path.join(
        ".reconciler", "state.manifest-cache.json"
    )


def test_history_entries_keep_their_time_across_an_import(workspace: str) -> None:
    store = open_store(postgres_url(), workspace)
    try:
        entry = HistoryEntry(12.5, "a", 1, "create", "created", "L-1", "old")
        store.import_state(StateSnapshot(history=[entry]))
        assert store.history() == [entry]
    finally:
        store.close()
