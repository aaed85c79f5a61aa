"""The API's endpoints: each takes the world and the request body as the API receives it.

Each returns the response body the API sends (without `success`/`errors`, which the server
adds), or raises `Rejected`, which the server turns into `success: false` with the reason.
A handler checks the body's fields first, in the order the API names them, then acts on
the world (`World`) under its lock and renders the answer (`shapes`) before letting go,
so an answer is one moment of the world.

The organisation: every project is the one organisation's, `projects/read` may be
filtered by it, and `nodes/read` (not in the spec; lean-cli reads the organisation's nodes
with it) takes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.emulator.shapes import (
    live_algorithm,
    live_summary,
    node_view,
    project_files,
    project_nodes,
    project_view,
    versions,
)
from reconciler.emulator.spec import Rejected, check_brokerage, check_data_providers
from reconciler.emulator.world import LEAN_VERSIONS, MASTER_VERSION, World, random_hex

# An endpoint's handler: (world, request body) -> the answer's fields beyond the envelope.
Route = Callable[[World, Mapping[str, Any]], dict[str, Any]]
LIST_FILTERS = ("Running", "Stopped", "RuntimeError", "Liquidated")
COMPILE_LOGS = {
    "InQueue": ["Build request queued."],
    "BuildSuccess": ["Build Success."],
    "BuildError": ["Build Error: main.py(1,1): SyntaxError (emulated)."],
}


def authenticate(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    """The server answers 401 before any route on bad credentials: reaching here is
    success, and the answer is the bare envelope."""
    return {}


def projects_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId", required=False)
    start = _int(body, "start", required=False) or 0
    end = _int(body, "end", required=False)
    with world.lock:
        if body.get("organizationId") is not None:
            _organization(world, body)  # every project is the one organisation's
        if project_id is not None:
            chosen = [world.project(project_id)]
        else:
            chosen = [world.projects[k] for k in sorted(world.projects)][start:end]
        return {
            "projects": [project_view(world, p) for p in chosen],
            "versions": versions(),
        }


def nodes_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    with world.lock:
        return project_nodes(world, world.project(project_id))


def organization_nodes_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    """`nodes/read` (not in the spec; lean-cli's `nodes/read`): the organisation's nodes,
    `backtest`, `research` and `live` at the top level, each a list of `Node`."""
    with world.lock:
        _organization(world, body)
        live = [node_view(world, n, None) for n in world.nodes.values()]
        return {"backtest": [], "research": [], "live": live}


def nodes_update(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    nodes = body.get("nodes") or []
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise Rejected("nodes must be an array of node ids")
    with world.lock:
        project = world.set_active_nodes(project_id, nodes)  # type: ignore[arg-type]
        return project_nodes(world, project)


def compile_create(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    with world.lock:
        world.project(project_id)
        compile_id = world.add_compile(project_id, state="InQueue")  # type: ignore[arg-type]
        state = world.compile_state(world.compiles[compile_id])
    return {
        "compileId": compile_id,
        "state": state,
        "parameters": [],
        "projectId": project_id,
        "signature": random_hex(),
        "signatureOrder": ["main.py"],
    }


def compile_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    compile_id = _str(body, "compileId")
    with world.lock:
        state = world.compile_state(world.compile_of(project_id, compile_id))
    return {"compileId": compile_id, "state": state, "logs": COMPILE_LOGS[state]}


def live_create(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    """`_live_create`, counting every refusal by its rule for `rejections`."""
    try:
        return _live_create(world, body)
    except Rejected as error:
        world.refuse(error, body.get("projectId"))
        raise


def _live_create(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    assert project_id is not None
    compile_id = _str(body, "compileId")
    node_id = _str(body, "nodeId")
    version_text = _str(body, "versionId")
    if "brokerage" not in body:
        raise Rejected("brokerage is required")
    brokerage = check_brokerage(body["brokerage"])
    providers = ["QuantConnectBrokerage"]
    if body.get("dataProviders") is not None:
        providers = check_data_providers(body["dataProviders"], brokerage)
    version = _version(version_text)
    with world.lock:
        deployment = world.create_live(
            project_id,
            compile_id,
            node_id,
            version=version,
            brokerage=brokerage,
            providers=providers,
            auto_restart=bool(body.get("automaticRedeploy", False)),
        )
        return {
            "responseCode": "200 OK",
            "source": "api-v2",
            "deployId": deployment["deployId"],
            "versionId": version,
            "projectId": project_id,
            # The API answers before the brokerage login is tried: a failure shows
            # only on live/read and live/list.
            "live": live_algorithm(world, deployment, login_known=False),
        }


def live_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId")
    with world.lock:
        project = world.project(project_id)
        deployments = world.deployments_of(project_id)  # type: ignore[arg-type]
        if not deployments:
            raise Rejected(f"No live algorithm found for project {project_id}.")
        latest = max(deployments, key=lambda d: d["launched"])
        return {**live_algorithm(world, latest), "projectName": project["name"]}


def live_list(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    project_id = _int(body, "projectId", required=False)
    status = body.get("status")
    if status is not None and status not in LIST_FILTERS:
        raise Rejected(f"status must be one of {list(LIST_FILTERS)}")
    with world.lock:
        chosen = world.deployments if project_id is None else world.deployments_of(project_id)
        return {
            "live": [
                live_summary(world, d)
                for d in chosen
                if status is None or world.status(d) == status
            ]
        }


def live_stop(world: World, body: Mapping[str, Any], status: str = "Stopped") -> dict[str, Any]:
    project_id = _int(body, "projectId")
    world.stop(project_id, status)  # type: ignore[arg-type]
    return {}


def live_liquidate(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    return live_stop(world, body, status="Liquidated")


def lean_versions_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"versions": versions()}


def files_read(world: World, body: Mapping[str, Any]) -> dict[str, Any]:
    """A project's files (its one algorithm file), or the one `name` asks for."""
    project_id = _int(body, "projectId")
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise Rejected("name must be a string")
    with world.lock:
        project = world.project(project_id)
        files = project_files(project, project["projectId"])
    if name:
        files = [f for f in files if f["name"] == name]
        if not files:
            raise Rejected(f"File {name} not found in project {project_id}.")
    return {"files": files}


# The endpoints emulated, by path below /api/v2/.
ROUTES: Mapping[str, Route] = {
    "authenticate": authenticate,
    "projects/read": projects_read,
    "projects/nodes/read": nodes_read,
    "projects/nodes/update": nodes_update,
    "compile/create": compile_create,
    "compile/read": compile_read,
    "live/create": live_create,
    "live/read": live_read,
    "live/list": live_list,
    "live/update/stop": live_stop,
    "live/update/liquidate": live_liquidate,
    "lean/versions/read": lean_versions_read,
    "nodes/read": organization_nodes_read,
    "files/read": files_read,
}


# ---- the body's fields ---------------------------------------------------------------


def _int(body: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise Rejected(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"{name} must be an integer")
    return value


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise Rejected(f"{name} is required")
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string")
    return value


def _version(text: str) -> int:
    if text == "-1":
        return MASTER_VERSION
    known = {str(v["id"]): int(v["id"]) for v in LEAN_VERSIONS}
    if text not in known:
        raise Rejected(f"versionId {text!r} is not a LEAN version (see /lean/versions/read)")
    return known[text]


def _organization(world: World, body: Mapping[str, Any]) -> str:
    organization = _str(body, "organizationId")
    if organization != world.organization:
        raise Rejected(
            f"Organization {organization} not found; this account's organization is "
            f"{world.organization}."
        )
    return organization
