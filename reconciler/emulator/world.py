"""The emulated account: its projects, nodes, compiles and live deployments, and the API's rules.

Rules enforced (DESIGN §8): one running live algorithm per project; a node runs one
algorithm at a time; the compile must exist, belong to the project and have built; the
brokerage settings must match a module of the spec (or the seed's legacy shape, checked
in `spec`); stop and liquidate change the status. What a status is at a given moment
(start-up phases, a failing login, a compile still building) is `lifecycle`'s.

`World` holds the records and changes them; `handlers` turn request bodies into calls on
it and `shapes` render its records as the API answers. One lock (`World.lock`) guards
everything; the operations are small, so it is never held for long.

The account has one organisation, whose id is fixed by the user id (so it is the same on
every start; a world kept in a data directory keeps the one it was saved with).

For tests of the client's safety invariants the world records the API's creates, stops
and refused creates (`safety`).

With a data directory, the world is saved after every change (`persistence`). Brokerage
credentials are checked and then forgotten: they are never stored or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from reconciler.emulator.lifecycle import (
    ACTIVE,
    COMPILE_STATES,
    ENDED,
    LIVE_STATUSES,
    State,
    compile_state,
    deployment_state,
    login_failure,
)
from reconciler.emulator.persistence import Saved, Store
from reconciler.emulator.safety import Safety
from reconciler.emulator.spec import Brokerage, Rejected, check_brokerage

LEAN_VERSIONS: tuple[dict[str, Any], ...] = (
    {"id": 17202, "name": "master", "description": "LEAN master", "ref": "refs/heads/master"},
    {"id": 17100, "name": "v2.5.17100", "description": "LEAN 2.5", "ref": "refs/tags/v2.5.17100"},
)
MASTER_VERSION = 17202


def random_hex(n: int = 32) -> str:
    """`n` random hex digits: the ids the API makes up (compiles, deployments, signatures)."""
    return secrets.token_hex(n // 2)


def digest(text: str) -> str:
    """32 hex digits that `text` always gives: ids that must not change between starts."""
    return hashlib.sha256(f"qc-emulator {text}".encode()).hexdigest()[:32]


def organization_id(user_id: str) -> str:
    """The account's one organisation: 32 hex digits, the same on every start for a user id
    (a world kept in a data directory keeps the one it was saved with)."""
    return digest(f"organization {user_id}")


class World:
    """The account's records, changed only through these methods, each under `lock`."""

    def __init__(
        self,
        user_id: str,
        *,
        compile_delay: float = 1.0,
        startup_delay: float = 0.0,
        data_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if startup_delay < 0:
            raise ValueError("startup_delay must not be negative")
        self.user_id = user_id
        self.compile_delay = compile_delay
        self.startup_delay = startup_delay
        self.clock = clock
        self.lock = threading.RLock()
        self.projects: dict[int, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.compiles: dict[str, dict[str, Any]] = {}
        self.deployments: list[dict[str, Any]] = []
        self.safety = Safety()
        self._by_project: dict[int, list[dict[str, Any]]] = {}
        self._on_node: dict[str, dict[str, Any]] = {}  # node id -> its active deployment
        self.organization = organization_id(user_id)
        self._store = Store(data_dir, self._saved)
        saved = self._store.load()
        if saved is not None:
            self._restore(saved)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one save at the end (seeding thousands of items)."""
        with self.lock, self._store.batch():
            yield

    def _saved(self) -> Saved:
        return Saved(
            organization=self.organization,
            projects=self.projects,
            nodes=self.nodes,
            compiles=self.compiles,
            deployments=self.deployments,
            committed=self.safety.committed,
        )

    def _restore(self, saved: Saved) -> None:
        self.organization = saved.organization
        self.projects = saved.projects
        self.nodes = saved.nodes
        self.compiles = saved.compiles
        self.deployments = saved.deployments
        self.safety.committed = saved.committed
        for deployment in self.deployments:
            self._index(deployment)

    # ---- seeding and acting behind the client's back (Python and admin API) ------------

    def add_project(
        self,
        project_id: int,
        name: str | None = None,
        *,
        fail_build: bool = False,
        fail_login: bool | str = False,
        description: str = "",
        language: str = "Py",
    ) -> None:
        if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 1:
            raise ValueError(f"projectId must be a positive integer, not {project_id!r}")
        failure = login_failure(fail_login)
        with self.lock:
            now = self.clock()
            self.projects[project_id] = {
                "projectId": project_id,
                "name": name or f"Project {project_id}",
                "description": description,
                "language": language,
                "failBuild": bool(fail_build),
                "failLogin": failure,
                "created": now,
                "modified": now,
                "activeNodes": [],
                "liveForm": None,
                "lastLiveDeployment": None,
            }
            self._store.save()

    def update_project(
        self,
        project_id: int,
        *,
        fail_login: bool | str | None = None,
        fail_build: bool | None = None,
    ) -> None:
        """Change a project's emulated behaviour; None leaves an option as it is.

        `fail_login` applies to deployments created from now on: the brokerage login is
        tried (and its outcome fixed) when a deployment is created.
        """
        if fail_build is not None and not isinstance(fail_build, bool):
            raise ValueError(f"failBuild must be true or false, not {fail_build!r}")
        failure = None if fail_login is None else login_failure(fail_login)
        with self.lock:
            project = self.known_project(project_id)
            if failure is not None:
                project["failLogin"] = failure
            if fail_build is not None:
                project["failBuild"] = fail_build
            self._store.save()

    def touch_project(self, project_id: int) -> float:
        """Mark the project's code as changed: `modified` moves, as an edit in the IDE does.

        `modified` is rendered to the second, and a client compares rendered values, so
        the new value is at least a second past the old one: two touches within one
        second still show two different values. Returns the new value.
        """
        with self.lock:
            project = self.known_project(project_id)
            project["modified"] = max(self.clock(), project["modified"] + 1)
            self._store.save()
            return float(project["modified"])

    def set_files(self, project_id: int, files: Mapping[str, str]) -> float:
        """Replace the project's files (name -> content), as an edit in the IDE does:
        `modified` moves too.  Returns the new `modified`."""
        if not isinstance(files, Mapping) or not files:
            raise ValueError("files must be a non-empty object of file name -> content")
        if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in files.items()):
            raise ValueError("each file needs a name and text content")
        with self.lock:
            self.known_project(project_id)["files"] = dict(files)
            return self.touch_project(project_id)

    def files_of(self, project_id: int) -> dict[str, str] | None:
        """The project's files as set by `set_files`, None: its one default file."""
        with self.lock:
            files = self.known_project(project_id).get("files")
            return dict(files) if files else None

    def set_equity(self, project_id: int, equity: float) -> str:
        """The equity the project's active deployment reports (live/read, live/list), as a
        market move would make it.  Returns the deployment's id."""
        if isinstance(equity, bool) or not isinstance(equity, int | float) or equity < 0:
            raise ValueError(f"equity must be a number >= 0, not {equity!r}")
        with self.lock:
            deployment = self.active(project_id)
            if deployment is None:
                raise ValueError(f"project {project_id} has no running live algorithm")
            deployment["equity"] = float(equity)
            self._store.save()
            return str(deployment["deployId"])

    def add_node(self, node_id: str, name: str | None = None, *, sku: str = "L-MICRO") -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"a node id must be a non-empty string, not {node_id!r}")
        with self.lock:
            self.nodes[node_id] = {"id": node_id, "name": name or node_id, "sku": sku}
            self._store.save()

    def add_compile(
        self, project_id: int, compile_id: str | None = None, *, state: str = "BuildSuccess"
    ) -> str:
        if state not in COMPILE_STATES:
            raise ValueError(f"compile state must be one of {list(COMPILE_STATES)}")
        with self.lock:
            self.project(project_id)
            compile_id = compile_id or f"{random_hex()}-{random_hex()}"
            self.compiles[compile_id] = {
                "compileId": compile_id,
                "projectId": project_id,
                "created": self.clock(),
                "state": state,
            }
            self._store.save()
            return compile_id

    def add_live(
        self,
        project_id: int,
        node_id: str,
        brokerage: Mapping[str, Any],
        *,
        compile_id: str | None = None,
        status: str = "Running",
    ) -> str:
        """A deployment someone else made (in the web IDE, say): not counted as a create."""
        if status not in LIVE_STATUSES:
            raise ValueError(f"status must be one of {list(LIVE_STATUSES)}")
        try:
            accepted = check_brokerage(dict(brokerage))
        except Rejected as error:
            raise ValueError(str(error)) from None
        with self.lock:
            self.project(project_id)
            if node_id not in self.nodes:
                raise ValueError(f"node {node_id} does not exist")
            if status in ACTIVE:
                self._check_free(project_id, node_id)
            deployment = self._deploy(
                project_id, node_id, compile_id or "", MASTER_VERSION, accepted, status
            )
            self._store.save()
            return str(deployment["deployId"])

    def kill(self, project_id: int, message: str = "Runtime error (injected)") -> str:
        """The project's running algorithm dies with a runtime error."""
        return self.end(project_id, "RuntimeError", message)

    def end(self, project_id: int, status: str, message: str = "") -> str:
        """The project's active deployment ends with `status`, not through the API.

        What a person pressing Stop in the web IDE, a crash or a completed algorithm does:
        the reconciler must notice it from live state. Not counted in `stops`, which are
        the API's stops only. Returns the deployment's id.
        """
        if status not in ENDED:
            raise ValueError(f"status must be one of {list(ENDED)}, not {status!r}")
        if not isinstance(message, str):
            raise ValueError("message must be a string")
        with self.lock:
            deployment = self.active(project_id)
            if deployment is None:
                raise ValueError(f"project {project_id} has no running live algorithm")
            self._set_status(deployment, status, error=message)
            self._store.save()
            return str(deployment["deployId"])

    # ---- changes through the API (`handlers` parse the bodies) ---------------------------

    def create_live(
        self,
        project_id: int,
        compile_id: str,
        node_id: str,
        *,
        version: int,
        brokerage: Brokerage,
        providers: Iterable[str],
        auto_restart: bool,
    ) -> dict[str, Any]:
        """`live/create`: the compile must be the project's and have built, the node must
        exist, and the project and the node must be free. Counted and saved: from here on
        the deployment has happened."""
        with self.lock:
            project = self.project(project_id)
            compile = self.compile_of(project_id, compile_id)
            state = self.compile_state(compile)
            if state != "BuildSuccess":
                raise Rejected(f"Compile {compile_id} has not built successfully ({state}).")
            if node_id not in self.nodes:
                raise Rejected(f"Node {node_id} not found.")
            self._check_free(project_id, node_id)
            deployment = self._deploy(
                project_id,
                node_id,
                compile_id,
                version,
                brokerage,
                "Running",
                providers,
                auto_restart,
                startup=self.startup_delay,
                login_error=project.get("failLogin", ""),
            )
            self.safety.create(deployment)
            self._store.save()
            return deployment

    def set_active_nodes(self, project_id: int, nodes: list[str]) -> dict[str, Any]:
        """`projects/nodes/update`: the nodes the project deploys to, each one known."""
        with self.lock:
            project = self.project(project_id)
            unknown = [n for n in nodes if n not in self.nodes]
            if unknown:
                raise Rejected(f"Unknown node ids: {unknown}")
            project["activeNodes"] = list(nodes)
            self._store.save()
            return project

    def refuse(self, error: Rejected, project_id: object) -> None:
        """A refused `live/create`, counted by its rule for `safety.rejections`."""
        with self.lock:
            self.safety.refuse(error, project_id)

    def stop(self, project_id: int, status: str) -> None:
        """`live/update/stop` (Stopped) or `liquidate` (Liquidated), recorded in `stops`."""
        with self.lock:
            self.project(project_id)
            deployment = self.active(project_id)
            if deployment is None:
                raise Rejected(f"Project {project_id} has no running live algorithm.")
            self._set_status(deployment, status)
            self.safety.stop(deployment)
            self._store.save()

    # ---- queries ----------------------------------------------------------------------

    def has_project(self, project_id: int) -> bool:
        with self.lock:
            return project_id in self.projects

    def has_node(self, node_id: str) -> bool:
        with self.lock:
            return node_id in self.nodes

    def has_compile(self, compile_id: str) -> bool:
        with self.lock:
            return compile_id in self.compiles

    def creates_committed(self, project_id: int | None = None) -> int:
        with self.lock:
            return self.safety.creates_committed(project_id)

    def all_active(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Every active deployment (of one project, if given), oldest first."""
        with self.lock:
            return [
                d
                for d in self.deployments
                if self.status(d) in ACTIVE and project_id in (None, d["projectId"])
            ]

    def safety_stats(self) -> dict[str, Any]:
        """Copies of the safety records (`Safety.stats`)."""
        with self.lock:
            return self.safety.stats()

    # ---- lookups for handlers and shapes (the caller holds `lock`) ---------------------

    def project(self, project_id: Any) -> dict[str, Any]:
        """The project, for the API's calls, which refuse an unknown one."""
        project = self.projects.get(project_id)
        if project is None:
            raise Rejected(f"Project {project_id} not found.")
        return project

    def known_project(self, project_id: int) -> dict[str, Any]:
        """The project, for the Python and admin calls, which raise ValueError."""
        project = self.projects.get(project_id)
        if project is None:
            raise ValueError(f"project {project_id} does not exist")
        return project

    def compile_of(self, project_id: Any, compile_id: str) -> dict[str, Any]:
        """The project's compile `compile_id`; a compile of another project is not found."""
        self.project(project_id)
        compile = self.compiles.get(compile_id)
        if compile is None or compile["projectId"] != project_id:
            raise Rejected(f"Compile {compile_id} not found in project {project_id}.")
        return compile

    def deployments_of(self, project_id: int) -> list[dict[str, Any]]:
        """The project's deployments, oldest first."""
        return self._by_project.get(project_id, [])

    def active(self, project_id: int) -> dict[str, Any] | None:
        """The project's active deployment (there is one at most), if any."""
        for deployment in self._by_project.get(project_id, ()):
            if self.status(deployment) in ACTIVE:
                return deployment
        return None

    def node_user(self, node_id: str) -> dict[str, Any] | None:
        """The deployment running on the node, if any."""
        # The index holds the last deployment started on the node; one whose login has
        # failed since is no longer on it, though nothing rewrote its record.
        user = self._on_node.get(node_id)
        if user is None or self.status(user) not in ACTIVE:
            return None
        return user

    def state(self, deployment: Mapping[str, Any], *, login_known: bool = True) -> State:
        """(status, stopped, message) of a deployment as of now (`lifecycle`)."""
        return deployment_state(deployment, self.clock(), login_known=login_known)

    def status(self, deployment: Mapping[str, Any]) -> str:
        return self.state(deployment)[0]

    def compile_state(self, compile: Mapping[str, Any]) -> str:
        project = self.projects[compile["projectId"]]
        return compile_state(compile, project, self.clock(), self.compile_delay)

    # ---- internals ---------------------------------------------------------------------

    def _index(self, deployment: dict[str, Any]) -> None:
        self._by_project.setdefault(deployment["projectId"], []).append(deployment)
        if deployment["status"] in ACTIVE:
            self._on_node[deployment["nodeId"]] = deployment

    def _set_status(self, deployment: dict[str, Any], status: str, error: str = "") -> None:
        deployment.update(status=status, stopped=self.clock(), error=error)
        if self._on_node.get(deployment["nodeId"]) is deployment:
            del self._on_node[deployment["nodeId"]]

    def _check_free(self, project_id: int, node_id: str) -> None:
        running = self.active(project_id)
        if running is not None:
            raise Rejected(
                f"Project {project_id} already has a live algorithm running "
                f"({running['deployId']}); stop it before deploying again.",
                rule="project busy",
            )
        busy = self.node_user(node_id)
        if busy is not None:
            raise Rejected(
                f"Node {node_id} is busy running project {busy['projectId']}; "
                "a node runs one algorithm at a time.",
                rule="node busy",
            )

    def _deploy(
        self,
        project_id: int,
        node_id: str,
        compile_id: str,
        version: int,
        brokerage: Brokerage,
        status: str,
        providers: Iterable[str] = ("QuantConnectBrokerage",),
        auto_restart: bool = False,
        startup: float = 0.0,
        login_error: str = "",
    ) -> dict[str, Any]:
        """Record a deployment: `startup` seconds of InQueue/LoggingIn, then the login,
        which fails with `login_error` when that is not empty."""
        now = self.clock()
        project = self.projects[project_id]
        deployment = {
            "deployId": f"L-{random_hex()}",
            "projectId": project_id,
            "nodeId": node_id,
            "compileId": compile_id,
            "versionId": version,
            "brokerage": brokerage.id,
            "environment": brokerage.environment,
            "status": status,
            "launched": now,
            "stopped": None if status in ACTIVE else now,
            "error": "",
            "ready": now + startup,
            "loginError": login_error,
        }
        self.deployments.append(deployment)
        self._index(deployment)
        project["lastLiveDeployment"] = now
        project["liveForm"] = {
            "brokerageData": {"authentication": {}},
            "dataProvidersData": [{"id": key} for key in providers],
            "node": node_id,
            "notifyInsights": "false",
            "notifyOrderEvents": "false",
            "autoRestart": "true" if auto_restart else "false",
        }
        return deployment
