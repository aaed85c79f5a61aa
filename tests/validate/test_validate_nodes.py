"""One manifest per `spec.nodeId`: a live node runs one algorithm at a time.

Like a repeated projectId, a repeated node is reported at the later manifest's nodeId,
naming the first manifest on that node.
"""

from __future__ import annotations

import json
from pathlib import Path

from validate_support import NODE, manifest, problems, run_cli, write

from reconciler import validation

RULE = "(a node runs one algorithm at a time)"


def taken(first: str, at: str) -> str:
    return f"spec.nodeId: node '{NODE}' already has a manifest, {first!r}, at {at} {RULE}"


def test_two_manifests_on_one_node_across_files(here: Path) -> None:
    write(here, "d/a.yaml", manifest("first", 1, node=NODE))
    write(here, "d/b.yaml", manifest("second", 2, node=NODE))
    report = validation.validate_paths(["d"])
    assert [str(p) for p in report.problems] == [f"d/b.yaml:8:11: {taken('first', 'd/a.yaml:8')}"]
    assert not report.valid
    assert len(report.manifests) == 2  # each document passed its own checks


def test_within_one_file_and_every_later_one_names_the_first(here: Path) -> None:
    write(
        here,
        "m.yaml",
        manifest("a", 1, node=NODE)  # nodeId on line 8
        + "---\n"
        + manifest("b", 2)  # its own node, lines 11-19
        + "---\n"
        + manifest("c", 3, node=NODE)  # nodeId on line 28
        + "---\n"
        + manifest("d", 4, node=NODE),  # nodeId on line 38
    )
    assert problems("m.yaml") == [
        f"m.yaml:28:11: {taken('a', 'm.yaml:8')}",
        f"m.yaml:38:11: {taken('a', 'm.yaml:8')}",
    ]


def test_different_nodes_are_fine_and_ids_compare_exactly(here: Path) -> None:
    write(here, "a.yaml", manifest("a", 1, node=NODE))
    write(here, "b.yaml", manifest("b", 2, node=NODE.upper()))
    write(here, "c.yaml", manifest("c", 3, node=f'"{NODE}x"'))
    assert problems("a.yaml", "b.yaml", "c.yaml") == []


def test_a_node_written_quoted_is_the_same_node(here: Path) -> None:
    write(here, "a.yaml", manifest("a", 1, node=NODE))
    write(here, "b.yaml", manifest("b", 2, node=f'"{NODE}"'))
    assert problems("a.yaml", "b.yaml") == [f"b.yaml:8:11: {taken('a', 'a.yaml:8')}"]


def test_the_same_project_twice_is_one_problem_not_two(here: Path) -> None:
    """A copy with only its name changed is the same deployment written twice: the
    projectId rule refuses it; the node it shares is not a second algorithm on it."""
    write(here, "a.yaml", manifest("a", 5, node=NODE))
    write(here, "b.yaml", manifest("b", 5, node=NODE))
    assert problems("a.yaml", "b.yaml") == [
        "b.yaml:6:14: spec.projectId: project 5 already has a manifest at a.yaml:6 "
        "(the API runs one live algorithm per project)"
    ]
    write(here, "c.yaml", manifest("c", 6, node=NODE))  # a second project on the node
    assert problems("a.yaml", "b.yaml", "c.yaml")[1:] == [f"c.yaml:8:11: {taken('a', 'a.yaml:8')}"]


def test_a_first_manifest_without_a_usable_name_is_named_by_place(here: Path) -> None:
    write(here, "a.yaml", manifest("a", 1, node=NODE).replace("name: a", "name: [a]"))
    write(here, "b.yaml", manifest("b", 2, node=NODE))
    found = problems("a.yaml", "b.yaml")
    assert found[-1] == (
        f"b.yaml:8:11: spec.nodeId: node '{NODE}' already has a manifest at a.yaml:8 {RULE}"
    )


def test_a_mistyped_node_is_reported_by_the_schema_only(here: Path) -> None:
    write(here, "a.yaml", manifest("a", 1, node="[x]"))
    write(here, "b.yaml", manifest("b", 2, node="[x]"))
    found = problems("a.yaml", "b.yaml")
    assert [p.split(": ")[0] for p in found] == ["a.yaml:8:11", "b.yaml:8:11"]
    assert all("spec.nodeId: expected a string, got a list" in p for p in found)


def test_json_and_github_formats(here: Path) -> None:
    write(here, "deployments/a.yaml", manifest("first", 1, node=NODE))
    write(here, "deployments/b.yaml", manifest("second", 2, node=NODE))
    done = run_cli("validate", "--format", "json", cwd=here)
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "valid": False,
        "files": 2,
        "documents": 2,
        "errors": [
            {
                "file": "deployments/b.yaml",
                "line": 8,
                "column": 11,
                "path": "spec.nodeId",
                "message": f"node '{NODE}' already has a manifest, 'first', at "
                f"deployments/a.yaml:8 {RULE}",
            }
        ],
    }
    github = run_cli("validate", "--format", "github", cwd=here)
    assert github.returncode == 1
    assert github.stdout.splitlines() == [
        "::error file=deployments/b.yaml,line=8,col=11::spec.nodeId: node "
        f"'{NODE}' already has a manifest, 'first', at deployments/a.yaml:8 {RULE}",
        "1 problem in 1 of 2 files",
    ]


def test_the_cache_keeps_node_positions(here: Path) -> None:
    write(here, "d/a.yaml", "# the node one line down\n" + manifest("a", 1, node=NODE))
    cache = str(here / "cache.json")
    assert validation.validate_paths(["d"], cache_path=cache).valid
    [[*_, node_line, node_column]] = json.loads(Path(cache).read_text())["files"]["d/a.yaml"][2]
    assert (node_line, node_column) == (9, 11)
    write(here, "d/b.yaml", manifest("b", 2, node=NODE))
    expected = [f"d/b.yaml:8:11: {taken('a', 'd/a.yaml:9')}"]
    cached = validation.validate_paths(["d"], cache_path=cache)  # a.yaml from the cache
    assert [str(p) for p in cached.problems] == expected
    assert problems("d") == expected
    write(here, "d/b.yaml", "\n\n" + manifest("b", 2, node=NODE))  # cached a.yaml is the later
    write(here, "d/0.yaml", manifest("zero", 3, node=NODE))
    again = validation.validate_paths(["d"], cache_path=cache)
    assert [str(p) for p in again.problems] == [
        f"d/a.yaml:9:11: {taken('zero', 'd/0.yaml:8')}",
        f"d/b.yaml:10:11: {taken('zero', 'd/0.yaml:8')}",
    ]
