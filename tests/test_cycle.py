"""The reconcile cycle shared by plan, apply and the daemon (issue 19), as a user meets it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from reconciler.emulator import Emulator
from reconciler.model import Intent
from reconciler.sources import files
from reconciler.state import open_store
from tests.test_apply_e2e import node_for
from tests.test_day2_e2e import World


def test_plan_is_dry_an_open_intent_is_resolved_in_memory_only(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A create whose answer was lost left its intent open; its deployment landed.  `plan`
    shows it as ours (in sync, not an adoption) and writes nothing; `apply` closes it."""
    world = World(emulator, tmp_path)
    world.add(301)
    (desired,) = files.read([str(world.root)]).deployments
    store = open_store(str(tmp_path / "state.db"))
    try:
        (intent,) = store.begin_intents(
            [Intent.new(desired.name, 301, desired.spec_hash, now=time.time() - 5)]
        )
        store.mark_sending(intent, time.time() + 60)  # its create was sent (as the engine does)
        landed = emulator.add_live(301, node_for(301), {"id": "QuantConnectBrokerage"})
        before = (store.records(), store.open_intents(), store.history())
        planned = world.run("plan", str(world.root), "--format", "json")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        (action,) = json.loads(planned.stdout)["actions"]
        assert (action["action"], action["deployId"], action.get("adopt")) == (
            "noop",
            landed,
            None,
        ), action
        assert (store.records(), store.open_intents(), store.history()) == before
        applied = world.apply()
        assert "resolved an interrupted create: d301: created" in applied.stdout
        assert store.open_intents() == []
        record = store.records()["d301"]
        assert record.owned and record.deploy_id == landed
    finally:
        store.close()
    assert emulator.creates_committed(301) == 0  # nothing was sent: it had landed


def test_the_daemons_files_are_judged_by_validation_the_file_accepted_first_wins(
    tmp_path: Path,
) -> None:
    """Across files, the daemon applies validation's own rule (one manifest per name,
    project and node): a file whose new content clashes is refused, listed as invalid,
    and keeps its last good content; the file accepted before keeps its manifest."""
    from tests.test_day2_e2e import doc

    root = tmp_path / "deployments"
    root.mkdir()
    (root / "b.yaml").write_text(doc("alpha", 301, "c1"))
    (root / "z.yaml").write_text(doc("zeta", 302, "c2"))
    tracker = files.FileTracker([str(root)])
    first = tracker.refresh().desired
    assert sorted(d.name for d in first.deployments) == ["alpha", "zeta"]
    assert first.invalid == {}
    # a.yaml sorts first, but it is new: it takes project 301, which b.yaml holds.
    (root / "a.yaml").write_text(doc("alpha-copy", 301, "c9", node=node_for(309)))
    # z.yaml now also says `alpha`: refused, its last good content (zeta) is kept.
    (root / "z.yaml").write_text(doc("alpha", 303, "c3"))
    second = tracker.refresh().desired
    by_name = {d.name: d for d in second.deployments}
    assert sorted(by_name) == ["alpha", "zeta"]
    assert by_name["alpha"].project_id == 301 and by_name["alpha"].compile_id == "c1"
    assert sorted(Path(p).name for p in second.invalid) == ["a.yaml", "z.yaml"]
    (problem,) = second.invalid[str(root / "a.yaml")]
    assert "project 301 already has a manifest at" in problem and "b.yaml" in problem
    (problem,) = second.invalid[str(root / "z.yaml")]
    assert "duplicate name 'alpha'" in problem
    # Unchanged files are judged the same way on the next read: no flip-flop.
    assert tracker.refresh().desired == second
    # The clash gone, the new content is accepted.
    (root / "a.yaml").unlink()
    (root / "z.yaml").write_text(doc("omega", 303, "c3"))
    third = tracker.refresh().desired
    assert sorted(d.name for d in third.deployments) == ["alpha", "omega"]
    assert third.invalid == {}
