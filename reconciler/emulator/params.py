"""Request fields from a query string or a form body, typed as a JSON body's fields are.

The API's own client, lean-cli, reads with GET and query parameters (`live/read?projectId=1`)
and posts some endpoints form-encoded, so those fields arrive as text. This module is the
one place that turns them into what a JSON body would have carried: every endpoint then sees
the same typed body whichever way the request came, and answers it the same way.

The types come from the request schemas of the endpoints served (and the admin endpoints'
fields): a field not named in `FIELD_TYPES` is a string in every schema. A value that does
not convert (`projectId=abc`) stays text, so the endpoint refuses it with the same reason as
a JSON body holding a string there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

INTEGER = "integer"
BOOLEAN = "boolean"
ARRAY = "array"  # of strings: a repeated key (`nodes=a&nodes=b`) or one JSON array
OBJECT = "object"  # a JSON object written as text (`brokerage={"id": "..."}`)

FIELD_TYPES: Mapping[str, str] = {
    "projectId": INTEGER,
    "start": INTEGER,
    "end": INTEGER,
    "nodes": ARRAY,
    "brokerage": OBJECT,
    "dataProviders": OBJECT,
    "notification": OBJECT,
    "automaticRedeploy": BOOLEAN,
    # admin: projects/update (failLogin is true, false or the failure's message)
    "failBuild": BOOLEAN,
    "failLogin": BOOLEAN,
}

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def parse_fields(text: str) -> dict[str, Any]:
    """`projectId=1&nodes=a&nodes=b` -> {"projectId": 1, "nodes": ["a", "b"]}.

    ValueError when a field that holds one value is given more than once (which of them
    was meant cannot be known). A key written `nodes[]` is the field `nodes`.
    """
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
        values.setdefault(key.removesuffix("[]"), []).append(value)
    fields: dict[str, Any] = {}
    for name, given in values.items():
        kind = FIELD_TYPES.get(name)
        if kind == ARRAY:
            fields[name] = _array(given)
            continue
        if len(given) > 1:
            raise ValueError(f"{name} is given {len(given)} times; give it once")
        fields[name] = _typed(given[0], kind)
    return fields


def _typed(value: str, kind: str | None) -> Any:
    if kind == INTEGER and _INTEGER.fullmatch(value):
        return int(value)
    if kind == BOOLEAN and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    if kind == OBJECT:
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _array(given: list[str]) -> Any:
    if len(given) == 1:
        text = given[0].strip()
        if not text:
            return []  # `nodes=`: the empty list, which a form cannot otherwise say
        if text.startswith("["):
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                return given
            return parsed
    return given
