"""Day 2 as a user runs it: replace and prune, against the emulator on loopback.

One test per safety property (DESIGN §11): every stop before any create, never two
deployments on a project, never a create while the old one runs, never a stop of what this
reconciler did not create or adopt, and a crash at any point resumed from live state.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from tests.conftest import RECONCILER, cli_env
from tests.test_apply_e2e import SECRET, assert_no_traceback, node_for, run

PROJECTS = (301, 302, 303)


def doc(
    name: str,
    project_id: int,
    compile_id: str,
    *,
    node: str | None = None,
    extra: str = "",
    brokerage: str = "{id: PaperTrading}",
) -> str:
    return (
        "apiVersion: reconciler/v1\n"
        "kind: LiveDeployment\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n"
        f"  projectId: {project_id}\n"
        f'  compileId: "{compile_id}"\n'
        f'  nodeId: "{node or node_for(project_id)}"\n'
        f"  brokerage: {brokerage}\n"
        f"{extra}"
    )


class World:
    """Manifests in a directory, and the emulator seeded for them."""

    def __init__(self, emulator: Emulator, tmp_path: Path) -> None:
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.root = tmp_path / "deployments"
        self.root.mkdir()
        self.compiles: dict[int, str] = {}

    def add(self, project_id: int, *, extra: str = "", node: str | None = None) -> None:
        if not self.emulator.has_project(project_id):
            self.emulator.add_project(project_id, name=f"p{project_id}")
        if not self.emulator.has_node(node or node_for(project_id)):
            self.emulator.add_node(node or node_for(project_id))
        self.compiles[project_id] = self.emulator.add_compile(project_id)
        self.write(project_id, extra=extra, node=node)

    def write(
        self, project_id: int, *, extra: str = "", node: str | None = None, compile_id: str = ""
    ) -> None:
        compile_id = compile_id or self.compiles[project_id]
        (self.root / f"d{project_id}.yaml").write_text(
            doc(f"d{project_id}", project_id, compile_id, node=node, extra=extra)
        )

    def new_build(self, project_id: int, **kwargs: str) -> str:
        """A new compile of the project, and the manifest pointing at it."""
        self.compiles[project_id] = self.emulator.add_compile(project_id)
        self.write(project_id, **kwargs)
        return self.compiles[project_id]

    def remove(self, project_id: int) -> None:
        (self.root / f"d{project_id}.yaml").unlink()

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = run(self.emulator, self.tmp_path, *args, **env)
        assert_no_traceback(result)
        return result

    def apply(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = self.run("apply", str(self.root), "--yes", *args)
        assert result.returncode == expect, result.stdout + result.stderr
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*RECONCILER, "apply", str(self.root), "--yes", *args],
            env=cli_env(self.emulator, self.tmp_path, IB_PASSWORD=SECRET),
            cwd=self.tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path) -> World:
    w = World(emulator, tmp_path)
    for project_id in PROJECTS:
        w.add(project_id)
    return w


def running_ids(emulator: Emulator, project_id: int) -> list[str]:
    return [d["deployId"] for d in emulator.active_deployments(project_id)]


def stops(emulator: Emulator) -> list[dict[str, object]]:
    return list(emulator.stats()["stops"])


def assert_safe(emulator: Emulator, seeded: frozenset[str] = frozenset()) -> None:
    """The invariants: one deployment per project at most, no create refused because the
    project or node was busy (never a create while the old one runs), and every stop was of
    a deployment created through the API (by us) or seeded and adopted."""
    stats = emulator.stats()
    assert stats["rejections"].get("project busy", 0) == 0, stats["rejections"]
    assert stats["rejections"].get("node busy", 0) == 0, stats["rejections"]
    created = {c["deployId"] for c in stats["created"]}
    for stop in stats["stops"]:
        assert stop["deployId"] in created | seeded, stop
    for project_id in {d["projectId"] for d in emulator.active_deployments()}:
        assert len(emulator.active_deployments(project_id)) == 1, project_id


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


# ---- replace ------------------------------------------------------------------------------


def test_new_build_is_replaced_stop_then_create(world: World, emulator: Emulator) -> None:
    world.apply()
    old = running_ids(emulator, 301)
    new_compile = world.new_build(301)
    plan = world.run("plan", str(world.root), "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "~ replace" in plan.stdout and f'-> "{new_compile}"' in plan.stdout
    result = world.apply()
    assert "1 replaced" in result.stdout
    (new,) = running_ids(emulator, 301)
    assert new not in old
    assert [s["deployId"] for s in stops(emulator)] == old
    assert stops(emulator)[0]["status"] == "Stopped"  # stopped, never liquidated
    assert emulator.creates_committed(301) == 2
    assert_safe(emulator)
    again = world.run("plan", str(world.root), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout


def test_replace_diff_golden_text_and_json(world: World, emulator: Emulator) -> None:
    world.apply()
    world.emulator.add_compile(302, "c0ffee00-0000")
    world.write(
        302,
        compile_id="c0ffee00-0000",
        extra='  versionId: "-1"\n  automaticRedeploy: true\n',
    )
    plan = world.run("plan", str(world.root))
    assert plan.returncode == 0, plan.stderr
    old_compile = world.compiles[302]
    lines = [
        line for line in plan.stdout.splitlines() if "d302" in line or line.startswith(" " * 8)
    ]
    assert lines == [
        "  ~ replace   d302 (project 302): spec changed: automaticRedeploy, compileId",
        "        + automaticRedeploy: true",
        f'        ~ compileId: "{old_compile}" -> "c0ffee00-0000"',
    ]
    document = json.loads(world.run("plan", str(world.root), "--format", "json").stdout)
    (replace,) = [a for a in document["actions"] if a["action"] == "replace"]
    assert replace["changes"] == [
        {"path": "automaticRedeploy", "from": None, "to": True},
        {"path": "compileId", "from": old_compile, "to": "c0ffee00-0000"},
    ]
    assert replace["deployId"] == running_ids(emulator, 302)[0]
    assert document["summary"]["replace"] == 1


def test_secret_reference_change_shows_the_reference_never_the_value(
    world: World, emulator: Emulator
) -> None:
    ib = (
        "{{id: Interactive, user: jdoe, account: DU1, password: {{fromEnv: {var}}}, "
        'environment: live, weeklyRestartUtcTime: "22:00:00"}}'
    )
    path = world.root / "d303.yaml"
    path.write_text(doc("d303", 303, world.compiles[303], brokerage=ib.format(var="IB_PASSWORD")))
    world.apply()
    path.write_text(doc("d303", 303, world.compiles[303], brokerage=ib.format(var="IB_PW_NEW")))
    plan = world.run("plan", str(world.root), "--format", "json")
    (replace,) = [a for a in json.loads(plan.stdout)["actions"] if a["action"] == "replace"]
    assert replace["changes"] == [
        {
            "path": "brokerage.password",
            "from": "<from env IB_PASSWORD>",
            "to": "<from env IB_PW_NEW>",
        }
    ]
    text = world.run("plan", str(world.root))
    assert '~ brokerage.password: "<from env IB_PASSWORD>" -> "<from env IB_PW_NEW>"' in (
        text.stdout
    )
    assert SECRET not in plan.stdout + text.stdout


def test_spelled_out_defaults_are_not_a_change(world: World) -> None:
    world.apply()
    world.write(301, extra='  versionId: "-1"\n  automaticRedeploy: false\n')
    plan = world.run("plan", str(world.root), "--detailed-exitcode")
    assert plan.returncode == 0 and "No changes" in plan.stdout, plan.stdout


def test_forced_replace_of_an_in_sync_deployment(world: World, emulator: Emulator) -> None:
    world.apply()
    old = running_ids(emulator, 302)
    result = world.apply("--replace", "d302")
    assert "forced by --replace" in result.stdout and "1 replaced" in result.stdout
    assert running_ids(emulator, 302) != old and len(running_ids(emulator, 302)) == 1
    unknown = world.run("apply", str(world.root), "--yes", "--replace", "nope")
    assert unknown.returncode == 1 and "--replace nope: no manifest" in unknown.stderr
    assert_safe(emulator)


def test_replace_with_commit_then_drop_on_the_new_create(world: World, emulator: Emulator) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/create", drop=1)
    result = world.apply()
    assert "confirmed from live state" in result.stdout
    assert len(running_ids(emulator, 301)) == 1
    assert emulator.creates_committed(301) == 2
    assert len([t for t in emulator.stats()["create_times"] if t["projectId"] == 301]) == 2
    assert_safe(emulator)


@pytest.mark.parametrize("fault", [{"fail": 1, "status": 503}, {"drop": 1}])
def test_fault_on_the_stop_is_verified_then_settled(
    world: World, emulator: Emulator, fault: dict[str, float]
) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/update/stop", **fault)
    world.apply()
    assert len(running_ids(emulator, 301)) == 1
    assert emulator.creates_committed(301) == 2
    assert len(stops(emulator)) == 1
    assert_safe(emulator)


def test_sigkill_between_stop_and_create_is_resumed(world: World, emulator: Emulator) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/list", latency=3.0)  # the read that confirms the stop hangs
    proc = world.popen()
    wait_for(lambda: len(stops(emulator)) == 1)
    kill(proc)
    emulator.clear_faults()
    assert running_ids(emulator, 301) == [] and emulator.creates_committed(301) == 1
    plan = world.run("plan", str(world.root))
    assert "continuing a replace" in plan.stdout, plan.stdout
    world.apply()
    assert len(running_ids(emulator, 301)) == 1 and emulator.creates_committed(301) == 2
    assert_safe(emulator)
    state = json.loads(world.run("status", "--format", "json").stdout)
    (row,) = [r for r in state["deployments"] if r["name"] == "d301"]
    assert row["owned"] and row["liveStatus"] == "Running"


def test_sigkill_between_create_and_its_record_is_adopted_as_created(
    world: World, emulator: Emulator
) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/create", latency=1.5)
    proc = world.popen()
    wait_for(lambda: any(t["projectId"] == 301 for t in emulator.stats()["create_times"][3:]))
    kill(proc)
    wait_for(lambda: emulator.creates_committed(301) == 2)  # it lands server-side
    emulator.clear_faults()
    result = world.apply()
    assert "resolved an interrupted create" in result.stdout or "replaced" in result.stdout
    assert "No changes" in world.run("plan", str(world.root)).stdout
    assert emulator.creates_committed(301) == 2
    # Ownership survived the crash: the replacement is ours to prune.
    world.remove(301)
    pruned = world.apply("--prune")
    assert "pruned" in pruned.stdout and running_ids(emulator, 301) == []
    assert_safe(emulator)


def test_state_lost_after_the_stop_never_restarts_on_a_guess(
    world: World, emulator: Emulator
) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/list", latency=3.0)
    proc = world.popen()
    wait_for(lambda: len(stops(emulator)) == 1)
    kill(proc)
    emulator.clear_faults()
    for suffix in ("", "-wal", "-shm"):
        (world.tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    # With no record, the project's last deployment (Stopped) stands in for it: a stop
    # this reconciler cannot prove was its own is a person's (DESIGN §11): drift, exit 0.
    result = world.apply()
    assert "drift" in result.stdout and "--restart d301" in result.stdout
    assert running_ids(emulator, 301) == [] and emulator.creates_committed(301) == 1
    for project_id in (302, 303):  # adopted, not created again
        assert emulator.creates_committed(project_id) == 1
    world.apply("--restart", "d301")
    assert len(running_ids(emulator, 301)) == 1 and emulator.creates_committed(301) == 2
    assert "No changes" in world.run("plan", str(world.root)).stdout
    assert_safe(emulator)


def test_two_applies_at_once_replace_once(world: World, emulator: Emulator) -> None:
    world.apply()
    world.new_build(301)
    emulator.inject("live/create", latency=0.3)
    procs = [world.popen() for _ in range(2)]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert emulator.creates_committed(301) == 2 and len(stops(emulator)) == 1
    assert_safe(emulator)


def test_two_deployments_swap_nodes_in_one_run(world: World, emulator: Emulator) -> None:
    world.apply()
    world.write(301, node=node_for(302))
    world.write(302, node=node_for(301))
    result = world.apply()
    assert "2 replaced" in result.stdout, result.stdout
    assert emulator.stats()["rejections"].get("node busy", 0) == 0
    nodes = {d["projectId"]: d for d in emulator.world.deployments if d["status"] == "Running"}
    assert nodes[301]["nodeId"] == node_for(302) and nodes[302]["nodeId"] == node_for(301)
    assert_safe(emulator)


def test_compile_latest_follows_the_projects_code(emulator: Emulator, tmp_path: Path) -> None:
    w = World(emulator, tmp_path)
    w.add(301)
    w.write(301, compile_id="latest")
    w.apply()
    assert "No changes" in w.run("plan", str(w.root)).stdout
    before = emulator.stats()["calls"].get("projects/read", {}).get("total", 0)
    assert w.run("plan", str(w.root)).returncode == 0
    assert emulator.stats()["calls"]["projects/read"]["total"] - before == 1  # one list
    emulator.touch_project(301)
    plan = w.run("plan", str(w.root))
    assert re.search(r"project 301 changed after compile \S+-\S+ \(modified ", plan.stdout)
    w.apply()
    assert emulator.creates_committed(301) == 2
    assert "No changes" in w.run("plan", str(w.root)).stdout
    assert_safe(emulator)


# ---- protection ---------------------------------------------------------------------------


def test_protected_deployment_is_never_stopped(world: World, emulator: Emulator) -> None:
    world.write(301, extra="  protected: true\n")
    world.apply()
    world.new_build(301, extra="  protected: true\n")
    blocked = world.apply(expect=1)
    assert "blocked" in blocked.stdout and "protected" in blocked.stdout
    forced = world.apply("--replace", "d301", expect=1)
    assert "blocked" in forced.stdout
    world.remove(301)
    pruned = world.apply("--prune", expect=1)
    assert "blocked" in pruned.stdout and "protected" in pruned.stdout
    assert stops(emulator) == [] and len(running_ids(emulator, 301)) == 1


# ---- prune --------------------------------------------------------------------------------


def test_prune_is_opt_in_and_follows_on_delete(world: World, emulator: Emulator) -> None:
    world.write(302, extra="  onDelete: liquidate\n")
    world.apply()
    world.remove(301)
    world.remove(302)
    pending = world.apply()
    assert "2 pending" in pending.stdout and "--prune" in pending.stdout
    assert stops(emulator) == []
    world.apply("--prune")
    by_project = {s["projectId"]: s["status"] for s in stops(emulator)}
    assert by_project == {301: "Stopped", 302: "Liquidated"}
    assert len(running_ids(emulator, 303)) == 1
    assert "No changes" in world.run("plan", str(world.root)).stdout
    history = world.run("status", "--format", "json")
    assert {r["name"] for r in json.loads(history.stdout)["deployments"]} == {"d303"}
    assert_safe(emulator)


def test_prune_interlock_empty_desired_set(world: World, emulator: Emulator) -> None:
    world.apply()
    for project_id in PROJECTS:
        world.remove(project_id)
    result = world.apply("--prune", expect=1)
    assert "no manifests were found" in result.stdout
    assert stops(emulator) == []
    assert all(len(running_ids(emulator, p)) == 1 for p in PROJECTS)


def test_prune_interlock_max_prunes(emulator: Emulator, tmp_path: Path) -> None:
    w = World(emulator, tmp_path)
    projects = tuple(range(311, 319))
    for project_id in projects:
        w.add(project_id)
    w.apply()
    for project_id in projects[:7]:
        w.remove(project_id)
    refused = w.apply("--prune", expect=1)
    assert "7 prunes exceed --max-prunes 5" in refused.stdout
    assert stops(emulator) == []
    w.add(319)  # the run's creates still proceed
    assert w.apply("--prune", expect=1).returncode == 1
    assert len(running_ids(emulator, 319)) == 1 and stops(emulator) == []
    w.apply("--prune", "--max-prunes", "7")
    assert len(stops(emulator)) == 7
    assert_safe(emulator)


def test_adopted_deployment_is_released_never_stopped(world: World, emulator: Emulator) -> None:
    emulator.add_project(304)
    emulator.add_node(node_for(304))
    seeded = emulator.add_live(304, node_for(304), {"id": "QuantConnectBrokerage"})
    world.compiles[304] = emulator.add_compile(304)
    world.write(304)
    adopted = world.apply()
    assert "adopted" in adopted.stdout
    world.remove(304)
    released = world.apply("--prune")
    assert "released" in released.stdout
    assert running_ids(emulator, 304) == [seeded] and stops(emulator) == []
    after = world.run("plan", str(world.root))
    assert "unmanaged" in after.stdout and seeded in after.stdout
    assert_safe(emulator, frozenset({seeded}))


def test_unmanaged_deployments_are_never_stopped_by_prune(world: World, emulator: Emulator) -> None:
    emulator.add_project(399)
    emulator.add_node(node_for(399))
    foreign = emulator.add_live(399, node_for(399), {"id": "QuantConnectBrokerage"})
    world.apply("--prune")
    world.remove(301)
    world.apply("--prune")
    assert running_ids(emulator, 399) == [foreign]
    assert [s["projectId"] for s in stops(emulator)] == [301]
    assert_safe(emulator)


def test_a_pruned_manifest_that_comes_back_is_deployed_again(
    world: World, emulator: Emulator
) -> None:
    # Found by the campaign (seeds 1019, 1088, 1125, 1180): our own prune is not a
    # person's stop, even once its record is gone.
    world.apply()
    saved = (world.root / "d301.yaml").read_text()
    world.remove(301)
    world.apply("--prune")
    (world.root / "d301.yaml").write_text(saved)
    plan = world.run("plan", str(world.root), "--detailed-exitcode")
    assert plan.returncode == 2 and "stopped by this reconciler" in plan.stdout, plan.stdout
    world.apply()
    assert len(running_ids(emulator, 301)) == 1 and emulator.creates_committed(301) == 2
    assert_safe(emulator)


def test_a_renamed_manifest_keeps_its_deployment_and_its_ownership(
    world: World, emulator: Emulator
) -> None:
    world.apply()
    (deploy_id,) = running_ids(emulator, 301)
    text = (world.root / "d301.yaml").read_text()
    world.remove(301)  # renamed, and moved to another file
    (world.root / "renamed.yaml").write_text(text.replace("name: d301", "name: spy-renamed"))
    plan = world.run("plan", str(world.root), "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout  # the deployment is untouched: no change
    assert "= rename    spy-renamed (project 301): renamed from d301; in sync" in plan.stdout
    world.apply("--prune")  # the old name is not pruned: it is the same deployment
    assert stops(emulator) == [] and running_ids(emulator, 301) == [deploy_id]
    status = json.loads(world.run("status", "--format", "json").stdout)["deployments"]
    assert {r["name"] for r in status} == {"spy-renamed", "d302", "d303"}
    history = world.run("state", "history", "spy-renamed").stdout
    assert "renamed from d301 to spy-renamed" in history
    # Still ours: removing it now prunes it (an adopted deployment would only be released).
    (world.root / "renamed.yaml").unlink()
    world.apply("--prune")
    assert [s["projectId"] for s in stops(emulator)] == [301]
    assert_safe(emulator)
