"""Where the desired state comes from.  A source yields a `DesiredSet`: the deployments
to reconcile, the files refused (each keeps its last good content in a daemon), and the
revision they were read at.

    files   manifests on the local disk: read once (plan, apply), or tracked file by file
            with stable reads and watchfiles (the daemon)

`validation/` judges every file a source reads; a source only decides what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import Deployment


@dataclass(frozen=True)
class DesiredSet:
    deployments: tuple[Deployment, ...]
    # file -> why its current content is refused (a daemon keeps its last good content)
    invalid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The revision the manifests were read at (a git commit); None where not known.
    revision: Any = None

    @property
    def names(self) -> set[str]:
        return {d.name for d in self.deployments}


__all__ = ["DesiredSet"]
