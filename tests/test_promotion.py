"""Paper first (DESIGN §17): the verdict function's properties, validation, and the whole
flow against the emulator on loopback: nothing reaches the live project that did not pass
on paper."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import validation
from reconciler.client.answers import money
from reconciler.emulator import Emulator
from reconciler.model.promotion import (
    MIN_SAMPLES,
    Candidate,
    Paper,
    Promotion,
    Verdict,
    code_digest,
    fraction,
)
from reconciler.policy import promotion
from reconciler.state import open_store
from tests.conftest import RECONCILER, cli_env
from tests.postgres_support import require_postgres
from tests.test_apply_e2e import assert_no_traceback, run

PAPER, LIVE = 1001, 2002
SOAK = 4.0  # seconds: long enough that back-to-back applies leave no gap of half of it


# -- the verdict function ---------------------------------------------------------------


def candidate(samples: list[tuple[float, float]], soak: float = 100.0, **rule: Any) -> Candidate:
    return Candidate(
        "live", "sha256:aa", "paper", "L-1", 0.0, Promotion("paper", soak, **rule),
        samples=tuple(samples),
    )  # fmt: skip


def no_closes(name: str, start: float, end: float) -> int:
    return 0


sample_times = st.lists(st.floats(0.0, 400.0, allow_nan=False), max_size=12).map(sorted)
equities = st.floats(50_000.0, 150_000.0, allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(sample_times, st.data(), st.floats(0.0, 500.0))
def test_never_a_pass_with_too_few_samples_a_gap_or_a_short_soak(
    times: list[float], data: st.DataObject, late: float
) -> None:
    samples = [(t, data.draw(equities)) for t in times]
    judged = promotion.judge(candidate(samples), max(times, default=0.0) + late, no_closes)
    if judged.verdict is Verdict.PASSED:
        start, span = promotion.span(judged)
        assert len(span) >= MIN_SAMPLES
        assert span[-1][0] - start >= 100.0
        points = [start, *(t for t, _ in span)]
        assert all(b - a <= 50.0 for a, b in itertools.pairwise(points))
    else:
        assert judged.verdict is Verdict.SOAKING  # no drawdown limit: never failed


@settings(max_examples=300, deadline=None)
@given(st.lists(equities, min_size=1, max_size=12), st.floats(0.01, 0.5))
def test_a_drawdown_past_the_limit_fails_and_is_never_a_pass(
    values: list[float], limit: float
) -> None:
    samples = [(10.0 * (i + 1), v) for i, v in enumerate(values)]
    judged = promotion.judge(candidate(samples, max_drawdown=limit), 1000.0, no_closes)
    peak, deepest = 0.0, 0.0
    for value in values:
        peak = max(peak, value)
        deepest = max(deepest, (peak - value) / peak)
    assert (judged.verdict is Verdict.FAILED) == (deepest > limit)


def test_a_pass_needs_every_close_the_rule_asks_for() -> None:
    samples = [(t, 100_000.0) for t in (40.0, 80.0, 120.0)]
    rule = {"sessions": 2, "calendar": "fx"}
    assert promotion.judge(candidate(samples, **rule), 130.0, lambda *_: 1).verdict == "soaking"
    assert promotion.judge(candidate(samples, **rule), 130.0, lambda *_: 2).verdict == "passed"


def test_new_paper_code_supersedes_a_soaking_candidate_and_a_verdict_stays_with_its_code() -> None:
    rule = Promotion("paper", 100.0)
    a = Paper("L-1", "Running", "running", digest="sha256:a", started_at=0.0, equity=1.0)
    b = Paper("L-2", "Running", "running", digest="sha256:b", started_at=10.0, equity=1.0)
    first = promotion.advance((), "live", rule, a, 5.0)
    assert [(c.digest, c.verdict) for c in first] == [("sha256:a", "soaking")]
    second = promotion.advance(first, "live", rule, b, 20.0)
    verdicts = {c.digest: c.verdict for c in second}
    assert verdicts == {"sha256:a": "failed", "sha256:b": "soaking"}
    back = promotion.advance(second, "live", rule, a, 30.0)  # the old code comes back
    assert {c.digest: c.verdict for c in back}["sha256:a"] == "failed"


def _gate_case(kind: str, running: str | None, live_code: str | None, *found: Candidate):
    from reconciler.model import Action, ActionKind, Deployment, Plan, Record
    from reconciler.model.promotion import Evidence
    from reconciler.policy.facts import Facts

    rule = Promotion("paper", 100.0)
    desired = Deployment("live", LIVE, "latest", "LN-1", "-1", {"id": "PaperTrading"},
                         promotion=rule)  # fmt: skip
    record = Record("live", LIVE, desired.spec_hash, "L-9", True, "c-1", digest=running)
    action = Action(ActionKind(kind), "live", LIVE, "why", desired=desired, record=record)
    evidence = Evidence(rule, found, live_code)
    plan = promotion.gate(Plan((action,)), Facts(promotions={"live": evidence}), 0.0)
    return plan.actions[0]


def test_the_gate_lets_only_code_that_passed_start() -> None:
    a = candidate([]).decided(Verdict.PASSED, "ok", 1.0)
    b = Candidate("live", "sha256:bb", "paper", "L-2", 5.0, a.rule, seen_at=9.0)
    soaking_b = b
    passed_b = b.decided(Verdict.PASSED, "ok", 9.0)
    failed_b = b.decided(Verdict.FAILED, "drawdown", 9.0)
    # A restart brings back the code it ran when that passed, whatever soaks meanwhile.
    for newer in (soaking_b, passed_b, failed_b):
        out = _gate_case("restart", a.digest, "sha256:other", a, newer)
        assert out.action == "restart" and out.held is None, (newer.verdict, out.reason)
    # A create deploys the current candidate only, once it passed, from the same code.
    assert _gate_case("create", None, "sha256:bb", a, passed_b).digest == "sha256:bb"
    out = _gate_case("create", None, "sha256:aa", a, passed_b)
    assert out.action == "blocked" and "is not what passed on paper, bb" in out.reason
    assert _gate_case("create", None, "sha256:bb", a, soaking_b).action == "waiting"
    assert _gate_case("create", None, "sha256:bb", a, failed_b).action == "blocked"
    assert _gate_case("create", None, None, passed_b).action == "blocked"  # files unreadable
    # Nothing passed yet: nothing starts, whatever the live project holds.
    assert _gate_case("create", None, "sha256:bb", soaking_b).action == "waiting"
    assert _gate_case("create", None, "sha256:bb").action == "waiting"


def test_money_strings_and_drawdown_spellings() -> None:
    assert money("$100,000.00") == 100000.0
    assert money("-$1,234.50") == -1234.5
    assert money("") is None and money("n/a") is None and money(None) is None
    assert fraction("5%") == pytest.approx(0.05) and fraction(0.05) == 0.05
    with pytest.raises(ValueError):
        fraction("150%")
    assert code_digest([("b", "2"), ("a", "1")]) == code_digest([("a", "1"), ("b", "2")])
    assert code_digest([("a", "1b")]) != code_digest([("a1", "b")])


# -- validation -------------------------------------------------------------------------


def manifest(name: str, project: int, *, compile_id: str = "latest", extra: str = "",
             brokerage: str = "{id: PaperTrading}") -> str:  # fmt: skip
    return (
        f"apiVersion: reconciler/v1\nkind: LiveDeployment\nmetadata:\n  name: {name}\n"
        f"spec:\n  projectId: {project}\n  compileId: {compile_id}\n  nodeId: LN-{project}\n"
        f"  brokerage: {brokerage}\n{extra}"
    )


def promoted(soak: str = f"{SOAK:g}s", more: str = "") -> str:
    return f"  promotion:\n    from: spy-paper\n    soak: {soak}\n{more}"


def problems(tmp_path: Path, *documents: str) -> list[str]:
    path = tmp_path / "set.yaml"
    path.write_text("---\n".join(documents))
    return [f"{p.path}: {p.message}" for p in validation.validate_paths([str(path)]).problems]


def test_validation_names_what_a_promotion_needs(tmp_path: Path) -> None:
    paper = manifest("spy-paper", PAPER)
    assert problems(tmp_path, paper, manifest("spy-live", LIVE, extra=promoted())) == []
    found = problems(
        tmp_path, paper, manifest("spy-live", LIVE, compile_id="abc", extra=promoted())
    )
    assert found and "compileId: latest" in found[0] and found[0].startswith("spec.compileId")
    found = problems(tmp_path, manifest("spy-paper", PAPER, compile_id="abc"),
                     manifest("spy-live", LIVE, extra=promoted()))  # fmt: skip
    assert found == ["spec.promotion.from: 'spy-paper' needs compileId: latest (a candidate is "
                     "the paper project's code)"]  # fmt: skip
    live_env = "{id: Tradier, environment: live, account: '1', token: {fromEnv: T}}"
    found = problems(tmp_path, manifest("spy-paper", PAPER, brokerage=live_env),
                     manifest("spy-live", LIVE, extra=promoted()))  # fmt: skip
    assert found and "not a paper deployment" in found[0]
    found = problems(tmp_path, manifest("spy-live", LIVE, extra=promoted()))
    assert found == ["spec.promotion.from: no LiveDeployment named 'spy-paper' in these manifests"]
    found = problems(tmp_path, paper, manifest("spy-live", LIVE, extra=promoted("2 days")))
    assert found and found[0].startswith("spec.promotion.soak")
    found = problems(
        tmp_path, paper, manifest("spy-live", LIVE, extra=promoted(more="    maxDrawdown: 150%\n"))
    )
    assert found and found[0].startswith("spec.promotion.maxDrawdown")  # fmt: skip


# -- end to end against the emulator ---------------------------------------------------------


class Twins:
    """A paper project and its live twin in the emulator, and their manifests."""

    def __init__(self, emulator: Emulator, tmp_path: Path, rule: str = "") -> None:
        self.emulator, self.tmp_path = emulator, tmp_path
        self.root = tmp_path / "deployments"
        self.root.mkdir()
        for project in (PAPER, LIVE):
            emulator.add_project(project, name=f"p{project}")
            emulator.add_node(f"LN-{project}")
        emulator.set_files(PAPER, {"main.py": "# v1: momentum\n"})
        emulator.set_files(LIVE, {"main.py": "# v0: what live ran before\n"})
        self.rule = rule

    def write(self, rule: str | None = None) -> None:
        (self.root / "paper.yaml").write_text(manifest("spy-paper", PAPER))
        live_env = "{id: Tradier, environment: live, account: '1', token: {fromEnv: T}}"
        (self.root / "live.yaml").write_text(
            manifest("spy-live", LIVE, brokerage=live_env, extra=promoted(more=rule or self.rule))
        )

    def cli(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = run(self.emulator, self.tmp_path, *args, T="tradier-token")
        assert_no_traceback(result)
        if expect is not None:
            assert result.returncode == expect, result.stdout + result.stderr
        return result

    def apply(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", str(self.root), "--yes", "--wait", "0", *args, expect=expect)

    def status(self) -> dict[str, Any]:
        out = self.cli("promotion", "status", "--format", "json").stdout
        rows = json.loads(out)["promotions"]
        return rows[0] if rows else {}

    def soak(self, until: str = "passed", limit: int = 40) -> dict[str, Any]:
        """Apply back to back (each reconcile one sample) until the verdict is `until`."""
        for _ in range(limit):
            self.apply(expect=None)
            row = self.status()
            if row.get("verdict") == until:
                return row
        raise AssertionError(f"no {until} verdict after {limit} applies: {self.status()}")

    def copy_code_to_live(self) -> None:
        self.emulator.admin("projects/files", {"projectId": LIVE, "copyFrom": PAPER})

    def live_creates(self) -> int:
        return self.emulator.creates_committed(LIVE)


@pytest.fixture
def twins(emulator: Emulator, tmp_path: Path) -> Twins:
    t = Twins(emulator, tmp_path)
    t.write()
    return t


def test_live_is_not_deployed_until_the_soak_passed(twins: Twins) -> None:
    first = twins.apply()
    assert "waiting" in first.stdout and "no candidate yet" in first.stdout
    assert twins.emulator.creates_committed(PAPER) == 1 and twins.live_creates() == 0
    twins.copy_code_to_live()
    before = twins.status()
    plan = twins.cli("plan", str(twins.root), "--detailed-exitcode")  # waiting: not a change
    assert "waiting" in plan.stdout and "soaking" in plan.stdout
    assert twins.status() == before, "plan wrote a sample"
    row = twins.soak("soaking", limit=3)
    assert row["running"] is None and twins.live_creates() == 0
    row = twins.soak("passed")
    assert row["samples"] >= 3 and "max drawdown" in row["reason"]
    # The reconcile that took the passing sample promoted it: one create on the live project.
    assert twins.live_creates() == 1
    assert row["running"] == row["candidate"]
    history = twins.cli("state", "history", "spy-live").stdout
    assert (
        "promoted candidate" in history and row["candidate"].removeprefix("sha256:")[:12] in history
    )
    again = twins.apply()
    assert "No changes" in again.stdout and twins.live_creates() == 1


def test_live_code_that_differs_is_blocked_naming_both_digests(twins: Twins) -> None:
    twins.apply()
    row = twins.soak("passed")
    blocked = twins.apply(expect=1)
    live_code = code_digest([("main.py", "# v0: what live ran before\n")])
    assert (
        f"live project {LIVE}'s code {live_code.removeprefix('sha256:')[:12]} is not what "
        f"passed on paper, {row['candidate'].removeprefix('sha256:')[:12]}"
    ) in blocked.stdout
    assert twins.live_creates() == 0
    twins.copy_code_to_live()
    twins.apply()
    assert twins.live_creates() == 1


def test_a_drawdown_fails_the_candidate_and_it_never_reaches_live(twins: Twins) -> None:
    twins.write("    maxDrawdown: 5%\n")
    twins.copy_code_to_live()
    twins.apply()
    twins.apply()
    twins.emulator.set_equity(PAPER, 94_000.0)  # 6% under the 100,000 it started with
    blocked = twins.apply(expect=1)
    assert "failed on paper" in blocked.stdout and "over maxDrawdown 5%" in blocked.stdout
    row = twins.status()
    assert row["verdict"] == "failed" and row["maxDrawdown"] == pytest.approx(0.06)
    twins.emulator.set_equity(PAPER, 100_000.0)
    for _ in range(6):
        twins.apply(expect=1)
    assert twins.live_creates() == 0 and twins.status()["verdict"] == "failed"


def test_a_paper_deployment_that_fails_fails_its_candidate(twins: Twins) -> None:
    twins.copy_code_to_live()
    twins.apply()
    twins.apply()
    killed = twins.emulator.kill(PAPER)
    blocked = twins.apply(expect=1)  # the paper twin restarts (OnFailure); its code failed
    assert f"paper deployment {killed} is RuntimeError" in blocked.stdout
    assert twins.status()["verdict"] == "failed" and twins.live_creates() == 0
    twins.emulator.set_files(PAPER, {"main.py": "# v2: the fix\n"})
    replaced = twins.apply(expect=None)  # the paper twin is replaced with the new code ...
    assert "replace" in replaced.stdout
    twins.apply(expect=None)  # ... which the next reconcile offers: a new candidate soaks
    assert twins.status()["verdict"] == "soaking"
    twins.copy_code_to_live()
    twins.soak("passed")
    assert twins.live_creates() == 1


def test_a_paper_deployment_whose_code_is_unknown_offers_no_candidate(
    emulator: Emulator, tmp_path: Path
) -> None:
    twins = Twins(emulator, tmp_path)
    seeded = emulator.add_live(PAPER, f"LN-{PAPER}", {"id": "QuantConnectBrokerage"})  # by hand
    twins.write()
    twins.copy_code_to_live()
    for _ in range(4):
        out = twins.apply()
    assert f"the code of paper deployment {seeded} (spy-paper) is not known" in out.stdout
    assert "`reconciler apply --replace spy-paper` starts a soak" in out.stdout
    assert twins.status() == {} and twins.live_creates() == 0
    twins.apply("--replace", "spy-paper")
    twins.soak("passed")
    assert twins.live_creates() == 1


def test_new_paper_code_supersedes_and_is_promoted_by_one_replace(twins: Twins) -> None:
    twins.copy_code_to_live()
    twins.apply()
    first = twins.soak("passed")
    twins.apply()
    assert twins.live_creates() == 1
    live_before = [d["deployId"] for d in twins.emulator.active_deployments(LIVE)]
    twins.emulator.set_files(PAPER, {"main.py": "# v2: momentum, faster\n"})
    replaced = twins.apply()  # compileId latest: the paper twin is replaced with the new code
    assert "replace" in replaced.stdout and twins.emulator.creates_committed(PAPER) == 2
    twins.copy_code_to_live()  # the live project's own code change replaces nothing by itself
    waiting = twins.apply()
    assert "waiting" in waiting.stdout and twins.live_creates() == 1
    second = twins.soak("passed")
    assert second["candidate"] != first["candidate"]
    twins.apply()
    twins.apply()
    assert twins.live_creates() == 2
    stops = [s for s in twins.emulator.stats()["stops"] if s["projectId"] == LIVE]
    assert [s["deployId"] for s in stops] == live_before
    assert twins.status()["running"] == second["candidate"]


def test_the_promotions_replace_waits_for_the_live_deployments_window(twins: Twins) -> None:
    from tests.test_windows import closed_for_a_month, window_doc

    (twins.root / "window.yaml").write_text(
        window_doc("after-hours", calendar="none", allow=closed_for_a_month())
    )
    twins.write("  window: after-hours\n")
    twins.copy_code_to_live()
    twins.apply()
    twins.soak("passed")
    assert twins.live_creates() == 1  # a create is never held by a window
    twins.emulator.set_files(PAPER, {"main.py": "# v2\n"})
    twins.apply()
    twins.copy_code_to_live()
    row = twins.soak("passed")
    plan = twins.cli("plan", str(twins.root), "--format", "json")
    action = next(a for a in json.loads(plan.stdout)["actions"] if a["name"] == "spy-live")
    assert action["action"] == "deferred" and action["deferred"] == "replace", action
    assert action["window"] == "after-hours"
    twins.apply()
    assert twins.live_creates() == 1 and twins.status()["running"] != row["candidate"]


def test_manual_approval_and_rejection(twins: Twins) -> None:
    twins.write("    approval: manual\n")
    twins.copy_code_to_live()
    twins.apply()
    twins.soak("passed")
    waiting = twins.apply()
    assert "awaiting `reconciler promotion approve spy-live`" in waiting.stdout
    assert twins.live_creates() == 0
    approved = twins.cli("promotion", "approve", "spy-live")
    assert "approved" in approved.stdout
    twins.apply()
    assert twins.live_creates() == 1
    # New paper code, rejected: never promoted, even once it has soaked.
    twins.emulator.set_files(PAPER, {"main.py": "# v3\n"})
    twins.apply()
    twins.copy_code_to_live()
    twins.apply()
    twins.cli("promotion", "reject", "spy-live")
    for _ in range(8):
        twins.apply()
    row = twins.status()
    assert row["verdict"] == "rejected" and twins.live_creates() == 1
    refused = twins.cli("promotion", "approve", "spy-live", expect=1)
    assert "rejected, not passed" in refused.stderr


def test_the_promotions_create_answer_lost_after_commit_is_confirmed_not_repeated(
    twins: Twins,
) -> None:
    twins.copy_code_to_live()
    twins.apply()
    row = twins.soak("passed")
    twins.emulator.inject("live/create", drop=1, drop_before=0)  # committed, answer lost
    twins.apply("--concurrency", "1", expect=None)
    twins.emulator.clear_faults()
    twins.apply()
    twins.apply()
    assert twins.live_creates() == 1
    assert len(twins.emulator.active_deployments(LIVE)) == 1
    assert twins.status()["running"] == row["candidate"]


def kill_mid_create(twins: Twins, creates_before: int) -> None:
    """Apply until one sends the live project's create, and SIGKILL it while the slow create
    is in flight (the API received it, its answer is 1.5 s late); then wait until it lands."""
    twins.emulator.inject("live/create", latency=1.5)

    def sent() -> int:
        return sum(1 for t in twins.emulator.stats()["create_times"] if t["projectId"] == LIVE)

    proc = None
    for _ in range(40):  # the apply whose sample passes the candidate is the one killed
        proc = subprocess.Popen(
            [*RECONCILER, "apply", str(twins.root), "--yes", "--wait", "0"],
            env=cli_env(twins.emulator, twins.tmp_path, T="tradier-token"),
            cwd=twins.tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while proc.poll() is None and sent() == creates_before:
            time.sleep(0.01)
        if proc.poll() is None:
            break
        proc.communicate()
    assert proc is not None and proc.poll() is None, "no live create was started"
    proc.kill()
    proc.communicate(timeout=10)
    twins.emulator.clear_faults()
    deadline = time.monotonic() + 10
    while twins.live_creates() == creates_before:
        assert time.monotonic() < deadline, "the create in flight never landed"
        time.sleep(0.05)


def test_an_apply_killed_mid_create_of_the_promotion_resumes_without_a_second_one(
    twins: Twins,
) -> None:
    """SIGKILL while the promotion's create is in flight: the create lands, the next run
    claims it from its intent (with the candidate's code), nothing is created again."""
    twins.copy_code_to_live()
    twins.apply()
    row = twins.soak("soaking", limit=1)
    kill_mid_create(twins, 0)
    resumed = twins.apply()
    again = twins.apply()
    assert "No changes" in again.stdout, resumed.stdout + again.stdout
    assert twins.live_creates() == 1 and not twins.emulator.stats()["stops"]
    assert twins.status()["running"] == row["candidate"]


def test_an_apply_killed_mid_replace_of_the_promotion_resumes_with_one_replace(
    twins: Twins,
) -> None:
    """The promotion of new code: killed after the old deployment's stop, while the new
    create is in flight.  One stop, one create, and the new candidate runs."""
    twins.copy_code_to_live()
    twins.apply()
    twins.soak("passed")
    old = [d["deployId"] for d in twins.emulator.active_deployments(LIVE)]
    twins.emulator.set_files(PAPER, {"main.py": "# v2\n"})
    twins.apply()
    twins.copy_code_to_live()
    row = twins.soak("soaking", limit=2)
    kill_mid_create(twins, 1)
    twins.apply()
    again = twins.apply()
    assert "No changes" in again.stdout, again.stdout
    assert twins.live_creates() == 2
    assert [s["deployId"] for s in twins.emulator.stats()["stops"] if s["projectId"] == LIVE] == old
    assert twins.status()["running"] == row["candidate"]


def test_the_daemon_soaks_and_promotes(twins: Twins) -> None:
    twins.copy_code_to_live()
    env_run = ["watch", str(twins.root), "--resync", "0.3"]
    proc = subprocess.Popen(
        [*RECONCILER, *env_run],
        env=cli_env(twins.emulator, twins.tmp_path, T="tradier-token"),
        cwd=twins.tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while twins.live_creates() == 0:
            assert time.monotonic() < deadline, "the daemon never promoted"
            assert proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "waiting" in out
    row = twins.status()
    assert row["verdict"] == "passed" and row["running"] == row["candidate"]
    assert row["samples"] >= MIN_SAMPLES


def test_candidates_are_kept_in_postgresql_and_copied_with_the_state(
    twins: Twins, tmp_path: Path
) -> None:
    url = require_postgres()
    twins.apply()
    twins.apply()
    sqlite = open_store(str(tmp_path / "state.db"))
    try:
        kept = sqlite.candidates("spy-live")
    finally:
        sqlite.close()
    assert kept and kept[0].samples
    workspace = f"promo-{time.time_ns()}"
    twins.cli("state", "copy", "--to", url, "--to-workspace", workspace)
    pg = open_store(url, workspace)
    try:
        assert pg.candidates("spy-live") == kept
        moved = promotion.reject(kept[0], time.time())
        pg.put_candidates([moved])
        assert pg.candidates() == [moved]
    finally:
        pg.close()
