"""The world kept in a data directory (`--data DIR`): one JSON file, never half-written.

With a data directory the world is saved after every change: written whole to a temporary
file beside `emulator.json`, fsynced and renamed over it, so it survives a restart and a
crash leaves the old world or the new one, never a mix. Inside `Store.batch()` (seeding
thousands of items) the saves wait for the end of the outermost batch and happen once.

What is kept is what a restart must see: the organisation, projects, nodes, compiles,
deployments and the creates committed per project. The safety records (`created`,
`stops`, `rejections`) are since the start only. Brokerage credentials never reach the
file: the world checks them and forgets them.

    {"format": 1, "organization": "...", "projects": [...], "nodes": [...],
     "compiles": [...], "deployments": [...], "committed": {"<projectId>": n}}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "emulator.json"
FORMAT = 1


@dataclass
class Saved:
    """What a data directory keeps of a world (the world's own dicts, not copies)."""

    organization: str
    projects: dict[int, dict[str, Any]]
    nodes: dict[str, dict[str, Any]]
    compiles: dict[str, dict[str, Any]]
    deployments: list[dict[str, Any]]
    committed: Counter[int]


class Store:
    """Where a world is saved; without a data directory, saving does nothing.

    `snapshot` gives what to save when a save happens, so a change inside a batch costs
    nothing. The caller holds the world's lock around `save` and `batch`.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str] | None, snapshot: Callable[[], Saved]
    ) -> None:
        self.path = Path(data_dir) / STATE_FILE if data_dir is not None else None
        self._snapshot = snapshot
        self._deferred = 0  # > 0 inside `batch()`: saves wait for its end
        self._dirty = False

    def load(self) -> Saved | None:
        """The world saved here; None without a data directory or before its first save."""
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ValueError(f"emulator state {self.path} is unreadable: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"emulator state {self.path} has an unknown format")
        return Saved(
            organization=data["organization"],
            projects={int(p["projectId"]): p for p in data["projects"]},
            nodes={n["id"]: n for n in data["nodes"]},
            compiles={c["compileId"]: c for c in data["compiles"]},
            deployments=list(data["deployments"]),
            committed=Counter({int(k): v for k, v in data["committed"].items()}),
        )

    def save(self) -> None:
        """Save the world now, or at the end of the batch under way."""
        if self.path is None:
            return
        if self._deferred:
            self._dirty = True
            return
        self._dirty = False
        saved = self._snapshot()
        self._write(
            self.path,
            {
                "format": FORMAT,
                "organization": saved.organization,
                "projects": list(saved.projects.values()),
                "nodes": list(saved.nodes.values()),
                "compiles": list(saved.compiles.values()),
                "deployments": saved.deployments,
                "committed": {str(k): v for k, v in saved.committed.items()},
            },
        )

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one save at the end (seeding thousands of items)."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
            if not self._deferred and self._dirty:
                self.save()

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        """Write, fsync, rename: a reader (or a restart after a crash) never sees half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".emulator-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
