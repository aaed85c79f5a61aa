"""Checking a document against the schema: the one module that imports a schema validator.

Two libraries, each for what it does best.  **jsonschema-rs** answers "valid or not" for
every document (a few microseconds: compiled once per process, in Rust).  **jsonschema**
explains a document that check rejects: its errors carry what `messages` turns into our
words (the failing keyword, its value, the schema node), and its messages are the ones
users see.  So the common case (all valid, e.g. in CI) never imports `jsonschema`.

The quick check must never accept what jsonschema would reject, so it is built to agree:
- `pattern` is matched with Python's `re.search`, as jsonschema does, not with ECMA-262
  semantics (Python's `\\s` also matches U+001C..U+001F and U+0085, its `$` also matches
  before a final newline);
- a schema using a keyword outside `AGREED` (or an annotation) gets no quick check: every
  document goes to jsonschema.  `multipleOf: 0.01`, say, accepts 0.07 in jsonschema-rs and
  not in jsonschema; `patternProperties` would run its regexes on jsonschema-rs's engine;
- a value that is not JSON (a YAML date, bytes) is left to jsonschema.
tests/validate checks the two agree on valid and mutated manifests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

    SchemaError: TypeAlias = ValidationError
    FullValidator: TypeAlias = Draft202012Validator

# fmt: off
# Read by neither library as a constraint ("format" included: an annotation in draft
# 2020-12 for jsonschema without a format checker, and for jsonschema-rs as configured).
ANNOTATIONS = frozenset({
    "$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly", "format", "markdownDescription",
})
# Keywords both libraries read alike (`pattern` matched by Python's re: _PythonPattern).
AGREED = frozenset({
    "$ref", "type", "enum", "const", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "items", "minItems", "maxItems", "required", "properties", "additionalProperties",
    "minProperties", "maxProperties", "propertyNames", "allOf", "anyOf", "oneOf", "not", "if",
    "then", "else",
})
# fmt: on
_KNOWN = ANNOTATIONS | AGREED
_SCHEMA_MAPS = frozenset({"properties", "$defs"})  # name -> schema
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_SCHEMAS = frozenset(
    {"items", "additionalProperties", "propertyNames", "not", "if", "then", "else"}
)

Check = Callable[[Any], bool]


def quick_check(schema: Any) -> Check:
    """The yes/no check of `schema`: True only for a document jsonschema accepts too.

    False means "not known to be valid": the caller asks jsonschema, which decides.
    """
    if not understood(schema):
        return _never
    import jsonschema_rs

    try:
        validator = jsonschema_rs.Draft202012Validator(
            schema, validate_formats=False, keywords={"pattern": _PythonPattern}
        )
    except (ValueError, jsonschema_rs.ReferencingError):
        return _never  # a broken schema: jsonschema reports it
    is_valid = validator.is_valid

    def check(document: Any) -> bool:
        try:
            return is_valid(document)
        except (ValueError, TypeError, OverflowError):  # not JSON: a date, bytes, a number key
            return False

    return check


def full_validator(schema: Mapping[str, Any]) -> FullValidator:
    """jsonschema's validator, for the errors of a rejected document (imported only then)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def understood(schema: Any) -> bool:
    """Whether every keyword of `schema` and of its subschemas is an annotation or AGREED."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if node is True or node is False:
            continue
        if type(node) is not dict or not _KNOWN.issuperset(node):
            return False
        for key, value in node.items():
            if key in _SCHEMAS:
                pending.append(value)
            elif key in _SCHEMA_MAPS:
                if type(value) is not dict:
                    return False
                pending.extend(value.values())
            elif key in _SCHEMA_LISTS:
                if type(value) is not list:
                    return False
                pending.extend(value)
    return True


class _PythonPattern:
    """The `pattern` keyword as jsonschema applies it: `re.search`, strings only."""

    def __init__(self, parent_schema: dict[str, Any], value: Any, schema_path: list[str | int]):
        self.search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and self.search(instance) is None:
            raise ValueError("does not match")


def _never(document: Any) -> bool:
    return False
