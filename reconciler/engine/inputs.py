"""Fingerprints of a plan's inputs: the three views, so a saved plan is refused once any
of them changed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import Deployment, LiveDeployment, Record, canonical_json


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]


def fingerprints(
    desired: Iterable[Deployment],
    recorded: Mapping[str, Record],
    live: Iterable[LiveDeployment],
    projects: Mapping[int, str] | None = None,
) -> dict[str, str]:
    """Fingerprints of the three inputs of a plan.

    The recorded part is a real value even for an empty store, so a plan made before any
    state existed is stale once another apply has recorded something (a Terraform hole).
    Live state includes the projects' `modified` when `compileId: latest` needed them.
    """
    return {
        "desired": _digest(
            sorted((d.name, d.project_id, d.spec_hash, d.on_delete, d.protected) for d in desired)
        ),
        "recorded": _digest(
            sorted(
                (r.name, r.project_id, r.spec_hash, r.deploy_id or "", r.owned, r.protected)
                for r in recorded.values()
            )
        ),
        "live": _digest(
            [
                sorted(
                    (x.project_id, x.deploy_id, x.status, x.brokerage, x.environment)
                    for x in live
                    if x.active
                ),
                sorted((projects or {}).items()),
            ]
        ),
    }
