"""Rules across files: metadata.name, spec.projectId and spec.nodeId each belong to one
manifest of all the files checked together."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.validation.one_file import FileResult, Keys
from reconciler.validation.report import Problem


def cross_file_problems(results: Sequence[FileResult]) -> list[Problem]:
    """metadata.name, spec.projectId and spec.nodeId unique across all documents of all
    files; a repeat is reported where it is repeated, naming the first."""
    problems: list[Problem] = []
    names: dict[str, tuple[str, int]] = {}
    projects: dict[int, tuple[str, int]] = {}
    nodes: dict[str, tuple[str, int, str | None, int | None]] = {}
    for result in results:
        for keys in result.keys:
            if keys.name is not None and keys.name not in names:
                names[keys.name] = (result.file, keys.name_at[0])
            elif keys.name is not None:
                first = names[keys.name]
                problems.append(
                    Problem(
                        result.file,
                        *keys.name_at,
                        "metadata.name",
                        f"duplicate name {keys.name!r}: first defined at {first[0]}:{first[1]}",
                    )
                )
            if keys.project_id is not None and keys.project_id not in projects:
                projects[keys.project_id] = (result.file, keys.project_at[0])
            elif keys.project_id is not None:
                first = projects[keys.project_id]
                problems.append(
                    Problem(
                        result.file,
                        *keys.project_at,
                        "spec.projectId",
                        f"project {keys.project_id} already has a manifest at "
                        f"{first[0]}:{first[1]} (the API runs one live algorithm per project)",
                    )
                )
            if keys.node_id is not None:
                taken = _node_taken(result.file, keys, keys.node_id, nodes)
                if taken is not None:
                    problems.append(taken)
    return problems


def _node_taken(
    file: str, keys: Keys, node: str, nodes: dict[str, tuple[str, int, str | None, int | None]]
) -> Problem | None:
    """The problem of a second manifest on a node (a node runs one algorithm at a time).

    `nodes` holds the first manifest seen on each node: (file, line, name, projectId).
    A second manifest of the same project is not reported here too: the projectId rule
    already refuses it, and it is the same deployment written twice, not a second one.
    """
    first = nodes.get(node)
    if first is None:
        nodes[node] = (file, keys.node_at[0], keys.name, keys.project_id)
        return None
    first_file, first_line, first_name, first_project = first
    if keys.project_id is not None and keys.project_id == first_project:
        return None
    from reconciler.validation.messages import show  # a problem: loaded only now

    which = f", {first_name!r}," if first_name is not None else ""
    return Problem(
        file,
        *keys.node_at,
        "spec.nodeId",
        f"node {show(node)} already has a manifest{which} at {first_file}:{first_line} "
        "(a node runs one algorithm at a time)",
    )
