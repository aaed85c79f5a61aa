"""The API's JSON views of the world's records: what its answers carry, property by property.

Pure functions over the world's data (the caller holds the world's lock): a project
(`Project`), a node (`Node`), a live deployment as `live/list` lists it
(`LiveAlgorithmSummary`) and as `live/read` and `live/create` show it (`LiveAlgorithm`),
the account's user as the one collaborator, LEAN versions, and the emulated algorithm file.
Answers carry every property the spec defines for them, null where there is no value yet
(`stopped` while running, a project's live fields before its first deployment).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.emulator.lifecycle import State
from reconciler.emulator.world import LEAN_VERSIONS, MASTER_VERSION, World, digest


def _grid(width: int) -> list[dict[str, Any]]:
    charts = (("Strategy Equity", 8), ("Benchmark", 6))
    return [
        {"chartName": name, "width": width, "height": height, "row": row, "column": 0, "sort": row}
        for row, (name, height) in enumerate(charts)
    ]


# The charts of a project's backtest and live views (`Project.grid`, `liveGrid`), by screen size.
GRID = {
    size: _grid(width) for size, width in (("xs", 12), ("sm", 12), ("md", 8), ("lg", 6), ("xl", 6))
}
MAIN_PY = """from AlgorithmImports import *


class EmulatedAlgorithm(QCAlgorithm):
    def initialize(self):
        self.set_start_date(2024, 1, 1)
        self.add_equity("SPY", Resolution.MINUTE)
"""
MAIN_CS = """namespace QuantConnect.Algorithm.CSharp
{
    public class EmulatedAlgorithm : QCAlgorithm
    {
        public override void Initialize()
        {
            SetStartDate(2024, 1, 1);
            AddEquity("SPY", Resolution.Minute);
        }
    }
}
"""


def iso(timestamp: float | None) -> str | None:
    """A time as the API writes it: UTC, to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> list[dict[str, Any]]:
    """The LEAN versions (`lean/versions/read`, and `versions` of projects/read)."""
    created = iso(1_700_000_000)
    return [
        {**v, "created": created, "leanHash": _hash(v), "leanCloudHash": "", "public": True}
        for v in LEAN_VERSIONS
    ]


STARTING_EQUITY = 100_000.0  # a deployment's equity until an admin action moves it


def project_file(project: Mapping[str, Any], project_id: int, modified: float) -> dict[str, Any]:
    """The project's algorithm file, as files/read and live/read show it."""
    csharp = project.get("language") == "C#"
    return {
        "id": project_id * 10 + 1,
        "projectId": project_id,
        "name": "Main.cs" if csharp else "main.py",
        "content": MAIN_CS if csharp else MAIN_PY,
        "modified": iso(project.get("modified", modified)),
        "open": True,
        "isLibrary": False,
    }


def project_files(project: Mapping[str, Any], project_id: int) -> list[dict[str, Any]]:
    """Every file of the project (files/read): those set by an admin action, else its one
    algorithm file."""
    files = project.get("files")
    if not files:
        return [project_file(project, project_id, project["modified"])]
    return [
        {
            **project_file(project, project_id, project["modified"]),
            "id": project_id * 10 + 1 + index,
            "name": name,
            "content": content,
            "open": index == 0,
        }
        for index, (name, content) in enumerate(sorted(files.items()))
    ]


