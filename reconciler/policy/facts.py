"""What the gates judge by, besides the plan and the clock: flags and what a daemon
remembers between reconciles.  Plain data, so every gate is a pure function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.model.promotion import Evidence


@dataclass(frozen=True)
class Facts:
    # `--restart NAME`: started again now, whatever the backoff.
    force_restart: frozenset[str] = frozenset()
    # Why prunes are not carried out by this run (apply or watch without --prune), as
    # the held prune says it; None: they are.
    prune_pending: str | None = None
    # Why no prune may come out of this read of the manifests (the daemon: some files
    # are invalid, or the change looks like a wrong path); None: nothing against it.
    prune_suppressed: str | None = None
    # The daemon: a removal is pruned only once it has lasted this long ...
    prune_grace: float = 0.0
    # ... counted from when it was first planned (name -> Unix time).
    gone_since: Mapping[str, float] = field(default_factory=dict)
    # The daemon: a deployment whose create, replace or restart just failed is not tried
    # again before this time (name -> Unix time).
    retry_after: Mapping[str, float] = field(default_factory=dict)
    # Projects whose earlier create (an intent left open by a crash) may still land, and
    # the time it no longer can (projectId -> Unix time): every action on them waits.
    landing: Mapping[int, float] = field(default_factory=dict)
    # `apply --ignore-window NAME`: deployments whose window is ignored (if it allows it).
    ignore_windows: frozenset[str] = frozenset()
    # Paper first: each promoted manifest's candidates and code, read by the cycle.
    promotions: Mapping[str, Evidence] = field(default_factory=dict)
