"""`reconciler state` as a user runs it, on SQLite and on PostgreSQL: list, show, history,
forget, unlock, copy; text and JSON; workspaces; passwords never shown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from reconciler.emulator import Emulator
from reconciler.model import Record
from reconciler.state import open_store
from tests.conftest import RECONCILER
from tests.postgres_support import new_workspace, postgres_url
from tests.test_apply_e2e import run

CANARY = "pw-Canary-9071-never-printed"


@dataclass
class Target:
    """Where a test's state is: a SQLite file, or a PostgreSQL workspace."""

    state: str
    workspace: str

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("QC_", "RECONCILER_"))}
        return {**clean, "RECONCILER_STATE": self.state, "RECONCILER_WORKSPACE": self.workspace}

    def cli(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*RECONCILER, *args],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        return result

    def put(self, *records: Record) -> None:
        store = open_store(self.state, self.workspace)
        try:
            for record in records:
                store.put_record(record)
                store.add_history(
                    "create", "created", name=record.name, project_id=record.project_id,
                    deploy_id=record.deploy_id,
                )  # fmt: skip
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target(str(tmp_path / "state.db"), "default")
        return
    for workspace in new_workspace():
        yield Target(postgres_url(), workspace)


@pytest.fixture
def workspace() -> Iterator[str]:
    yield from new_workspace()


@pytest.fixture
def other_workspace() -> Iterator[str]:
    yield from new_workspace()


def rec(name: str, project_id: int, owned: bool = True) -> Record:
    return Record(name, project_id, f"sha256:{name}", f"L-{project_id}", owned, "c1", "LN-1",
                  True, 1.0, 2.0, "create", "created")  # fmt: skip


def test_list_show_history_text_and_json(target: Target, tmp_path: Path) -> None:
    target.put(rec("alpha", 11), rec("beta", 12, owned=False))
    listed = target.cli("state", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "DEPLOY", "ID", "OWNED", "LAST", "ACTION",
                                "UPDATED"]  # fmt: skip
    assert lines[1].split()[:4] == ["alpha", "11", "L-11", "yes"]
    assert lines[2].split()[:4] == ["beta", "12", "L-12", "no"]
    assert "2 record(s) in " in listed.stdout
    assert (f"(workspace {target.workspace})" in listed.stdout) == ("postgres" in target.state)

    document = json.loads(target.cli("state", "list", "--format", "json", cwd=tmp_path).stdout)
    assert document["version"] == 1 and document["workspace"] == target.workspace
    assert [(d["name"], d["owned"]) for d in document["deployments"]] == [
        ("alpha", True), ("beta", False),
    ]  # fmt: skip

    shown = target.cli("state", "show", "alpha", cwd=tmp_path)
    assert shown.returncode == 0 and "owned" in shown.stdout and "L-11" in shown.stdout
    detail = json.loads(
        target.cli("state", "show", "alpha", "--format", "json", cwd=tmp_path).stdout
    )
    assert detail["deployment"]["projectId"] == 11 and detail["openIntents"] == []
    missing = target.cli("state", "show", "gamma", cwd=tmp_path)
    assert missing.returncode == 1 and "no record named 'gamma'" in missing.stderr

    history = json.loads(target.cli("state", "history", "--format", "json", cwd=tmp_path).stdout)
    assert [e["name"] for e in history["history"]] == ["alpha", "beta"]  # oldest first
    of_beta = target.cli("state", "history", "beta", cwd=tmp_path)
    assert "beta" in of_beta.stdout and "alpha" not in of_beta.stdout


def test_forget_drops_the_record_and_leaves_the_deployment_running(
    emulator: Emulator, tmp_path: Path, target: Target
) -> None:
    root = tmp_path / "deployments"
    root.mkdir()
    from tests.test_apply_e2e import manifest, node_for

    for project_id in (601, 602):
        emulator.add_project(project_id)
        emulator.add_node(node_for(project_id))
        (root / f"d{project_id}.yaml").write_text(
            manifest(f"d{project_id}", project_id, emulator.add_compile(project_id))
        )
    env = {"RECONCILER_STATE": target.state, "RECONCILER_WORKSPACE": target.workspace}
    assert (
        run(emulator, tmp_path, "apply", str(root), "--yes", "--wait", "0", **env).returncode == 0
    )
    forgot = run(emulator, tmp_path, "state", "forget", "d601", **env)
    assert forgot.returncode == 0, forgot.stderr
    assert "keeps running" in forgot.stdout
    assert len(emulator.active_deployments(601)) == 1
    plan = run(emulator, tmp_path, "plan", str(root), "--format", "json", **env)
    actions = {a["name"]: a for a in json.loads(plan.stdout)["actions"]}
    assert actions["d601"]["action"] == "noop" and actions["d601"].get("adopt") is True
    history = json.loads(run(emulator, tmp_path, "state", "history", "d601", "--format",
                             "json", **env).stdout)["history"]  # fmt: skip
    assert history[-1]["action"] == "forget" and history[-1]["outcome"] == "forgotten"
    again = run(emulator, tmp_path, "state", "forget", "d601", **env)
    assert again.returncode == 1 and "no record named" in again.stderr


