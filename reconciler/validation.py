"""Validating manifests: the schema, the per-document and cross-file rules, and the report.

The one module that imports a schema validator.  A valid document is accepted by a fast
check compiled from the schema once per process (a few microseconds per document);
only a document it rejects goes through `jsonschema`, which then produces the precise
errors.  So every message comes from the real JSON Schema semantics, and the common case
(all valid, e.g. in CI) never even imports `jsonschema`.  Large sets of files are split
across the machine's cores with `fork`.

Every problem points at file:line:column and a dotted path.  Secret fields must be
references (`{fromEnv: NAME}` / `{fromFile: PATH}`); messages about them never repeat
the value that was written.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from reconciler import brokerages, manifests
from reconciler.errors import ConfigError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

SCHEMA_FILE = "livedeployment.schema.json"
KIND = "LiveDeployment"

# Fork workers only when there is enough work to repay it (~2 ms per worker).
PARALLEL_MIN_FILES = 128
MAX_WORKERS = 8

SECRET_WORDS = ("password", "token", "secret", "key")
_PORTABLE_PREFIX = {
    "Interactive": "IB",
    "FXCM": "FXCM",
    "Oanda": "OANDA",
    "Tradier": "TRADIER",
    "PaperTrading": "PAPER",
}
_PATTERN_HINTS = {
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$": (
        "a DNS label: lowercase letters, digits and '-', at most 63 characters, "
        "starting and ending with a letter or digit"
    ),
    "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$": 'a UTC time "hh:mm:ss", e.g. "22:00:00"',
    "^\\S+$": "a single word without spaces",
}
_SHOW_MAX = 60


# ---- the contract ---------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Problem:
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


@dataclass(frozen=True, slots=True)
class Manifest:
    """One valid LiveDeployment document; secret references left as written."""

    file: str
    line: int
    data: dict[str, Any]


@dataclass(frozen=True)
class Report:
    files: int
    documents: int
    manifests: list[Manifest]
    problems: list[Problem]

    @property
    def valid(self) -> bool:
        return not self.problems


def validate_paths(
    paths: Sequence[str], *, check_secrets: bool = False, cache_path: str | None = None
) -> Report:
    """Load and check every manifest under `paths`; never raises for bad input.

    `check_secrets` also reports referenced environment variables that are unset and
    referenced files that do not exist (values are never read into messages).
    `cache_path` names a `ResultCache` file: files whose content is unchanged since a
    previous run are not parsed again (plan and apply use it; `validate` does not).
    """
    compiled_schema()  # load once before any fork, so workers inherit it
    files, failed = manifests.discover(paths)
    cache = ResultCache.load(cache_path) if cache_path and not check_secrets else None
    with collector_paused():
        results = _run(files, check_secrets) if cache is None else cache.run(files)
        if cache is not None:
            cache.save()
        problems = [Problem(path, 0, 0, "", message) for path, message in failed]
        found: list[Manifest] = []
        documents = 0
        for result in results:
            documents += result.documents
            found.extend(result.manifests)
            problems.extend(result.problems)
        problems.extend(_cross_file(results))
    return Report(
        files=len(files) + len(failed),
        documents=documents,
        manifests=found,
        problems=sorted(set(problems)),
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (nests; restores what it found).

    Loading builds many small objects and no reference cycles: the collector would only
    rescan them over and over (a third of the time at 10,000 files).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


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


# ---- the schema -----------------------------------------------------------------------


def schema_text() -> str:
    """The schema: inside the installed package, or `schemas/` of a source checkout.

    The wheel carries `schemas/` as `reconciler/_schemas/`.  A plain path beside this file
    is tried first (it costs no import); importlib.resources covers packages that do not
    live in a directory (zip imports); a source or editable checkout has `schemas/`.
    """
    package = os.path.dirname(os.path.realpath(__file__))
    installed = os.path.join(package, "_schemas", SCHEMA_FILE)
    source = os.path.join(os.path.dirname(package), "schemas", SCHEMA_FILE)
    for candidate in (installed, source):
        try:
            with open(candidate, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            continue
    try:
        import importlib.resources

        packaged = importlib.resources.files("reconciler").joinpath("_schemas", SCHEMA_FILE)
        return packaged.read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as error:
        raise ConfigError(f"manifest schema {SCHEMA_FILE} not found: {error}") from None


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def compiled_schema() -> Callable[[Any], bool]:
    return _FastCompiler(schema()).compile(schema())


@functools.cache
def _jsonschema() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


# ---- the fast check -------------------------------------------------------------------

_Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "markdownDescription",
    }
)
_OBJECT_WORDS = frozenset(
    {
        "required",
        "properties",
        "patternProperties",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "propertyNames",
    }
)
_SUPPORTED = _OBJECT_WORDS | {
    "$ref",
    "type",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "items",
    "minItems",
    "maxItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
}


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


_TYPES: dict[str, _Check] = {
    "string": lambda x: type(x) is str,
    "integer": lambda x: type(x) is int or (type(x) is float and x.is_integer()),
    "number": _is_number,
    "boolean": lambda x: type(x) is bool,
    "object": lambda x: type(x) is dict,
    "array": lambda x: type(x) is list,
    "null": lambda x: x is None,
}


def _all_of(checks: list[_Check]) -> _Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> bool:
        for each in checks:  # noqa: SIM110 -- a loop is faster than all() over a generator
            if not each(value):
                return False
        return True

    return check


class _FastCompiler:
    """Compiles the subset of draft 2020-12 the schema uses into nested closures.

    It answers only "valid or not", and must never say valid where jsonschema would not:
    anything it does not understand compiles to "not valid", which sends the document to
    jsonschema.  tests/validate checks the two agree on valid and mutated manifests.
    """

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, _Check] = {}

    def compile(self, node: Any) -> _Check:
        if node is True:
            return _always
        if not isinstance(node, dict) or set(node) - _ANNOTATIONS - _SUPPORTED:
            return _never
        checks: list[_Check] = []
        if "$ref" in node:
            checks.append(self.ref(node["$ref"]))
        if "type" in node:
            checks.append(self.type(node["type"]))
        if "enum" in node or "const" in node:
            checks.append(self.enum(node["enum"] if "enum" in node else [node["const"]]))
        checks += self.string(node) + self.number(node) + self.array(node)
        if _OBJECT_WORDS & set(node):
            checks.append(self.object(node))
        if "allOf" in node:
            checks.append(self.dispatch(node["allOf"]) or _all_of(self.each(node["allOf"])))
        if "anyOf" in node:
            any_of = self.each(node["anyOf"])
            checks.append(lambda x: any(c(x) for c in any_of))
        if "oneOf" in node:
            one_of = self.each(node["oneOf"])
            checks.append(lambda x: sum(1 for c in one_of if c(x)) == 1)
        if "not" in node:
            negated = self.compile(node["not"])
            checks.append(lambda x: not negated(x))
        if "if" in node:
            condition = self.compile(node["if"])
            then = self.compile(node.get("then", True))
            otherwise = self.compile(node.get("else", True))
            checks.append(lambda x: then(x) if condition(x) else otherwise(x))
        return _all_of(checks)

    def each(self, nodes: Any) -> list[_Check]:
        return [self.compile(n) for n in nodes] if isinstance(nodes, list) else [_never]

    def ref(self, pointer: Any) -> _Check:
        known = self.refs.get(pointer)
        if known is not None:
            return known
        if not isinstance(pointer, str) or not pointer.startswith("#/"):
            return _never
        cell: list[_Check] = []
        self.refs[pointer] = lambda x: cell[0](x)  # for recursive schemas
        target: Any = self.root
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        compiled = self.compile(target) if target is not None else _never
        cell.append(compiled)
        self.refs[pointer] = compiled
        return compiled

    def type(self, names: Any) -> _Check:
        if isinstance(names, str):
            return _TYPES.get(names, _never)
        checks = [_TYPES.get(n, _never) for n in names]
        return lambda x: any(c(x) for c in checks)

    def enum(self, values: Any) -> _Check:
        if not isinstance(values, list) or not all(type(v) is str for v in values):
            return _never  # only string enums are compiled; others go to jsonschema
        allowed = frozenset(values)
        return lambda x: type(x) is str and x in allowed

    def string(self, node: Mapping[str, Any]) -> list[_Check]:
        low, high = node.get("minLength", 0), node.get("maxLength")
        pattern = re.compile(node["pattern"]) if "pattern" in node else None
        if not low and high is None and pattern is None:
            return []

        def check(x: Any) -> bool:
            if type(x) is not str:
                return True
            if len(x) < low or (high is not None and len(x) > high):
                return False
            return pattern is None or pattern.search(x) is not None

        return [check]

    def number(self, node: Mapping[str, Any]) -> list[_Check]:
        checks: list[_Check] = []
        if "minimum" in node:
            low = node["minimum"]
            checks.append(lambda x: not _is_number(x) or not x < low)
        if "maximum" in node:
            high = node["maximum"]
            checks.append(lambda x: not _is_number(x) or not x > high)
        return checks

    def array(self, node: Mapping[str, Any]) -> list[_Check]:
        checks: list[_Check] = []
        if "items" in node:
            item = self.compile(node["items"])
            checks.append(lambda x: type(x) is not list or all(item(v) for v in x))
        low, high = node.get("minItems", 0), node.get("maxItems")
        if low or high is not None:
            checks.append(
                lambda x: (
                    type(x) is not list or (len(x) >= low and (high is None or len(x) <= high))
                )
            )
        return checks

    def object(self, node: Mapping[str, Any]) -> _Check:
        required = tuple(node.get("required", ()))
        properties = {k: self.compile(v) for k, v in node.get("properties", {}).items()}
        patterns = [
            (re.compile(p), self.compile(v)) for p, v in node.get("patternProperties", {}).items()
        ]
        extra = node.get("additionalProperties", True)
        additional = None if extra is True else self.compile(extra)
        names = self.compile(node["propertyNames"]) if "propertyNames" in node else None
        low, high = node.get("minProperties", 0), node.get("maxProperties")

        if not patterns and names is None:
            return self.plain_object(required, properties, additional, low, high)

        def check(x: Any) -> bool:
            if type(x) is not dict:
                return True
            if len(x) < low or (high is not None and len(x) > high):
                return False
            for key in required:
                if key not in x:
                    return False
            for key, value in x.items():
                if names is not None and not names(key):
                    return False
                known = properties.get(key)
                if known is not None and not known(value):
                    return False
                matched = known is not None
                for regex, each in patterns:
                    if regex.search(key):
                        matched = True
                        if not each(value):
                            return False
                if not matched and additional is not None and not additional(value):
                    return False
            return True

        return check

    @staticmethod
    def plain_object(
        required: tuple[str, ...],
        properties: dict[str, _Check],
        additional: _Check | None,
        low: int,
        high: int | None,
    ) -> _Check:
        """The common case (properties, required, additionalProperties), as one tight loop."""
        get = properties.get

        def check(x: Any) -> bool:
            if type(x) is not dict:
                return True
            if len(x) < low or (high is not None and len(x) > high):
                return False
            for key in required:
                if key not in x:
                    return False
            for key, value in x.items():
                known = get(key)
                if known is None:
                    if additional is not None and not additional(value):
                        return False
                elif not known(value):
                    return False
            return True

        return check

    def dispatch(self, items: Any) -> _Check | None:
        """allOf of `if {id: const X} then S` branches: one dict lookup instead of N ifs."""
        if not isinstance(items, list) or not items:
            return None
        field_name: str | None = None
        table: dict[str, _Check] = {}
        for item in items:
            if not isinstance(item, dict) or set(item) != {"if", "then"}:
                return None
            condition = item["if"]
            if not isinstance(condition, dict) or set(condition) != {
                "type",
                "required",
                "properties",
            }:
                return None
            properties = condition["properties"]
            if condition["type"] != "object" or len(properties) != 1:
                return None
            ((name, const),) = properties.items()
            if condition["required"] != [name] or set(const) != {"const"}:
                return None
            value = const["const"]
            if type(value) is not str or value in table or field_name not in (None, name):
                return None
            field_name = name
            table[value] = self.compile(item["then"])
        key = field_name

        def check(x: Any) -> bool:
            if type(x) is not dict:
                return True
            value = x.get(key)
            if type(value) is not str:
                return True
            branch = table.get(value)
            return branch is None or branch(x)

        return check


# ---- one file -------------------------------------------------------------------------


class _Keys(NamedTuple):
    """What the cross-file rules need from one document."""

    line: int
    name: str | None
    name_at: tuple[int, int]
    project_id: int | None
    project_at: tuple[int, int]
    node_id: str | None
    node_at: tuple[int, int]


class _FileResult(NamedTuple):
    file: str
    documents: int
    manifests: list[Manifest]
    problems: list[Problem]
    keys: list[_Keys]


def _check_file(path: str, check_secrets: bool, source: bytes | None = None) -> _FileResult:
    display = manifests.STDIN_NAME if path == manifests.STDIN else path
    loaded = manifests.load_file(path) if source is None else manifests.load_bytes(source)
    result = _FileResult(display, len(loaded.documents), [], [], [])
    for issue in loaded.issues:
        result.problems.append(_problem(display, issue))
    fast = compiled_schema()
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
        if isinstance(kind, str) and kind != KIND:
            at = manifests.value_at(document.root, ["kind"])
            problems.append(
                Problem(
                    display,
                    at.line,
                    at.column,
                    "kind",
                    f"a document of kind {_show(kind)}: only kind {KIND} belongs here",
                )
            )
            result.problems.extend(problems)
            continue
        schema_problems = [] if fast(data) else _schema_problems(display, document)
        problems.extend(schema_problems)
        if check_secrets and not schema_problems:
            problems.extend(_secret_problems(display, document))
        if not problems:
            result.manifests.append(Manifest(display, document.line, data))
        result.problems.extend(problems)
        result.keys.append(_keys(document))
    return result


def _problem(file: str, issue: manifests.Issue) -> Problem:
    return Problem(file, issue.line, issue.column, manifests.dotted(issue.path), issue.message)


def _key_values(data: Any) -> tuple[str | None, int | None, str | None]:
    """metadata.name, spec.projectId and spec.nodeId of a document, None where absent or
    mistyped."""
    metadata, spec = data.get("metadata"), data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    project = node = None
    if isinstance(spec, dict):
        project, node = spec.get("projectId"), spec.get("nodeId")
    if type(project) is float and project.is_integer():
        project = int(project)  # JSON Schema's integer: 5.0 is project 5
    return (
        name if isinstance(name, str) else None,
        project if type(project) is int else None,
        node if isinstance(node, str) else None,
    )


def _keys(document: manifests.Document) -> _Keys:
    name, project, node = _key_values(document.data)
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
    return _Keys(document.line, name, name_at, project, project_at, node, node_at)


def _cross_file(results: Sequence[_FileResult]) -> list[Problem]:
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
    file: str, keys: _Keys, node: str, nodes: dict[str, tuple[str, int, str | None, int | None]]
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
    which = f", {first_name!r}," if first_name is not None else ""
    return Problem(
        file,
        *keys.node_at,
        "spec.nodeId",
        f"node {_show(node)} already has a manifest{which} at {first_file}:{first_line} "
        "(a node runs one algorithm at a time)",
    )


# ---- schema errors as problems --------------------------------------------------------


def _schema_problems(file: str, document: manifests.Document) -> list[Problem]:
    problems: list[Problem] = []
    secrets: dict[str, tuple[int, Problem]] = {}  # one problem per secret field
    for error in _jsonschema().iter_errors(document.data):
        path: list[str | int] = list(error.absolute_path)
        unused = _unused_seed_field(file, document, path, error)
        if unused is not None:
            problems.append(unused)
            continue
        secret = _secret_field(path)
        if secret is None:
            problems.extend(_convert(file, document, path, error))
            continue
        field_path = path[: secret + 1]
        at = manifests.value_at(document.root, path)
        message = _secret_message(document.data, field_path, path, error)
        problem = Problem(file, at.line, at.column, manifests.dotted(field_path), message)
        # The most specific message wins: an unknown key, then a bad name or path.
        rank = 0 if error.validator == "additionalProperties" else 3 - len(path) + len(field_path)
        known = secrets.get(problem.path)
        if known is None or rank < known[0]:
            secrets[problem.path] = (rank, problem)
    return problems + [problem for _, problem in secrets.values()]


def _convert(
    file: str, document: manifests.Document, path: list[str | int], error: ValidationError
) -> Iterator[Problem]:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        yield from _unknown_fields(file, document, path, error)
        return
    at = manifests.value_at(document.root, path)
    message = _seed_required_message(path, error) or _message(error, at)
    yield Problem(file, at.line, at.column, manifests.dotted(path), message)


# ---- the seed's shape -----------------------------------------------------------------


def _unused_seed_field(
    file: str, document: manifests.Document, path: list[str | int], error: ValidationError
) -> Problem | None:
    """A value in a seed field the portable brokerage has no use for (accepted only empty).

    Refused rather than dropped: a credential written there would never reach the API. A
    malformed secret reference in such a field keeps the secret messages (how to fix it).
    """
    if len(path) != 3 or path[:2] != ["spec", "brokerage"]:
        return None
    kind = document.data["spec"]["brokerage"].get("id")
    field = path[2]
    if not isinstance(kind, str) or field not in brokerages.UNUSED_SEED_FIELDS.get(kind, ()):
        return None
    if isinstance(error.instance, dict) and is_secret_field(field):
        return None
    at = manifests.key_at(document.root, path)
    return Problem(
        file,
        at.line,
        at.column,
        manifests.dotted(path),
        f"unknown field {field!r} for {kind}, which takes {brokerages.PORTABLE_TAKES[kind]}: "
        f'a value here would never be used; leave it empty ({field}: "", the seed\'s shape) '
        "or remove it",
    )


def _seed_required_message(path: list[str | int], error: ValidationError) -> str | None:
    """Why a field the seed's shape lacks is required, for a brokerage in the seed's shape."""
    instance: Any = error.instance
    if (
        error.validator != "required"
        or path != ["spec", "brokerage"]
        or not isinstance(instance, dict)
        or not all(field in instance for field in brokerages.SEED_FIELDS)
    ):
        return None
    kind = instance.get("id")
    extras = brokerages.API_REQUIRED_EXTRAS.get(kind, {}) if isinstance(kind, str) else {}
    for field, (wire, example) in extras.items():
        if error.message == f"{field!r} is a required property":
            return (
                f"{error.message}: the current API requires it for {kind} (sent as {wire}), "
                f"although the seed's shape has no such field; add e.g. {field}: {example}"
            )
    return None


def _unknown_fields(
    file: str, document: manifests.Document, path: list[str | int], error: ValidationError
) -> Iterator[Problem]:
    schema_node = error.schema if isinstance(error.schema, dict) else {}
    allowed = sorted(schema_node.get("properties", {}))
    patterns = list(schema_node.get("patternProperties", {}))
    instance: Any = error.instance
    for key in instance:
        if key in allowed or any(re.search(p, str(key)) for p in patterns):
            continue
        at = manifests.key_at(document.root, [*path, key])
        import difflib

        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif allowed:
            hint = f" (known fields: {', '.join(allowed)})"
        else:
            hint = ""
        yield Problem(
            file, at.line, at.column, manifests.dotted([*path, key]), f"unknown field {key!r}{hint}"
        )


def _message(error: ValidationError, at: manifests.NodeInfo) -> str:
    kind = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    shown = _show(instance, at) or _kind_of(instance)
    if kind == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted)
        if at.kind == "scalar" and at.plain and "string" in wanted and at.tag in _YAML_GUESSES:
            return (
                f"{at.text} is read by YAML as {_YAML_GUESSES[at.tag]}, not a string; "
                f"quote it: {json.dumps(at.text, ensure_ascii=False)}"
            )
        if isinstance(instance, (dict, list)):
            return f"expected {words}, got {shown}"
        return f"expected {words}, got {_kind_of(instance)} {shown}"
    if kind == "enum":
        return f"{shown} is not one of {expected!r}"
    if kind == "const":
        return f"{expected!r} was expected, got {shown}"
    if kind == "required":
        return error.message
    if kind == "pattern":
        hint = _PATTERN_HINTS.get(str(expected))
        return f"{shown} is not {hint}" if hint else f"{shown} does not match {expected!r}"
    if kind == "minLength" and expected == 1:
        return "must not be empty"
    if kind == "minProperties":
        return f"must have at least {expected} entr{'y' if expected == 1 else 'ies'}"
    if kind in ("oneOf", "anyOf"):
        return _choice_message(error)
    if isinstance(instance, (dict, list)):
        return f"does not satisfy {kind} {expected!r}"
    return error.message if len(error.message) <= 200 else f"does not satisfy {kind}"


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
_YAML_GUESSES = {
    tag: name for tag, name in manifests.TAG_NAMES.items() if not tag.endswith("binary")
}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "a " + type(value).__name__


def _show(value: Any, at: manifests.NodeInfo | None = None) -> str:
    """A short rendering of a scalar for a message; collections are not echoed."""
    if isinstance(value, (dict, list)):
        return ""
    if isinstance(value, str) and len(value) > _SHOW_MAX:
        return repr(value[: _SHOW_MAX - 5])[:-1] + "...'"
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
    elif at is not None and at.text is not None:
        text = at.text  # a date or the like: show it as written
    else:
        text = str(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _choice_message(error: ValidationError) -> str:
    options = error.validator_value if isinstance(error.validator_value, list) else []
    keys = [o["required"][0] for o in options if isinstance(o, dict) and set(o) == {"required"}]
    if len(keys) == len(options) and keys and isinstance(error.instance, dict):
        given = [k for k in keys if k in error.instance]
        names = " or ".join(repr(k) for k in keys)
        if not given:
            return f"one of {names} is required"
        return f"give only one of {names}, not both"
    return f"does not match any of the {len(options)} accepted forms"


# ---- secrets --------------------------------------------------------------------------


def is_secret_field(name: object) -> bool:
    return isinstance(name, str) and any(word in name.lower() for word in SECRET_WORDS)


def _secret_field(path: Sequence[str | int]) -> int | None:
    """Index in `path` of a secret field of the brokerage or of a data provider."""
    if len(path) >= 3 and path[:2] == ["spec", "brokerage"] and is_secret_field(path[2]):
        return 2
    if len(path) >= 4 and path[:2] == ["spec", "dataProviders"] and is_secret_field(path[3]):
        return 3
    return None


def _env_suggestion(data: Mapping[str, Any], field_path: Sequence[str | int]) -> str:
    name = str(field_path[-1])
    if field_path[1] == "brokerage":
        spec = data.get("spec")
        brokerage = spec.get("brokerage") if isinstance(spec, dict) else None
        kind = brokerage.get("id") if isinstance(brokerage, dict) else None
        prefix = _PORTABLE_PREFIX.get(kind) if isinstance(kind, str) else None
        if prefix:
            name = f"{prefix}_{name}"
    env = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    return env if env and not env[0].isdigit() else "SECRET"


def _secret_message(
    data: Mapping[str, Any],
    field_path: Sequence[str | int],
    path: Sequence[str | int],
    error: ValidationError,
) -> str:
    """Never includes what was written: it may be the secret itself."""
    how = f"{{fromEnv: {_env_suggestion(data, field_path)}}} or {{fromFile: path/to/file}}"
    instance = error.instance
    if len(path) > len(field_path):
        inner = path[len(field_path)]
        if inner == "fromEnv":
            return (
                "fromEnv must name an environment variable: letters, digits and _, "
                "not starting with a digit"
            )
        if inner == "fromFile":
            return "fromFile must be a non-empty path, relative to the manifest's directory"
        return f"a secret reference is {how}"
    if isinstance(instance, dict):
        if error.validator == "additionalProperties":
            extra = sorted(str(k) for k in instance if k not in ("fromEnv", "fromFile"))
            return f"a secret reference has only fromEnv or fromFile, not {', '.join(extra)}"
        return f"a secret reference has exactly one of fromEnv or fromFile: {how}"
    if instance is None or instance == "":
        return f"must not be empty: use {how}"
    if isinstance(instance, list):
        return f"must be a secret reference: {how}"
    return f"secrets must not be literals in git; use {how}"


def _secret_refs(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str, str]]:
    if isinstance(value, dict):
        if len(value) == 1:
            ((source, name),) = value.items()
            if source in ("fromEnv", "fromFile") and isinstance(name, str):
                yield [*path, source], source, name
                return
        for key, item in value.items():
            yield from _secret_refs(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_refs(item, [*path, index])


def _secret_problems(file: str, document: manifests.Document) -> Iterator[Problem]:
    spec = document.data["spec"]
    base = "." if file == manifests.STDIN_NAME else (os.path.dirname(file) or ".")
    roots = [("brokerage", spec.get("brokerage")), ("dataProviders", spec.get("dataProviders"))]
    for key, value in roots:
        for path, source, name in _secret_refs(value, ["spec", key]):
            if source == "fromEnv":
                if os.environ.get(name):
                    continue
                state = "is empty" if name in os.environ else "is not set"
                message = f"environment variable {name} {state}"
            else:
                target = os.path.join(base, name)
                if os.path.isfile(target) and os.access(target, os.R_OK):
                    continue
                state = "is not readable" if os.path.exists(target) else "does not exist"
                message = f"secret file {target} {state}"
            at = manifests.value_at(document.root, path)
            yield Problem(file, at.line, at.column, manifests.dotted(path[:-1]), message)


# ---- running over many files ----------------------------------------------------------


def _workers(count: int) -> int:
    if count < PARALLEL_MIN_FILES or not hasattr(os, "fork"):
        return 1
    if _threaded():
        return 1  # fork in a threaded process (the watch daemon) is not safe
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS, count // (PARALLEL_MIN_FILES // 2)))


# A worker also pickles what it found and the parent unpickles it: give the parent a
# larger share so that both finish together (measured: about 1.15 to 1).
PARENT_WEIGHT = 1.15


def _shares(indexes: list[int], workers: int) -> list[list[int]]:
    """Contiguous shares, the first (the parent's) PARENT_WEIGHT times the others."""
    each = int(len(indexes) / (workers - 1 + PARENT_WEIGHT))
    first = len(indexes) - each * (workers - 1)
    shares = [indexes[:first]]
    for k in range(workers - 1):
        shares.append(indexes[first + k * each : first + (k + 1) * each])
    return shares


def _threaded() -> bool:
    """Any other thread, Python's or a native library's (Linux counts them all)."""
    if threading.active_count() > 1:
        return True
    try:
        return len(os.listdir("/proc/self/task")) > 1
    except OSError:
        return False


def _run(
    files: Sequence[str],
    check_secrets: bool,
    indexes: Sequence[int] | None = None,
    sources: Mapping[int, bytes] | None = None,
) -> list[_FileResult]:
    """Check files (those at `indexes`, default all) in order; fork when there are many.

    `sources` holds contents already read; forked workers inherit it.
    """
    chosen = range(len(files)) if indexes is None else indexes
    sources = sources or {}

    def check(index: int) -> _FileResult:
        return _check_file(files[index], check_secrets, sources.get(index))

    forkable = [i for i in chosen if files[i] != manifests.STDIN]
    workers = _workers(len(forkable))
    results: dict[int, _FileResult] = {}
    if workers > 1:
        shares = _shares(forkable, workers)
        children: list[tuple[int, int, list[int]]] = []
        try:
            for share in shares[1:]:
                children.append((*_fork(check, share), share))
            for index in shares[0]:
                results[index] = check(index)
            while children:
                pid, read_end, share = children[0]
                results.update(_collect(pid, read_end, check, share))
                children.pop(0)
        finally:
            for pid, read_end, _ in children:  # interrupted: stop the workers left
                with contextlib.suppress(OSError):
                    os.close(read_end)
                _stop(pid)
    for index in chosen:
        if index not in results:
            results[index] = check(index)
    return [results[index] for index in chosen]


def _pack(result: _FileResult) -> tuple[Any, ...]:
    """Plain tuples pickle several times faster than dataclass instances."""
    return (
        result.file,
        result.documents,
        [(m.line, m.data) for m in result.manifests],
        [tuple(p.to_json().values()) for p in result.problems],
        result.keys,
    )


def _unpack(packed: tuple[Any, ...]) -> _FileResult:
    file, documents, found, problems, keys = packed
    return _FileResult(
        file,
        documents,
        [Manifest(file, line, data) for line, data in found],
        [Problem(*p) for p in problems],
        keys,
    )


def _fork(check: Callable[[int], _FileResult], share: list[int]) -> tuple[int, int]:
    import pickle

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: check its share, send the results, exit without cleanup
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            payload = pickle.dumps(
                [_pack(check(i)) for i in share],
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(
    pid: int, read_end: int, check: Callable[[int], _FileResult], share: list[int]
) -> dict[int, _FileResult]:
    import pickle

    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        packed = pickle.loads(payload) if status == 0 else []
        received = {i: _unpack(p) for i, p in zip(share, packed, strict=True)}
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        received = {}
    if not received and share:  # the worker died: do its share here
        received = {i: check(i) for i in share}
    return received


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# ---- results kept between runs --------------------------------------------------------


@functools.cache
def _checker_digest() -> str:
    """What a cached result depends on besides the file: the schema and this code."""
    import hashlib

    from reconciler import __version__

    digest = hashlib.sha256(f"{CACHE_FORMAT}:{__version__}:".encode())
    digest.update(schema_text().encode())
    for module_file in (__file__, manifests.__file__):
        try:
            with open(module_file, "rb") as handle:
                digest.update(handle.read())
        except OSError:  # a zip import: the version above stands for the code
            pass
    return digest.hexdigest()


CACHE_FORMAT = 2


class ResultCache:
    """Results of clean files from earlier runs, keyed by path and content digest.

    A no-op `plan` of 10,000 manifests spends most of its time parsing YAML that has not
    changed since the last run. Each file is still read and hashed (BLAKE2b of the bytes,
    not mtime and size: a file rewritten within one clock tick must not be missed); only
    the parse and the schema check are skipped. The cache is JSON (never pickle: it must
    not be a way to run code), is replaced atomically, and is ignored whole when the schema
    or the checking code changed. Files with problems are never cached.

    An entry is `[digest, documents, [[line, data, name_line, name_column, project_line,
    project_column, node_line, node_column], ...]]`: the keys of the cross-file rules are
    read back from `data`.
    Entries are released as they are used and written again only when something changed,
    so a no-op run holds each manifest once.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.clean: dict[str, tuple[str, _FileResult]] = {}  # what the next run may reuse
        self.changed = False

    @classmethod
    def load(cls, path: str) -> ResultCache:
        cache = cls(path)
        try:
            with open(path, "rb") as handle:
                raw = json.loads(handle.read())
        except (OSError, ValueError):
            return cache
        if (
            isinstance(raw, dict)
            and raw.get("checker") == _checker_digest()
            and isinstance(raw.get("files"), dict)
        ):
            cache.entries = raw["files"]
        return cache

    def run(self, files: Sequence[str]) -> list[_FileResult]:
        """Like `_run`, answering unchanged files from the cache."""
        import hashlib

        results: dict[int, _FileResult] = {}
        pending: list[int] = []
        sources: dict[int, bytes] = {}
        digests: dict[int, str] = {}
        for index, path in enumerate(files):
            data = None if path == manifests.STDIN else manifests.read_source(path)[0]
            if data is None:
                pending.append(index)  # stdin or unreadable: checked (and reported) as usual
                continue
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            entry = self.entries.pop(path, None)
            hit = _from_cache(path, entry[1:]) if entry and entry[0] == digest else None
            if hit is None:
                pending.append(index)
                sources[index] = data
                digests[index] = digest
            else:
                results[index] = hit
                self.clean[path] = (digest, hit)
        for index, result in zip(pending, _run(files, False, pending, sources), strict=True):
            results[index] = result
            if index in digests and not result.problems and _json_safe(result):
                self.clean[files[index]] = (digests[index], result)
                self.changed = True
        self.changed = self.changed or bool(self.entries)  # files gone since the last run
        self.entries = {}
        return [results[index] for index in range(len(files))]

    def save(self) -> None:
        """Write the cache if it changed; a failure only costs the next run some time."""
        if not self.changed:
            return
        entries = {
            path: [digest, *_to_cache(result)] for path, (digest, result) in self.clean.items()
        }
        directory = os.path.dirname(self.path) or "."
        temporary = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump({"checker": _checker_digest(), "files": entries}, handle)
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _to_cache(result: _FileResult) -> list[Any]:
    return [
        result.documents,
        [
            [m.line, m.data, *k.name_at, *k.project_at, *k.node_at]
            for m, k in zip(result.manifests, result.keys, strict=True)
        ],
    ]


def _json_safe(result: _FileResult) -> bool:
    """Only what survives JSON unchanged is cached (no dates, no non-string keys)."""
    packed = _to_cache(result)
    try:
        return bool(json.loads(json.dumps(packed, allow_nan=False)) == packed)
    except (TypeError, ValueError):
        return False


def _from_cache(path: str, packed: Any) -> _FileResult | None:
    try:
        documents, found = packed
        manifests_found, keys = [], []
        for line, data, *at in found:
            name_line, name_column, project_line, project_column, node_line, node_column = at
            name, project, node = _key_values(data)
            if name is None or project is None or node is None:
                return None
            manifests_found.append(Manifest(path, line, data))
            keys.append(
                _Keys(
                    line,
                    name,
                    (name_line, name_column),
                    project,
                    (project_line, project_column),
                    node,
                    (node_line, node_column),
                )
            )
        return _FileResult(path, documents, manifests_found, [], keys)
    except (TypeError, ValueError, AttributeError):
        return None
