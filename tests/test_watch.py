"""`reconciler watch` as a subprocess daemon against the emulator, with bounded waits."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.emulator import Emulator
from tests.conftest import RECONCILER, cli_env
from tests.test_apply_e2e import manifest, node_for


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class Daemon:
    """`reconciler watch` as a subprocess in `tmp_path`, its JSON log read in a thread;
    `env` adds to the environment `cli_env` gives it."""

    def __init__(
        self, emulator: Emulator, tmp_path: Path, root: Path, *extra: str, **env: str
    ) -> None:
        self.lines: list[dict[str, object]] = []
        self.proc = subprocess.Popen(
            [
                *RECONCILER,
                "watch",
                str(root),
                "--metrics-port",
                "0",
                "--log-format",
                "json",
                *extra,
            ],
            env=cli_env(emulator, tmp_path, **env),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.port is not None, what="metrics port in the log")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"raw": line})

    @property
    def port(self) -> int | None:
        for line in list(self.lines):
            if line.get("event") == "metrics_listening":
                return int(str(line["port"]))
        return None

    def events(self, *names: str) -> list[dict[str, object]]:
        return [line for line in list(self.lines) if line.get("event") in names]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._reader.join(timeout=5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        return code


@pytest.fixture
def root(emulator: Emulator, tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    for project_id in (101, 102, 103, 104):
        emulator.add_project(project_id)
        emulator.add_node(node_for(project_id))
    for project_id in (101, 102):
        write(directory, emulator, project_id)
    return directory


def write(directory: Path, emulator: Emulator, project_id: int) -> None:
    compile_id = emulator.add_compile(project_id)
    (directory / f"d{project_id}.yaml").write_text(
        manifest(f"d{project_id}", project_id, compile_id)
    )


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.terminate()


def running(emulator: Emulator, project_id: int) -> bool:
    return len(emulator.active_deployments(project_id)) == 1


def test_add_invalid_edit_fix_and_metrics(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--resync", "1")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    (first,) = emulator.active_deployments(101)

    write(root, emulator, 103)
    wait_for(lambda: running(emulator, 103), what="create of an added manifest")

    good = (root / "d101.yaml").read_text()
    (root / "d101.yaml").write_text(good.replace("spec:", "spec: [oops"))
    wait_for(lambda: daemon.metric("reconciler_invalid_manifest_files") == 1.0, what="invalid")
    reconciles = daemon.metric('reconciler_reconciles_total{result="ok"}')
    wait_for(
        lambda: daemon.metric('reconciler_reconciles_total{result="ok"}') >= reconciles + 2,
        what="two more reconciles with the invalid file",
    )
    assert emulator.active_deployments(101) == [first]  # nothing stopped or recreated
    assert emulator.creates_committed(101) == 1
    assert daemon.events("invalid_manifest")

    (root / "d101.yaml").write_text(good)
    wait_for(lambda: daemon.metric("reconciler_invalid_manifest_files") == 0.0, what="fixed")
    assert daemon.get("/healthz").status_code == 200
    text = daemon.get("/metrics").text
    assert 'reconciler_api_request_duration_seconds_bucket{endpoint="live/list"' in text
    assert 'reconciler_actions_total{action="create",outcome="created"}' in text
    assert "reconciler_last_success_timestamp_seconds" in text
    assert daemon.terminate() == 0
    for project_id in (101, 102, 103):
        assert emulator.creates_committed(project_id) == 1
    assert emulator.token not in json.dumps(daemon.lines)


def test_api_outage_backs_off_then_recovers(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    # The outage must hit a reconcile of its own, not the first one's health wait (which
    # keeps polling through an outage for up to 120 s, by design).
    wait_for(
        lambda: daemon.metric('reconciler_reconciles_total{result="ok"}') >= 1,
        what="the first reconcile, health wait included",
    )
    before = emulator.stats()["calls"].get("live/list", {}).get("total", 0)
    emulator.inject("live/list", fail=100_000, status=503)
    time.sleep(6)
    during = emulator.stats()["calls"]["live/list"]["total"] - before
    # A tight loop would make hundreds of calls in 6 s; backoff keeps it to a handful.
    assert 1 <= during <= 30, during
    emulator.clear_faults()
    ok = daemon.metric('reconciler_reconciles_total{result="ok"}')
    wait_for(
        lambda: daemon.metric('reconciler_reconciles_total{result="ok"}') > ok,
        timeout=30,
        what="recovery after the outage",
    )
    assert daemon.metric("reconciler_errors_total") >= 1
    assert emulator.creates_committed(101) == emulator.creates_committed(102) == 1


def test_deployment_that_dies_is_noticed_and_recreated(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--resync", "1")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101), what="initial create")
    emulator.kill(101)
    wait_for(lambda: running(emulator, 101), timeout=30, what="re-create after death")
    assert emulator.creates_committed(101) == 2
    assert daemon.events("drift")


def test_sigterm_mid_apply_exits_zero_without_duplicates(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    for project_id in (103, 104):
        write(root, emulator, project_id)
    emulator.inject("live/create", latency=1.0)
    daemon = Daemon(emulator, tmp_path, root, "--resync", "60")
    wait_for(lambda: len(emulator.stats()["create_times"]) >= 1, what="a create in flight")
    started = time.monotonic()
    assert daemon.terminate(timeout=30) == 0
    assert time.monotonic() - started < 30
    emulator.clear_faults()
    again = Daemon(emulator, tmp_path, root, "--resync", "60")
    daemons.append(again)
    wait_for(lambda: all(running(emulator, p) for p in (101, 102, 103, 104)), what="all up")
    assert again.terminate() == 0
    for project_id in (101, 102, 103, 104):
        assert emulator.creates_committed(project_id) == 1
