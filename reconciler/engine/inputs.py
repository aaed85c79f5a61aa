"""The inputs of a plan: validated manifests, and fingerprints of all three views."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.errors import ManifestError
from reconciler.model import Deployment, LiveDeployment, Record, canonical_json


def load_desired(paths: Sequence[str], cache_path: str | None = None) -> list[Deployment]:
    """Validated manifests as Deployments; any problem refuses the whole set.

    `cache_path`: unchanged files are answered from there (validation.ResultCache).
    """
    from reconciler import validation

    # Many small objects, no reference cycles: the cyclic collector would only rescan them.
    with validation.collector_paused():
        report = validation.validate_paths(paths, cache_path=cache_path)
        if not report.valid:
            text = validation.format_problems(report, "text")
            raise ManifestError(
                f"manifests are invalid; nothing was done:\n{text}",
                problems=list(report.problems),
            )
        return [Deployment.from_manifest(m.data, m.file, m.line) for m in report.manifests]


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
