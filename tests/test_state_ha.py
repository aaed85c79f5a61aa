"""Highly available `watch` on PostgreSQL: one leader per workspace acts, standbys wait
ready and take over within twice the lease; a leader cut off or frozen stops acting and is
fenced.  Daemons are subprocesses against the emulator, with a 1 s lease."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.emulator import Emulator
from tests.postgres_support import Partition, new_workspace, postgres_url, terminate_sessions
from tests.test_apply_e2e import manifest, node_for
from tests.test_watch import Daemon

pytestmark = pytest.mark.slow

LEASE = 1.0


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> float:
    """Seconds it took; fails after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)
    return time.monotonic() - started


class Watcher(Daemon):
    """`reconciler watch` on the shared state, in a home of its own (it keeps nothing)."""

    def __init__(self, emulator: Emulator, tmp_path: Path, root: Path, state: dict[str, str],
                 name: str) -> None:  # fmt: skip
        home = tmp_path / name
        home.mkdir()
        super().__init__(emulator, home, root, "--resync", "1", "--lease", str(LEASE), **state)

    def health(self) -> tuple[int, str]:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except httpx.HTTPError:
            return 0, ""
        return answer.status_code, str(answer.json().get("role", ""))

    def role(self) -> str:
        return self.health()[1]

    def leader_gauge(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        (line,) = [x for x in text.splitlines() if x.startswith("reconciler_leader ")]
        return float(line.split()[1])

    def creates(self) -> list[str]:
        return [str(e["deployment"]) for e in self.events("create") if e.get("result")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def workspace() -> Iterator[str]:
    yield from new_workspace()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.stop()


class World:
    def __init__(self, emulator: Emulator, tmp_path: Path) -> None:
        self.emulator = emulator
        self.root = tmp_path / "deployments"
        self.root.mkdir()

    def add(self, project_id: int) -> None:
        self.emulator.add_project(project_id)
        self.emulator.add_node(node_for(project_id))
        compile_id = self.emulator.add_compile(project_id)
        (self.root / f"d{project_id}.yaml").write_text(
            manifest(f"d{project_id}", project_id, compile_id)
        )

    def running(self, *projects: int) -> bool:
        return all(len(self.emulator.active_deployments(p)) == 1 for p in projects)

    def assert_one_create_each(self, *projects: int) -> None:
        for project_id in projects:
            assert self.emulator.creates_committed(project_id) == 1, project_id
        assert self.emulator.stats()["rejections"].get("project busy", 0) == 0


def start_pair(
    emulator: Emulator, tmp_path: Path, world: World, workspace: str, watchers: list[Watcher]
) -> tuple[Watcher, Watcher]:
    state = {"RECONCILER_STATE": postgres_url(), "RECONCILER_WORKSPACE": workspace}
    first = Watcher(emulator, tmp_path, world.root, state, "a")
    watchers.append(first)
    wait_for(lambda: first.role() == "leader", what="the first daemon to lead")
    second = Watcher(emulator, tmp_path, world.root, state, "b")
    watchers.append(second)
    wait_for(lambda: second.health() == (200, "standby"), what="the second to stand by")
    return first, second


def test_standby_is_ready_and_takes_over_within_twice_the_lease_after_sigkill(
    emulator: Emulator, tmp_path: Path, workspace: str, watchers: list[Watcher]
) -> None:
    world = World(emulator, tmp_path)
    for project_id in (701, 702):
        world.add(project_id)
    leader, standby = start_pair(emulator, tmp_path, world, workspace, watchers)
    wait_for(lambda: world.running(701, 702), what="the leader's creates")
    assert (leader.leader_gauge(), standby.leader_gauge()) == (1.0, 0.0)
    time.sleep(2 * LEASE)  # the standby keeps standing by while the leader renews
    assert standby.health() == (200, "standby") and standby.creates() == []

    leader.proc.send_signal(signal.SIGKILL)
    took = wait_for(lambda: standby.role() == "leader", timeout=10, what="the takeover")
    assert took < 2 * LEASE, took
    assert standby.leader_gauge() == 1.0
    world.add(703)
    wait_for(lambda: world.running(703), what="the new leader's create")
    wait_for(lambda: standby.creates() == ["d703"], what="the new leader's log of it")
    world.assert_one_create_each(701, 702, 703)


def handover(old: Watcher, new: Watcher, timeout: float = 10.0) -> tuple[float, float]:
    """Seconds until the old leader stands by, and until the new one leads (polled
    together, so their order is observed)."""
    started = time.monotonic()
    stepped_down = took_over = None
    while stepped_down is None or took_over is None:
        now = time.monotonic() - started
        assert now < timeout, (stepped_down, took_over)
        if stepped_down is None and old.role() != "leader":
            stepped_down = now
        if took_over is None and new.role() == "leader":
            took_over = now
        time.sleep(0.02)
    return stepped_down, took_over


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_leader_cut_off_from_the_database_stops_before_the_standby_takes_over(
    emulator: Emulator, tmp_path: Path, workspace: str, watchers: list[Watcher], fault: str
) -> None:
    world = World(emulator, tmp_path)
    world.add(711)
    partition = Partition()
    try:
        leader = Watcher(
            emulator, tmp_path, world.root,
            {"RECONCILER_STATE": partition.url, "RECONCILER_WORKSPACE": workspace}, "a",
        )  # fmt: skip
        watchers.append(leader)
        wait_for(lambda: leader.role() == "leader", what="the first daemon to lead")
        standby = Watcher(
            emulator, tmp_path, world.root,
            {"RECONCILER_STATE": postgres_url(), "RECONCILER_WORKSPACE": workspace}, "b",
        )  # fmt: skip
        watchers.append(standby)
        wait_for(lambda: world.running(711), what="the first create")
        wait_for(lambda: standby.health() == (200, "standby"), what="the standby")

        if fault == "cut":
            # Sessions ended once: the leader reconnects and keeps its lease; nobody else acts.
            assert terminate_sessions(workspace, pid=leader.proc.pid) >= 1
            time.sleep(2 * LEASE)
            assert (leader.role(), standby.role()) == ("leader", "standby")

        # Cut off for good (connections closed, or packets lost and calls hanging).
        if fault == "cut":
            partition.cut()
        else:
            partition.blackhole()
        world.add(712)
        stepped_down, took_over = handover(leader, standby)
        assert stepped_down < took_over < 2 * LEASE, (stepped_down, took_over)
        wait_for(lambda: standby.creates() == ["d712"], what="the create by the new leader")
        partition.heal()
        time.sleep(2 * LEASE)  # the old leader is back in touch, and stands by
        assert (leader.role(), standby.role()) == ("standby", "leader")
        world.assert_one_create_each(711, 712)
        assert leader.creates() == ["d711"]
    finally:
        partition.close()


def test_frozen_leader_is_replaced_and_fenced_when_it_wakes(
    emulator: Emulator, tmp_path: Path, workspace: str, watchers: list[Watcher]
) -> None:
    world = World(emulator, tmp_path)
    world.add(721)
    leader, standby = start_pair(emulator, tmp_path, world, workspace, watchers)
    wait_for(lambda: world.running(721), what="the first create")
    emulator.inject("live/list", latency=1.5)  # the next reconcile pauses on its live read
    world.add(722)
    wait_for(
        lambda: (
            emulator.stats()["calls"].get("live/list", {}).get("total", 0) > 0
            and bool(leader.events("manifests_changed"))
        ),
        what="the leader's reconcile of the new manifest",
    )
    leader.proc.send_signal(signal.SIGSTOP)  # frozen mid-reconcile, holding its lease
    try:
        wait_for(lambda: standby.role() == "leader", timeout=10, what="the takeover")
        wait_for(lambda: world.running(722), timeout=20, what="the new leader's create")
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    emulator.clear_faults()
    time.sleep(2 * LEASE)  # the old leader wakes, finds its lease gone, sends nothing
    assert leader.role() == "standby"
    wait_for(lambda: standby.creates() == ["d722"], what="the new leader's log of it")
    world.assert_one_create_each(721, 722)
    assert "d722" not in leader.creates()


def test_with_sqlite_a_daemon_always_leads(emulator: Emulator, tmp_path: Path) -> None:
    world = World(emulator, tmp_path)
    world.add(731)
    daemon = Watcher(
        emulator, tmp_path, world.root, {"RECONCILER_STATE": str(tmp_path / "s.db")}, "a"
    )
    try:
        wait_for(lambda: world.running(731), what="the create")
        assert daemon.health() == (200, "leader") and daemon.leader_gauge() == 1.0
    finally:
        daemon.stop()
