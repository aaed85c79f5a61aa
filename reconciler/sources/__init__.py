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

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from reconciler.model import Deployment, Revision

if TYPE_CHECKING:
    from reconciler.validation import Report


@dataclass(frozen=True)
class DesiredSet:
    deployments: tuple[Deployment, ...]
    # file -> why its current content is refused (a daemon keeps its last good content)
    invalid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The revision the manifests were read at (a git commit); None where not known.
    revision: Revision | None = None

    @property
    def names(self) -> set[str]:
        return {d.name for d in self.deployments}


@dataclass(frozen=True)
class Refresh:
    desired: DesiredSet
    changed: list[str]
    deleted: list[str]
    suspect: bool


class Source(Protocol):
    """What the daemon reads its desired state from (the files, or a git repository)."""

    @property
    def description(self) -> str: ...
    def refresh(self, reread_all: bool = False) -> Refresh: ...
    def watch(self, stop: threading.Event, on_change: Callable[[], None]) -> None: ...
    def reconciled(self, desired: DesiredSet) -> None: ...


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
    deployments = tuple(Deployment.from_manifest(m.data, m.file, m.line) for m in report.manifests)
    return DesiredSet(deployments, revision=revision)


__all__ = ["DesiredSet", "Refresh", "Revision", "Source", "judged"]
