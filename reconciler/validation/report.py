"""The contract: what a check finds (`Problem`), what it accepts (`Manifest`), the whole
answer (`Report`), and how `reconciler validate` prints it (text, json, github).

Plain records, immutable, compared field by field (NamedTuple, as the loader's): a
dataclass would import `dataclasses` and `inspect` (5 ms) on the pre-commit path.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Problem(NamedTuple):
    """One error; sorts by file, line, column, path, message."""

    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    column: int
    path: str  # dotted JSON path, "" for the document or file itself
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class Manifest(NamedTuple):
    """One valid LiveDeployment document; secret references left as written."""

    file: str
    line: int
    data: dict[str, Any]


class Report(NamedTuple):
    files: int
    documents: int
    manifests: list[Manifest]
    problems: list[Problem]

    @property
    def valid(self) -> bool:
        return not self.problems


def format_problems(report: Report, fmt: str) -> str:
    """What `reconciler validate` prints: "text", "json" or "github"."""
    if fmt == "json":
        return json.dumps(
            {
                "valid": report.valid,
                "files": report.files,
                "documents": report.documents,
                "errors": [problem.to_json() for problem in report.problems],
            },
            indent=2,
            ensure_ascii=False,
        )
    if fmt == "github":
        lines = [_github(problem) for problem in report.problems]
    elif fmt == "text":
        lines = [str(problem) for problem in report.problems]
    else:
        raise ValueError(f"unknown format {fmt!r}")
    lines.append(summary(report))
    return "\n".join(lines)


def summary(report: Report) -> str:
    if report.valid:
        return f"{_count(report.files, 'file')}, {_count(report.documents, 'document')}: all valid"
    bad = len({problem.file for problem in report.problems})
    return (
        f"{_count(len(report.problems), 'problem')} in {bad} of "
        f"{_count(max(report.files, bad), 'file')}"
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _github(problem: Problem) -> str:
    """A GitHub Actions workflow command (escaping per actions/toolkit's command.ts)."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    props = [f"file={prop(problem.file)}"]
    if problem.line:
        props += [f"line={problem.line}", f"col={problem.column}"]
    message = f"{problem.path}: {problem.message}" if problem.path else problem.message
    return f"::error {','.join(props)}::{data(message)}"
