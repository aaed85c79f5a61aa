"""`reconciler promotion status|approve|reject` (DESIGN §17): the candidates the store
keeps for each live manifest with `spec.promotion`, and a person's say on one.

Offline: the store only (no API, no manifests).  The verdicts shown are those of the last
`apply` or daemon reconcile that looked at the paper deployment.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reconciler import render
from reconciler.config import PromotionConfig
from reconciler.errors import ConfigError
from reconciler.model.promotion import Candidate, Verdict, current, short_digest
from reconciler.state import StateStore, open_store

LOCK_TIMEOUT = 60.0  # approve and reject wait this long for a reconcile in progress


def run(config: PromotionConfig) -> int:
    command: Callable[[PromotionConfig, StateStore], int] = COMMANDS[config.promotion_command]
    store = open_store(config.connection.state_location, config.connection.workspace_name)
    try:
        return command(config, store)
    finally:
        store.close()


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


def promotion_json(candidate: Candidate, running: str | None) -> dict[str, Any]:
    """One row of `promotion status --format json` (DESIGN §17)."""
    return {
        "name": candidate.name,
        "from": candidate.source,
        "candidate": candidate.digest,
        "verdict": candidate.verdict.value,
        "since": _iso(candidate.since),
        "samples": len(candidate.samples),
        "maxDrawdown": round(candidate.max_drawdown, 6),
        "reason": candidate.reason,
        "running": running,
        "approval": candidate.rule.approval,
        "approvedAt": _iso(candidate.approved_at),
    }


def _currents(store: StateStore, name: str | None) -> dict[str, Candidate]:
    by_name: dict[str, list[Candidate]] = {}
    for candidate in store.candidates(name):
        by_name.setdefault(candidate.name, []).append(candidate)
    found = {n: current(cs) for n, cs in sorted(by_name.items())}
    return {n: c for n, c in found.items() if c is not None}


def _status(config: PromotionConfig, store: StateStore) -> int:
    currents = _currents(store, config.name)
    if config.name and not currents:
        raise ConfigError(f"no candidate recorded for {config.name!r}")
    records = store.records()
    rows = [
        promotion_json(c, records[n].digest if n in records else None) for n, c in currents.items()
    ]
    if config.format == "json":
        print(render.dumps({"version": 1, "promotions": rows}))
        return 0
    if not rows:
        print("No candidates yet: no apply or reconcile has seen a paper deployment of a "
              "manifest with spec.promotion.")  # fmt: skip
        return 0
    table = [
        (
            r["name"],
            r["from"],
            short_digest(r["candidate"]),
            r["verdict"] + (" (approved)" if r["approvedAt"] else ""),
            r["since"] or "-",
            str(r["samples"]),
            render_percent(r["maxDrawdown"]),
            short_digest(r["running"]),
        )
        for r in rows
    ]
    print(
        render.table(
            ("NAME", "FROM", "CANDIDATE", "VERDICT", "SINCE", "SAMPLES", "DRAWDOWN", "RUNNING"),
            table,
        )
    )
    for r in rows:
        print(f"{r['name']}: {r['reason']}")
    return 0


def render_percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def _decide(config: PromotionConfig, store: StateStore, approve: bool) -> int:
    name = config.name or ""
    with store.lock(timeout=LOCK_TIMEOUT):
        found = _currents(store, name).get(name)
        if found is None:
            raise ConfigError(f"no candidate recorded for {name!r}")
        short = short_digest(found.digest)
        now = time.time()
        if approve:
            if found.rule.approval != "manual":
                raise ConfigError(
                    f"{name} has approval: auto; its candidate {short} needs no approval"
                )
            if found.verdict is not Verdict.PASSED:
                raise ConfigError(
                    f"candidate {short} of {name} is {found.verdict.value}, not passed: "
                    f"{found.reason}"
                )
            if found.approved_at is not None:
                print(f"candidate {short} of {name} is already approved")
                return 0
            decided = dataclasses.replace(found, approved_at=now)
            outcome, words = "approved", "approved: the next apply or reconcile promotes it"
        else:
            if found.verdict is Verdict.REJECTED:
                print(f"candidate {short} of {name} is already rejected")
                return 0
            from reconciler.policy.promotion import reject

            decided = reject(found, now)
            outcome, words = (
                "rejected",
                "rejected: it is never promoted; waiting for new paper code",
            )
        store.put_candidates([decided])
        store.add_history(
            "promotion",
            outcome,
            name=name,
            detail=f"candidate {found.digest} {outcome} by a person",
        )
    print(f"candidate {short} of {name} {words}")
    return 0


COMMANDS: dict[str, Callable[[PromotionConfig, StateStore], int]] = {
    "status": _status,
    "approve": lambda config, store: _decide(config, store, approve=True),
    "reject": lambda config, store: _decide(config, store, approve=False),
}
