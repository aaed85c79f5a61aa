"""Ownership after a crash (issue 23): a create still in flight from a dead runner is
waited for, then claimed as ours, so that removing its manifest prunes it.

The journal's rule, decided from live state alone (`journal.resolve`, pure), and then as
a user meets it: a SIGKILL'd apply whose slow create lands after the next run started,
and a PostgreSQL leader killed mid-create, the standby taking over.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from reconciler.engine import journal
from reconciler.model import ActionKind, Intent, LiveDeployment
from reconciler.state import open_store
from tests.conftest import RECONCILER, cli_env
from tests.test_apply_e2e import SECRET
from tests.test_day2_e2e import World, stops
from tests.test_watch import Daemon, wait_for

T0 = 1_800_000_000.0


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def intent(lands_by: float | None, kind: ActionKind = ActionKind.CREATE) -> Intent:
    return Intent("a1", "d1", 1, "h", T0, kind=kind, lands_by=lands_by)


def live(launched: float, deploy_id: str = "L-1", status: str = "Running") -> LiveDeployment:
    return LiveDeployment(1, deploy_id, status, launched=iso(launched))


# ---- the rule, pure ------------------------------------------------------------------------


def test_a_young_intent_is_not_closed_while_its_project_runs_nothing() -> None:
    (r,) = journal.resolve([intent(T0 + 100)], {}, [], now=T0 + 50)
    assert r.waiting and r.until == T0 + 100
    assert r.detail.startswith("an earlier create may still land; waiting until ")
    assert journal.landing([r]) == {1: T0 + 100}


def test_once_old_enough_nothing_running_is_not_created() -> None:
    (r,) = journal.resolve([intent(T0 + 100)], {}, [], now=T0 + 100)
    assert not r.waiting and r.outcome == "not created" and r.record is None
    assert journal.landing([r]) == {}


def test_an_intent_that_sent_no_create_is_closed_at_once() -> None:
    (r,) = journal.resolve([intent(None)], {}, [], now=T0 + 1)
    assert (r.waiting, r.outcome, r.detail) == (False, "not created", "no create was sent")


def test_a_deployment_launched_within_the_span_is_claimed_as_created() -> None:
    (r,) = journal.resolve([intent(T0 + 100)], {}, [live(T0 + 99)], now=T0 + 500)
    assert r.outcome == "created" and r.record is not None and r.record.owned
    assert r.record.deploy_id == "L-1"
    assert r.detail.startswith("claimed after a crash")


def test_a_deployment_launched_after_the_span_is_not_ours() -> None:
    """Someone else's (a person deployed by hand after the create could no longer land):
    the intent closes, the planner adopts it, so it is never pruned."""
    (r,) = journal.resolve([intent(T0 + 100)], {}, [live(T0 + 101)], now=T0 + 500)
    assert r.outcome == "not created" and r.record is None and "not ours" in r.detail


def test_a_deployment_running_while_no_create_was_sent_is_not_ours() -> None:
    (r,) = journal.resolve([intent(None)], {}, [live(T0 + 1)], now=T0 + 2)
    assert r.outcome == "not created" and r.record is None


def test_the_landing_gate_blocks_the_project_until_then() -> None:
    from reconciler import planner, policy
    from reconciler.model import Deployment

    desired = Deployment(
        name="d1",
        project_id=1,
        compile_id="c",
        node_id="n",
        version_id="-1",
        brokerage={"id": "PaperTrading"},
    )
    plan = planner.plan([desired], {}, [])
    (action,) = plan.actions
    assert action.action is ActionKind.CREATE
    facts = policy.Facts(landing={1: T0 + 100})
    (held,) = policy.gate(plan, facts, T0 + 50).actions
    assert held.action is ActionKind.BLOCKED and not held.carried_out
    assert held.reason.startswith("an earlier create may still land; waiting until ")
    assert held.held is not None and held.held.until == T0 + 100
    (free,) = policy.gate(plan, facts, T0 + 100).actions
    assert free.action is ActionKind.CREATE and free.carried_out


# ---- as a user meets it ----------------------------------------------------------------------

# The emulator's create answer: slower than the reconciler waits for it (so the next run,
# or the new leader, starts before it lands), yet within the span a create may land in:
# with --api-timeout 2, up to 2 (connect) + 3 x 2 (pool, write, read) + 2 (margin) = 10 s.
LATENCY = 6.0
API_TIMEOUT = "2"


def sent(emulator: Emulator, project_id: int) -> int:
    """Creates the emulator received for the project (committed or not)."""
    return sum(1 for t in emulator.stats()["create_times"] if t["projectId"] == project_id)


def open_intents(state: str, workspace: str | None = None) -> list[Intent]:
    store = open_store(state, workspace)
    try:
        return store.open_intents()
    finally:
        store.close()


def test_sigkill_mid_create_next_run_waits_then_claims_and_a_removal_prunes_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    world = World(emulator, tmp_path)
    world.add(409)  # so that removing 401 later does not empty the desired set
    world.apply()
    world.add(401)
    state = str(tmp_path / "state.db")
    emulator.inject("live/create", latency=LATENCY)
    proc = subprocess.Popen(
        [*RECONCILER, "--api-timeout", API_TIMEOUT, "apply", str(world.root), "--yes"],
        env=cli_env(emulator, tmp_path, IB_PASSWORD=SECRET),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: sent(emulator, 401) == 1, what="the create sent")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    emulator.clear_faults()  # the create in flight keeps its latency server-side
    (left,) = open_intents(state)
    assert left.lands_by is not None and left.lands_by > time.time()

    # The next run starts before the create lands: it waits, and sends nothing.
    assert emulator.creates_committed(401) == 0
    waiting = world.apply(expect=1)
    assert "an earlier create may still land; waiting until" in waiting.stdout, waiting.stdout
    assert sent(emulator, 401) == 1
    listed = json.loads(world.run("state", "list", "--format", "json").stdout)
    assert [(i["name"], i["landsBy"]) for i in listed["openIntents"]] == [("d401", left.lands_by)]
    wait_for(lambda: emulator.creates_committed(401) == 1, what="the slow create to land")
    (landed,) = [d["deployId"] for d in emulator.active_deployments(401)]

    # Once the create can no longer land, what landed within its span is ours.
    time.sleep(max(0.0, left.lands_by - time.time()) + 0.2)
    claimed = world.apply()
    assert "resolved an interrupted create: d401: created" in claimed.stdout, claimed.stdout
    store = open_store(state)
    try:
        record = store.records()["d401"]
        assert (record.owned, record.deploy_id) == (True, landed)
        (entry,) = [h for h in store.history(name="d401") if h.outcome == "created"]
        assert (entry.detail or "").startswith("claimed after a crash"), entry
        assert store.open_intents() == []
    finally:
        store.close()

    world.remove(401)
    pruned = world.apply("--prune")
    assert "1 pruned" in pruned.stdout, pruned.stdout
    assert [s["deployId"] for s in stops(emulator)] == [landed]
    assert emulator.active_deployments(401) == []
    assert emulator.creates_committed(401) == 1 and sent(emulator, 401) == 1


def test_an_intent_that_never_sent_its_create_does_not_hold_the_next_run(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Killed before its create was sent (here: while the compile of `compileId: latest`
    is still being asked for): no stamp, so the next run creates at once."""
    world = World(emulator, tmp_path)
    world.add(402)
    world.write(402, compile_id="latest")
    emulator.inject("compile/create", latency=LATENCY)
    proc = world.popen()
    try:
        wait_for(lambda: open_intents(str(tmp_path / "state.db")) != [], what="the intent")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    (left,) = open_intents(str(tmp_path / "state.db"))
    assert left.lands_by is None
    emulator.clear_faults()
    result = world.apply()
    assert "1 created" in result.stdout, result.stdout
    assert emulator.creates_committed(402) == 1


