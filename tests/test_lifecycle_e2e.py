"""When things stop (DESIGN §11), as a user meets it: the restart policy, a person's stop,
crash loops backing off, node pre-flight and health after apply, against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from tests.test_apply_e2e import SECRET, node_for
from tests.test_day2_e2e import World, assert_safe, doc, running_ids, stops
from tests.test_watch import Daemon, daemons, running, wait_for
from tests.test_watch_day2 import settle

__all__ = ["daemons"]  # a fixture shared with test_watch

CAUSES = {"RuntimeError": "failed", "Stopped": "stopped", "Completed": "exited"}
TABLE = {  # DESIGN §11: restartPolicy x how it stopped -> what the plan does
    ("OnFailure", "RuntimeError"): "restart",
    ("OnFailure", "Stopped"): "drift",
    ("OnFailure", "Completed"): "drift",
    ("Always", "RuntimeError"): "restart",
    ("Always", "Stopped"): "restart",
    ("Always", "Completed"): "restart",
    ("Never", "RuntimeError"): "drift",
    ("Never", "Stopped"): "drift",
    ("Never", "Completed"): "drift",
}


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path) -> World:
    return World(emulator, tmp_path)


def plan_json(world: World) -> dict[str, dict[str, object]]:
    result = world.run("plan", str(world.root), "--format", "json")
    return {str(a["name"]): a for a in json.loads(result.stdout)["actions"] if a["name"]}


@pytest.mark.parametrize(("policy", "status"), sorted(TABLE))
def test_restart_policy_table_in_apply(
    world: World, emulator: Emulator, policy: str, status: str
) -> None:
    world.add(301, extra=f"  restartPolicy: {policy}\n")
    world.apply()
    (first,) = running_ids(emulator, 301)
    emulator.end(301, status, "ended by the test")
    expected = TABLE[(policy, status)]
    action = plan_json(world)["d301"]
    assert (action["action"], action["cause"], action["deployId"]) == (
        expected,
        CAUSES[status],
        first,
    )
    detailed = world.run("plan", str(world.root), "--detailed-exitcode")
    assert detailed.returncode == (2 if expected == "restart" else 0), detailed.stdout
    result = world.apply()
    if expected == "restart":
        assert "1 restarted" in result.stdout
        assert len(running_ids(emulator, 301)) == 1 and emulator.creates_committed(301) == 2
    else:
        assert "drift" in result.stdout and "--restart d301" in result.stdout
        assert running_ids(emulator, 301) == [] and emulator.creates_committed(301) == 1
    assert_safe(emulator)


def test_a_persons_stop_is_respected_until_restart_or_a_new_spec(
    world: World, emulator: Emulator
) -> None:
    world.add(301)
    world.apply()
    emulator.end(301, "Stopped")  # the web UI's Stop button
    for _ in range(2):
        assert "drift" in world.apply().stdout
    assert running_ids(emulator, 301) == []
    status = json.loads(world.run("status", "--format", "json").stdout)
    (row,) = status["deployments"]
    assert (row["liveStatus"], row["notRunning"]) == ("Stopped", "stopped")
    assert "stopped by someone else" in world.run("status").stdout
    world.apply("--restart", "d301")
    assert len(running_ids(emulator, 301)) == 1
    noop = world.apply("--restart", "d301")  # running: nothing to restart
    assert "nothing to restart" in noop.stdout and emulator.creates_committed(301) == 2
    emulator.end(301, "Liquidated")
    world.new_build(301)  # a new spec is a new intent: create
    assert "1 created" in world.apply().stdout
    assert emulator.creates_committed(301) == 3
    assert_safe(emulator)


def test_a_restart_runs_the_compile_the_deployment_ran(world: World, emulator: Emulator) -> None:
    world.add(301)
    world.write(301, compile_id="latest")
    world.apply()
    (first,) = [d for d in emulator.world.deployments if d["projectId"] == 301]
    emulator.kill(301)
    world.apply()
    second = [d for d in emulator.world.deployments if d["projectId"] == 301][-1]
    assert second["status"] == "Running" and second["compileId"] == first["compileId"]
    assert emulator.stats()["calls"]["compile/create"]["total"] == 1  # not compiled again


def test_a_crash_loop_backs_off_and_restart_skips_the_wait(
    world: World, emulator: Emulator
) -> None:
    world.add(301)
    world.apply()
    for n in range(3):
        emulator.kill(301)
        assert "1 restarted" in world.apply().stdout, n
    emulator.kill(301)
    blocked = world.apply(expect=1)
    assert "backing off after 3 restarts in a row: next try at" in blocked.stdout
    assert running_ids(emulator, 301) == [] and emulator.creates_committed(301) == 4
    status = world.run("status")
    assert "next restart" in status.stdout and "failed" in status.stdout
    world.apply("--restart", "d301")
    assert len(running_ids(emulator, 301)) == 1 and emulator.creates_committed(301) == 5


def test_preflight_busy_and_unknown_nodes_send_no_create(world: World, emulator: Emulator) -> None:
    emulator.add_project(399, name="someone else's")
    emulator.add_node(node_for(302), name="shared box")
    foreign = emulator.add_live(399, node_for(302), {"id": "QuantConnectBrokerage"})
    world.add(301)
    world.add(302)  # its node runs project 399
    emulator.add_project(303)
    world.compiles[303] = emulator.add_compile(303)
    world.write(303, node="LN-" + "f" * 32)  # no such node
    plan = world.run("plan", str(world.root))
    assert plan.returncode == 1
    assert (
        f"node shared box ({node_for(302)}) is busy running project 399 (someone else's)"
        in plan.stdout
    )
    assert f"node LN-{'f' * 32} is not a live node of the organisation" in plan.stdout
    result = world.apply(expect=1)
    assert "2 blocked" in result.stdout and "1 created" in result.stdout
    creates = {t["projectId"] for t in emulator.stats()["create_times"]}
    assert creates == {301}
    assert running_ids(emulator, 399) == [foreign]


def test_a_saved_plan_never_does_what_it_did_not_show(world: World, emulator: Emulator) -> None:
    """DESIGN §5: a decision that depends on the nodes (pre-flight) is part of the plan.
    A plan saved while a node was unknown or busy is refused, naming what changed, once
    the node is there and free: no create that nobody reviewed."""
    plan_file = world.tmp_path / "plan.json"
    emulator.add_project(302, name="p302")
    world.compiles[302] = emulator.add_compile(302)
    world.write(302)  # its node is not (yet) a live node of the organisation
    saved = world.run("plan", str(world.root), "--out", str(plan_file))
    assert saved.returncode == 1 and "x blocked   d302" in saved.stdout, saved.stdout
    emulator.add_node(node_for(302), name="new box")  # provisioned after the review
    refused = world.run("apply", "--plan", str(plan_file), "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        f"saved plan {plan_file} is stale: d302 was `blocked` when the plan was made and is "
        "`create` now" in refused.stderr
    ), refused.stderr
    assert "nothing was done" in refused.stderr
    assert emulator.creates_committed(302) == 0
    # Busy with someone else's project at plan time, free at apply time: refused too.
    emulator.add_project(399, name="theirs")
    emulator.add_node(node_for(303), name="shared box")
    emulator.add_live(399, node_for(303), {"id": "QuantConnectBrokerage"})
    world.add(303)
    (world.root / "d302.yaml").unlink()
    saved = world.run("plan", str(world.root), "--out", str(plan_file))
    assert saved.returncode == 1 and "is busy running project 399" in saved.stdout
    emulator.end(399, "Stopped")
    refused = world.run("apply", "--plan", str(plan_file), "--yes")
    assert refused.returncode == 1 and "is stale" in refused.stderr, refused.stderr
    assert emulator.creates_committed(303) == 0
    # Planned again and reviewed: the saved plan is carried out, once.
    assert world.run("plan", str(world.root), "--out", str(plan_file)).returncode == 0
    applied = world.run("apply", "--plan", str(plan_file), "--yes", "--wait", "0")
    assert applied.returncode == 0 and "1 created" in applied.stdout, applied.stdout
    assert emulator.creates_committed(303) == 1
    again = world.run("apply", "--plan", str(plan_file), "--yes")
    assert again.returncode == 1 and "stale" in again.stderr
    assert emulator.creates_committed(303) == 1


def test_health_failed_login_is_a_failure_with_the_apis_message(
    world: World, emulator: Emulator
) -> None:
    world.add(301)
    emulator.update_project(301, fail_login="invalid password for DU123")
    result = world.apply(expect=1)
    assert "Brokerage login failed: invalid password for DU123" in result.stdout
    assert "Apply failed" in result.stdout
    (world.tmp_path / "other").mkdir()
    skipped = World(emulator, world.tmp_path / "other")
    skipped.add(302)
    emulator.update_project(302, fail_login=True)
    quick = skipped.apply("--wait", "0")
    assert "1 created" in quick.stdout  # not watched: --wait 0


@pytest.fixture
def slow_emulator() -> Iterator[Emulator]:
    emu = Emulator(compile_delay=0.0, startup_delay=1.0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def test_health_waits_for_running_and_times_out_honestly(
    slow_emulator: Emulator, tmp_path: Path
) -> None:
    world = World(slow_emulator, tmp_path)
    world.add(301)
    result = world.apply()
    assert "Waiting up to 120 s for 1 new deployment(s)" in result.stdout
    calls = slow_emulator.stats()["calls"]["live/list"]["total"]
    assert calls <= 6  # one list per poll, backed off: not a read per deployment
    world.add(302)
    impatient = world.apply("--wait", "0.2", expect=1)
    assert "still InQueue after 0.2 s (left running)" in impatient.stdout
    assert len(running_ids(slow_emulator, 302)) == 1


def test_daemon_respects_a_persons_stop_and_restarts_a_crash(
    emulator: Emulator, tmp_path: Path, daemons: list[Daemon]
) -> None:
    world = World(emulator, tmp_path)
    world.add(301)
    world.add(302)
    daemon = Daemon(emulator, tmp_path, world.root, "--resync", "0.5")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 301) and running(emulator, 302), what="initial creates")
    emulator.end(301, "Stopped")
    emulator.kill(302)
    wait_for(lambda: running(emulator, 302), what="the crash restarted")
    settle(daemon, 4)
    assert running_ids(emulator, 301) == [] and emulator.creates_committed(301) == 1
    drifts = [e for e in daemon.events("drift") if e.get("deployment") == "d301"]
    assert len(drifts) == 1 and drifts[0]["cause"] == "stopped"  # once per episode
    assert daemon.metric('reconciler_drift_total{kind="stopped"}') == 1
    assert daemon.metric('reconciler_drift_total{kind="failed"}') == 1
    assert stops(emulator) == []


def test_a_secret_the_api_echoes_back_is_never_stored_or_shown(
    world: World, emulator: Emulator
) -> None:
    ib = (
        "{id: Interactive, user: jdoe, account: DU1, password: {fromEnv: IB_PASSWORD}, "
        'environment: live, weeklyRestartUtcTime: "22:00:00"}'
    )
    emulator.add_project(301)
    emulator.add_node(node_for(301))
    compile_id = emulator.add_compile(301)
    (world.root / "d301.yaml").write_text(doc("d301", 301, compile_id, brokerage=ib))
    emulator.update_project(301, fail_login=f"password {SECRET} was rejected")
    result = world.apply(expect=1)
    assert "Brokerage login failed: password [redacted] was rejected" in result.stdout
    plan = world.run("plan", str(world.root))  # the restart's reason quotes the API's error
    assert "password [redacted] was rejected" in plan.stdout, plan.stdout
    history = world.run("status", "--format", "json")
    files = [p for p in world.tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml"]
    outputs = [result.stdout, result.stderr, plan.stdout, plan.stderr, history.stdout]
    for blob in [text.encode() for text in outputs] + [p.read_bytes() for p in files]:
        assert SECRET.encode() not in blob