def _lock_holder(target: Target, tmp_path: Path) -> subprocess.Popen[str]:
    code = (
        "import sys\n"
        "from reconciler.state import open_store\n"
        f"s = open_store({target.state!r}, {target.workspace!r})\n"
        "held = s.lock(5)\n"
        "held.__enter__()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        "    s.begin_intents([('late', 1, 'h')])\n"
        "    print('journaled', flush=True)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_unlock_refuses_a_live_holder_frees_a_dead_one_and_checks(
    target: Target, tmp_path: Path
) -> None:
    holder = _lock_holder(target, tmp_path)
    try:
        refused = target.cli("state", "unlock", cwd=tmp_path)
        assert refused.returncode == 1
        assert f"Locked by pid {holder.pid} on " in refused.stdout
        assert "refusing to unlock" in refused.stderr and "looks alive" in refused.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        freed = target.cli("state", "unlock", cwd=tmp_path)
        if target.state.endswith(".db"):  # SQLite keeps a dead holder's row until unlocked
            assert freed.returncode == 0, freed.stderr
            assert f"Locked by pid {holder.pid}" in freed.stdout and "gone" in freed.stdout
            assert "Unlocked: the lock is free" in freed.stdout
        else:  # PostgreSQL ended the dead holder's session, and the lock with it
            assert freed.returncode == 0, freed.stderr
        again = json.loads(target.cli("state", "unlock", "--format", "json", cwd=tmp_path).stdout)
        assert again["locked"] is False
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def test_forced_unlock_fences_a_postgres_holder(workspace: str, tmp_path: Path) -> None:
    target = Target(postgres_url(), workspace)
    holder = _lock_holder(target, tmp_path)
    try:
        forced = target.cli("state", "unlock", "--force", "--format", "json", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        document = json.loads(forced.stdout)
        assert document["unlocked"] is True and document["holder"]["pid"] == holder.pid
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out, _ = holder.communicate(timeout=30)
        assert "journaled" not in out and "Error" in out, out
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)


def test_copy_refuses_a_target_with_records_unless_forced(target: Target, tmp_path: Path) -> None:
    target.put(rec("alpha", 11))
    other = Target(str(tmp_path / "other.db"), "default")
    other.put(rec("zeta", 99))
    refused = target.cli("state", "copy", "--to", other.state, cwd=tmp_path)
    assert refused.returncode == 1 and "already has 1 record(s)" in refused.stderr
    forced = target.cli("state", "copy", "--to", other.state, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    names = json.loads(other.cli("state", "list", "--format", "json", cwd=tmp_path).stdout)
    assert [d["name"] for d in names["deployments"]] == ["alpha"]
    history = json.loads(other.cli("state", "history", "--format", "json", cwd=tmp_path).stdout)
    assert [e["action"] for e in history["history"]] == ["create", "copy"]
    onto_itself = target.cli("state", "copy", "--to", target.state, cwd=tmp_path)
    assert onto_itself.returncode == 1 and "target is its source" in onto_itself.stderr


def test_postgres_to_postgres_copy_between_workspaces(
    tmp_path: Path, workspace: str, other_workspace: str
) -> None:
    origin = Target(postgres_url(), workspace)
    origin.put(rec("alpha", 11), rec("beta", 12))
    copied = origin.cli(
        "state", "copy", "--to", postgres_url(), "--to-workspace", other_workspace, cwd=tmp_path
    )
    assert copied.returncode == 0, copied.stderr
    assert f"(workspace {workspace}) to" in copied.stdout
    listed = Target(postgres_url(), other_workspace).cli(
        "state", "list", "--format", "json", cwd=tmp_path
    )
    assert [d["name"] for d in json.loads(listed.stdout)["deployments"]] == ["alpha", "beta"]


def test_workspace_option_before_or_after_the_command_and_from_the_environment(
    tmp_path: Path, workspace: str
) -> None:
    Target(postgres_url(), workspace).put(rec("alpha", 11))
    blank = Target(postgres_url(), "")
    env_less = {**blank.env(), "RECONCILER_STATE": postgres_url()}
    env_less.pop("RECONCILER_WORKSPACE")
    for args in (
        ["--workspace", workspace, "state", "list"],
        ["state", "list", "--workspace", workspace],
        ["state", "--workspace", workspace, "list"],
    ):
        result = subprocess.run(
            [*RECONCILER, *args], env=env_less, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "alpha" in result.stdout, (args, result.stderr)
    via_env = Target(postgres_url(), workspace).cli("state", "list", cwd=tmp_path)
    assert "alpha" in via_env.stdout


def test_password_is_redacted_in_output_and_errors(tmp_path: Path, workspace: str) -> None:
    parts = urlsplit(postgres_url())
    url = urlunsplit(
        parts._replace(netloc=f"postgres:{CANARY}@{parts.hostname}:{parts.port or 5432}")
    )
    ok = Target(url, workspace).cli("state", "list", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr.replace(CANARY, "***")
    assert "postgres:***@" in ok.stdout and CANARY not in ok.stdout + ok.stderr
    down = Target(f"postgresql://postgres:{CANARY}@127.0.0.1:1/test", workspace)
    failed = down.cli("state", "list", cwd=tmp_path)
    assert failed.returncode == 1 and CANARY not in failed.stdout + failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith("error: state database postgresql://postgres:***@")


def test_without_psycopg_a_postgres_state_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"  # as if it were not installed
        "from reconciler.cli import main\n"
        "sys.exit(main(['state', 'list', '--state', 'postgresql://u@127.0.0.1/db']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: a postgresql:// state needs psycopg, which is not installed: "
        "pip install 'qc-live-reconciler[postgres]'"
    ]
