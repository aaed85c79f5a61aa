"""The files source: manifests on the local disk.  The only module that imports watchfiles.

- `read`: every file under the paths, validated as one set (plan, apply); any problem
  refuses the whole set: nothing is done from a set that is partly wrong;
- `FileTracker`: the daemon's view, file by file.  A changed file is read only once its
  size and mtime have stopped moving (editors and git write in several steps); a file
  that fails to parse or validate keeps its last good content, so an invalid or
  half-written file never stops, prunes or recreates anything (DESIGN §9); a change that
  deletes files while others are invalid, or that loses most manifests at once, is
  suspect;
- `watch`: directories (not inodes, so rename-into-place works) watched with watchfiles.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler import manifests, validation
from reconciler.errors import ConfigError
from reconciler.model import Deployment
from reconciler.sources import DesiredSet, Refresh, git, judged, split, with_windows

log = logging.getLogger("reconciler.watch")

# watchfiles wakes every `step` ms to debounce and to check the stop event: 10 ms cost
# ~0.5 % of a core idle on 10,000 files here, 50 ms ~0.2 %; 25 ms keeps a lone save's
# delivery near 30 ms.
WATCH_STEP_MS = 25
SETTLE_SECONDS = 0.02  # a file must keep its size and mtime this long before it is read
SETTLE_TRIES = 25
SUSPECT_SHRINK = 0.5  # losing more than half of the applied manifests at once is suspect


def read(paths: Sequence[str], cache_path: str | None = None) -> DesiredSet:
    """Validated manifests; any problem refuses the whole set (ManifestError).

    `cache_path`: unchanged files are answered from there (validation.ResultCache).  The
    revision is the caller's to add (`git.WorkTreeProbe`, asked while this parses).
    """
    # Many small objects, no reference cycles: the cyclic collector would only rescan them.
    with validation.collector_paused():
        return judged(validation.validate_paths(paths, cache_path=cache_path))


def check_paths(paths: Sequence[str]) -> None:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(f"cannot watch {', '.join(missing)}: no such file or directory")


# ---- the daemon's tracker ---------------------------------------------------------------


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def discover(paths: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Manifest files under `paths` (found as the loader finds them) with (mtime_ns, size)."""
    files, _ = manifests.discover(paths)
    found: dict[str, tuple[int, int]] = {}
    for path in files:
        key = _stat_key(path) if path != manifests.STDIN else None
        if key is not None:
            found[os.path.normpath(path)] = key
    return found


class _Content:
    """One content of a file: its own checks, and its deployments and windows (built
    once)."""

    def __init__(self, result: validation.FileResult) -> None:
        self.result = result
        self._built: tuple[list[Deployment], dict[str, str]] | None = None

    @property
    def built(self) -> tuple[list[Deployment], dict[str, str]]:
        if self._built is None:
            self._built = split(self.result.manifests)
        return self._built


@dataclass
class _File:
    key: tuple[int, int]
    current: _Content  # what the file holds now
    good: _Content | None = None  # the last content accepted
    accepted: bool = False  # `current` is what the desired set holds
    problems: list[str] = field(default_factory=list)  # why `current` is refused


