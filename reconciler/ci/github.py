"""The GitHub Action's step: `python -m reconciler.ci.github` (see action.yml).

Inputs come from `INPUT_<NAME>` variables, as action.yml maps them: COMMAND (validate,
plan or apply), PATHS, STATE, WORKSPACE, API_URL, NOTIFY, ARGS. The reconciler runs as a
subprocess, exactly as a user would run it; outputs go to `$GITHUB_OUTPUT`, markdown to
`$GITHUB_STEP_SUMMARY`, files to `$RUNNER_TEMP`. Without those variables (a laptop, another
CI) outputs are printed as `name=value` and files go to the temporary directory.

- validate: `--format github`, so problems are annotations on the pull request's diff;
- plan: the JSON plan (a saved plan: `apply --plan` takes it) and the markdown plan as
  files, the markdown in the job summary; outputs `has-changes`, `plan-json`,
  `plan-markdown`; exit 1 only for an error, a conflict or a blocked action;
- apply: `--yes --format json`; the outcome table in the job summary; outputs
  `has-changes` (something was created, replaced, restarted or pruned) and `apply-json`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import render
from reconciler.model import Action, Plan, Result, Revision

COMMANDS = ("validate", "plan", "apply")
CHANGED_RESULTS = frozenset(result.value for result in Result if result.changed)
# Input -> the variable the reconciler reads, passed only when the input is not empty (so
# an input the installed version does not know yet, like WORKSPACE, costs nothing).
_ENV_OF_INPUT = {
    "STATE": "RECONCILER_STATE",
    "WORKSPACE": "RECONCILER_WORKSPACE",
    "API_URL": "QC_API_URL",
    "NOTIFY": "RECONCILER_NOTIFY",
}


def read_input(name: str, environ: Mapping[str, str], default: str = "") -> str:
    return environ.get(f"INPUT_{name}", "").strip() or default


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The reconciler's environment: the step's, plus each non-empty input's variable."""
    env = dict(environ)
    for name, variable in _ENV_OF_INPUT.items():
        value = read_input(name, environ)
        if value:
            env[variable] = value
    return env


def set_output(name: str, value: str, environ: Mapping[str, str]) -> None:
    target = environ.get("GITHUB_OUTPUT")
    if not target:
        print(f"{name}={value}")
        return
    with open(target, "a", encoding="utf-8") as handle:
        if "\n" in value:
            delimiter = f"EOF_{uuid.uuid4().hex}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            handle.write(f"{name}={value}\n")


def add_summary(markdown: str, environ: Mapping[str, str]) -> None:
    target = environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def _reconciler(
    command: str, arguments: Sequence[str], env: Mapping[str, str], capture: bool
) -> subprocess.CompletedProcess[str]:
    print(f"$ reconciler {command} {shlex.join(arguments)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", command, *arguments],
        env=dict(env),
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )


def validate(paths: list[str], extra: list[str], env: Mapping[str, str]) -> int:
    result = _reconciler("validate", [*paths, "--format", "github", *extra], env, False)
    verdict = (
        "every manifest is valid."
        if result.returncode == 0
        else "invalid manifests: see the annotations on the changed files."
    )
    add_summary(f"**reconciler validate**: {verdict}", env)
    return result.returncode


def plan(paths: list[str], extra: list[str], env: Mapping[str, str], out: Path) -> int:
    plan_json, plan_md = out / "reconciler-plan.json", out / "reconciler-plan.md"
    plan_json.unlink(missing_ok=True)
    arguments = [*paths, "--format", "json", "--out", str(plan_json), "--detailed-exitcode"]
    result = _reconciler("plan", [*arguments, *extra], env, True)
    if not plan_json.exists():  # an error before there was a plan: already on stderr
        return result.returncode or 1
    document: dict[str, Any] = json.loads(plan_json.read_text(encoding="utf-8"))
    planned = Plan(
        tuple(Action.from_json(a) for a in document["actions"]),
        notes=tuple(str(note) for note in document.get("notes") or ()),
        revision=Revision.from_json(document.get("source")),
    )
    print(render.plan_text(planned), flush=True)
    markdown = render.plan_markdown(planned)
    plan_md.write_text(markdown, encoding="utf-8")
    add_summary(markdown, env)
    set_output("has-changes", str(planned.has_changes).lower(), env)
    set_output("revision", _revision(document), env)
    set_output("plan-json", str(plan_json), env)
    set_output("plan-markdown", str(plan_md), env)
    return 0 if result.returncode in (0, 2) else result.returncode


def _revision(document: Mapping[str, Any]) -> str:
    """The commit the manifests were read at (the JSON's `source`), or "" when unknown."""
    return str((document.get("source") or {}).get("revision") or "")


def apply(paths: list[str], extra: list[str], env: Mapping[str, str], out: Path) -> int:
    apply_json = out / "reconciler-apply.json"
    result = _reconciler("apply", [*paths, "--yes", "--format", "json", *extra], env, True)
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except ValueError:  # an error before anything was applied: already on stderr
        return result.returncode or 1
    apply_json.write_text(result.stdout, encoding="utf-8")
    add_summary(render.outcomes_markdown(document), env)
    changed = any(o["result"] in CHANGED_RESULTS for o in document["outcomes"])
    set_output("has-changes", str(changed).lower(), env)
    set_output("revision", _revision(document), env)
    set_output("apply-json", str(apply_json), env)
    return result.returncode


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    command = read_input("COMMAND", environ, "plan")
    if command not in COMMANDS:
        print(f"::error::command must be one of {', '.join(COMMANDS)}, not {command!r}")
        return 1
    paths = shlex.split(read_input("PATHS", environ, "deployments/"))
    extra = shlex.split(read_input("ARGS", environ))
    env = child_env(environ)
    out = Path(environ.get("RUNNER_TEMP") or tempfile.gettempdir())
    out.mkdir(parents=True, exist_ok=True)
    if command == "validate":
        return validate(paths, extra, env)
    if command == "plan":
        return plan(paths, extra, env, out)
    return apply(paths, extra, env, out)


if __name__ == "__main__":
    sys.exit(main())
