"""`reconciler validate` as CI runs it: a subprocess, three formats, exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from validate_support import REPO, manifest, run_cli, write

from reconciler import manifests, validation

BAD_ENVIRONMENT = "{id: Tradier, account: VA1, environment: prod, token: {fromEnv: TRADIER_TOKEN}}"


@pytest.fixture
def project(here: Path) -> Path:
    """A directory laid out like a user's repository: deployments/ with two manifests."""
    write(here, "deployments/good.yaml", manifest("good", 1))
    write(here, "deployments/bad.yaml", manifest("bad", 2, BAD_ENVIRONMENT) + "  extra: 1\n")
    return here


def test_the_examples_are_valid_from_the_default_path() -> None:
    done = run_cli("validate", cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "3 files, 3 documents: all valid\n",
        "",
    )


def test_text(project: Path) -> None:
    done = run_cli("validate", cwd=project)
    assert done.returncode == 1
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "deployments/bad.yaml:9:55: spec.brokerage.environment: "
        "'prod' is not one of ['live', 'paper']",
        "deployments/bad.yaml:10:3: spec.extra: unknown field 'extra' (known fields: "
        "automaticRedeploy, brokerage, compileId, dataProviders, nodeId, onDelete, projectId, "
        "promotion, protected, restartPolicy, versionId, window)",
        "2 problems in 1 of 2 files",
    ]


def test_json(project: Path) -> None:
    done = run_cli("validate", "deployments/", "--format", "json", cwd=project)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert list(result) == ["valid", "files", "documents", "errors"]
    assert (result["valid"], result["files"], result["documents"]) == (False, 2, 2)
    assert result["errors"][0] == {
        "file": "deployments/bad.yaml",
        "line": 9,
        "column": 55,
        "path": "spec.brokerage.environment",
        "message": "'prod' is not one of ['live', 'paper']",
    }
    assert len(result["errors"]) == 2
    valid = run_cli("validate", "deployments/good.yaml", "--format", "json", cwd=project)
    assert valid.returncode == 0
    assert json.loads(valid.stdout) == {"valid": True, "files": 1, "documents": 1, "errors": []}


def test_github(project: Path) -> None:
    done = run_cli("validate", "--format", "github", cwd=project)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "::error file=deployments/bad.yaml,line=9,col=55::spec.brokerage.environment: "
        "'prod' is not one of ['live', 'paper']"
    )
    assert lines[1].startswith("::error file=deployments/bad.yaml,line=10,col=3::spec.extra: ")
    assert lines[2] == "2 problems in 1 of 2 files"


def test_github_escaping() -> None:
    problem = validation.Problem("dir,x/a:b%.yaml", 3, 4, "spec", "50% off\r\nnext line")
    whole = validation.Problem("gone.yaml", 0, 0, "", "no such file or directory")
    report = validation.Report(files=2, documents=1, manifests=[], problems=[problem, whole])
    assert validation.format_problems(report, "github").splitlines() == [
        "::error file=dir%2Cx/a%3Ab%25.yaml,line=3,col=4::spec: 50%25 off%0D%0Anext line",
        "::error file=gone.yaml::no such file or directory",
        "2 problems in 2 of 2 files",
    ]


def test_stdin(here: Path) -> None:
    done = run_cli("validate", "-", cwd=here, stdin=manifest(project=0))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "<stdin>:6:14: spec.projectId: 0 is less than the minimum of 1",
        "1 problem in 1 of 1 file",
    ]
    good = run_cli("validate", "-", cwd=here, stdin=manifest())
    assert (good.returncode, good.stdout) == (0, "1 file, 1 document: all valid\n")


def test_a_missing_default_directory_is_an_error(here: Path) -> None:
    done = run_cli("validate", cwd=here)
    assert (done.returncode, done.stdout) == (
        1,
        "deployments/: no such file or directory\n1 problem in 1 of 1 file\n",
    )
    assert "Traceback" not in done.stderr


def test_an_empty_directory_is_valid(here: Path) -> None:
    (here / "deployments").mkdir()
    done = run_cli("validate", cwd=here)
    assert (done.returncode, done.stdout) == (0, "0 files, 0 documents: all valid\n")


def test_a_bad_format_is_a_usage_error(here: Path) -> None:
    done = run_cli("validate", "--format", "xml", cwd=here)
    assert done.returncode == 2
    assert "invalid choice: 'xml'" in done.stderr


def test_hostile_inputs_never_give_a_traceback(here: Path) -> None:
    write(here, "d/bomb.yaml", "a: &a [x, x]\nb: &b [*a, *a, *a]\n" * 3)
    (here / "d/binary.yaml").write_bytes(bytes(range(256)))
    write(here, "d/deep.yaml", "[" * 2000)
    write(here, "d/tabs.yaml", "\t\t- :\n")
    write(here, "d/scalar.yml", "42\n")
    for fmt in ("text", "json", "github"):
        done = run_cli("validate", "d", "--format", fmt, cwd=here)
        assert done.returncode == 1
        assert done.stderr == ""
        assert "Traceback" not in done.stdout


def test_the_examples_validate_with_check_jsonschema_too(tmp_path: Path) -> None:
    """The schema is plain draft 2020-12: the peer CI tool accepts the same files."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    tool = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    if tool is None:
        pytest.skip("check-jsonschema is not installed (pip install '.[bench]')")
    done = subprocess.run(
        [
            tool,
            "--schemafile",
            str(REPO / "schemas" / validation.SCHEMA_FILE),
            *map(str, sorted((REPO / "deployments").glob("*.yaml"))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pre_commit_hook_runs_validate_on_the_whole_directory() -> None:
    loaded = manifests.load_file(str(REPO / ".pre-commit-hooks.yaml"))
    assert loaded.issues == []
    [[hook]] = [document.data for document in loaded.documents]
    assert hook["id"] == "reconciler-validate"
    assert hook["entry"] == "reconciler validate"
    assert hook["pass_filenames"] is False
    pattern = re.compile(hook["files"])
    assert all(
        pattern.search(str(path.relative_to(REPO)))
        for path in (REPO / "deployments").glob("*.yaml")
    )
    done = run_cli(*hook["entry"].split()[1:], *hook["args"], cwd=REPO)
    assert done.returncode == 0, done.stdout
