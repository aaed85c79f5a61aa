"""The SQLite state store: records, intents, history, plans, the lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.errors import StateError, StateLockedError
from reconciler.model import Record
from reconciler.state import SCHEMA_VERSION, SqliteStateStore


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


def test_records_round_trip_and_survive_reopen(tmp_path: Path) -> None:
    first = SqliteStateStore(tmp_path / "s.db")
    first.put_record(
        Record("a", 1, "sha256:1", "L-1", True, "c", "LN-1", True, 1.0, 2.0, "create", "created")
    )
    first.close()
    second = SqliteStateStore(tmp_path / "s.db")
    assert second.records()["a"] == Record(
        "a", 1, "sha256:1", "L-1", True, "c", "LN-1", True, 1.0, 2.0, "create", "created"
    )
    second.close()


def test_intents_are_open_until_closed_with_history(store: SqliteStateStore) -> None:
    intents = store.begin_intents([("a", 1, "h1"), ("b", 2, "h2")])
    assert {i.name for i in store.open_intents()} == {"a", "b"}
    store.close_intent(intents[0], "created", record=Record("a", 1, "h1", "L-9", True))
    assert [i.name for i in store.open_intents()] == ["b"]
    assert store.records()["a"].deploy_id == "L-9"
    (entry,) = store.history()
    assert (entry.action, entry.outcome, entry.name, entry.deploy_id) == (
        "create",
        "created",
        "a",
        "L-9",
    )


def test_a_plan_nonce_is_claimed_once(store: SqliteStateStore) -> None:
    assert store.claim_plan("n1") is True
    assert store.claim_plan("n1") is False
    assert store.claim_plan("n2") is True


def test_second_holder_waits_then_fails_with_owner(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    holder = SqliteStateStore(path)
    other = SqliteStateStore(path)
    try:
        with holder.lock():
            started = time.monotonic()
            with pytest.raises(StateLockedError) as raised, other.lock(timeout=0.5):
                pass
            assert time.monotonic() - started >= 0.4
            assert f"state is locked by pid {os.getpid()} on " in str(raised.value)
            assert " since " in str(raised.value)
        with other.lock(timeout=0.5):  # released: free again
            pass
    finally:
        holder.close()
        other.close()


def test_lock_of_a_dead_process_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    code = (
        "import os, sys\n"
        "from reconciler.state import SqliteStateStore\n"
        f"s = SqliteStateStore({str(path)!r})\n"
        "s._acquire_lock(5)\n"
        "os._exit(0)\n"  # dies holding the lock, no cleanup
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    store = SqliteStateStore(path)
    try:
        with store.lock(timeout=2):
            pass
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer than this reconciler"):
        SqliteStateStore(path)


def test_an_intent_open_at_the_upgrade_is_waited_for_as_long_as_any_create_took(
    tmp_path: Path,
) -> None:
    """Schema 7 adds `lands_by`; an intent an older version left open may have sent its
    create, so it gets the longest span a create of that version could take (900 s)."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    from reconciler.state import sqlite as store_module

    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for version in range(1, 6):
        for statement in store_module._MIGRATIONS[version].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '5')")
    db.execute(
        "INSERT INTO intents (attempt_id, name, project_id, spec_hash, created_at) "
        "VALUES ('open', 'a', 1, 'h', 1000.0), ('done', 'b', 2, 'h', 1000.0)"
    )
    db.execute("UPDATE intents SET closed_at = 1001.0 WHERE attempt_id = 'done'")
    db.commit()
    db.close()
    store = SqliteStateStore(path)
    try:
        assert [(i.attempt_id, i.lands_by) for i in store.open_intents()] == [("open", 1900.0)]
    finally:
        store.close()


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="cannot use state file"):
        SqliteStateStore(path)


def test_processes_opening_a_new_state_file_together_all_succeed(tmp_path: Path) -> None:
    # Switching a fresh file to WAL is answered "database is locked" at once when another
    # process does the same; the store must wait that out, not fail.
    opener = (
        "import sys, time\n"
        "from reconciler.state import SqliteStateStore\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "SqliteStateStore(sys.argv[1]).close()\n"
    )
    for round_ in range(8):  # the race is hit in about 4 rounds of 10 without the fix
        path = tmp_path / f"fresh-{round_}.db"
        start = time.time() + 0.5  # all four start together, after their imports
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", opener, str(path), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
        assert all(code == 0 for code, _ in results), results
