"""Rules across files: metadata.name, spec.projectId and spec.nodeId each belong to one
LiveDeployment of all the files checked together, a DeployWindow's name to one window, and
a deployment's spec.window names a window of the set."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.validation.one_file import WINDOW_KIND, FileResult, Keys
from reconciler.validation.report import Problem


def cross_file_problems(results: Sequence[FileResult]) -> list[Problem]:
    """metadata.name, spec.projectId and spec.nodeId unique across all documents of all
    files; a repeat is reported where it is repeated, naming the first."""
    problems: list[Problem] = []
    names: dict[tuple[str, str], tuple[str, int]] = {}  # (kind, name) -> where first
    projects: dict[int, tuple[str, int]] = {}
    nodes: dict[str, tuple[str, int, str | None, int | None]] = {}
    for result in results:
        for keys in result.keys:
            named = (keys.kind, keys.name) if keys.name is not None else None
            if named is not None and named not in names:
                names[named] = (result.file, keys.name_at[0])
            elif named is not None:
                first = names[named]
                what = "window name" if keys.kind == WINDOW_KIND else "name"
                problems.append(
                    Problem(
                        result.file,
                        *keys.name_at,
                        "metadata.name",
                        f"duplicate {what} {keys.name!r}: first defined at {first[0]}:{first[1]}",
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
    problems += _window_references(results, {n for k, n in names if k == WINDOW_KIND})
    found = [m for result in results for m in result.manifests]
    if any("promotion" in (m.data.get("spec") or {}) for m in found):
        from reconciler.validation.promotions import source_problems

        problems += source_problems(found)
    return problems


def _window_references(results: Sequence[FileResult], windows: set[str]) -> list[Problem]:
    """A deployment's spec.window names a DeployWindow of the same set."""
    problems = []
    for result in results:
        for keys in result.keys:
            if keys.window is None or keys.window in windows:
                continue
            known = f" (windows: {', '.join(sorted(windows))})" if windows else ""
            problems.append(
                Problem(
                    result.file,
                    *keys.window_at,
                    "spec.window",
                    f"no DeployWindow named {keys.window!r} in these manifests{known}",
                )
            )
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
