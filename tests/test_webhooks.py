"""The webhook receiver (DESIGN §15): every answer on a real loopback listener, a burst
that is one fetch, and a daemon that reconciles a pushed commit as soon as its hook comes."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.emulator import Emulator
from reconciler.serve import HttpServer
from reconciler.serve import hooks as hook_routes
from reconciler.sources.git import GitFollower
from tests.conftest import RECONCILER, cli_env
from tests.git_support import GIT_ENV, Repo
from tests.receivers import Receiver as NotificationReceiver
from tests.test_day2_e2e import doc
from tests.test_git_source import history, project
from tests.test_watch import Daemon, daemons, wait_for

__all__ = ["daemons"]

SECRET = b"hook-Secret-5150-keep-out"


def github(body: bytes, secret: bytes = SECRET, **headers: str) -> dict[str, str]:
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", **headers}


def push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps(
        {"ref": ref, "after": "f" * 40, "repository": {"default_branch": "main"}}
    ).encode()


class Listener:
    """The hook routes on 127.0.0.1:0, counting wakes and answers by result."""

    def __init__(self, ref: str | None = None) -> None:
        self.wakes = 0
        self.results: list[str] = []
        self.receiver = hook_routes.Receiver(SECRET, ref, self._wake)
        self.server = HttpServer(
            self.receiver.routes(),
            name="hooks",
            timeout=hook_routes.CLIENT_TIMEOUT,
            on_answer=lambda request, response: self.results.append(
                hook_routes.RESULTS[response.status]
            ),
        )
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def _wake(self) -> None:
        self.wakes += 1

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    hooks = Listener()
    try:
        yield hooks
    finally:
        hooks.server.stop()


def test_every_answer_in_its_order(listener: Listener) -> None:
    body = push()
    assert httpx.get(f"{listener.url}/hooks/github", timeout=5).status_code == 405
    assert listener.post("/hooks/other", body, github(body)).status_code == 404
    assert listener.post("/hooks/github", body, {}).status_code == 401
    forged = listener.post("/hooks/github", body, github(body, secret=b"guess"))
    assert forged.status_code == 401
    tampered = listener.post("/hooks/github", body + b" ", github(body))
    assert tampered.status_code == 401
    assert listener.wakes == 0  # nothing unsigned wakes anything
    ping = listener.post("/hooks/github", body, github(body, **{"X-GitHub-Event": "ping"}))
    assert ping.status_code == 204
    other = push("refs/heads/feature")
    assert listener.post("/hooks/github", other, github(other)).status_code == 204
    junk = b"{not json"
    assert listener.post("/hooks/github", junk, github(junk)).status_code == 400
    delivered = github(body, **{"X-GitHub-Delivery": "d-1"})
    accepted = listener.post("/hooks/github", body, delivered)
    assert accepted.status_code == 202 and listener.wakes == 1
    again = listener.post("/hooks/github", body, delivered)
    assert again.status_code == 200 and listener.wakes == 1  # the same delivery: no fetch
    # A forged copy of a delivery id is not remembered: the real one still counts.
    forged_id = github(body, secret=b"guess", **{"X-GitHub-Delivery": "d-2"})
    assert listener.post("/hooks/github", body, forged_id).status_code == 401
    real = github(body, **{"X-GitHub-Delivery": "d-2"})
    assert listener.post("/hooks/github", body, real).status_code == 202
    # GitLab: the token header, compared in constant time.
    lab = json.dumps({"ref": "refs/heads/main", "project": {"default_branch": "main"}}).encode()
    token = {"X-Gitlab-Event": "Push Hook"}
    assert listener.post("/hooks/gitlab", lab, {**token, "X-Gitlab-Token": "x"}).status_code == 401
    good = {**token, "X-Gitlab-Token": SECRET.decode()}
    assert listener.post("/hooks/gitlab", lab, good).status_code == 202
    assert listener.wakes == 3
    assert listener.results.count("unauthorized") == 5
    assert {"method_not_allowed", "not_found", "ignored", "bad_request", "duplicate"} <= set(
        listener.results
    )


def test_a_body_over_a_mebibyte_is_refused_by_its_length_before_it_is_read(
    listener: Listener,
) -> None:
    with socket.create_connection(("127.0.0.1", listener.server.port), timeout=5) as conn:
        conn.sendall(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
        )  # and not one byte of the body
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413"), answer
    assert listener.results == ["too_large"] and listener.wakes == 0


def test_a_burst_of_fifty_hooks_is_at_most_two_fetches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_GIT_CACHE", str(tmp_path / "cache"))
    repo = Repo(tmp_path / "repos")
    repo.write("a.yaml", doc("a", 301, "c1"))
    repo.commit_and_push("one")
    follower = GitFollower(repo.url, ["deployments"], interval=600.0)
    follower.poll()
    receiver = hook_routes.Receiver(SECRET, None, follower.wake.set)
    server = HttpServer(receiver.routes(), name="hooks")
    server.start()
    stop = threading.Event()
    watcher = threading.Thread(target=follower.watch, args=(stop, lambda: None))
    watcher.start()
    try:
        body = push()
        url = f"http://127.0.0.1:{server.port}/hooks/github"
        with httpx.Client(timeout=5) as client:
            for number in range(50):
                headers = github(body, **{"X-GitHub-Delivery": f"burst-{number}"})
                assert client.post(url, content=body, headers=headers).status_code == 202
        time.sleep(1.0)  # the queued fetch, if any, runs
        assert 1 <= follower.fetches - 1 <= 2, follower.fetches  # beyond the first poll
    finally:
        stop.set()
        watcher.join(timeout=5)
        server.stop()


def test_a_daemon_reconciles_a_pushed_commit_within_a_second_of_its_hook(
    emulator: Emulator, tmp_path: Path, daemons: list[Daemon]
) -> None:
    repo = Repo(tmp_path / "repos")
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    repo.commit_and_push("deploy d301")
    secret_file = tmp_path / "hook-secret"
    secret_file.write_bytes(SECRET + b"\n")
    with NotificationReceiver() as receiver:
        daemon = Daemon(
            emulator, tmp_path, Path("deployments"), "--git", repo.url, "--interval", "300",
            "--hooks-listen", "127.0.0.1:0", "--hook-secret-file", str(secret_file),
            "--notify", receiver.url,
            RECONCILER_GIT_CACHE=str(tmp_path / "cache"), **GIT_ENV,
        )  # fmt: skip
        daemons.append(daemon)
        wait_for(lambda: emulator.creates_committed(301) == 1, what="d301 from the first fetch")
        wait_for(lambda: bool(daemon.events("hooks_listening")), what="the hook listener")
        (listening,) = daemon.events("hooks_listening")
        hooks_url = f"http://127.0.0.1:{listening['port']}/hooks/github"
        repo.write("d302.yaml", doc("d302", 302, project(emulator, 302)))
        pushed = repo.commit_and_push("deploy d302")
        body = push()
        forged = httpx.post(hooks_url, content=body, headers=github(body, secret=b"x"), timeout=5)
        assert forged.status_code == 401
        time.sleep(1.5)
        assert emulator.creates_committed(302) == 0  # a forged hook changes nothing
        sent = time.monotonic()
        answer = httpx.post(hooks_url, content=body, headers=github(body), timeout=5)
        assert answer.status_code == 202
        wait_for(lambda: emulator.creates_committed(302) == 1, timeout=10, what="d302")
        assert time.monotonic() - sent < 5.0  # the benchmark measures the figure itself
        wait_for(
            lambda: any(e["revision"] == pushed for e in history(emulator, tmp_path, "d302")),
            what="history traced to the pushed commit",
        )
        wait_for(
            lambda: any(
                e["event"] == "created" and e["name"] == "d302" and e["revision"] == pushed
                for e in receiver.events()
            ),
            what="the notification with the commit",
        )
        page = daemon.get("/api/status").json()
        assert page["source"]["revision"] == pushed
        assert page["source"]["subject"] == "deploy d302"
        metrics = daemon.get("/metrics").text
        assert 'reconciler_webhook_requests_total{result="unauthorized"} 1.0' in metrics
        assert 'reconciler_webhook_requests_total{result="accepted"} 1.0' in metrics
        assert daemon.terminate() == 0
    assert SECRET.decode() not in json.dumps(daemon.lines)


def test_no_secret_no_receiver(emulator: Emulator, tmp_path: Path) -> None:
    refused = subprocess.run(
        [*RECONCILER, "watch", "--git", "file:///nowhere.git", "--hooks-listen", "127.0.0.1:0"],
        env=cli_env(emulator, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "--hooks-listen needs a secret" in refused.stderr
    assert "Traceback" not in refused.stderr
