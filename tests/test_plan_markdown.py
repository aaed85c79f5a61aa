"""`plan --format markdown`: a pull-request comment under GitHub's 65,536-character limit,
with the actions that need a reader kept first, and user text that cannot inject markup."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from reconciler.emulator import Emulator
from reconciler.model import Action, Change, Plan
from reconciler.render import MARKDOWN_MARKER, plan_markdown
from tests.test_apply_e2e import SECRET, assert_no_traceback, run, world

__all__ = ["world"]  # a fixture used below

GITHUB_COMMENT_LIMIT = 65_536


def rows(markdown: str) -> list[list[str]]:
    """The table's body rows, split on the `|` that are not escaped."""
    found = []
    for line in markdown.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            found.append([cell.strip() for cell in cells])
    return found


def big_plan(creates: int) -> Plan:
    """Thousands of creates first (as a planner sorting by name could give them), and the
    actions that need a reader last."""
    actions = [
        Action("create", f"algo-{i:05d}", 10_000 + i, "no live deployment on the project")
        for i in range(creates)
    ]
    actions += [
        Action("noop", f"sync-{i}", 20_000 + i, "in sync") for i in range(100)
    ]  # fmt: skip
    actions += [
        Action(
            "replace", "ib-pairs", 2, "spec changed", deploy_id="L-old",
            changes=(
                Change("compileId", "8c3b-1", "91fa-2"),
                Change("brokerage.password", "<from env IB_PASSWORD>", "<from env IB_PW_NEW>"),
            ),
        ),
        Action("blocked", "on-busy-node", 3, "node LN-1 is busy with project 9"),
        Action("conflict", "theirs", 4, "project runs someone else's deployment"),
        Action("prune", "gone", 5, "manifest removed", deploy_id="L-5"),
        Action("restart", "died", 6, "failed: RuntimeError", cause="failed"),
        Action("drift", "stopped", 7, "stopped by someone else", cause="stopped"),
    ]  # fmt: skip
    return Plan(tuple(actions))


def test_five_thousand_actions_fit_a_comment_and_keep_what_needs_a_reader() -> None:
    markdown = plan_markdown(big_plan(5_000))
    assert len(markdown) < GITHUB_COMMENT_LIMIT
    assert markdown.startswith(MARKDOWN_MARKER + "\n")
    assert "**Plan: 5000 to create, 1 to replace, 1 to prune." in markdown
    table = rows(markdown)
    kinds = [row[0].strip("`").split()[1] for row in table]
    # every action that needs a reader is shown, before any create
    assert kinds[:6] == ["blocked", "conflict", "replace", "prune", "restart", "drift"]
    assert set(kinds[6:]) == {"create"}
    shown_creates = len(kinds) - 6
    assert 0 < shown_creates < 5_000
    left = 5_000 - shown_creates
    assert f"**{left:,} of 5,006 actions not shown** ({left:,} create)" in markdown
    assert "sync-" not in markdown  # in sync says nothing (it is counted in the summary)
    # the replace's field changes, secrets as their references
    assert '~ compileId: "8c3b-1" -> "91fa-2"' in markdown
    assert '~ brokerage.password: "<from env IB_PASSWORD>" -> "<from env IB_PW_NEW>"' in markdown


def test_a_small_plan_is_shown_whole_without_a_truncation_note() -> None:
    markdown = plan_markdown(big_plan(3))
    assert len(rows(markdown)) == 9
    assert "not shown" not in markdown
    assert "Prunes are carried out only by `reconciler apply --prune`." in markdown


def test_the_limit_holds_for_any_size_and_long_reasons() -> None:
    long_reason = "x" * 50_000
    plan = Plan(tuple(Action("blocked", f"b{i}", i, long_reason) for i in range(200)))
    for limit in (5_000, 20_000, 60_000):
        markdown = plan_markdown(plan, limit=limit)
        assert len(markdown) <= limit
        assert "actions not shown" in markdown


def test_user_text_cannot_break_the_table_or_inject_markup() -> None:
    reason = "a | b\nsecond line <img src=x onerror=alert(1)> **bold** [link](http://x) @octocat"
    markdown = plan_markdown(Plan((Action("blocked", "n|ame", 1, reason),)))
    (row,) = rows(markdown)
    assert len(row) == 4  # the `|` in the name and the reason did not add cells
    assert row[1] == r"n\|ame"
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in row[3]
    assert r"\*\*bold\*\*" in row[3] and r"\[link\]" in row[3]
    assert "a \\| b<br>second line" in row[3]
    assert "@octocat" not in markdown  # no mention that would notify someone
    assert "\n" not in row[3]


def test_no_changes() -> None:
    markdown = plan_markdown(Plan((Action("noop", "a", 1, "in sync"),)))
    assert "No changes. Live deployments match the manifests." in markdown
    assert "| action |" not in markdown


def test_plan_format_markdown_shows_a_replace_with_secrets_as_references(
    emulator: Emulator, world: Path, tmp_path: Path
) -> None:
    assert run(emulator, tmp_path, "apply", str(world), "--yes").returncode == 0
    manifest = world / "d102.yaml"
    new_compile = emulator.add_compile(102)
    text = manifest.read_text()
    text = re.sub(r'compileId: "[^"]+"', f'compileId: "{new_compile}"', text)
    manifest.write_text(text.replace("fromEnv: IB_PASSWORD", "fromEnv: IB_PASSWORD_NEW"))
    result = run(
        emulator, tmp_path, "plan", str(world), "--format", "markdown", IB_PASSWORD_NEW=SECRET
    )
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    markdown = result.stdout
    assert "**Plan: 0 to create, 1 to replace, 0 to prune. (2 in sync)**" in markdown
    (row,) = rows(markdown)
    assert row[:3] == ["`~ replace`", "d102", "102"]
    assert f'-> "{new_compile}"' in markdown
    assert '"<from env IB_PASSWORD>" -> "<from env IB_PASSWORD_NEW>"' in markdown
    assert SECRET not in markdown


def test_plan_help_lists_markdown() -> None:
    from tests.conftest import RECONCILER

    result = subprocess.run(
        [*RECONCILER, "plan", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "markdown" in result.stdout
