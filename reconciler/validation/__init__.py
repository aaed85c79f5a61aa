"""Validating manifests: a short driver over named parts, and what is built once per process.

    manifests.discover -> one_file.check_file, for each file (in forked workers when many)
        -> schema_check: jsonschema-rs says valid, or jsonschema explains -> messages
    -> cross_file (unique names, projects, nodes) -> report.Report

The parts, one job each:
    report          Problem, Manifest, Report; the text, json and github formats
    schema          where the schema file is
    schema_check    the yes/no check (jsonschema-rs) and the explaining validator (jsonschema)
    one_file        one file's checks
    messages        jsonschema's errors as problems, in our words
    secret_fields   secrets only as references; messages never repeat a value; --check-secrets
    cross_file      one manifest per name, per project, per node, across all files
    parallel        forked workers for many files
    cache           results of unchanged clean files between runs (plan and apply)

Every problem points at file:line:column and a dotted path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler import manifests
from reconciler.collector import paused as collector_paused
from reconciler.validation import parallel
from reconciler.validation.cache import CACHE_FORMAT, ResultCache, checker_digest
from reconciler.validation.cross_file import cross_file_problems
from reconciler.validation.one_file import KIND, WINDOW_KIND, FileResult, check_file
from reconciler.validation.parallel import MAX_WORKERS, PARALLEL_MIN_FILES, PARENT_WEIGHT
from reconciler.validation.report import Manifest, Problem, Report, format_problems, summary
from reconciler.validation.schema import SCHEMA_FILE, WINDOW_SCHEMA_FILE, schema_text
from reconciler.validation.schema import schema_text as _schema_file
from reconciler.validation.schema_check import (
    AGREED,
    ANNOTATIONS,
    Check,
    full_validator,
    quick_check,
)
from reconciler.validation.secret_fields import SECRET_WORDS, is_secret_field

if TYPE_CHECKING:
    from reconciler.validation.schema_check import FullValidator

__all__ = [
    "CACHE_FORMAT",
    "KIND",
    "MAX_WORKERS",
    "PARALLEL_MIN_FILES",
    "PARENT_WEIGHT",
    "SCHEMA_FILE",
    "SECRET_WORDS",
    "FileResult",
    "Manifest",
    "Problem",
    "Report",
    "ResultCache",
    "check_files",
    "collector_paused",
    "compiled_schema",
    "cross_file_problems",
    "format_problems",
    "is_secret_field",
    "manifests",
    "schema",
    "schema_text",
    "summary",
    "validate_paths",
    "validate_sources",
]


def validate_paths(
    paths: Sequence[str], *, check_secrets: bool = False, cache_path: str | None = None
) -> Report:
    """Load and check every manifest under `paths`; never raises for bad input.

    `check_secrets` also reports referenced environment variables that are unset and
    referenced files that do not exist (values are never read into messages).
    `cache_path` names a `ResultCache` file: files whose content is unchanged since a
    previous run are not parsed again (plan and apply use it; `validate` does not).
    """
    with collector_paused():
        files, failed = manifests.discover(paths)
        cache = None
        if cache_path and not check_secrets:
            cache = ResultCache.load(cache_path, _checker_digest())
        if cache is None:
            compiled_schema()  # compiled once, before any fork, so that workers inherit it
            results = _run(files, check_secrets)
        else:

            def check(indexes: Sequence[int], read: dict[int, bytes]) -> list[FileResult]:
                if indexes:  # nothing to check when every file was cached: no schema needed
                    compiled_schema()
                return _run(files, False, indexes, read)

            results = cache.run(files, check)
            cache.save()
        return _report(results, len(files), failed)


def _report(results: Sequence[FileResult], files: int, failed: Sequence[tuple[str, str]]) -> Report:
    problems = [Problem(path, 0, 0, "", message) for path, message in failed]
    found: list[Manifest] = []
    documents = 0
    for result in results:
        documents += result.documents
        found.extend(result.manifests)
        problems.extend(result.problems)
    problems.extend(cross_file_problems(results))
    return Report(
        files=files + len(failed),
        documents=documents,
        manifests=found,
        problems=sorted(set(problems)),
    )


def check_files(paths: Sequence[str]) -> list[FileResult]:
    """Each file's own checks, in order (no cross-file rule: the caller joins the files it
    holds with `cross_file_problems`, as the daemon does with each file's last good
    content).  Never raises for bad input."""
    with collector_paused():
        compiled_schema()
        return _run(list(paths), False)


def validate_sources(sources: Sequence[tuple[str, bytes]]) -> Report:
    """`validate_paths` for contents already read (a git source reads them from a commit):
    each (name as shown in problems, bytes), then the cross-file rules."""
    names = [name for name, _ in sources]
    with collector_paused():
        compiled_schema()
        results = _run(names, False, None, {i: data for i, (_, data) in enumerate(sources)})
        return _report(results, len(names), [])


# ---- built once per process -----------------------------------------------------------
# Here rather than in the parts, and looked up when called: what a part needs of them is
# handed to it, and a test may swap `schema_text` and clear these caches.


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def compiled_schema() -> Check:
    """The yes/no check: True for a valid document; False sends it to jsonschema."""
    return quick_check(schema())


@functools.cache
def _jsonschema() -> FullValidator:
    return full_validator(schema())


@functools.cache
def window_schema() -> dict[str, Any]:
    """The schema of a DeployWindow document."""
    loaded: dict[str, Any] = json.loads(_schema_file(WINDOW_SCHEMA_FILE))
    return loaded


@functools.cache
def _window_checks() -> tuple[Check, FullValidator]:
    return quick_check(window_schema()), full_validator(window_schema())


@functools.cache
def _checker_digest() -> str:
    return checker_digest(schema_text() + _schema_file(WINDOW_SCHEMA_FILE))


# ---- the parts joined -----------------------------------------------------------------


def _schema_problems(file: str, document: manifests.Document) -> list[Problem]:
    """[] when the yes/no check accepts the document; else jsonschema's, in our words.
    Each kind has its schema; a valid DeployWindow also the checks a schema cannot make."""
    window = document.data.get("kind") == WINDOW_KIND
    quick, full = _window_checks() if window else (compiled_schema(), None)
    problems: list[Problem] = []
    if not quick(document.data):
        from reconciler.validation.messages import schema_problems  # only for a rejection

        validator = full if full is not None else _jsonschema()
        problems = schema_problems(file, document, validator.iter_errors(document.data))
    if window and not problems:
        from reconciler.validation.windows import window_problems

        return window_problems(file, document)
    if not problems and "promotion" in document.data["spec"]:
        from reconciler.validation.promotions import promotion_problems

        return promotion_problems(file, document)
    return problems


def _check_file(path: str, check_secrets: bool, source: bytes | None = None) -> FileResult:
    return check_file(path, check_secrets, source, _schema_problems)


def _run(
    files: Sequence[str],
    check_secrets: bool,
    indexes: Sequence[int] | None = None,
    sources: Mapping[int, bytes] | None = None,
) -> list[FileResult]:
    """Check files (those at `indexes`, default all) in order; fork when there are many.

    `sources` holds contents already read; forked workers inherit it.
    """
    chosen = range(len(files)) if indexes is None else indexes
    read = sources or {}
    check_one = _check_file  # the package's, as it is now (a test may replace it)

    def check(index: int) -> FileResult:
        return check_one(files[index], check_secrets, read.get(index))

    forkable = [index for index in chosen if files[index] != manifests.STDIN]
    # PARALLEL_MIN_FILES as the package has it now, like `_check_file` above.
    return parallel.run_in_order(chosen, forkable, check, PARALLEL_MIN_FILES)


# ---- names older tests reach ----------------------------------------------------------
# tests/validate predates this package and the removal of the hand-written schema
# compiler: it still asks for these names, which now stand for jsonschema-rs.

_workers = parallel.workers
_FileResult = FileResult
_ANNOTATIONS = ANNOTATIONS
_SUPPORTED = AGREED


class _FastCompiler:
    """`compile(node)`: the yes/no check of a schema node alone (`$ref`s within it)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root  # unused: each node is compiled alone, its `$ref`s within it

    def compile(self, node: Any) -> Check:
        return quick_check(node)
