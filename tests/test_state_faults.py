"""Fault tests of the PostgreSQL state against the real server and the emulator.

- the reconciler's sessions ended (pg_terminate_backend) mid-apply: nothing more is sent,
  and a rerun creates each project exactly once;
- four runners applying 20 manifests at once on one workspace: exactly one create each;
- SQLite -> PostgreSQL -> SQLite with ownership intact: a prune after each copy works;
- no secret value in any reconciler_* table.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from tests.conftest import RECONCILER, cli_env
from tests.postgres_support import TABLES, new_workspace, postgres_url, sql, terminate_sessions
from tests.test_apply_e2e import IB, SECRET, assert_no_traceback, manifest, node_for, run

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace() -> Iterator[str]:
    yield from new_workspace()


def seed(emulator: Emulator, root: Path, projects: range, brokerage: str | None = None) -> None:
    root.mkdir(exist_ok=True)
    for project_id in projects:
        emulator.add_project(project_id)
        emulator.add_node(node_for(project_id))
        compile_id = emulator.add_compile(project_id)
        (root / f"d{project_id}.yaml").write_text(
            manifest(f"d{project_id}", project_id, compile_id, brokerage)
        )


def pg_env(workspace: str) -> dict[str, str]:
    return {"RECONCILER_STATE": postgres_url(), "RECONCILER_WORKSPACE": workspace}


def popen_apply(
    emulator: Emulator, tmp_path: Path, root: Path, workspace: str, *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RECONCILER, "apply", str(root), "--yes", "--wait", "0", *args],
        env=cli_env(emulator, tmp_path, **pg_env(workspace)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def assert_one_create_each(emulator: Emulator, projects: range) -> None:
    for project_id in projects:
        assert emulator.creates_committed(project_id) == 1, project_id
        assert len(emulator.active_deployments(project_id)) == 1, project_id
    assert emulator.stats()["rejections"].get("project busy", 0) == 0


def test_sessions_terminated_mid_apply_stop_the_sends_and_a_rerun_creates_once(
    emulator: Emulator, tmp_path: Path, workspace: str
) -> None:
    projects = range(401, 421)
    root = tmp_path / "deployments"
    seed(emulator, root, projects)
    emulator.inject("live/create", latency=0.4)
    proc = popen_apply(emulator, tmp_path, root, workspace, "--concurrency", "4")
    deadline = time.monotonic() + 30
    while len(emulator.stats()["create_times"]) < 6:  # into the second wave of creates
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    cut_at = time.time()
    assert terminate_sessions(workspace) >= 1
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err, err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "connection" in error_lines[0], err
    received = [t["time"] for t in emulator.stats()["create_times"]]
    # The creates already decided when the sessions ended may land (at most one per
    # worker); none is sent once the lost connection is noticed.
    late = [t for t in received if t > cut_at]
    assert len(late) <= 4 and all(t < cut_at + 0.2 for t in late), (cut_at, received)
    assert len(received) < len(projects)
    time.sleep(0.5)  # the creates in flight land
    emulator.clear_faults()
    rerun = run(emulator, tmp_path, "apply", str(root), "--yes", "--wait", "0", **pg_env(workspace))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resolved an interrupted create" in rerun.stdout
    assert_one_create_each(emulator, projects)
    assert len(emulator.stats()["create_times"]) == len(projects)  # nothing sent twice
    owned = sql(
        "SELECT count(*) FROM reconciler_deployments WHERE workspace = %s AND owned", workspace
    )
    assert owned == [(len(projects),)]  # the interrupted ones are recorded as ours


def test_four_runners_applying_at_once_create_each_project_once(
    emulator: Emulator, tmp_path: Path, workspace: str
) -> None:
    projects = range(431, 451)
    root = tmp_path / "deployments"
    seed(emulator, root, projects)
    emulator.inject("live/create", latency=0.1)
    runners = []
    for n in range(4):
        directory = tmp_path / f"runner{n}"  # each runner keeps nothing of its own
        directory.mkdir()
        runners.append(popen_apply(emulator, directory, root, workspace))
    results = [(p.communicate(timeout=120), p.returncode) for p in runners]
    assert [code for _, code in results] == [0, 0, 0, 0], results
    creating = [out for (out, _), _ in results if "Apply complete: 20 created" in out]
    assert len(creating) == 1, results
    assert_one_create_each(emulator, projects)
    assert len(emulator.stats()["create_times"]) == len(projects)


def test_copy_to_postgres_and_back_keeps_ownership_so_prune_works(
    emulator: Emulator, tmp_path: Path, workspace: str
) -> None:
    projects = range(461, 465)
    root = tmp_path / "deployments"
    seed(emulator, root, projects)
    local = str(tmp_path / "state.db")
    first = run(emulator, tmp_path, "apply", str(root), "--yes", "--wait", "0")
    assert first.returncode == 0, first.stdout + first.stderr

    up = run(emulator, tmp_path, "state", "copy", "--to", postgres_url(), "--workspace", workspace)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Copied 4 record(s)" in up.stdout
    (root / "d461.yaml").unlink()
    pruned = run(
        emulator, tmp_path, "apply", str(root), "--yes", "--prune", "--wait", "0",
        **pg_env(workspace),
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert emulator.active_deployments(461) == []

    back = str(tmp_path / "back.db")
    down = run(
        emulator, tmp_path, "state", "copy", "--to", back, "--format", "json", **pg_env(workspace)
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads(down.stdout)["copied"]["records"] == 3
    (root / "d462.yaml").unlink()
    again = run(
        emulator, tmp_path, "apply", str(root), "--yes", "--prune", "--wait", "0",
        RECONCILER_STATE=back,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert emulator.active_deployments(462) == []
    assert [len(emulator.active_deployments(p)) for p in (463, 464)] == [1, 1]
    history = run(emulator, tmp_path, "state", "history", "--format", "json", RECONCILER_STATE=back)
    actions = [
        (e["action"], e["outcome"], e["name"]) for e in json.loads(history.stdout)["history"]
    ]
    assert ("create", "created", "d461") in actions  # made with SQLite, came back
    assert ("prune", "pruned", "d461") in actions  # made with PostgreSQL
    assert actions[-1] == ("prune", "pruned", "d462")

    refused = run(emulator, tmp_path, "state", "copy", "--to", back, RECONCILER_STATE=local)
    assert refused.returncode == 1 and "already has 2 record(s)" in refused.stderr
    assert_no_traceback(refused)
    forced = run(
        emulator, tmp_path, "state", "copy", "--to", back, "--force", RECONCILER_STATE=local
    )
    assert forced.returncode == 0, forced.stderr
    assert [len(emulator.active_deployments(p)) for p in projects] == [0, 0, 1, 1]
    assert all(emulator.creates_committed(p) == 1 for p in projects)


def test_no_secret_value_in_any_table(emulator: Emulator, tmp_path: Path, workspace: str) -> None:
    projects = range(471, 474)
    root = tmp_path / "deployments"
    seed(emulator, root, projects, IB)
    first = run(emulator, tmp_path, "apply", str(root), "--yes", "--wait", "0", **pg_env(workspace))
    assert first.returncode == 0, first.stdout + first.stderr
    replaced = run(
        emulator, tmp_path, "apply", str(root), "--yes", "--wait", "0", "--replace", "d471",
        **pg_env(workspace),
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    rows = 0
    for table in (*TABLES, "reconciler_meta"):
        for (text,) in sql(f"SELECT t::text FROM {table} t"):
            rows += 1
            assert SECRET not in str(text), (table, text)
            assert emulator.token not in str(text), table
    assert rows > 10
    spec = sql(
        "SELECT spec_json FROM reconciler_deployments WHERE workspace = %s AND name = 'd471'",
        workspace,
    )
    assert "<from env IB_PASSWORD>" in str(spec)
