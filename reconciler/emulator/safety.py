"""What the world records for tests of the client's safety invariants.

Since the emulator started (in memory only): every deployment `live/create` committed
(`created`), every one that stop or liquidate stopped (`stops`), and refused creates
counted by rule (`rejections`; the last ones with their reason in `rejected`). The creates
committed per project (`committed`) are kept with the data directory as well, so a test
that restarts the emulator can still count them.

Only the API's own changes are recorded: a deployment seeded or ended behind the client's
back (`add_live`, `end`, `kill`) is none of the client's doing. The world's lock guards
these records like the rest of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from reconciler.emulator.spec import Rejected

REJECTION_RULES = ("project busy", "node busy", "other")
REJECTED_KEPT = 100  # refusals kept with their reason, for a test that finds one it did not expect


class Safety:
    def __init__(self) -> None:
        self.committed: Counter[int] = Counter()  # creates committed through the API
        self.created: list[dict[str, Any]] = []  # {"deployId", "projectId", "time"}
        self.stops: list[dict[str, Any]] = []  # {"deployId", "projectId", "status", "time"}
        self.rejections: Counter[str] = Counter()  # refused live/create calls by rule
        self.rejected: list[dict[str, Any]] = []  # the last REJECTED_KEPT of them, with why

    def create(self, deployment: Mapping[str, Any]) -> None:
        """A create made through the API: from here on it has happened."""
        project_id = deployment["projectId"]
        self.committed[project_id] += 1
        self.created.append(
            {
                "deployId": deployment["deployId"],
                "projectId": project_id,
                "time": deployment["launched"],
            }
        )

    def stop(self, deployment: Mapping[str, Any]) -> None:
        """A deployment live/update/stop or liquidate has just stopped."""
        self.stops.append(
            {
                "deployId": deployment["deployId"],
                "projectId": deployment["projectId"],
                "status": deployment["status"],
                "time": deployment["stopped"],
            }
        )

    def refuse(self, error: Rejected, project_id: object) -> None:
        """A refused `live/create`, counted by its rule."""
        rule = error.rule if error.rule in REJECTION_RULES else "other"
        self.rejections[rule] += 1
        self.rejected.append({"rule": rule, "error": str(error), "projectId": project_id})
        del self.rejected[:-REJECTED_KEPT]

    def creates_committed(self, project_id: int | None = None) -> int:
        if project_id is None:
            return sum(self.committed.values())
        return self.committed[project_id]

    def stats(self) -> dict[str, Any]:
        """Copies of the records, `rejections` with every rule present (0 if none)."""
        rejections = {rule: 0 for rule in REJECTION_RULES}
        rejections.update(self.rejections)
        return {
            "creates_committed": {str(k): v for k, v in sorted(self.committed.items())},
            "created": [dict(c) for c in self.created],
            "stops": [dict(s) for s in self.stops],
            "rejections": rejections,
            "rejected": [dict(r) for r in self.rejected],
        }
