"""Results kept between runs: clean files whose content has not changed are not parsed or
checked again (plan and apply use it; `validate` does not)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from reconciler import manifests
from reconciler.validation.one_file import (
    WINDOW_KIND,
    FileResult,
    Keys,
    key_values,
    kind_and_window,
)
from reconciler.validation.report import Manifest

CACHE_FORMAT = 3

CheckFiles = Callable[[list[int], dict[int, bytes]], list[FileResult]]
"""Checks the files at these indexes, in order, given the contents already read."""


def checker_digest(schema_text: str) -> str:
    """What a cached result depends on besides the file: the schema and the checking code."""
    import hashlib

    from reconciler import __version__

    digest = hashlib.sha256(f"{CACHE_FORMAT}:{__version__}:".encode())
    digest.update(schema_text.encode())
    package = os.path.dirname(__file__)
    try:
        code = [os.path.join(package, name) for name in sorted(os.listdir(package))]
    except OSError:  # a zip import: the version above stands for the code
        code = []
    for module_file in [path for path in code if path.endswith(".py")] + [manifests.__file__]:
        try:
            with open(module_file, "rb") as handle:
                digest.update(handle.read())
        except OSError:
            pass
    return digest.hexdigest()


class ResultCache:
    """Results of clean files from earlier runs, keyed by path and content digest.

    A no-op `plan` of 10,000 manifests spends most of its time parsing YAML that has not
    changed since the last run. Each file is still read and hashed (BLAKE2b of the bytes,
    not mtime and size: a file rewritten within one clock tick must not be missed); only
    the parse and the schema check are skipped. The cache is JSON (never pickle: it must
    not be a way to run code), is replaced atomically, and is ignored whole when the schema
    or the checking code changed (`checker`, from `checker_digest`). Files with problems
    are never cached.

    An entry is `[digest, documents, [[line, data, window_line, window_column, name_line,
    name_column, project_line, project_column, node_line, node_column], ...]]`: the keys
    of the cross-file rules are read back from `data`.
    Entries are released as they are used and written again only when something changed,
    so a no-op run holds each manifest once.
    """

    def __init__(self, path: str, checker: str) -> None:
        self.path = path
        self.checker = checker
        self.entries: dict[str, list[Any]] = {}
        self.clean: dict[str, tuple[str, FileResult]] = {}  # what the next run may reuse
        self.changed = False

    @classmethod
    def load(cls, path: str, checker: str) -> ResultCache:
        cache = cls(path, checker)
        try:
            with open(path, "rb") as handle:
                raw = json.loads(handle.read())
        except (OSError, ValueError):
            return cache
        if (
            isinstance(raw, dict)
            and raw.get("checker") == checker
            and isinstance(raw.get("files"), dict)
        ):
            cache.entries = raw["files"]
        return cache

    def run(self, files: Sequence[str], check: CheckFiles) -> list[FileResult]:
        """The results of all `files`, in order: unchanged ones from the cache, the others
        from `check`."""
        import hashlib

        results: dict[int, FileResult] = {}
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
        for index, result in zip(pending, check(pending, sources), strict=True):
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
            # json.dumps, not json.dump: only the one-shot form uses the C encoder (dump
            # encodes in Python, chunk by chunk: 3x the CPU for 200 manifests).
            text = json.dumps({"checker": self.checker, "files": entries})
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _to_cache(result: FileResult) -> list[Any]:
    return [
        result.documents,
        [
            [m.line, m.data, *k.window_at, *k.name_at, *k.project_at, *k.node_at]
            for m, k in zip(result.manifests, result.keys, strict=True)
        ],
    ]


def _json_safe(result: FileResult) -> bool:
    """Only what survives JSON unchanged is cached (no dates, no non-string keys)."""
    packed = _to_cache(result)
    try:
        return bool(json.loads(json.dumps(packed, allow_nan=False)) == packed)
    except (TypeError, ValueError):
        return False


def _from_cache(path: str, packed: Any) -> FileResult | None:
    try:
        documents, found = packed
        manifests_found, keys = [], []
        for line, data, window_line, window_column, *at in found:
            name_line, name_column, project_line, project_column, node_line, node_column = at
            name, project, node = key_values(data)
            kind, window = kind_and_window(data)
            whole = kind == WINDOW_KIND or (project is not None and node is not None)
            if name is None or not whole:
                return None
            manifests_found.append(Manifest(path, line, data))
            keys.append(
                Keys(
                    line,
                    name,
                    (name_line, name_column),
                    project,
                    (project_line, project_column),
                    node,
                    (node_line, node_column),
                    kind,
                    window,
                    (window_line, window_column),
                )
            )
        return FileResult(path, documents, manifests_found, [], keys)
    except (TypeError, ValueError, AttributeError):
        return None
