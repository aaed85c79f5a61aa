"""QuantConnect's own client, lean-cli, against the emulator: log in, read, stop.

lean-cli (PyPI `lean`) talks to http://localhost:5612/api/v2/ when QC_API=local, so the
emulator runs as `reconciler emulator --port 5612` on 127.0.0.1. lean-cli is installed once
per session into a temporary virtual environment; where it cannot be (no package index),
the test skips with the reason, and fails instead with RECONCILER_TEST_REALCLIENT_REQUIRED=1
(set by .ci/run), so CI always runs it.

Nothing leaves the machine: lean-cli's own calls out (its modules file from QuantConnect's
CDN, update checks on PyPI and GitHub) go to a proxy on a loopback port that refuses every
connection, and only the emulator is reached directly. Its modules file is then written
empty where its import error says, and its update checks are marked as just done.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

LEAN_VERSION = "1.0.230"
LEAN = f"lean=={LEAN_VERSION}"
REQUIRED_ENV = "RECONCILER_TEST_REALCLIENT_REQUIRED"
PORT = 5612  # lean-cli's QC_API=local address: http://localhost:5612/api/v2/
USER_ID = "4242"
TOKEN = "c0ffee" * 10 + "c0de"
PROJECT = 1001
PROJECT_NAME = "lean-cli-demo"
NODE = "LN-64d4787830461ee45574254f643f69b3"
MODULES_MISSING = re.compile(r"Modules json not found in the given path (.+?\.json)(?::|$)", re.M)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

pytestmark = pytest.mark.realclient


@dataclass(frozen=True)
class Lean:
    executable: Path
    dead_proxy: str  # a loopback port that refuses connections


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if "is ignored" not in line]
    return lines[-1].strip() if lines else "no output"


def _offline_env(home: Path, dead_proxy: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("QC_", "RECONCILER_")) and key.lower() not in PROXY_VARIABLES
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = dead_proxy
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    env.update(HOME=str(home), QC_API="local", COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")
    return env


def _install(root: Path, dead_proxy: str) -> Lean | str:
    """lean-cli in a virtual environment under `root`, ready to run offline; or why not."""
    venv = root / "venv"
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    steps = (
        ("create a virtual environment", [sys.executable, "-m", "venv", "--without-pip", venv]),
        # This interpreter's pip installs into the new environment: no pip copied there.
        (f"install lean=={LEAN_VERSION}", [*pip, "install", "--no-compile", "-q", LEAN]),
    )
    for what, command in steps:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return f"cannot {what}: no answer in 600 s"
        if done.returncode != 0:
            return f"cannot {what}: {_last_line(done.stderr or done.stdout)}"
    lean = venv / "bin" / "lean"
    home = root / "home"
    home.mkdir()
    for _ in range(2):  # the second run after writing the modules file lean-cli asked for
        try:
            done = subprocess.run(
                [lean, "--version"],
                capture_output=True,
                text=True,
                timeout=120,
                env=_offline_env(home, dead_proxy),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return "lean --version did not answer in 120 s"
        if done.returncode == 0:
            return Lean(lean, dead_proxy)
        missing = MODULES_MISSING.search(done.stderr)
        if missing is None:
            break
        Path(missing.group(1)).write_text('{"modules": []}', encoding="utf-8")
    return f"lean --version fails offline: {_last_line(done.stderr or done.stdout)}"


@pytest.fixture(scope="session")
def lean_install() -> Iterator[Lean | str]:
    # Bound and never listening: every connection to it is refused at once.
    refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refuser.bind(("127.0.0.1", 0))
    root = Path(tempfile.mkdtemp(prefix="reconciler-lean-cli-"))
    try:
        yield _install(root, f"http://127.0.0.1:{refuser.getsockname()[1]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        refuser.close()


def require(reason: str) -> None:
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"the real-client test is required ({REQUIRED_ENV}=1): {reason}")
    pytest.skip(reason)


@pytest.fixture
def lean(lean_install: Lean | str) -> Lean:
    if isinstance(lean_install, str):
        require(lean_install)
    assert isinstance(lean_install, Lean)
    return lean_install


# ---- the emulator, as a user starts it ---------------------------------------------------


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def _port_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the emulator binds
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError:
            return False
    return True


def wait_for_port(seconds: float = 60) -> None:
    """lean-cli's port is fixed: another run of this test on the machine may hold it for a
    few seconds. Wait for it (bounded), then skip with the reason."""
    deadline = time.monotonic() + seconds
    while not _port_free():
        if time.monotonic() > deadline:
            require(f"port {PORT} (lean-cli's QC_API=local address) stayed in use {seconds:g} s")
        time.sleep(0.5)


@contextlib.contextmanager
def emulator_process(workdir: Path) -> Iterator[subprocess.Popen[str]]:
    wait_for_port()
    seed = workdir / "seed.yaml"
    seed.write_text(
        f"projects: [{{projectId: {PROJECT}, name: {PROJECT_NAME}}}]\n"
        f"nodes: [{{id: {NODE}, name: L-MICRO}}]\n"
        f"live: [{{projectId: {PROJECT}, nodeId: {NODE}}}]\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QC_", "RECONCILER_"))}
    env.update(QC_USER_ID=USER_ID, QC_API_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "reconciler", "emulator", "--host", "127.0.0.1"]
    command += ["--port", str(PORT), "--seed", str(seed)]
    with open(workdir / "emulator.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=workdir,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the emulator did not start within 30 s")
            if line is None:
                proc.wait(timeout=10)
                error = (workdir / "emulator.log").read_text(encoding="utf-8").strip()
                require(f"the emulator cannot serve on port {PORT}: {error}")
            elif line.startswith("stop with"):
                break
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            proc.stdout.close()


def call(endpoint: str, body: dict[str, Any]) -> Any:
    """POST with a JSON body, as our own client asks."""
    stamp = str(int(time.time()))
    digest = hashlib.sha256(f"{TOKEN}:{stamp}".encode()).hexdigest()
    basic = base64.b64encode(f"{USER_ID}:{digest}".encode()).decode()
    auth = {"Timestamp": stamp, "Authorization": f"Basic {basic}"}
    url = f"http://127.0.0.1:{PORT}/{endpoint}"
    answer = httpx.post(url, json=body, headers=auth, timeout=10).json()
    assert answer["success"] is True, answer
    return answer


# ---- the test ----------------------------------------------------------------------------


def run_lean(lean: Lean, workdir: Path, home: Path, *args: str) -> str:
    done = subprocess.run(
        [lean.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env=_offline_env(home, lean.dead_proxy),
        stdin=subprocess.DEVNULL,  # a prompt fails at once instead of waiting
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"lean {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def test_lean_cli_logs_in_reads_and_stops(lean: Lean, tmp_path: Path) -> None:
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir()
    (home / ".lean").mkdir(parents=True)
    now = time.time()
    # Update checks (PyPI, GitHub) just done, the data-file refresh off: no call out.
    (home / ".lean" / "cache").write_text(
        json.dumps({"last-update-check-cli": now, "last-update-check-announcements": now})
    )
    (home / ".lean" / "config").write_text(json.dumps({"database-update-frequency": "-"}))
    with emulator_process(workdir):
        live = call("api/v2/live/read", {"projectId": PROJECT})
        organization = call("api/v2/projects/read", {})["projects"][0]["organizationId"]
        # What `lean init` would leave: the working organisation of this folder.
        (workdir / "lean.json").write_text(json.dumps({"job-organization-id": organization}))

        login = run_lean(lean, workdir, home, "login", "--user-id", USER_ID, "--api-token", TOKEN)
        assert "Successfully logged in" in login
        saved = json.loads((home / ".lean" / "credentials").read_text())
        assert (saved["user-id"], saved["api-token"]) == (USER_ID, TOKEN)

        before = run_lean(lean, workdir, home, "cloud", "status", PROJECT_NAME)
        for line in (
            f"Project id: {PROJECT}",
            f"Project name: {PROJECT_NAME}",
            "Live status: Running",
            f"Live id: {live['deployId']}",
        ):
            assert line in before, before
        assert "Stopped:" not in before

        stopped = run_lean(lean, workdir, home, "cloud", "live", "stop", str(PROJECT))
        assert "cloud.live.stop(): command executed successfully." in stopped

        after = run_lean(lean, workdir, home, "cloud", "status", PROJECT_NAME)
        assert "Live status: Stopped" in after and f"Live id: {live['deployId']}" in after
        assert re.search(r"^Stopped: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", after, re.M), after

        read = call("api/v2/live/read", {"projectId": PROJECT})
        assert (read["deployId"], read["status"]) == (live["deployId"], "Stopped")
        stats = call("_emulator/stats", {})
    assert [(s["deployId"], s["status"]) for s in stats["stops"]] == [(live["deployId"], "Stopped")]
    # lean-cli read with GET and query parameters, and stopped with POST.
    assert stats["methods"]["authenticate"] == {"GET": 1}
    assert stats["methods"]["projects/read"] == {"POST": 1, "GET": 3}
    assert stats["methods"]["live/read"] == {"POST": 2, "GET": 2}
    assert stats["methods"]["live/update/stop"] == {"POST": 1}
    assert all(
        counts == {"total": counts["total"], "200": counts["total"]}
        for counts in stats["calls"].values()
    ), stats["calls"]
