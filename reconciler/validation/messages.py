"""Schema errors as problems: jsonschema's errors of a rejected document, in our words, at
the line and column of the value (or of the key) in the file.

Messages name what was expected and show a short rendering of what was written (never a
secret's value: see `secret_fields`); the seed's brokerage shape gets messages of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from reconciler import brokerages, manifests
from reconciler.validation.report import Problem
from reconciler.validation.secret_fields import is_secret_field, secret_field, secret_message

if TYPE_CHECKING:
    from reconciler.validation.schema_check import SchemaError

_PATTERN_HINTS = {
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$": (
        "a DNS label: lowercase letters, digits and '-', at most 63 characters, "
        "starting and ending with a letter or digit"
    ),
    "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$": 'a UTC time "hh:mm:ss", e.g. "22:00:00"',
    "^\\S+$": "a single word without spaces",
}
_SHOW_MAX = 60


def schema_problems(
    file: str, document: manifests.Document, errors: Iterable[SchemaError]
) -> list[Problem]:
    """jsonschema's errors of one document, as problems at the line and column of the value."""
    problems: list[Problem] = []
    secrets: dict[str, tuple[int, Problem]] = {}  # one problem per secret field
    for error in errors:
        path: list[str | int] = list(error.absolute_path)
        unused = _unused_seed_field(file, document, path, error)
        if unused is not None:
            problems.append(unused)
            continue
        secret = secret_field(path)
        if secret is None:
            problems.extend(_convert(file, document, path, error))
            continue
        field_path = path[: secret + 1]
        at = manifests.value_at(document.root, path)
        message = secret_message(document.data, field_path, path, error)
        problem = Problem(file, at.line, at.column, manifests.dotted(field_path), message)
        # The most specific message wins: an unknown key, then a bad name or path.
        rank = 0 if error.validator == "additionalProperties" else 3 - len(path) + len(field_path)
        known = secrets.get(problem.path)
        if known is None or rank < known[0]:
            secrets[problem.path] = (rank, problem)
    return problems + [problem for _, problem in secrets.values()]


def _convert(
    file: str, document: manifests.Document, path: list[str | int], error: SchemaError
) -> Iterator[Problem]:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        yield from _unknown_fields(file, document, path, error)
        return
    at = manifests.value_at(document.root, path)
    message = _seed_required_message(path, error) or _message(error, at)
    yield Problem(file, at.line, at.column, manifests.dotted(path), message)


def _unknown_fields(
    file: str, document: manifests.Document, path: list[str | int], error: SchemaError
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


def _message(error: SchemaError, at: manifests.NodeInfo) -> str:
    kind = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    shown = show(instance, at) or _kind_of(instance)
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


def show(value: Any, at: manifests.NodeInfo | None = None) -> str:
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


def _choice_message(error: SchemaError) -> str:
    options = error.validator_value if isinstance(error.validator_value, list) else []
    keys = [o["required"][0] for o in options if isinstance(o, dict) and set(o) == {"required"}]
    if len(keys) == len(options) and keys and isinstance(error.instance, dict):
        given = [k for k in keys if k in error.instance]
        names = " or ".join(repr(k) for k in keys)
        if not given:
            return f"one of {names} is required"
        return f"give only one of {names}, not both"
    return f"does not match any of the {len(options)} accepted forms"


# ---- the seed's shape -----------------------------------------------------------------


def _unused_seed_field(
    file: str, document: manifests.Document, path: list[str | int], error: SchemaError
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


def _seed_required_message(path: list[str | int], error: SchemaError) -> str | None:
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
