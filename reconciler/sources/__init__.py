"""Where the desired state comes from.  A source yields a `DesiredSet`: the deployments
to reconcile, the files refused (each keeps its last good content in a daemon), and the
revision they were read at.

    files   manifests on the local disk: read once (plan, apply), or tracked file by file
            with stable reads and watchfiles (the daemon); inside a git work tree, the
            revision is HEAD's commit, dirty when a manifest differs from it
    git     manifests read from a repository at one commit, from a bare mirror's object
            store (never a work tree); the only module that runs the `git` command

`validation/` judges every file a source reads; a source only decides what it holds.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.model import Deployment, Revision

if TYPE_CHECKING:
    from typing import Protocol

    from reconciler.validation import Manifest, Report

    class Source(Protocol):
        """What the daemon reads its desired state from (the files, or a git repository)."""

        @property
        def description(self) -> str: ...
        def refresh(self, reread_all: bool = False) -> Refresh: ...
        def watch(self, stop: threading.Event, on_change: Callable[[], None]) -> None: ...
        def reconciled(self, desired: DesiredSet) -> None: ...


WINDOW_KIND = "DeployWindow"


@dataclass(frozen=True)
class DesiredSet:
    deployments: tuple[Deployment, ...]
    # file -> why its current content is refused (a daemon keeps its last good content)
    invalid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The revision the manifests were read at (a git commit); None where not known.
    revision: Revision | None = None
    # The DeployWindow documents: name -> definition (JSON, as recorded with deployments).
    windows: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return {d.name for d in self.deployments}


@dataclass(frozen=True)
class Refresh:
    desired: DesiredSet
    changed: list[str]
    deleted: list[str]
    suspect: bool


def judged(report: Report, revision: Revision | None = None) -> DesiredSet:
    """The desired set of a validated read; any problem refuses the whole set
    (ManifestError): nothing is done from a set that is partly wrong."""
    from reconciler import validation
    from reconciler.errors import ManifestError

    if not report.valid:
        text = validation.format_problems(report, "text")
        raise ManifestError(
            f"manifests are invalid; nothing was done:\n{text}", problems=list(report.problems)
        )
    return desired_set(report.manifests, revision)


def desired_set(
    found: Iterable[Manifest],
    revision: Revision | None = None,
    invalid: Mapping[str, tuple[str, ...]] | None = None,
) -> DesiredSet:
    """The desired set of validated documents: the deployments, each with its window's
    definition, and the windows."""
    deployments, windows = split(found)
    return DesiredSet(with_windows(deployments, windows), invalid or {}, revision, windows)


def split(found: Iterable[Manifest]) -> tuple[list[Deployment], dict[str, str]]:
    """Validated documents as Deployments, and DeployWindows as name -> definition."""
    deployments: list[Deployment] = []
    windows: dict[str, str] = {}
    for m in found:
        if m.data.get("kind") == WINDOW_KIND:
            from reconciler.policy.windows import Window  # only where a window is

            windows[str(m.data["metadata"]["name"])] = Window.from_document(m.data).to_json()
        else:
            deployments.append(Deployment.from_manifest(m.data, m.file, m.line))
    return deployments, windows


def with_windows(
    deployments: Sequence[Deployment], windows: Mapping[str, str]
) -> tuple[Deployment, ...]:
    """Each deployment that names a window, with that window's definition."""
    if not any(d.window for d in deployments):
        return tuple(deployments)
    return tuple(
        dataclasses.replace(d, window_json=windows.get(d.window)) if d.window else d
        for d in deployments
    )


__all__ = ["DesiredSet", "Refresh", "Revision", "judged"]
