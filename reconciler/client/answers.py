"""The API's answers as typed values: parsed here, at the edge, and passed on typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import LiveDeployment


@dataclass(frozen=True)
class Project:
    project_id: int
    name: str
    language: str = ""
    lean_version_id: int | None = None
    live_node: str | None = None  # liveForm.node: the node of the last live deployment
    modified: str | None = None  # when the project's code last changed, as the API says it


@dataclass(frozen=True)
class Compile:
    compile_id: str
    state: str  # InQueue | BuildSuccess | BuildError
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreatedLive:
    project_id: int
    deploy_id: str
    status: str
    version_id: int | None = None


@dataclass(frozen=True)
class LiveAlgorithm:
    project_id: int
    deploy_id: str
    status: str
    brokerage: str = ""
    launched: str | None = None
    stopped: str | None = None
    message: str = ""
    equity: float | None = None  # runtimeStatistics.Equity (None: not reported)


def money(text: Any) -> float | None:
    """The API's money strings (`"$100,000.00"`, `"-$1,234.5"`, `"€ 12.3"`) as a number;
    None when it is not one (missing data is never made up)."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int | float):
        return float(text)
    cleaned = str(text).strip().replace(",", "").replace(" ", "")
    negative = cleaned.startswith("-") or (cleaned.startswith("(") and cleaned.endswith(")"))
    digits = cleaned.strip("-()").lstrip("$€£¥")
    try:
        value = float(digits)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return -value if negative else value


def project_from(item: Mapping[str, Any]) -> Project:
    live_form = item.get("liveForm") or {}
    return Project(
        project_id=int(item.get("projectId") or 0),
        name=str(item.get("name") or ""),
        language=str(item.get("language") or ""),
        lean_version_id=item.get("leanVersionId"),
        live_node=live_form.get("node") if isinstance(live_form, Mapping) else None,
        modified=str(item["modified"]) if item.get("modified") else None,
    )


def live_from_summary(item: Mapping[str, Any]) -> LiveDeployment:
    return LiveDeployment(
        project_id=int(item.get("projectId") or 0),
        deploy_id=str(item.get("deployId") or ""),
        status=str(item.get("status") or ""),
        brokerage=str(item.get("brokerage") or ""),
        environment=str(item.get("environment") or ""),
        launched=item.get("launched"),
        stopped=item.get("stopped"),
        error=str(item.get("error") or ""),
    )
