"""Property tests: whatever the input, a report with messages, never an exception;
and the fast check never disagrees with jsonschema."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validate_support import REPO, run_cli

from reconciler import validation

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

YAML_ALPHABET = st.sampled_from(list("{}[]:,-&*!|>'\"#%@`?~ \n\t\\") + list("aZ0_.é"))
yaml_like = st.text(YAML_ALPHABET, max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def check_report(report: validation.Report) -> None:
    for problem in report.problems:
        assert problem.message
        assert problem.line >= 0 and problem.column >= 0
        assert (problem.line == 0) == (problem.column == 0)


@FUZZ
@given(text=st.text(max_size=300) | yaml_like)
def test_arbitrary_text_gives_a_report(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        check_report(validation.validate_paths([str(path)]))


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_a_report(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.yaml"
        path.write_bytes(data)
        check_report(validation.validate_paths([str(path)]))


# ---- mutations of valid manifests -----------------------------------------------------


def seeds() -> list[dict[str, Any]]:
    report = validation.validate_paths([str(REPO / "deployments")])
    found = [m.data for m in report.manifests]
    modules = [
        {"id": "TradierBrokerage", "tradier-account-id": "VA1",
         "tradier-access-token": {"fromEnv": "T"}, "tradier-environment": "live"},
        {"id": "BinanceBrokerage", "binance-exchange-name": "BinanceUS",
         "binanceus-api-key": {"fromEnv": "K"}, "binanceus-api-secret": {"fromFile": "s"},
         "holdings": [{"symbolId": "BTCUSD 2XR", "symbol": "BTCUSD", "quantity": 1,
                       "averagePrice": 1.5}]},
        {"id": "TastytradeBrokerage", "tastytrade-account-number": 7,
         "tastytrade-refresh-token": {"fromEnv": "R"}},
    ]  # fmt: skip
    for index, brokerage in enumerate(modules):
        data = copy.deepcopy(found[0])
        data["metadata"]["name"] = f"module-{index}"
        data["spec"]["projectId"] = 2000 + index
        data["spec"]["brokerage"] = brokerage
        found.append(data)
    return found


SEEDS = seeds()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(data))[1:]))
        parent: Any = data
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        elif action == "rename" and isinstance(parent, dict):
            parent[last + draw(st.sampled_from(["x", "-", "_id", "s"]))] = parent.pop(last)
    return data


def literal_secrets(value: Any, secret: bool = False) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from literal_secrets(item, secret or validation.is_secret_field(key))
    elif isinstance(value, list):
        for item in value:
            yield from literal_secrets(item, secret)
    elif secret and isinstance(value, str) and len(value) >= 4:
        yield value


@settings(FUZZ, max_examples=300)
@given(data=mutated())
def test_mutated_manifests_give_pointed_problems_and_the_checks_agree(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.yaml"
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        report = validation.validate_paths([str(path)])
        check_report(report)
        for problem in report.problems:
            assert problem.line >= 1  # every schema error points somewhere
            for secret in literal_secrets(data):
                assert secret not in problem.message
        for found in report.manifests:
            assert validation._jsonschema().is_valid(found.data)
        for document in validation.manifests.load_file(str(path)).documents:
            fast = validation.compiled_schema()(document.data)
            assert fast == validation._jsonschema().is_valid(document.data)


@settings(FUZZ, max_examples=12)
@given(text=yaml_like, data=mutated())
def test_the_cli_exits_0_or_1_with_messages(text: str, data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "a.yaml").write_text(text, encoding="utf-8")
        Path(directory, "b.yaml").write_text(json.dumps(data), encoding="utf-8")
        done = run_cli("validate", directory, "--format", "json", cwd=directory)
        assert done.returncode in (0, 1), done.stderr
        assert done.stderr == ""
        result = json.loads(done.stdout)
        assert result["valid"] == (done.returncode == 0) == (result["errors"] == [])
        assert all(error["message"] for error in result["errors"])


# ---- the loader reads what PyYAML's safe_load reads -----------------------------------

yaml_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
SPELLINGS = [
    "a: 0x1F\nb: 0o17\nc: 1_000\nd: +12\ne: -3.5e2\nf: .inf\ng: ~\nh: yes\ni: Off\n",
    "base: &b {x: 1, y: [1, 2]}\nuse: {<<: *b, y: 3}\nlist: [*b, *b]\n",
    "k: |\n  two\n  lines\nl: >-\n  folded\n  text\nm: 'it''s'\nn: \"tab\\there\"\n",
    "? complex key\n: value\n'quoted: key': 1\n\"1\": one\n",
    "multi: [a, {b: c}, [d]]\n---\nsecond: doc\n---\n- third\n",
]


@settings(FUZZ, max_examples=200)
@given(value=yaml_documents, style=st.sampled_from([False, True, None]))
def test_the_loader_reads_what_safe_load_reads(value: Any, style: bool | None) -> None:
    import yaml

    text = yaml.safe_dump_all([value, value], default_flow_style=style)
    loaded = validation.manifests.load_bytes(text.encode())
    assert loaded.issues == []
    # An explicit `null` document is kept (and later refused as not a mapping).
    assert [d.data for d in loaded.documents] == list(yaml.safe_load_all(text))


def test_the_loader_reads_yaml_spellings_like_safe_load() -> None:
    import yaml

    for text in SPELLINGS:
        loaded = validation.manifests.load_bytes(text.encode())
        assert loaded.issues == [] and all(not d.issues for d in loaded.documents), text
        assert [d.data for d in loaded.documents] == list(yaml.safe_load_all(text)), text
