"""The loader's edge cases: what PyYAML lets through, what would hang, what is not YAML."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from validate_support import REPO, manifest, problems, write

from reconciler import manifests, validation


def test_a_duplicate_key_points_at_the_duplicate_and_the_rest_is_still_checked(
    here: Path,
) -> None:
    text = manifest().replace("  compileId: latest\n", "  compileId: latest\n  projectId: 0\n")
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:8:3: spec.projectId: duplicate key 'projectId' in this mapping "
        "(YAML would keep only the last)",
        "m.yaml:8:14: spec.projectId: 0 is less than the minimum of 1",
    ]
    assert validation.validate_paths(["m.yaml"]).manifests == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "apiVersion: reconciler/v1\nkind: LiveDeployment\nmetadata:\n  name: a: b\n",
            "m.yaml:4:10: YAML syntax error: mapping values are not allowed in this context",
        ),
        (
            "apiVersion: reconciler/v1\nkind: [LiveDeployment\nmetadata: {}\n",
            "m.yaml:3:9: YAML syntax error: did not find expected ',' or ']' "
            "(while parsing a flow sequence started at line 2)",
        ),
        (
            "apiVersion: reconciler/v1\nmetadata:\n\tname: x\n",
            "m.yaml:3:1: YAML syntax error: found character that cannot start any token "
            "(while scanning for the next token started at line 3)",
        ),
        ("spec: *nowhere\n", "m.yaml:1:7: YAML syntax error: found undefined alias"),
        ("a: b\x01\n", "m.yaml:1:5: unacceptable character: control characters are not allowed"),
    ],
)
def test_syntax_errors_have_one_based_positions(here: Path, text: str, expected: str) -> None:
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [expected]


def test_documents_before_a_syntax_error_are_still_checked(here: Path) -> None:
    write(here, "m.yaml", manifest(project=0) + "---\nkey: [unclosed\n")
    assert problems("m.yaml") == [
        "m.yaml:6:14: spec.projectId: 0 is less than the minimum of 1",
        "m.yaml:12:1: YAML syntax error: did not find expected ',' or ']' "
        "(while parsing a flow sequence started at line 11)",
    ]


def test_keys_yaml_does_not_read_as_strings(here: Path) -> None:
    text = manifest() + "  on: true\n  ? [a, b]\n  : c\n"
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:10:3: spec.on: key 'on' is read by YAML as a boolean, not a string; "
        'quote it: "on"',
        "m.yaml:10:3: spec.on: unknown field 'on' (known fields: automaticRedeploy, brokerage, "
        "compileId, dataProviders, nodeId, onDelete, projectId, promotion, protected, "
        "restartPolicy, versionId, window)",
        "m.yaml:11:5: spec: a mapping key must be a plain string, not a collection",
    ]


def test_unsupported_tags(here: Path) -> None:
    text = manifest().replace("compileId: latest", "compileId: !secret latest")
    write(here, "m.yaml", text + "  dataProviders: !!set {a, b}\n")
    found = problems("m.yaml")
    assert "m.yaml:7:14: spec.compileId: tag !secret is not supported in manifests" in found
    assert "m.yaml:10:18: spec.dataProviders: tag !!set is not supported in manifests" in found


def test_empty_files_and_documents_are_skipped(here: Path) -> None:
    write(here, "d/empty.yaml", "")
    write(here, "d/comments.yaml", "# nothing yet\n")
    write(here, "d/separators.yaml", "---\n---\n# still nothing\n...\n")
    report = validation.validate_paths(["d"])
    assert (report.files, report.documents, report.problems) == (3, 0, [])


def test_a_byte_order_mark_is_accepted(here: Path) -> None:
    (here / "m.yaml").write_bytes(b"\xef\xbb\xbf" + manifest().encode())
    assert problems("m.yaml") == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"apiVersion: reconciler/v1\nkind: Caf\xe9\n", "m.yaml:2:10: not UTF-8 text (byte 0xe9)"),
        ("kind: x\n".encode("utf-16"), "m.yaml:1:1: not UTF-8 text (byte 0xff)"),
    ],
)
def test_text_must_be_utf8(here: Path, data: bytes, expected: str) -> None:
    (here / "m.yaml").write_bytes(data)
    assert problems("m.yaml") == [expected + "; save the file as UTF-8"]


def billion_laughs(levels: int = 9) -> str:
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        text += f"a{level}: &a{level} [{refs}]\n"
    return text


def test_an_alias_bomb_fails_fast_in_bounded_memory(here: Path) -> None:
    write(here, "bomb.yaml", billion_laughs())  # 9**9 = 387 million strings if expanded
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = problems("bomb.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [
        "bomb.yaml:6:5: aliases expand this document past 100000 nodes (an alias bomb?); "
        "refusing to load it"
    ]
    assert elapsed < 2.0
    assert peak < 10 * 1024 * 1024


def test_aliases_within_the_limits_are_fine(here: Path) -> None:
    text = (
        "x-paper: &paper {id: PaperTrading}\n"  # another top-level key: reported below
        "apiVersion: reconciler/v1\n"
        "kind: LiveDeployment\n"
        "metadata: {name: a}\n"
        "spec: {projectId: 1, compileId: latest, nodeId: n, brokerage: *paper}\n"
    )
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:1:1: x-paper: unknown field 'x-paper' (known fields: apiVersion, kind, "
        "metadata, spec)"
    ]


def test_a_recursive_alias_is_refused(here: Path) -> None:
    write(here, "m.yaml", "a: &x [1, *x]\n")
    assert problems("m.yaml") == [
        "m.yaml:1:4: an alias refers to the mapping or sequence that contains it"
    ]


def test_nesting_is_bounded(here: Path) -> None:
    deep = "a:\n" + "".join("  " * (i + 1) + "b:\n" for i in range(100))
    write(here, "deep.yaml", deep)
    flow = "a: " + "[" * 500 + "]" * 500 + "\n"
    write(here, "flow.yaml", flow)
    assert problems("deep.yaml") == ["deep.yaml:66:131: nested deeper than 64 levels"]
    assert problems("flow.yaml") == ["flow.yaml:1:68: nested deeper than 64 levels"]


def test_a_huge_file_is_refused_without_parsing(here: Path) -> None:
    write(here, "huge.yaml", "a: " + "x" * (manifests.MAX_FILE_BYTES + 1) + "\n")
    started = time.perf_counter()
    assert problems("huge.yaml") == ["huge.yaml: file is larger than 1 MiB; refusing to parse it"]
    assert time.perf_counter() - started < 1.0


def test_too_many_nodes_in_one_file_are_refused(here: Path) -> None:
    write(here, "many.yaml", "[" + ",".join(["a"] * (manifests.MAX_NODES + 1)) + "]\n")
    assert problems("many.yaml") == [
        f"many.yaml:1:{2 * manifests.MAX_NODES}: more than {manifests.MAX_NODES} YAML nodes "
        "in one file; refusing to load it"
    ]


def test_paths_that_cannot_be_read(here: Path) -> None:
    os.symlink(here / "gone.yaml", here / "broken.yaml")
    report = validation.validate_paths(["missing.yaml", "missing-dir/", "broken.yaml", "/dev/null"])
    assert [str(p) for p in report.problems] == [
        "/dev/null: not a regular file",
        "broken.yaml: no such file or directory",
        "missing-dir/: no such file or directory",
        "missing.yaml: no such file or directory",
    ]
    assert [p.line for p in report.problems] == [0, 0, 0, 0]
    assert report.files == 4


def test_a_fifo_named_like_a_manifest_does_not_hang(here: Path) -> None:
    (here / "d").mkdir()
    os.mkfifo(here / "d" / "pipe.yaml")
    write(here, "d/ok.yaml", manifest())
    assert problems("d") == ["d/pipe.yaml: not a regular file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file(here: Path) -> None:
    path = write(here, "m.yaml", manifest())
    os.chmod(path, 0)
    assert problems("m.yaml") == ["m.yaml: permission denied"]


def test_an_explicit_file_is_read_whatever_its_suffix(here: Path) -> None:
    write(here, "manifest.txt", manifest(project=0))
    assert problems("manifest.txt") == [
        "manifest.txt:6:14: spec.projectId: 0 is less than the minimum of 1"
    ]


def test_stdin(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(manifest(project=0).encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    report = validation.validate_paths(["-"])
    assert [str(p) for p in report.problems] == [
        "<stdin>:6:14: spec.projectId: 0 is less than the minimum of 1"
    ]
    assert report.files == 1


# Validation forks its workers only in a process without other threads (fork is not safe
# beside them), and a test runner may have some (pytest-xdist's workers do): these tests
# run validation in a fresh interpreter, as `reconciler validate` runs.
FRESH_PROCESS_TIMEOUT = 120


def in_a_fresh_process(code: str) -> Any:
    """Run `code` (which prints one JSON document) in a new interpreter in the current
    directory, with the reconciler importable; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=FRESH_PROCESS_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_many_files_are_checked_by_forked_workers_with_the_same_result(here: Path) -> None:
    for i in range(300):
        project = -i if i % 50 == 7 else i + 1
        write(here, f"d/m{i:03}.yaml", manifest(name=f"m{i}", project=project))
    write(here, "d/m299-dup.yaml", manifest(name="m3", project=4))
    found = in_a_fresh_process(
        """
        from reconciler import validation
        workers = validation._workers(301)
        parallel = validation.validate_paths(["d"])
        validation.PARALLEL_MIN_FILES = 10**9
        sequential = validation.validate_paths(["d"])
        print(json.dumps({
            "workers": workers,
            "same": parallel == sequential,
            "problems": len(parallel.problems),
            "files": [m.file for m in parallel.manifests] == [m.file for m in sequential.manifests],
        }))
        """
    )
    if found["workers"] < 2:
        pytest.skip("one core: validation stays in one process")
    assert found["same"] is True
    assert found["problems"] == 8  # 6 bad projects, one duplicate name and project
    assert found["files"] is True


def test_a_worker_that_dies_is_replaced_by_the_parent(here: Path) -> None:
    for i in range(200):
        write(here, f"d/m{i:03}.yaml", manifest(name=f"m{i}", project=i + 1))
    found = in_a_fresh_process(
        """
        import os
        from reconciler import validation
        parent = os.getpid()
        real = validation._check_file

        def dying(path, check_secrets, source=None):
            if os.getpid() != parent:
                os._exit(3)
            return real(path, check_secrets, source)

        validation._check_file = dying
        report = validation.validate_paths(["d"])
        print(json.dumps({
            "workers": validation._workers(200),
            "counts": [report.files, report.documents, len(report.problems)],
            "manifests": len(report.manifests),
        }))
        """
    )
    if found["workers"] < 2:
        pytest.skip("one core: validation stays in one process")
    assert found["counts"] == [200, 200, 0]
    assert found["manifests"] == 200
