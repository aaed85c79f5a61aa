"""Day 2 in the daemon: replaces carried out, prunes only with --prune and never from an
invalid or half-written set of files."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from reconciler.emulator import Emulator
from tests.conftest import RECONCILER, cli_env
from tests.test_apply_e2e import manifest, node_for
from tests.test_watch import Daemon, daemons, root, running, wait_for, write

__all__ = ["daemons", "root"]  # fixtures shared with test_watch


def settle(daemon: Daemon, loops: int = 2) -> None:
    """Wait for `loops` more successful reconciles."""
    ok = daemon.metric('reconciler_reconciles_total{result="ok"}')
    wait_for(
        lambda: daemon.metric('reconciler_reconciles_total{result="ok"}') >= ok + loops,
        what=f"{loops} more reconciles",
    )


def test_daemon_replaces_a_changed_manifest(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(emulator, tmp_path, root, "--resync", "1")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    (old,) = emulator.active_deployments(101)
    write(root, emulator, 101)  # a new compile: the everyday roll-out
    wait_for(lambda: emulator.creates_committed(101) == 2, what="the replace")
    wait_for(lambda: running(emulator, 101), what="the new deployment running")
    (new,) = emulator.active_deployments(101)
    assert new["deployId"] != old["deployId"]
    assert [s["deployId"] for s in emulator.stats()["stops"]] == [old["deployId"]]
    settle(daemon)
    assert emulator.creates_committed(101) == 2  # no second replace on later resyncs
    assert emulator.stats()["rejections"]["project busy"] == 0
    assert daemon.metric('reconciler_actions_total{action="replace",outcome="replaced"}') == 1


def test_daemon_prunes_only_with_the_flag(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    write(root, emulator, 103)
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5")
    daemons.append(daemon)
    wait_for(lambda: all(running(emulator, p) for p in (101, 102, 103)), what="initial creates")
    (root / "d103.yaml").unlink()
    settle(daemon, 3)
    assert running(emulator, 103) and emulator.stats()["stops"] == []
    assert len(daemon.events("prune_pending")) == 1  # once, not on every resync
    assert daemon.terminate() == 0

    pruning = Daemon(emulator, tmp_path, root, "--resync", "0.5", "--prune", "--prune-grace", "1")
    daemons.append(pruning)
    wait_for(lambda: not running(emulator, 103), what="the prune")
    assert [s["projectId"] for s in emulator.stats()["stops"]] == [103]
    assert running(emulator, 101) and running(emulator, 102)


def test_invalid_files_never_prune(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    first = Daemon(emulator, tmp_path, root, "--resync", "0.5")
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    assert first.terminate() == 0
    # While no daemon runs, d102.yaml is left half-written: a daemon starting now has no
    # good content for it, so its deployment looks removed. It must not be pruned.
    good = (root / "d102.yaml").read_text()
    (root / "d102.yaml").write_text(good[: len(good) // 2])
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5", "--prune", "--prune-grace", "1")
    daemons.append(daemon)
    settle(daemon, 3)
    assert running(emulator, 102) and emulator.stats()["stops"] == []
    assert daemon.events("prune_suppressed")
    # A file deleted while another is invalid is suspect too.
    (root / "d101.yaml").unlink()
    settle(daemon, 3)
    assert running(emulator, 101) and emulator.stats()["stops"] == []
    # Once every file is valid again, the removal is carried out.
    (root / "d102.yaml").write_text(good)
    wait_for(lambda: not running(emulator, 101), what="the prune once all files are valid")
    time.sleep(0.2)
    assert running(emulator, 102)
    assert [s["projectId"] for s in emulator.stats()["stops"]] == [101]


def test_daemon_leaves_unmanaged_and_blocked_alone(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    emulator.add_project(150)
    emulator.add_node(node_for(150))
    foreign = emulator.add_live(150, node_for(150), {"id": "QuantConnectBrokerage"})
    compile_id = emulator.add_compile(103)
    (root / "d103.yaml").write_text(manifest("d103", 103, compile_id) + "  protected: true\n")
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5", "--prune")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 103), what="the protected deployment")
    new_compile = emulator.add_compile(103)
    (root / "d103.yaml").write_text(manifest("d103", 103, new_compile) + "  protected: true\n")
    settle(daemon, 3)
    assert emulator.creates_committed(103) == 1 and emulator.stats()["stops"] == []
    assert len([e for e in daemon.events("blocked") if e.get("deployment") == "d103"]) == 1
    assert [d["deployId"] for d in emulator.active_deployments(150)] == [foreign]


def test_a_removal_waits_out_the_grace_and_a_rename_meanwhile_stops_nothing(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    # A rename by a checkout or an editor: the old file goes, the new one comes a moment
    # later. Between the two the daemon must not prune (stop, perhaps liquidate) what
    # the new name will run again.
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5", "--prune", "--prune-grace", "4")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101) and running(emulator, 102), what="initial creates")
    (deploy_id,) = [d["deployId"] for d in emulator.active_deployments(101)]
    text = (root / "d101.yaml").read_text()
    (root / "d101.yaml").unlink()
    wait_for(lambda: daemon.events("prune_deferred"), what="the deferred prune")
    settle(daemon, 2)
    assert emulator.stats()["stops"] == []
    (root / "spy-renamed.yaml").write_text(text.replace("name: d101", "name: spy-renamed"))
    time.sleep(5)  # past the grace: nothing is due any more
    settle(daemon, 2)
    assert emulator.stats()["stops"] == []
    assert [d["deployId"] for d in emulator.active_deployments(101)] == [deploy_id]
    assert emulator.creates_committed(101) == 1
    renamed = [e for e in daemon.events("noop") if e.get("deployment") == "spy-renamed"]
    assert [e["detail"] for e in renamed] == ["renamed from d101; in sync"]  # moved once
    # A removal that lasts is pruned once the grace is over, at the latest a resync later.
    removed = time.monotonic()  # the daemon plans the prune after this, so it is due after +4 s
    (root / "d102.yaml").unlink()
    wait_for(lambda: daemon.events("prune_deferred")[1:], what="the second deferred prune")
    wait_for(lambda: not running(emulator, 102), what="the prune after the grace")
    assert time.monotonic() - removed >= 4.0  # a lower bound: load can only delay it
    assert [s["projectId"] for s in emulator.stats()["stops"]] == [102]
    assert running(emulator, 101)


def test_the_daemon_records_settings_that_are_never_replaced_for(
    emulator: Emulator, tmp_path: Path, root: Path, daemons: list[Daemon]
) -> None:
    """onDelete (like protected and the deploy window) is recorded with the deployment on
    the next reconcile and never replaces it: the daemon records it too, not only apply."""
    daemon = Daemon(emulator, tmp_path, root, "--resync", "0.5")
    daemons.append(daemon)
    wait_for(lambda: running(emulator, 101), what="the initial create")
    manifest_file = root / "d101.yaml"
    manifest_file.write_text(manifest_file.read_text() + "  onDelete: liquidate\n")

    def recorded() -> object:
        shown = subprocess.run(
            [*RECONCILER, "state", "show", "d101", "--format", "json"],
            env=cli_env(emulator, tmp_path), cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(shown.stdout)["deployment"]["onDelete"] if shown.returncode == 0 else None

    wait_for(lambda: recorded() == "liquidate", what="onDelete recorded by the daemon")
    assert emulator.stats()["stops"] == [] and emulator.creates_committed(101) == 1
    assert not daemon.events("replace")