class FileTracker:
    """Per-file last good desired state; re-reads only files whose stat changed."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.files: dict[str, _File] = {}
        self.last_applied: set[str] = set()

    @property
    def description(self) -> str:
        return ", ".join(self.paths)

    def watch(self, stop: threading.Event, on_change: Callable[[], None]) -> None:
        watch(self.paths, stop, on_change)

    def reconciled(self, desired: DesiredSet) -> None:
        """`desired`, read whole and valid, was reconciled: the next read's removals are
        counted from it."""
        self.last_applied = desired.names

    def _settle(self, files: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Wait (bounded) until none of `files` is still being written."""
        keys = {f: _stat_key(f) for f in files}
        for _ in range(SETTLE_TRIES):
            time.sleep(SETTLE_SECONDS)
            again = {f: _stat_key(f) for f in keys}
            if again == keys:
                break
            keys = again
        return {f: k for f, k in keys.items() if k is not None}

    def refresh(self, reread_all: bool = False) -> Refresh:
        current = discover(self.paths)
        changed = sorted(
            f
            for f, key in current.items()
            if reread_all or f not in self.files or self.files[f].key != key
        )
        deleted = sorted(f for f in self.files if f not in current)
        if changed:
            settled = self._settle(changed)
            for result in validation.check_files(sorted(settled)):
                path = os.path.normpath(result.file)
                previous = self.files.get(path)
                good = previous.good if previous else None
                self.files[path] = _File(settled[path], _Content(result), good)
        for path in deleted:
            del self.files[path]
        desired = dataclasses.replace(self._judge(), revision=git.work_tree_revision(self.paths))
        names = desired.names
        lost = len(self.last_applied - names)
        suspect = bool(deleted and desired.invalid) or (
            len(self.last_applied) >= 4 and lost > SUSPECT_SHRINK * len(self.last_applied)
        )
        return Refresh(desired, changed, deleted, suspect)

    def _judge(self) -> DesiredSet:
        """The desired set: each file's current content where validation accepts it,
        else its last good content.  Across files, validation's rule (one manifest per
        name, project and node) is applied with the files accepted before first: a file
        whose new content takes a name another file holds is refused, not the other.
        What still clashes after that (a last good content against a newer file's) is
        left out, and its file listed as invalid."""
        order = sorted(self.files, key=lambda p: (not self.files[p].accepted, p))
        chosen: dict[str, _Content | None] = {}
        for path in order:
            entry = self.files[path]
            entry.problems = [str(problem) for problem in entry.current.result.problems]
            chosen[path] = entry.good if entry.problems else entry.current
        for last_pass in (False, True):
            for path, problems in _clashes(order, chosen).items():
                entry = self.files[path]
                entry.problems += [p for p in problems if p not in entry.problems]
                refused_now = chosen[path] is entry.current and not last_pass
                chosen[path] = entry.good if refused_now else None
        deployments: list[Deployment] = []
        windows: dict[str, str] = {}
        for path in order:
            entry, content = self.files[path], chosen[path]
            entry.accepted = content is not None and content is entry.current
            if entry.accepted:
                entry.good = entry.current
            if content is not None:
                found, defined = content.built
                deployments.extend(found)
                windows.update(defined)
        invalid = {p: tuple(e.problems) for p, e in sorted(self.files.items()) if e.problems}
        return DesiredSet(with_windows(deployments, windows), invalid, windows=windows)


def _clashes(order: Sequence[str], chosen: dict[str, _Content | None]) -> dict[str, list[str]]:
    """Validation's cross-file problems of the chosen contents, by file."""
    results = [content.result for p in order if (content := chosen[p]) is not None]
    clashes: dict[str, list[str]] = {}
    for problem in validation.cross_file_problems(results):
        clashes.setdefault(os.path.normpath(problem.file), []).append(str(problem))
    return clashes


# ---- watching -----------------------------------------------------------------------------


def watch(paths: Sequence[str], stop: threading.Event, on_change: Callable[[], None]) -> None:
    """Call `on_change` after each debounced burst of changes to manifest files under
    `paths`, until `stop` is set.  Returns early (logged) when watching fails: the
    daemon then falls back to its periodic resync."""
    import watchfiles

    roots = sorted({p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths})

    def manifests_only(change: watchfiles.Change, path: str) -> bool:
        return path.endswith(manifests.MANIFEST_SUFFIXES)

    try:
        for _ in watchfiles.watch(
            *roots,
            watch_filter=manifests_only,
            debounce=1600,
            step=WATCH_STEP_MS,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=False,
            raise_interrupt=False,
        ):
            on_change()
    except (OSError, RuntimeError) as error:
        log.error(
            "file watching failed; falling back to --resync only: %s",
            error,
            extra={"event": "watch_failed"},
        )
