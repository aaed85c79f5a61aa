"""The soak harness (benchmarks/soak.py, issue 23): a short run in the default suite with
zero invariant violations, and its checker shown to see each kind of violation."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.client import QuantConnectClient
from reconciler.emulator import Emulator
from tests.postgres_support import REQUIRED_ENV, unavailable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import soak  # noqa: E402

pytestmark = pytest.mark.slow


def test_a_short_soak_keeps_every_invariant(tmp_path: Path) -> None:
    import os

    stores = (
        "sqlite" if unavailable() and os.environ.get(REQUIRED_ENV) != "1" else "sqlite,postgres"
    )
    out = tmp_path / "soak"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "1.5",
         "--seed", "0", "--out", str(out), "--stores", stores],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["violations"] == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    kinds = {"change", "add", "remove", "person_stop", "fail", "crash", "sighup", "fault",
             "crash_mid_create"}  # fmt: skip
    if "postgres" in stores:
        kinds.add("leader_kill")
    assert kinds | {"outage"} <= set(summary["events"]), summary["events"]
    assert summary["reconciles_per_minute"] > 0
    for name, daemon in summary["daemons"].items():
        assert daemon["rss_mb_start"] and daemon["rss_mb_end"], name


# ---- the checker sees what it is there to see ---------------------------------------------


@pytest.fixture
def harness(emulator: Emulator, tmp_path: Path) -> tuple[soak.Soak, soak.Group]:
    args = argparse.Namespace(seed=0, stores="sqlite", minutes=1.0, without=frozenset())
    run = soak.Soak(args, tmp_path)
    group = soak.Group("g", emulator, tmp_path / "manifests", range(5001, 5003))
    group.seed()
    run.groups.append(group)
    return run, group


def start(client: QuantConnectClient, group: soak.Group, project_id: int) -> str:
    compile_id = group.expect[project_id].compile_id
    assert compile_id is not None
    return client.create_live(
        project_id=project_id, compile_id=compile_id, node_id=soak.NODE.format(project_id),
        brokerage={"id": "PaperTrading"},
    ).deploy_id  # fmt: skip


def kinds(run: soak.Soak) -> list[str]:
    return [v["kind"] for v in run.violations]


def test_checker_sees_a_stop_the_manifests_did_not_ask_for(
    harness: tuple[soak.Soak, soak.Group], client: QuantConnectClient
) -> None:
    run, group = harness
    group.write(5001)
    start(client, group, 5001)
    run.check()
    assert run.violations == [] and group.expect[5001].converged
    client.stop_live(5001)  # not a person's (not in person_stops): the reconciler's
    run.check()
    assert "stop the manifests did not ask for" in kinds(run)


def test_checker_sees_a_persons_stop_undone(
    harness: tuple[soak.Soak, soak.Group], client: QuantConnectClient
) -> None:
    run, group = harness
    group.write(5001)
    deploy_id = start(client, group, 5001)
    run.check()
    run.person_stops.add(deploy_id)
    group.expect[5001].person_stopped = deploy_id
    client.stop_live(5001)
    run.check()
    assert run.violations == []
    start(client, group, 5001)  # started again, the manifest unchanged
    run.check()
    assert kinds(run) == ["a person's stop undone"]


def test_checker_sees_a_change_not_converged_in_time(
    harness: tuple[soak.Soak, soak.Group], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, group = harness
    monkeypatch.setattr(soak, "CONVERGE_BOUND", 0.0)
    group.write(5002)  # nothing ever creates it
    time.sleep(0.01)
    run.check()
    assert kinds(run) == ["not converged in time"]


def test_checker_sees_a_second_create_sent_while_one_runs(
    harness: tuple[soak.Soak, soak.Group], client: QuantConnectClient
) -> None:
    run, group = harness
    group.write(5001)
    start(client, group, 5001)
    from reconciler.errors import ApiError

    with pytest.raises(ApiError):
        start(client, group, 5001)
    run.check()
    assert "a create refused: project busy (sent while one ran)" in kinds(run)
