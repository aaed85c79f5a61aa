"""Helpers shared by the validate tests (imported as a plain module from this directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reconciler import validation

REPO = Path(__file__).resolve().parents[2]
RECONCILER = [sys.executable, "-m", "reconciler"]
NODE = "LN-0123456789abcdef0123456789abcdef"


def node_for(project: int) -> str:
    """A node of its own for each project: a node runs one algorithm at a time."""
    return f"LN-{project:032x}"


def manifest(
    name: str = "algo",
    project: int = 1,
    brokerage: str = "{id: PaperTrading}",
    node: str | None = None,
) -> str:
    """A valid manifest; `brokerage` is a flow mapping on line 9, the node on line 8
    (by default the project's own, `node_for(project)`)."""
    return (
        "apiVersion: reconciler/v1\n"  # 1
        "kind: LiveDeployment\n"  # 2
        "metadata:\n"  # 3
        f"  name: {name}\n"  # 4
        "spec:\n"  # 5
        f"  projectId: {project}\n"  # 6
        "  compileId: latest\n"  # 7
        f"  nodeId: {node or node_for(project)}\n"  # 8
        f"  brokerage: {brokerage}\n"  # 9
    )


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(*paths: str, check_secrets: bool = False) -> list[str]:
    report = validation.validate_paths(list(paths), check_secrets=check_secrets)
    return [str(problem) for problem in report.problems]


def run_cli(
    *args: str,
    cwd: Path | str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run(
        [*RECONCILER, *args],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
