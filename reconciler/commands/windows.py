"""`reconciler windows`: each deploy window, open or closed now, when it next opens and
closes, and the deployments that use it (DESIGN §16).  Offline: no API, no state."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from reconciler import render
from reconciler.config import WindowsConfig
from reconciler.policy.windows import Schedule, Window, schedule
from reconciler.runtime import read_desired


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


def _row(found: Schedule, deployments: list[str]) -> dict[str, Any]:
    return {
        "name": found.window.name,
        "calendar": found.window.calendar,
        "open": found.open,
        "nextOpen": _iso(found.next_open),
        "nextClose": _iso(found.next_close),
        "deployments": deployments,
        "error": found.error,
    }


def run(config: WindowsConfig) -> int:
    desired = read_desired(config.connection, config.source, config.paths)
    now = time.time()
    rows = []
    for name, text in sorted(desired.windows.items()):
        users = sorted(d.name for d in desired.deployments if d.window == name)
        rows.append(_row(schedule(Window.from_json(text), now), users))
    if config.format == "json":
        print(render.dumps({"version": 1, "windows": rows}))
        return 0
    if not rows:
        print("No deploy windows in these manifests (kind: DeployWindow).")
        return 0
    table = [
        (
            r["name"],
            r["calendar"],
            "open" if r["open"] else "closed",
            r["nextOpen"] or "-",
            r["nextClose"] or "-",
            ", ".join(r["deployments"]) or "-",
        )
        for r in rows
    ]
    print(
        render.table(("WINDOW", "CALENDAR", "NOW", "NEXT OPEN", "NEXT CLOSE", "DEPLOYMENTS"), table)
    )
    for r in rows:
        if r["error"]:
            print(f"{r['name']}: {r['error']}")
    return 0
