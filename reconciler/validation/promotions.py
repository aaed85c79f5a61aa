"""What the schema cannot say of a LiveDeployment's `spec.promotion` (DESIGN §17): the
live manifest follows `compileId: latest` (it compiles the code that passed, at
promotion), `maxDrawdown` is a drawdown, the calendar exists; and, across the files, that
`from` names a paper manifest of the set that follows `compileId: latest` too.  Loaded only
for a document with a promotion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler import brokerages, manifests
from reconciler.model.promotion import fraction
from reconciler.policy import calendars
from reconciler.validation.report import Manifest, Problem


def promotion_problems(file: str, document: manifests.Document) -> list[Problem]:
    """A schema-valid LiveDeployment's problems with its promotion, at line and column."""
    spec: dict[str, Any] = document.data["spec"]
    promotion: dict[str, Any] = spec["promotion"]
    problems: list[Problem] = []

    def problem(path: list[str | int], message: str) -> None:
        at = manifests.value_at(document.root, ["spec", *path])
        problems.append(
            Problem(file, at.line, at.column, manifests.dotted(["spec", *path]), message)
        )

    if spec.get("compileId") != "latest":
        problem(
            ["compileId"],
            "a deployment with spec.promotion needs compileId: latest (the code that passed "
            "on paper is compiled at promotion)",
        )
    if "maxDrawdown" in promotion:
        try:
            fraction(promotion["maxDrawdown"])
        except ValueError as error:
            problem(["promotion", "maxDrawdown"], str(error))
    if "sessions" in promotion and "calendar" not in promotion:
        problem(["promotion", "sessions"], "sessions counts closes of a calendar: add calendar")
    if "calendar" in promotion:
        name = str(promotion["calendar"])
        why = calendars.unknown_calendar(name) or calendars.missing_extra(name)
        if why is not None:
            problem(["promotion", "calendar"], why)
    return problems


def source_problems(found: Sequence[Manifest]) -> list[Problem]:
    """Each promotion's `from` names a paper LiveDeployment of these manifests that
    follows `compileId: latest` and promotes nothing itself."""
    deployments = [m for m in found if m.data.get("kind") != "DeployWindow"]
    by_name = {str(m.data["metadata"]["name"]): m for m in deployments}
    problems = []
    for manifest in deployments:
        spec = manifest.data.get("spec") or {}
        promotion = spec.get("promotion")
        if not isinstance(promotion, dict):
            continue
        name, source = manifest.data["metadata"]["name"], str(promotion.get("from"))
        paper = by_name.get(source)
        why = None
        if source == name:
            why = "a deployment cannot be promoted from itself"
        elif paper is None:
            why = f"no LiveDeployment named {source!r} in these manifests"
        else:
            theirs = paper.data["spec"]
            wire = brokerages.to_wire(theirs.get("brokerage") or {})
            if brokerages.identity(wire)[1] != "paper":
                why = f"{source!r} is not a paper deployment (its brokerage environment is live)"
            elif theirs.get("compileId") != "latest":
                why = (
                    f"{source!r} needs compileId: latest (a candidate is the paper project's code)"
                )
            elif "promotion" in theirs:
                why = f"{source!r} has a promotion of its own: promote from a paper deployment"
        if why is not None:
            problems.append(Problem(manifest.file, manifest.line, 1, "spec.promotion.from", why))
    return problems
