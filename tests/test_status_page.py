"""The daemon's status page (DESIGN §14): HTTP-level against a real daemon and emulator,
then in a real headless Chromium (skipped, with its reason, where none is installed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from reconciler import page, snapshot
from reconciler.emulator import Emulator
from reconciler.model import Action, Deployment, Outcome
from tests.browser import Browser, chromium
from tests.test_apply_e2e import manifest
from tests.test_watch import Daemon, daemons, root, running, wait_for

__all__ = ["daemons", "root"]  # fixtures used by name

EVIL = "<script>alert(\"x\")</script>'q'"
CANARY = "canary-secret-7f3a91"  # an IB password: must never reach the page


def labelled(name: str, project_id: int, compile_id: str) -> str:
    text = manifest(name, project_id, compile_id)
    label = EVIL.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace(f"  name: {name}\n", f'  name: {name}\n  labels:\n    team: "{label}"\n')
    return text


def broken(directory: Path) -> Path:
    """A file whose error message quotes its content, markup and quotes included."""
    path = directory / "broken.yaml"
    value = EVIL.replace('"', '\\"')
    path.write_text(
        "apiVersion: reconciler/v1\nkind: LiveDeployment\nmetadata:\n  name: broken\n"
        f'spec:\n  projectId: "{value}"\n'
    )
    return path


def status(daemon: Daemon) -> dict[str, object]:
    data = daemon.get("/api/status").json()
    assert isinstance(data, dict)
    return data


def rows(data: dict[str, object]) -> dict[str, dict[str, object]]:
    deployments = data["deployments"]
    assert isinstance(deployments, list)
    return {str(d["name"]): d for d in deployments}


def start(
    emulator: Emulator,
    tmp_path: Path,
    root: Path,
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> Daemon:
    """d101 (labelled with markup), d102 and d103 (an IB login that fails and echoes the
    password), plus a broken file; the daemon resyncs every second."""
    compile_id = emulator.add_compile(101)
    (root / "d101.yaml").write_text(labelled("d101", 101, compile_id))
    emulator.update_project(103, fail_login=f"password {CANARY} rejected")
    compile_id = emulator.add_compile(103)
    ib = (
        "{id: Interactive, user: jdoe, account: DU123, password: {fromEnv: IB_PASSWORD}, "
        'environment: live, weeklyRestartUtcTime: "22:00:00"}'
    )
    (root / "d103.yaml").write_text(manifest("d103", 103, compile_id, ib))
    broken(root)
    monkeypatch.setenv("IB_PASSWORD", CANARY)  # the daemon's environment (cli_env copies it)
    daemon = Daemon(emulator, tmp_path, root, "--resync", "1")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    wait_for(
        lambda: rows(status(daemon)).get("d103", {}).get("status") == "failed",
        timeout=30,
        what="the failed login on the page",
    )
    return daemon


def test_page_and_api(
    emulator: Emulator,
    tmp_path: Path,
    root: Path,
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = start(emulator, tmp_path, root, daemons, monkeypatch)
    wait_for(
        lambda: rows(status(daemon)).get("d101", {}).get("status") == "in sync",
        what="d101 in sync",
    )
    data = status(daemon)
    assert data["version"] == 1 and data["role"] == "leader"
    assert set(data) >= {"generatedAt", "phase", "summary", "deployments", "invalidFiles"}
    d101 = rows(data)["d101"]
    assert d101["projectId"] == 101 and d101["liveStatus"] == "Running"
    assert d101["brokerage"] and d101["environment"] and d101["compile"]
    assert d101["labels"] == {"team": EVIL}
    assert d101["lastAction"] == "create" and d101["deployId"]
    (invalid,) = data["invalidFiles"]  # type: ignore[misc]
    assert invalid["file"].endswith("broken.yaml")
    assert any("<script>alert" in p and "'q" in p and ":6:" in p for p in invalid["problems"]), (
        invalid
    )
    history = data["history"]
    assert isinstance(history, list) and {h["name"] for h in history} >= {"d101", "d102"}

    page = daemon.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    body = page.text
    for header in ("Name", "Project", "Status", "Live", "Last action", "Reason / next try"):
        assert f'<th scope="col">{header}</th>' in body
    for name in ("d101", "d102", "d103"):
        assert f'<tr data-name="{name}">' in body
    assert "in sync" in body and "failed" in body  # status in words
    # User data is text: the label and the broken file's message are escaped, never markup.
    assert "<script>alert" not in body
    shown = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    deployments, invalid_files = body.split('id="invalid"', 1)
    assert f'<span class="label">team={shown}&#39;q&#39;</span>' in deployments  # the label
    assert shown in invalid_files and "broken.yaml:6:" in invalid_files  # the file's message
    assert body.count("<script") == 1  # only the page's own
    assert "http://" not in body.replace('href="/api/status"', "")  # no asset from elsewhere
    assert "https://" not in body

    # No secret: the canary went to the API, which echoed it in the failed login.
    assert emulator.creates_committed(103) >= 1
    assert CANARY not in body and CANARY not in daemon.get("/api/status").text
    assert "[redacted]" in str(rows(status(daemon))["d103"]["reason"])
    assert emulator.token not in body

    # Read-only: only GET.
    base = f"http://127.0.0.1:{daemon.port}"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = httpx.request(method, f"{base}/", timeout=5)
        assert answer.status_code == 405, method
        assert answer.headers["allow"] == "GET"
    assert httpx.post(f"{base}/api/status", timeout=5).status_code == 405
    assert daemon.get("/nope").status_code == 404
    assert daemon.terminate() == 0


# Where the README's screenshot comes from: `RECONCILER_SCREENSHOT_DIR=docs pytest -k browser`.
SCREENSHOT_DIR = os.environ.get("RECONCILER_SCREENSHOT_DIR")

ROW = "(document.querySelector('tr[data-name=\"{name}\"]') || {{}}).innerText || ''"


def test_in_a_real_browser(
    emulator: Emulator,
    tmp_path: Path,
    root: Path,
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chromium() is None:
        # CI installs chromium (.ci/run) and sets RECONCILER_TEST_BROWSER_REQUIRED=1.
        if os.environ.get("RECONCILER_TEST_BROWSER_REQUIRED") == "1":
            pytest.fail("no chromium on PATH, and RECONCILER_TEST_BROWSER_REQUIRED=1")
        pytest.skip("no chromium on PATH: `apt-get install chromium` to run the browser test")
    daemon = start(emulator, tmp_path, root, daemons, monkeypatch)
    url = f"http://127.0.0.1:{daemon.port}/"
    shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    with Browser(tmp_path / "chromium") as browser:
        browser.open(url)
        browser.wait_for("Number(document.body.dataset.refreshes) >= 1", what="a refresh")
        table = browser.evaluate("document.querySelector('#deployments').innerText")
        for name in ("d101", "d102", "d103"):
            assert name in table
        assert "Status" in table and "in sync" in table and "failed" in table
        invalid = browser.evaluate("document.querySelector('#invalid').innerText")
        assert "broken.yaml:6:" in invalid and "<script>alert" in invalid  # shown as text
        assert browser.evaluate("document.querySelectorAll('script').length") == 1
        assert CANARY not in browser.evaluate("document.documentElement.outerHTML")
        browser.screenshot(shots / "status-page.png")

        # Killed in the emulator: the open page shows it within a refresh, in place.
        browser.evaluate("window.notReloaded = true")
        emulator.inject("live/create", latency=12.0)  # keep the restart in flight a while
        emulator.kill(101)
        browser.wait_for(
            f"/failed|restarting/.test({ROW.format(name='d101')})",
            timeout=1 + 5 + 9,  # resync, refresh, slack for a loaded machine
            what="d101 failed or restarting on the open page",
        )
        row = browser.evaluate(ROW.format(name="d101"))
        assert "RuntimeError" in row or "restart" in row, row
        assert browser.evaluate("window.notReloaded === true")
        emulator.clear_faults()
        browser.wait_for(
            f"/in sync/.test({ROW.format(name='d101')})", timeout=30, what="d101 restarted"
        )
        history = browser.evaluate("document.querySelector('#history').innerText")
        assert "restart" in history

        # A phone: nothing overflows sideways but the tables' own scroll containers.
        browser.resize(390, 844, mobile=True)
        assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            "the page scrolls sideways on a phone"
        )
        # Dark: the colours follow the system's scheme.
        browser.resize(1280, 900)
        browser.color_scheme("dark")
        background = browser.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", background
        browser.screenshot(shots / "status-page-dark.png")

        # Scripts off: the server-rendered page alone is complete.
        browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.send("Page.reload")
        browser.wait_for("document.readyState === 'complete'", what="the reload")
        assert browser.evaluate("document.body.dataset.refreshes") == "0"
        table = browser.evaluate("document.querySelector('#deployments').innerText")
        assert all(name in table for name in ("d101", "d102", "d103")), table
        assert "broken.yaml" in browser.evaluate("document.querySelector('#invalid').innerText")
    assert (shots / "status-page.png").stat().st_size > 10_000
    assert daemon.terminate() == 0


# -- the snapshot and the template alone (no daemon) -----------------------------------


def desired(name: str = "d1", project_id: int = 1) -> Deployment:
    data = {
        "metadata": {"name": name, "labels": {"team": EVIL}},
        "spec": {
            "projectId": project_id,
            "compileId": "c1",
            "nodeId": "LN-1",
            "brokerage": {"id": "Interactive", "password": {"fromEnv": "IB_PASSWORD"}},
        },
    }
    return Deployment.from_manifest(data, "deployments/d1.yaml", 3)


def build(actions: list[Action], **extra: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "desired": [desired()],
        "actions": actions,
        "outcomes": [],
        "live": [],
        "records": {},
        "invalid": {},
        "history": [],
        "retry_in": {},
        "phase": "idle",
        "now": 1000.0,
    }
    arguments.update(extra)
    return snapshot.build(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "word"),
    [
        (Action("noop", "d1", 1, "in sync"), "in sync"),
        (Action("create", "d1", 1, "no live deployment"), "creating"),
        (Action("restart", "d1", 1, "L-1 is RuntimeError", cause="failed"), "restarting"),
        (Action("drift", "d1", 1, "L-1 is RuntimeError", cause="failed"), "failed"),
        (Action("drift", "d1", 1, "L-1 is Stopped", cause="stopped"), "stopped"),
        (Action("blocked", "d1", 1, "next try at 12:00", cause="failed"), "backing off"),
        (Action("blocked", "d1", 1, "protected"), "blocked"),
        (Action("conflict", "d1", 1, "project runs L-9"), "conflict"),
    ],
)
def test_status_in_words(action: Action, word: str) -> None:
    (row,) = build([action])["deployments"]  # type: ignore[misc]
    assert row["status"] == word and row["reason"] == action.reason


def test_snapshot_masks_secret_values_and_keeps_next_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_PASSWORD", CANARY)
    failed = Outcome("d1", 1, "create", "failed", "L-1", f"login failed: {CANARY}")
    data = build(
        [Action("create", "d1", 1, "no live deployment")],
        outcomes=[failed],
        invalid={"deployments/x.yaml": [f"deployments/x.yaml:2:1: {EVIL}"]},
    )
    assert CANARY not in json.dumps(data)
    (row,) = data["deployments"]  # type: ignore[misc]
    assert row["status"] == "failed" and "[redacted]" in row["reason"]
    later = build([Action("create", "d1", 1, "no live deployment")], retry_in={"d1": 30.0})
    (row,) = later["deployments"]  # type: ignore[misc]
    assert row["status"] == "backing off" and row["retryAt"] == 1030.0

    board = snapshot.StatusBoard()
    board.publish(data, [desired()])
    board.failed(f"API said {CANARY}")
    shown = board.current("standby")
    assert shown["role"] == "standby" and CANARY not in json.dumps(shown)
    shown["deployments"].clear()
    assert board.current("leader")["deployments"], "a reader changed the published snapshot"
    body = page.html(shown | {"deployments": data["deployments"]}, nonce="n0nce")
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body
    assert body.count('<script nonce="n0nce">') == 1
