"""One file's checks: load it, then check each document (a mapping, of our kind, the
schema, secrets on request), and keep what the cross-file rules need from it.

What only a problem needs (`messages`, and `secret_fields` for --check-secrets) is
imported when first needed: a run where all is valid, the pre-commit case, never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from reconciler import manifests
from reconciler.validation.report import Manifest, Problem

KIND = "LiveDeployment"
WINDOW_KIND = "DeployWindow"
KINDS = (KIND, WINDOW_KIND)

SchemaProblems = Callable[[str, manifests.Document], list[Problem]]
"""The schema's problems with one document (file name as shown, document): [] if valid."""


class Keys(NamedTuple):
    """What the cross-file rules need from one document."""

    line: int
    name: str | None
    name_at: tuple[int, int]
    project_id: int | None
    project_at: tuple[int, int]
    node_id: str | None
    node_at: tuple[int, int]
    kind: str = KIND
    window: str | None = None  # a LiveDeployment's spec.window
    window_at: tuple[int, int] = (0, 0)


class FileResult(NamedTuple):
    file: str
    documents: int
    manifests: list[Manifest]
    problems: list[Problem]
    keys: list[Keys]


def check_file(
    path: str, check_secrets: bool, source: bytes | None, schema_problems: SchemaProblems
) -> FileResult:
    """`source`: the file's bytes when already read (else the file is read here)."""
    display = manifests.STDIN_NAME if path == manifests.STDIN else path
    loaded = manifests.load_file(path) if source is None else manifests.load_bytes(source)
    result = FileResult(display, len(loaded.documents), [], [], [])
    for issue in loaded.issues:
        result.problems.append(_problem(display, issue))
    for document in loaded.documents:
        problems = [_problem(display, issue) for issue in document.issues]
        data = document.data
        if data is None and document.issues:
            result.problems.extend(problems)
            continue
        if not isinstance(data, dict):
            what = "a list" if isinstance(data, list) else "a single value"
            problems.append(
                Problem(display, document.line, 1, "", f"a manifest must be a mapping, not {what}")
            )
            result.problems.extend(problems)
            continue
        kind = data.get("kind")
        if isinstance(kind, str) and kind not in KINDS:
            from reconciler.validation.messages import show

            at = manifests.value_at(document.root, ["kind"])
            problems.append(
                Problem(
                    display,
                    at.line,
                    at.column,
                    "kind",
                    f"a document of kind {show(kind)}: only kinds {KIND} and {WINDOW_KIND} "
                    "belong here",
                )
            )
            result.problems.extend(problems)
            continue
        against_schema = schema_problems(display, document)
        problems.extend(against_schema)
        if check_secrets and not against_schema:
            from reconciler.validation.secret_fields import secret_problems

            problems.extend(secret_problems(display, document))
        if not problems:
            result.manifests.append(Manifest(display, document.line, data))
        result.problems.extend(problems)
        result.keys.append(_keys(document))
    return result


def _problem(file: str, issue: manifests.Issue) -> Problem:
    return Problem(file, issue.line, issue.column, manifests.dotted(issue.path), issue.message)


def key_values(data: Any) -> tuple[str | None, int | None, str | None]:
    """metadata.name, spec.projectId and spec.nodeId of a document, None where absent or
    mistyped (a DeployWindow has a name only)."""
    metadata, spec = data.get("metadata"), data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    project = node = None
    if isinstance(spec, dict) and data.get("kind") != WINDOW_KIND:
        project, node = spec.get("projectId"), spec.get("nodeId")
    if type(project) is float and project.is_integer():
        project = int(project)  # JSON Schema's integer: 5.0 is project 5
    return (
        name if isinstance(name, str) else None,
        project if type(project) is int else None,
        node if isinstance(node, str) else None,
    )


def _keys(document: manifests.Document) -> Keys:
    name, project, node = key_values(document.data)
    name_at = project_at = node_at = (document.line, 1)
    if name is not None:
        at = manifests.value_at(document.root, ["metadata", "name"])
        name_at = (at.line, at.column)
    if project is not None:
        at = manifests.value_at(document.root, ["spec", "projectId"])
        project_at = (at.line, at.column)
    if node is not None:
        at = manifests.value_at(document.root, ["spec", "nodeId"])
        node_at = (at.line, at.column)
    kind, window = kind_and_window(document.data)
    window_at = (0, 0)
    if window is not None:
        at = manifests.value_at(document.root, ["spec", "window"])
        window_at = (at.line, at.column)
    return Keys(
        document.line, name, name_at, project, project_at, node, node_at, kind, window, window_at
    )


def kind_and_window(data: Any) -> tuple[str, str | None]:
    """The document's kind (LiveDeployment unless it says DeployWindow), and a
    LiveDeployment's spec.window."""
    if not isinstance(data, dict) or data.get("kind") != WINDOW_KIND:
        spec = data.get("spec") if isinstance(data, dict) else None
        window = spec.get("window") if isinstance(spec, dict) else None
        return KIND, window if isinstance(window, str) else None
    return WINDOW_KIND, None
