"""The GitHub Action (action.yml) and `apply --format json`, run locally: the action's step
(`python -m reconciler.ci.github`) with GITHUB_OUTPUT and GITHUB_STEP_SUMMARY pointing at
temporary files, against the emulator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from reconciler.ci.github import child_env
from reconciler.emulator import Emulator
from tests.conftest import cli_env
from tests.test_apply_e2e import (
    SECRET,
    assert_exactly_once,
    assert_no_traceback,
    node_for,
    run,
    world,
)

__all__ = ["world"]  # a fixture used below

ROOT = Path(__file__).resolve().parent.parent


def step(
    emulator: Emulator, tmp_path: Path, command: str, paths: Path, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """Run the action's step as the runner would; return its outputs and job summary."""
    runner = tmp_path / "runner"
    runner.mkdir(exist_ok=True)
    outputs, summary = runner / "output", runner / "summary"
    outputs.write_text("")
    summary.write_text("")
    env = cli_env(
        emulator,
        tmp_path,
        IB_PASSWORD=SECRET,
        GITHUB_OUTPUT=str(outputs),
        GITHUB_STEP_SUMMARY=str(summary),
        RUNNER_TEMP=str(runner),
        INPUT_COMMAND=command,
        INPUT_PATHS=str(paths),
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    )
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.ci.github"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    found = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if line)
    return result, found, summary.read_text()


def test_plan_then_apply_then_plan_again(emulator: Emulator, world: Path, tmp_path: Path) -> None:
    result, outputs, summary = step(emulator, tmp_path, "plan", world)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert outputs["has-changes"] == "true"
    plan = json.loads(Path(outputs["plan-json"]).read_text())
    assert [a["action"] for a in plan["actions"]] == ["create"] * 3
    assert summary.startswith("<!-- qc-live-reconciler plan -->\n")
    assert "**Plan: 3 to create, 0 to replace, 0 to prune.**" in summary
    assert "| `+ create` | d102 | 102 | no live deployment on the project |" in summary
    assert Path(outputs["plan-markdown"]).read_text() in summary
    assert "Plan: 3 to create" in result.stdout  # the text plan in the job's log
    assert emulator.creates_committed() == 0  # plan only reads

    result, outputs, summary = step(emulator, tmp_path, "apply", world)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs["has-changes"] == "true"
    outcomes = json.loads(Path(outputs["apply-json"]).read_text())
    assert sorted(o["result"] for o in outcomes["outcomes"]) == ["created"] * 3
    assert "**Apply complete: 3 created.**" in summary
    assert "Plan: 3 to create" in result.stderr  # the plan and progress, in the log
    assert_exactly_once(emulator)

    result, outputs, summary = step(emulator, tmp_path, "plan", world)
    assert result.returncode == 0
    assert outputs["has-changes"] == "false"
    assert "No changes. Live deployments match the manifests." in summary
    assert SECRET not in summary + result.stdout + result.stderr


def test_validate_annotates_and_fails(emulator: Emulator, world: Path, tmp_path: Path) -> None:
    (world / "d101.yaml").write_text(
        (world / "d101.yaml").read_text().replace("projectId: 101", "projectId: soon")
    )
    result, outputs, summary = step(emulator, tmp_path, "validate", world)
    assert result.returncode == 1
    assert re.search(r"^::error file=.*d101\.yaml,line=\d+", result.stdout, re.MULTILINE)
    assert "invalid manifests" in summary
    assert outputs == {}


def test_a_blocked_plan_fails_the_step_but_still_shows_the_plan(
    emulator: Emulator, world: Path, tmp_path: Path
) -> None:
    emulator.add_project(999)
    # someone else's deployment runs on d101's node
    emulator.add_live(999, node_for(101), {"id": "PaperTrading"})
    result, outputs, summary = step(emulator, tmp_path, "plan", world)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "| `x blocked` | d101 | 101 |" in summary
    assert outputs["has-changes"] == "true"  # the two other creates


def test_an_unknown_command_is_one_annotation(
    emulator: Emulator, world: Path, tmp_path: Path
) -> None:
    result, _, _ = step(emulator, tmp_path, "destroy", world)
    assert result.returncode == 1
    assert result.stdout.startswith("::error::command must be one of validate, plan, apply")


def test_inputs_become_environment_only_when_given() -> None:
    base = {"PATH": "/bin", "RECONCILER_STATE": "from-the-job"}
    empty = {**base, "INPUT_WORKSPACE": "", "INPUT_STATE": " "}
    assert child_env(empty) == empty  # nothing added, the job's RECONCILER_STATE kept
    env = child_env(
        {**base, "INPUT_WORKSPACE": "prod", "INPUT_STATE": "postgresql://db/x", "INPUT_NOTIFY": "a"}
    )
    assert env["RECONCILER_WORKSPACE"] == "prod"
    assert env["RECONCILER_STATE"] == "postgresql://db/x"
    assert env["RECONCILER_NOTIFY"] == "a"


def test_action_yml_passes_every_input_to_the_step_and_exposes_its_outputs() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert {"command", "paths", "state", "workspace"} <= set(action["inputs"])
    assert {"has-changes", "plan-json"} <= set(action["outputs"])
    (run_step,) = [s for s in action["runs"]["steps"] if s.get("id") == "run"]
    assert run_step["run"].strip() == "python -m reconciler.ci.github"
    for name in action["inputs"]:
        if name in ("python-version", "package"):
            continue  # used by the set-up steps
        variable = "INPUT_" + name.upper().replace("-", "_")
        assert run_step["env"][variable] == f"${{{{ inputs.{name} }}}}"
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
    # no input is pasted into a shell line (script injection): only into env
    for s in action["runs"]["steps"]:
        assert "inputs." not in s.get("run", "")


def test_apply_format_json_prints_only_json_with_the_rows_of_the_text_table(
    emulator: Emulator, world: Path, tmp_path: Path
) -> None:
    emulator.update_project(103, fail_login=True)
    result = run(emulator, tmp_path, "apply", str(world), "--yes", "--format", "json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)  # nothing but the document on stdout
    assert document["version"] == 1
    assert [(o["name"], o["result"]) for o in document["outcomes"]] == [
        ("d101", "created"),
        ("d102", "created"),
        ("d103", "failed"),
    ]
    for outcome in document["outcomes"]:
        assert set(outcome) == {"name", "projectId", "action", "result", "deployId", "detail"}
    assert document["summary"] == {
        "total": 3,
        "failed": 1,
        "results": {"created": 2, "failed": 1},
    }
    assert "Brokerage login failed" in document["outcomes"][2]["detail"]
    # the plan, the progress and the text table went to stderr
    assert "Plan: 3 to create" in result.stderr
    assert "[3/3]" in result.stderr
    assert "Apply failed: 2 created, 1 failed." in result.stderr
    text_rows = [line.split()[0] for line in result.stderr.splitlines() if line.startswith("d10")]
    assert text_rows[-3:] == ["d101", "d102", "d103"]
