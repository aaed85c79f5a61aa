"""What the schema cannot say of a DeployWindow document (DESIGN §16): a calendar that
exists (close matches named), an IANA time zone, ranges that are ranges (both ends of one
form, a dated range that ends after it starts).  Loaded only for a document of that kind."""

from __future__ import annotations

from typing import Any

from reconciler import manifests
from reconciler.policy import calendars
from reconciler.policy.windows import Range, duration, zone_of
from reconciler.validation.report import Problem


def window_problems(file: str, document: manifests.Document) -> list[Problem]:
    """A schema-valid DeployWindow's other problems, each at its line and column."""
    spec: dict[str, Any] = document.data["spec"]
    problems: list[Problem] = []

    def problem(path: list[str | int], message: str) -> None:
        at = manifests.value_at(document.root, ["spec", *path])
        problems.append(
            Problem(file, at.line, at.column, manifests.dotted(["spec", *path]), message)
        )

    unknown = calendars.unknown_calendar(str(spec["calendar"]))
    if unknown is not None:
        problem(["calendar"], unknown)
    else:
        missing = calendars.missing_extra(str(spec["calendar"]))
        if missing is not None:
            problem(["calendar"], missing)
    if "timeZone" in spec:
        try:
            zone_of(str(spec["timeZone"]))
        except ValueError as error:
            problem(["timeZone"], str(error))
    for key in ("afterClose", "beforeOpen", "minRemaining"):
        if key in spec:
            try:
                duration(str(spec[key]))
            except ValueError as error:
                problem([key], str(error))
    for key in ("allow", "deny"):
        for index, item in enumerate(spec.get(key) or ()):
            try:
                Range.parse(item)
            except ValueError as error:
                problem([key, index], str(error))
    return problems
