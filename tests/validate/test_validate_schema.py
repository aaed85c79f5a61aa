"""The schema file itself: valid draft 2020-12, documented, strict, and fully understood by
the fast check (which must agree with jsonschema)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from validate_support import REPO

from reconciler import validation


def subschemas(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object, without descending into `if` conditions (not fields)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("properties", "$defs", "patternProperties"):
                for name, child in value.items():
                    yield from subschemas(child, f"{path}/{key}/{name}")
            elif key in ("allOf", "anyOf", "oneOf"):
                for index, child in enumerate(value):
                    yield from subschemas(child, f"{path}/{key}/{index}")
            elif key in ("items", "then", "else", "not", "additionalProperties"):
                yield from subschemas(value, f"{path}/{key}")


def test_the_schema_is_valid_draft_2020_12_with_an_id() -> None:
    schema = validation.schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert (REPO / "schemas" / validation.SCHEMA_FILE).read_text(encoding="utf-8") == (
        validation.schema_text()
    )


def test_every_field_has_a_description() -> None:
    missing = [
        f"{path}/properties/{name}"
        for path, node in subschemas(validation.schema())
        for name, field in node.get("properties", {}).items()
        if "description" not in field and not path.endswith("/if")
    ]
    assert missing == []


def test_every_object_we_own_rejects_unknown_fields() -> None:
    loose = [
        path
        for path, node in subschemas(validation.schema())
        if "properties" in node
        and node.get("additionalProperties") is not False
        and "allOf" not in node  # dispatchers: each branch they select is closed
        and not path.endswith("/if")
    ]
    assert loose == []


def test_the_fast_check_understands_every_keyword_the_schema_uses() -> None:
    used = {key for _, node in subschemas(validation.schema()) for key in node}
    assert used <= validation._ANNOTATIONS | validation._SUPPORTED


def test_the_fast_check_and_jsonschema_agree_on_the_examples() -> None:
    report = validation.validate_paths([str(REPO / "deployments")])
    fast, full = validation.compiled_schema(), validation._jsonschema()
    for found in report.manifests:
        assert fast(found.data) and full.is_valid(found.data)
        broken = dict(found.data, kind=["LiveDeployment"])
        assert not fast(broken) and not full.is_valid(broken)


def test_the_fast_check_follows_json_schema_types() -> None:
    check = validation._FastCompiler({}).compile
    integer = check({"type": "integer", "minimum": 1})
    assert integer(1) and integer(2.0) and not integer(True) and not integer(1.5)
    assert not integer(0) and not integer("1")
    string = check({"type": "string", "pattern": "^a+$", "minLength": 2})
    assert string("aa") and not string("a") and not string("ab") and not string(None)
    obj = check({"type": "object", "required": ["a"], "additionalProperties": False,
                 "properties": {"a": {"enum": ["x"]}}})  # fmt: skip
    assert obj({"a": "x"}) and not obj({"a": "y"}) and not obj({"a": "x", "b": 1})
    assert not obj([]) and not obj({})
    either = check({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]})
    assert either({"a": 1}) and not either({"a": 1, "b": 2}) and not either({})
    unknown = check({"type": "string", "uniqueItems": True})
    assert not unknown("anything")  # not understood: sent to jsonschema
