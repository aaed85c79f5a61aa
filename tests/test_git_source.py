"""GitOps (DESIGN §15): every action traced to its commit, and the git source, against real
git on loopback (a bare repository over file:// and over smart HTTP) and the emulator."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from tests.conftest import RECONCILER, cli_env
from tests.git_support import GIT_ENV, Repo, SmartHttp, git
from tests.test_apply_e2e import node_for
from tests.test_day2_e2e import doc
from tests.test_watch import Daemon, daemons, wait_for

__all__ = ["daemons"]

TOKEN = "ghp-Sesame-4711-never-shown"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repos")


def run(
    emulator: Emulator, tmp_path: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = cli_env(emulator, tmp_path, RECONCILER_GIT_CACHE=str(tmp_path / "cache"), **env)
    environ.update(GIT_ENV)
    result = subprocess.run(
        [*RECONCILER, *args],
        env=environ,
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def project(emulator: Emulator, project_id: int) -> str:
    """A project with a node and a built compile; returns the compile id."""
    if not emulator.has_project(project_id):
        emulator.add_project(project_id, name=f"p{project_id}")
        emulator.add_node(node_for(project_id))
    return emulator.add_compile(project_id)


def history(emulator: Emulator, tmp_path: Path, name: str) -> list[dict[str, object]]:
    shown = run(emulator, tmp_path, "state", "history", name, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    entries: list[dict[str, object]] = json.loads(shown.stdout)["history"]
    return entries


def test_plan_and_apply_from_git_trace_every_action_to_its_commit(
    emulator: Emulator, tmp_path: Path, repo: Repo
) -> None:
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    first = repo.commit_and_push("deploy d301")
    planned = run(emulator, tmp_path, "plan", "--git", repo.url, "deployments", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["source"] == {
        "kind": "git",
        "revision": first,
        "dirty": False,
        "url": repo.url,
        "ref": None,
    }
    applied = run(emulator, tmp_path, "apply", "--git", repo.url, "deployments", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"Manifests at {first[:12]} of {repo.url} (deploy d301)" in applied.stdout
    assert emulator.creates_committed(301) == 1
    created = [e for e in history(emulator, tmp_path, "d301") if e["action"] == "create"]
    assert [(e["outcome"], e["revision"], e["dirty"]) for e in created] == [
        ("created", first, False)
    ]
    text = run(emulator, tmp_path, "state", "history", "d301").stdout
    assert first[:12] in text and first not in text
    status = json.loads(run(emulator, tmp_path, "status", "--format", "json").stdout)
    assert status["deployments"][0]["revision"] == first
    # A new build, committed: the replace is traced to that commit.
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    second = repo.commit_and_push("new build of d301")
    applied = run(emulator, tmp_path, "apply", "--git", repo.url, "deployments", "--yes")
    assert applied.returncode == 0 and "1 replaced" in applied.stdout, applied.stdout
    replaced = [e for e in history(emulator, tmp_path, "d301") if e["action"] == "replace"]
    assert replaced and all(e["revision"] == second for e in replaced)
    # `--revision` reads one commit of any ref: the first one plans the old build back.
    back = run(
        emulator, tmp_path, "plan", "--git", repo.url, "--revision", first, "deployments",
        "--format", "json",
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    document = json.loads(back.stdout)
    assert document["source"]["revision"] == first
    assert [a["action"] for a in document["actions"]] == ["replace"]


def test_an_invalid_commit_acts_on_nothing_and_names_path_at_commit(
    emulator: Emulator, tmp_path: Path, repo: Repo
) -> None:
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    repo.write("d302.yaml", doc("d302", 302, project(emulator, 302)).replace("nodeId", "nodeID"))
    sha = repo.commit_and_push("a typo")
    applied = run(emulator, tmp_path, "apply", "--git", repo.url, "deployments", "--yes")
    assert applied.returncode == 1
    assert f"deployments/d302.yaml@{sha[:12]}:" in applied.stderr, applied.stderr
    assert "nothing was done" in applied.stderr
    assert emulator.stats()["create_times"] == []


def test_a_work_tree_records_head_and_dirty_manifests(
    emulator: Emulator, tmp_path: Path, repo: Repo
) -> None:
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    head = repo.commit("deploy d301")
    state = str(tmp_path / "state.db")
    applied = run(
        emulator, tmp_path, "apply", "deployments", "--yes", cwd=repo.work, RECONCILER_STATE=state
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    created = [e for e in history(emulator, tmp_path, "d301") if e["action"] == "create"]
    assert [(e["revision"], e["dirty"]) for e in created] == [(head, False)]

    def source() -> dict[str, object]:
        planned = run(
            emulator, tmp_path, "plan", "deployments", "--format", "json", cwd=repo.work,
            RECONCILER_STATE=state,
        )  # fmt: skip
        found: dict[str, object] = json.loads(planned.stdout)["source"]
        return found

    assert source() == {"kind": "files", "revision": head, "dirty": False, "url": None, "ref": None}
    (repo.work / "notes.txt").write_text("not a manifest")  # untracked, not a manifest
    assert source()["dirty"] is False
    repo.write("d302.yaml", doc("d302", 302, project(emulator, 302)))  # untracked manifest
    assert source()["dirty"] is True
    repo.commit("deploy d302")
    assert source()["dirty"] is False
    # Outside a work tree: no revision, and nothing else changes.
    outside = tmp_path / "plain"
    shutil.copytree(repo.work / "deployments", outside)
    planned = run(emulator, tmp_path, "plan", str(outside), "--format", "json")
    assert planned.returncode == 0 and json.loads(planned.stdout)["source"]["revision"] is None
    assert planned.stderr == ""


def test_credentials_never_in_a_url_a_log_or_an_error(
    emulator: Emulator, tmp_path: Path, repo: Repo
) -> None:
    embedded = run(emulator, tmp_path, "plan", "--git", f"https://x:{TOKEN}@github.com/o/r.git")
    assert embedded.returncode == 1 and "carries credentials" in embedded.stderr
    assert "RECONCILER_GIT_TOKEN" in embedded.stderr and TOKEN not in embedded.stderr
    plain = run(emulator, tmp_path, "plan", "--git", "http://git.example.org/o/r.git")
    assert plain.returncode == 1 and "not encrypted" in plain.stderr
    # Over smart HTTP on loopback, the token reaches git through the askpass helper.
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    sha = repo.commit_and_push("deploy d301")
    server = SmartHttp(repo.origin.parent, TOKEN)
    try:
        url = server.url("origin.git")
        wrong = run(
            emulator, tmp_path, "plan", "--git", url, "deployments", RECONCILER_GIT_TOKEN="nope-99"
        )
        assert wrong.returncode == 1, wrong.stdout
        assert "nope-99" not in wrong.stdout + wrong.stderr
        assert "git fetch failed" in wrong.stderr
        right = run(
            emulator, tmp_path, "plan", "--git", url, "deployments", "--format", "json",
            RECONCILER_GIT_TOKEN=TOKEN,
        )  # fmt: skip
        assert right.returncode == 0, right.stderr
        assert json.loads(right.stdout)["source"]["revision"] == sha
        assert TOKEN not in right.stdout + right.stderr
        assert any(a.startswith("Basic ") for a in server.authorizations)
    finally:
        server.stop()
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a signing key, an allowed-signers file listing it)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "signer"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    allowed = keys / "allowed_signers"
    public = (keys / "signer.pub").read_text().strip()
    allowed.write_text(f'{GIT_ENV["GIT_COMMITTER_EMAIL"]} namespaces="git" {public}\n')
    yield key, allowed


def test_only_commits_signed_by_an_allowed_key_are_applied(
    emulator: Emulator, tmp_path: Path, repo: Repo, signer: tuple[Path, Path]
) -> None:
    key, allowed = signer
    sign = ("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}")
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    git("add", "-A", cwd=repo.work)
    git(*sign, "commit", "--quiet", "-S", "-m", "signed", cwd=repo.work)
    repo.push()
    verified = ("--verify-signatures", str(allowed))
    applied = run(emulator, tmp_path, "apply", "--git", repo.url, "deployments", "--yes", *verified)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert emulator.creates_committed(301) == 1
    repo.write("d302.yaml", doc("d302", 302, project(emulator, 302)))
    unsigned = repo.commit_and_push("unsigned")
    refused = run(emulator, tmp_path, "apply", "--git", repo.url, "deployments", "--yes", *verified)
    assert refused.returncode == 1
    assert f"commit {unsigned[:12]} is not signed" in refused.stderr, refused.stderr
    assert emulator.creates_committed(302) == 0
    other = tmp_path / "keys" / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    git("-c", "gpg.format=ssh", "-c", f"user.signingkey={other}", "commit", "--quiet",
        "--amend", "-S", "-m", "signed by a stranger", cwd=repo.work)  # fmt: skip
    repo.push(force=True)
    stranger = run(emulator, tmp_path, "plan", "--git", repo.url, "deployments", *verified)
    assert stranger.returncode == 1 and "not signed by a key of" in stranger.stderr
    assert emulator.creates_committed(302) == 0


def test_the_daemon_follows_pushes_survives_fetch_failures_and_reports_force_pushes(
    emulator: Emulator, tmp_path: Path, repo: Repo, daemons: list[Daemon]
) -> None:
    repo.write("d301.yaml", doc("d301", 301, project(emulator, 301)))
    first = repo.commit_and_push("deploy d301")
    daemon = Daemon(
        emulator, tmp_path, Path("deployments"), "--git", repo.url, "--interval", "0.5",
        RECONCILER_GIT_CACHE=str(tmp_path / "cache"), **GIT_ENV,
    )  # fmt: skip
    daemons.append(daemon)
    wait_for(lambda: emulator.creates_committed(301) == 1, what="d301 created from git")
    repo.write("d302.yaml", doc("d302", 302, project(emulator, 302)))
    second = repo.commit_and_push("deploy d302")
    wait_for(lambda: emulator.creates_committed(302) == 1, what="d302 created from the push")
    wait_for(
        lambda: any(
            e["action"] == "create" and e["revision"] == second
            for e in history(emulator, tmp_path, "d302")
        ),
        what="the create traced to the pushed commit",
    )
    assert daemon.metric("reconciler_source_info") == 1
    assert f'revision="{second}"' in daemon.get("/metrics").text
    assert daemon.get("/api/status").json()["source"]["revision"] == second
    # The repository goes away: the last good revision stays in force, reported once.
    moved = repo.origin.with_name("moved.git")
    repo.origin.rename(moved)
    wait_for(lambda: daemon.metric("reconciler_git_fetch_failures_total") >= 3, what="failures")
    assert len(daemon.events("git_fetch_failed")) == 1
    assert emulator.creates_committed(301) == emulator.creates_committed(302) == 1
    moved.rename(repo.origin)
    wait_for(lambda: bool(daemon.events("git_fetch_recovered")), what="recovery")
    # A force push back to the first commit: reported, then reconciled (d302 is not
    # pruned without --prune: it is pending).
    git("reset", "--quiet", "--hard", first, cwd=repo.work)
    repo.push(force=True)
    wait_for(lambda: bool(daemon.events("history_rewritten")), what="history_rewritten")
    wait_for(lambda: bool(daemon.events("prune_pending")), what="the removal reported")
    assert emulator.creates_committed(301) == emulator.creates_committed(302) == 1
    assert daemon.terminate() == 0


def test_a_revision_is_read_whole_while_the_author_pushes_again(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifests of a commit are read from the object store at that commit: pushes
    after the fetch change nothing of what is read, and the next fetch takes the newest."""
    from reconciler.sources.git import GitFollower, Mirror, read_commit

    monkeypatch.setenv("RECONCILER_GIT_CACHE", str(tmp_path / "cache"))
    repo.write("a.yaml", doc("a", 301, "c1"))
    first = repo.commit_and_push("one")
    mirror = Mirror(repo.url)
    assert mirror.fetch(None) == first
    repo.write("b.yaml", doc("b", 302, "c2"))
    repo.commit_and_push("two")
    repo.remove("a.yaml")
    third = repo.commit_and_push("three")
    mirror.fetch(None)  # the mirror now holds the newer commits too
    at_first = read_commit(mirror, first, ["deployments"])
    assert [d.name for d in at_first.deployments] == ["a"]
    assert at_first.revision is not None and at_first.revision.sha == first
    follower = GitFollower(repo.url, ["deployments"])
    assert follower.poll() is True
    newest = follower.current()
    assert newest.revision is not None and newest.revision.sha == third
    assert [d.name for d in newest.deployments] == ["b"]
    assert follower.poll() is False  # nothing new: no second read
