"""The result cache plan and apply use: it may save work, never change an answer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validate_support import manifest, write

from reconciler import validation


def report_view(report: validation.Report) -> tuple[object, ...]:
    return (
        report.files,
        report.documents,
        [(m.file, m.line, m.data) for m in report.manifests],
        [str(p) for p in report.problems],
    )


def both(paths: list[str], cache: str) -> tuple[tuple[object, ...], tuple[object, ...]]:
    plain = validation.validate_paths(paths)
    cached = validation.validate_paths(paths, cache_path=cache)
    return report_view(plain), report_view(cached)


def test_a_second_run_answers_from_the_cache_with_the_same_report(here: Path) -> None:
    for i in range(3):
        write(here, f"d/m{i}.yaml", manifest(name=f"m{i}", project=i + 1))
    cache = str(here / "cache.json")
    first = validation.validate_paths(["d"], cache_path=cache)
    stored = json.loads(Path(cache).read_text())["files"]
    assert sorted(stored) == ["d/m0.yaml", "d/m1.yaml", "d/m2.yaml"]
    before = Path(cache).stat().st_mtime_ns
    plain, cached = both(["d"], cache)
    assert plain == cached == report_view(first)
    assert Path(cache).stat().st_mtime_ns == before  # nothing changed: not rewritten


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(here: Path) -> None:
    path = write(here, "d/m.yaml", manifest(name="aaaa", project=1))
    cache = str(here / "cache.json")
    validation.validate_paths(["d"], cache_path=cache)
    stat = os.stat(path)
    write(here, "d/m.yaml", manifest(name="bbbb", project=1))  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = validation.validate_paths(["d"], cache_path=cache)
    assert [m.data["metadata"]["name"] for m in report.manifests] == ["bbbb"]


def test_files_with_problems_are_not_cached_and_cross_file_rules_still_apply(
    here: Path,
) -> None:
    write(here, "d/a.yaml", manifest(name="same", project=1))
    write(here, "d/bad.yaml", manifest(name="Bad_Name", project=3))
    cache = str(here / "cache.json")
    validation.validate_paths(["d"], cache_path=cache)
    assert sorted(json.loads(Path(cache).read_text())["files"]) == ["d/a.yaml"]
    write(here, "d/b.yaml", manifest(name="same", project=1))  # duplicates a cached file
    plain, cached = both(["d"], cache)
    assert plain == cached
    problems = "\n".join(cached[3])  # type: ignore[arg-type]
    assert "duplicate name 'same'" in problems and "project 1 already has a manifest" in problems


def test_a_removed_file_leaves_the_cache(here: Path) -> None:
    write(here, "d/a.yaml", manifest(name="a", project=1))
    gone = write(here, "d/b.yaml", manifest(name="b", project=2))
    cache = str(here / "cache.json")
    validation.validate_paths(["d"], cache_path=cache)
    os.unlink(gone)
    report = validation.validate_paths(["d"], cache_path=cache)
    assert [m.file for m in report.manifests] == ["d/a.yaml"]
    assert sorted(json.loads(Path(cache).read_text())["files"]) == ["d/a.yaml"]


def test_a_corrupt_or_foreign_cache_is_ignored(here: Path) -> None:
    write(here, "d/a.yaml", manifest(name="a", project=1))
    cache = here / "cache.json"
    expected = report_view(validation.validate_paths(["d"]))
    for junk in ("{not json", "[]", json.dumps({"checker": "other", "files": {}})):
        cache.write_text(junk)
        assert report_view(validation.validate_paths(["d"], cache_path=str(cache))) == expected
    # an entry whose digest matches but which holds no manifest is not used
    validation.validate_paths(["d"], cache_path=str(cache))
    stored = json.loads(cache.read_text())
    stored["files"]["d/a.yaml"][2][0][1] = {"spec": "garbage"}
    cache.write_text(json.dumps(stored))
    assert report_view(validation.validate_paths(["d"], cache_path=str(cache))) == expected


def test_an_unwritable_cache_only_costs_time(here: Path) -> None:
    write(here, "d/a.yaml", manifest(name="a", project=1))
    blocked = here / "blocked"
    blocked.write_text("a file where the cache directory should be")
    report = validation.validate_paths(["d"], cache_path=str(blocked / "cache.json"))
    assert report.valid and len(report.manifests) == 1


VARIANTS = [
    manifest(name="alpha", project=1),
    manifest(name="alpha", project=2),
    manifest(name="beta", project=1),
    manifest(name="gamma", project=3),
    manifest(name="Bad Name", project=4),
    "spec: [unclosed\n",
    "",
]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-1, len(VARIANTS) - 1)), max_size=12))
def test_the_cache_never_changes_the_answer(steps: list[tuple[int, int]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = str(root / "cache.json")
        (root / "d").mkdir()
        for slot, variant in steps:
            path = root / "d" / f"m{slot}.yaml"
            if variant < 0:
                path.unlink(missing_ok=True)
            else:
                path.write_text(VARIANTS[variant])
            plain, cached = both([str(root / "d")], cache)
            assert plain == cached


def _forget_the_schema() -> None:
    for cached in (
        validation.schema,
        validation.compiled_schema,
        validation._jsonschema,
        validation._checker_digest,
    ):
        cached.cache_clear()


def test_a_schema_change_invalidates_the_cache(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the old schema accepted is checked again under a new one, never answered
    from results the old schema produced (the cache is keyed on the schema's content)."""
    write(here, "d/a.yaml", manifest(name="a", project=7))
    cache = str(here / "cache.json")
    assert validation.validate_paths(["d"], cache_path=cache).valid
    assert sorted(json.loads(Path(cache).read_text())["files"]) == ["d/a.yaml"]
    stricter = json.loads(validation.schema_text())
    stricter["$defs"]["spec"]["properties"]["projectId"]["maximum"] = 5
    try:
        with monkeypatch.context() as patch:
            patch.setattr(validation, "schema_text", lambda: json.dumps(stricter))
            _forget_the_schema()
            report = validation.validate_paths(["d"], cache_path=cache)
        assert [str(p) for p in report.problems] == [
            "d/a.yaml:6:14: spec.projectId: 7 is greater than the maximum of 5"
        ]
    finally:
        _forget_the_schema()
    assert validation.validate_paths(["d"], cache_path=cache).valid  # the schema as it was