# ---- PostgreSQL: the leader killed mid-create ------------------------------------------------


@pytest.fixture
def workspace() -> Iterator[str]:
    from tests.postgres_support import new_workspace

    yield from new_workspace()


def test_leader_killed_mid_create_standby_waits_claims_and_prunes(
    emulator: Emulator, tmp_path: Path, workspace: str
) -> None:
    from tests.postgres_support import postgres_url

    world = World(emulator, tmp_path)
    world.add(411)
    env = {"RECONCILER_STATE": postgres_url(), "RECONCILER_WORKSPACE": workspace}
    args = ("--resync", "1", "--lease", "1", "--prune", "--prune-grace", "0")
    daemons: list[Daemon] = []
    try:
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            daemons.append(
                Daemon(emulator, home, world.root, *args, RECONCILER_API_TIMEOUT=API_TIMEOUT, **env)
            )
            if name == "a":
                wait_for(lambda: emulator.creates_committed(411) == 1, what="the first create")
        leader, standby = daemons
        emulator.inject("live/create", latency=LATENCY)
        world.add(412)
        wait_for(lambda: sent(emulator, 412) == 1, what="the create sent")
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(timeout=10)
        emulator.clear_faults()
        assert emulator.creates_committed(412) == 0

        def said(text: str) -> bool:
            return any(text in json.dumps(line) for line in list(standby.lines))

        wait_for(lambda: said("an earlier create may still land"), what="the standby waiting")
        wait_for(lambda: said("claimed after a crash") or said('"intent_resolved"'), what="claim")
        (landed,) = [d["deployId"] for d in emulator.active_deployments(412)]
        wait_for(lambda: open_intents(postgres_url(), workspace) == [], what="the intent closed")
        store = open_store(postgres_url(), workspace)
        try:
            record = store.records()["d412"]
            assert (record.owned, record.deploy_id) == (True, landed)
            (entry,) = [h for h in store.history(name="d412") if h.outcome == "created"]
            assert (entry.detail or "").startswith("claimed after a crash"), entry
        finally:
            store.close()

        world.remove(412)
        wait_for(lambda: emulator.active_deployments(412) == [], what="the prune")
        assert [s["deployId"] for s in stops(emulator)] == [landed]
        assert emulator.creates_committed(412) == 1
        assert sent(emulator, 412) == 1
    finally:
        for daemon in daemons:
            daemon.terminate()


def test_the_daemon_wakes_when_the_wait_ends_not_at_its_next_resync(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A create stamped but never answered (nothing lands): the daemon blocks the project
    until its `lands_by`, then wakes for it and creates, long before `--resync 300`."""
    from reconciler.sources import files

    world = World(emulator, tmp_path)
    world.add(421)
    (desired,) = files.read([str(world.root)]).deployments
    store = open_store(str(tmp_path / "state.db"))
    try:
        (left,) = store.begin_intents([Intent.new(desired.name, 421, desired.spec_hash)])
        store.mark_sending(left, time.time() + 4)
    finally:
        store.close()
    daemon = Daemon(emulator, tmp_path, world.root, "--resync", "300")
    try:
        wait_for(
            lambda: any("an earlier create may still land" in json.dumps(x) for x in daemon.lines),
            what="the wait",
        )
        assert emulator.creates_committed(421) == 0
        wait_for(lambda: emulator.creates_committed(421) == 1, timeout=30, what="the create")
    finally:
        assert daemon.terminate() == 0
    assert sent(emulator, 421) == 1