def money(value: float) -> str:
    """`$100,000.00`, `-$1,234.50`: how runtimeStatistics spells an amount."""
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def live_summary(world: World, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment as `live/list` lists it (`LiveAlgorithmSummary`)."""
    project = world.projects.get(deployment["projectId"], {})
    state = world.state(deployment)
    return {
        "projectId": deployment["projectId"],
        **_shared_fields(deployment, state),
        "subscription": "Strategy Equity",
        "equity": float(deployment.get("equity", STARTING_EQUITY)),
        "environment": deployment["environment"],
        "description": project.get("description", ""),
        "error": state[2],
        "leagues": [],
    }


def live_algorithm(
    world: World, deployment: Mapping[str, Any], *, login_known: bool = True
) -> dict[str, Any]:
    """A deployment as `live/read` shows it (`LiveAlgorithm`); `login_known=False` as the
    create call answers, before the brokerage login has been tried."""
    state = world.state(deployment, login_known=login_known)
    return {
        "message": state[2],
        **_shared_fields(deployment, state),
        "cloneId": _clone_id(deployment["deployId"]),
        "securityTypes": "Equity",
        "datacenter": "NY7",
        "isPublicStreaming": False,
        "public": False,
        "files": [_main_file(world, deployment)],
        "runtimeStatistics": {
            "Equity": money(float(deployment.get("equity", STARTING_EQUITY))),
            "Fees": "-$0.00",
            "Holdings": "$0.00",
            "Net Profit": "$0.00",
            "Probabilistic Sharpe Ratio": "0%",
            "Return": "0.00 %",
            "Unrealized": "$0.00",
            "Volume": "$0.00",
        },
        "charts": {"name": "Strategy Equity"},
    }


def project_view(world: World, project: Mapping[str, Any]) -> dict[str, Any]:
    """Every property of the spec's `Project`; the live ones are null until a deployment
    (`lastLiveDeployment`, `liveForm`), `encryptionKey` null as no project is encrypted."""
    project_id = project["projectId"]
    return {
        "projectId": project_id,
        "organizationId": world.organization,
        "name": project["name"],
        "modified": iso(project["modified"]),
        "created": iso(project["created"]),
        "ownerId": _owner_id(world.user_id),
        "language": project["language"],
        "collaborators": [_collaborator(world.user_id)],
        "leanVersionId": MASTER_VERSION,
        "leanPinnedToMaster": True,
        "owner": True,
        "description": project["description"],
        "channelId": digest(f"channel {world.organization}/{project_id}"),
        "parameters": [],
        "libraries": [],
        "grid": GRID,
        "liveGrid": GRID,
        "paperEquity": 100000.0,
        "lastLiveDeployment": iso(project["lastLiveDeployment"]),
        "liveForm": project["liveForm"],
        "encrypted": False,
        "codeRunning": world.active(project_id) is not None,
        "leanEnvironment": 1,
        "encryptionKey": None,
    }


def node_view(
    world: World, node: Mapping[str, Any], project: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every property of the spec's `Node`. Who uses a free node is "" (projectId null);
    `active` is for a project, so false in the organisation's list (`project` None)."""
    user = world.node_user(node["id"])
    used_by = world.projects[user["projectId"]] if user is not None else None
    return {
        "id": node["id"],
        "name": node["name"],
        "sku": node["sku"],
        "description": "Live trading node",
        "cpu": 1,
        "ram": 0.5,
        "speed": 2.4,
        "hasGpu": 0,
        "assets": 10,
        "host": "",
        "price": {"monthly": 20, "yearly": 200},
        "busy": user is not None,
        "usedBy": world.user_id if used_by is not None else "",
        "userProfile": (
            f"https://www.quantconnect.com/u/{world.user_id}" if used_by is not None else ""
        ),
        "projectName": used_by["name"] if used_by is not None else "",
        "projectId": used_by["projectId"] if used_by is not None else None,
        "active": project is not None and node["id"] in project["activeNodes"],
    }


def project_nodes(world: World, project: Mapping[str, Any]) -> dict[str, Any]:
    """The answer of `projects/nodes/read` and `update`: every node, as the project sees it."""
    live = [node_view(world, n, project) for n in world.nodes.values()]
    return {
        "nodes": {"backtest": [], "research": [], "live": live},
        "autoSelectNode": not project["activeNodes"],
    }


def _shared_fields(deployment: Mapping[str, Any], state: State) -> dict[str, Any]:
    """What LiveAlgorithmSummary and LiveAlgorithm(Results) have in common."""
    return {
        "deployId": deployment["deployId"],
        "status": state[0],
        "launched": iso(deployment["launched"]),
        "stopped": iso(state[1]),
        "brokerage": deployment["brokerage"],
    }


def _main_file(world: World, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The algorithm file of the deployment's snapshot (`files` of live/read)."""
    project = world.projects.get(deployment["projectId"], {})
    return {
        **project_file(project, deployment["projectId"], deployment["launched"]),
        "id": _clone_id(deployment["deployId"]) * 10 + 1,
    }


def _clone_id(deploy_id: str) -> int:
    """The snapshot project a deployment runs (`cloneId`): a project-like id from its id."""
    return 10_000_000 + int(deploy_id.removeprefix("L-")[:6], 16)


def _owner_id(user_id: str) -> int:
    return int(user_id) if user_id.isdigit() else 0


def _collaborator(user_id: str) -> dict[str, Any]:
    """The account's user: owner and only collaborator of every project."""
    return {
        "uid": _owner_id(user_id),
        "liveControl": True,
        "permission": "write",
        "publicId": f"emulated-user-{user_id}",
        "profileImage": "https://cdn.quantconnect.com/web/i/users/profile/default.png",
        "email": f"user-{user_id}@example.com",
        "name": f"Emulated User {user_id}",
        "bio": "",
        "owner": True,
    }


def _hash(version: Mapping[str, Any]) -> str:
    return f"{int(version['id']):040x}"
