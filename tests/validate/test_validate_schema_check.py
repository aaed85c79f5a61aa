"""The yes/no check (jsonschema-rs) never accepts what jsonschema rejects: patterns are
matched as Python's `re` matches them, a keyword the two libraries read differently leaves
every document to jsonschema, and a value that is not JSON is left to jsonschema."""

from __future__ import annotations

import copy
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

from validate_support import REPO, manifest, problems, write

from reconciler import validation
from reconciler.validation import schema_check

# Where Python's re and ECMA-262 (jsonschema-rs's regexes) part: \s also matches
# U+001C..U+001F and U+0085 in Python, U+FEFF only in ECMA-262; Python's $ also matches
# before a final newline.
DISPUTED = ["a\x1cb", "a\x1fb", "a\x85b", "a\ufeffb", "abc\n", "22:00:00\n", "ab"]


def test_a_character_python_counts_as_space_is_refused_in_a_single_word(here: Path) -> None:
    for written, shown in (("a\\x1cb", "'a\\x1cb'"), ("a\\x85b", "'a\\x85b'")):
        write(here, "m.yaml", manifest().replace("compileId: latest", f'compileId: "{written}"'))
        assert problems("m.yaml") == [
            f"m.yaml:7:14: spec.compileId: {shown} is not a single word without spaces"
        ]


def test_the_check_and_jsonschema_agree_on_every_pattern_field() -> None:
    fields = [
        ("metadata", "name"),
        ("spec", "compileId"),
        ("spec", "nodeId"),
        ("spec", "brokerage", "weeklyRestartUtcTime"),
        ("spec", "brokerage", "password", "fromEnv"),
    ]
    report = validation.validate_paths([str(REPO / "deployments")])
    quick, full = validation.compiled_schema(), validation._jsonschema()
    compared = 0
    for found in report.manifests:
        for field in fields:
            for value in DISPUTED:
                data = copy.deepcopy(found.data)
                parent: Any = data
                for step in field[:-1]:
                    parent = parent.get(step, {})
                if field[-1] not in parent:
                    continue
                parent[field[-1]] = value
                assert quick(data) == full.is_valid(data), (field, value)
                compared += 1
    assert compared >= len(DISPUTED) * len(fields)


def test_a_keyword_the_two_libraries_read_differently_leaves_documents_to_jsonschema() -> None:
    # jsonschema-rs accepts 0.07 as a multiple of 0.01; jsonschema does not.
    schema = {"type": "number", "multipleOf": 0.01}
    assert not schema_check.full_validator(schema).is_valid(0.07)
    assert not schema_check.quick_check(schema)(0.07)
    assert not schema_check.quick_check(schema)(1)  # nothing is taken on the quick check
    assert schema_check.quick_check({"type": "number", "minimum": 0})(0.07)


def test_a_value_that_is_not_json_is_left_to_jsonschema(here: Path) -> None:
    report = validation.validate_paths([str(REPO / "deployments")])
    data = copy.deepcopy(report.manifests[0].data)
    data["metadata"]["labels"] = {"since": datetime.date(2024, 1, 1)}
    assert validation.compiled_schema()(data) is False  # not an exception
    write(
        here, "m.yaml", manifest().replace("metadata:\n", "metadata:\n  labels: {a: 2024-01-01}\n")
    )
    assert problems("m.yaml") == [
        "m.yaml:4:15: metadata.labels.a: 2024-01-01 is read by YAML as a date, not a string; "
        'quote it: "2024-01-01"'
    ]


def test_valid_manifests_are_checked_without_importing_jsonschema() -> None:
    """jsonschema (tens of ms to import) only explains a rejected document."""
    code = (
        "import sys\n"
        "from reconciler import validation\n"
        f"assert validation.validate_paths([{str(REPO / 'deployments')!r}]).valid\n"
        "print('jsonschema' in sys.modules, 'jsonschema_rs' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "False True\n", "")
