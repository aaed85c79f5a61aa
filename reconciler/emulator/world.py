"""The emulated account: projects, nodes, compiles, live deployments, and the API's rules.

Every operation takes the request body as the API receives it and returns the response
body the API sends (without `success`/`errors`, which the server adds), or raises
`Rejected`, which the server turns into `success: false` with the reason. One lock guards
everything; the operations are small, so it is never held for long.

Rules enforced (DESIGN §8): one running live algorithm per project; a node runs one
algorithm at a time; the compile must exist, belong to the project and have built;
compiles advance InQueue -> BuildSuccess after `compile_delay` seconds (BuildError for a
project marked `failBuild`); the brokerage settings must match a module of the spec (or
the seed's legacy shape); stop and liquidate change the status.

A new deployment starts up as on the real API: with `startup_delay` d > 0 it is InQueue
for d/2 seconds, LoggingIn until d, then Running (d = 0: Running at once). A project
marked `failLogin` sees its new deployments end in RuntimeError ("Brokerage login
failed: ...") once start-up is over; `live/create` itself still succeeds, as the real
API answers before the brokerage login is tried. Both are computed from the clock when
read, like compile states, so no thread moves anything and a restart keeps them.

The account has one organisation, whose id is fixed by the user id (so it is the same on
every start): every project carries it, `projects/read` may be filtered by it, and
`nodes/read` (not in the spec; lean-cli reads the organisation's nodes with it) takes it.
Answers carry every property the spec defines for them, null where there is no value
yet (`stopped` while running, a project's live fields before its first deployment).

For tests of the client's safety invariants the world keeps, since it started (in memory
only), every deployment `live/create` committed (`created`), every one that stop or
liquidate stopped (`stops`), and refused creates counted by rule (`rejections`; the last
ones with their reason in `rejected`).

With a data directory, the world is saved after every change (write to a temporary
file, fsync, rename), so it survives a restart and is never half-written. Brokerage
credentials are checked and then forgotten: they are never stored or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.emulator.spec import Brokerage, Rejected, check_brokerage, check_data_providers

ACTIVE = frozenset({"InQueue", "LoggingIn", "Initializing", "History", "Running"})
LIST_FILTERS = ("Running", "Stopped", "RuntimeError", "Liquidated")
COMPILE_STATES = ("InQueue", "BuildSuccess", "BuildError")
LIVE_STATUSES = (
    "DeployError", "InQueue", "Running", "Stopped", "Liquidated", "Deleted", "Completed",
    "RuntimeError", "Invalid", "LoggingIn", "Initializing", "History",
)  # fmt: skip
ENDED = tuple(s for s in LIVE_STATUSES if s not in ACTIVE)
REJECTION_RULES = ("project busy", "node busy", "other")
REJECTED_KEPT = 100  # refusals kept with their reason, for a test that finds one it did not expect
LOGIN_FAILED = "Brokerage login failed"
DEFAULT_LOGIN_FAILURE = f"{LOGIN_FAILED}: invalid credentials (emulated)."

LEAN_VERSIONS: tuple[dict[str, Any], ...] = (
    {"id": 17202, "name": "master", "description": "LEAN master", "ref": "refs/heads/master"},
    {"id": 17100, "name": "v2.5.17100", "description": "LEAN 2.5", "ref": "refs/tags/v2.5.17100"},
)
MASTER_VERSION = 17202


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
STATE_FILE = "emulator.json"
FORMAT = 1


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(n: int = 32) -> str:
    return secrets.token_hex(n // 2)


def organization_id(user_id: str) -> str:
    """The account's one organisation: 32 hex digits, the same on every start for a user id
    (a world kept in a data directory keeps the one it was saved with)."""
    return _digest(f"organization {user_id}")


def _digest(text: str) -> str:
    """32 hex digits that `text` always gives: ids that must not change between starts."""
    return hashlib.sha256(f"qc-emulator {text}".encode()).hexdigest()[:32]


def _int(body: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise Rejected(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"{name} must be an integer")
    return value


def _login_failure(value: object) -> str:
    """The message a failing brokerage login ends with; "" when logins succeed.

    True gives a default message; a string is the reason, prefixed with "Brokerage login
    failed: " unless it already says so (the API's wording, which clients may match).
    """
    if value is None or value is False:
        return ""
    if value is True:
        return DEFAULT_LOGIN_FAILURE
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"failLogin must be true, false or a non-empty message, not {value!r}")
    return value if value.startswith(LOGIN_FAILED) else f"{LOGIN_FAILED}: {value}"


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise Rejected(f"{name} is required")
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string")
    return value


class World:
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
        self.path = Path(data_dir) / STATE_FILE if data_dir is not None else None
        self.projects: dict[int, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.compiles: dict[str, dict[str, Any]] = {}
        self.deployments: list[dict[str, Any]] = []
        self.committed: Counter[int] = Counter()  # creates committed through the API
        self.created: list[dict[str, Any]] = []  # {"deployId", "projectId", "time"}
        self.stops: list[dict[str, Any]] = []  # {"deployId", "projectId", "status", "time"}
        self.rejections: Counter[str] = Counter()  # refused live/create calls by rule
        self.rejected: list[dict[str, Any]] = []  # the last REJECTED_KEPT of them, with why
        self._by_project: dict[int, list[dict[str, Any]]] = {}
        self._on_node: dict[str, dict[str, Any]] = {}  # node id -> its active deployment
        self.organization = organization_id(user_id)
        self._deferred = 0  # > 0 inside `batch()`: saves wait for its end
        self._dirty = False
        if self.path is not None:
            self._load()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one save at the end (seeding thousands of items)."""
        with self.lock:
            self._deferred += 1
            try:
                yield
            finally:
                self._deferred -= 1
                if not self._deferred and self._dirty:
                    self._save()

    # ---- persistence -----------------------------------------------------------------

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            raise ValueError(f"emulator state {self.path} is unreadable: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"emulator state {self.path} has an unknown format")
        self.organization = data["organization"]
        self.projects = {int(p["projectId"]): p for p in data["projects"]}
        self.nodes = {n["id"]: n for n in data["nodes"]}
        self.compiles = {c["compileId"]: c for c in data["compiles"]}
        self.deployments = list(data["deployments"])
        self.committed = Counter({int(k): v for k, v in data["committed"].items()})
        for deployment in self.deployments:
            self._index(deployment)

    def _save(self) -> None:
        if self.path is None:
            return
        if self._deferred:
            self._dirty = True
            return
        self._dirty = False
        data = {
            "format": FORMAT,
            "organization": self.organization,
            "projects": list(self.projects.values()),
            "nodes": list(self.nodes.values()),
            "compiles": list(self.compiles.values()),
            "deployments": self.deployments,
            "committed": {str(k): v for k, v in self.committed.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".emulator-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    # ---- seeding (Python API) ----------------------------------------------------------

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
        login_failure = _login_failure(fail_login)
        with self.lock:
            now = self.clock()
            self.projects[project_id] = {
                "projectId": project_id,
                "name": name or f"Project {project_id}",
                "description": description,
                "language": language,
                "failBuild": bool(fail_build),
                "failLogin": login_failure,
                "created": now,
                "modified": now,
                "activeNodes": [],
                "liveForm": None,
                "lastLiveDeployment": None,
            }
            self._save()

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
        login_failure = None if fail_login is None else _login_failure(fail_login)
        with self.lock:
            project = self._known_project(project_id)
            if login_failure is not None:
                project["failLogin"] = login_failure
            if fail_build is not None:
                project["failBuild"] = fail_build
            self._save()

    def touch_project(self, project_id: int) -> str:
        """Mark the project's code as changed: `modified` moves, as an edit in the IDE does.

        `modified` is rendered to the second, and a client compares rendered values, so
        the new value is at least a second past the old one: two touches within one
        second still show two different values. Returns the new rendered value.
        """
        with self.lock:
            project = self._known_project(project_id)
            project["modified"] = max(self.clock(), project["modified"] + 1)
            self._save()
            return str(iso(project["modified"]))

    def add_node(self, node_id: str, name: str | None = None, *, sku: str = "L-MICRO") -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"a node id must be a non-empty string, not {node_id!r}")
        with self.lock:
            self.nodes[node_id] = {"id": node_id, "name": name or node_id, "sku": sku}
            self._save()

    def add_compile(
        self, project_id: int, compile_id: str | None = None, *, state: str = "BuildSuccess"
    ) -> str:
        if state not in COMPILE_STATES:
            raise ValueError(f"compile state must be one of {list(COMPILE_STATES)}")
        with self.lock:
            self._project(project_id)
            compile_id = compile_id or f"{_hex()}-{_hex()}"
            self.compiles[compile_id] = {
                "compileId": compile_id,
                "projectId": project_id,
                "created": self.clock(),
                "state": state,
            }
            self._save()
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
            self._project(project_id)
            if node_id not in self.nodes:
                raise ValueError(f"node {node_id} does not exist")
            if status in ACTIVE:
                self._check_free(project_id, node_id)
            deployment = self._deploy(
                project_id, node_id, compile_id or "", MASTER_VERSION, accepted, status
            )
            self._save()
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
            deployment = self._active(project_id)
            if deployment is None:
                raise ValueError(f"project {project_id} has no running live algorithm")
            self._set_status(deployment, status, error=message)
            self._save()
            return str(deployment["deployId"])

    def seed(self, data: Mapping[str, Any]) -> None:
        """Add what a seed document describes, skipping what already exists."""
        if not isinstance(data, Mapping):
            raise ValueError("a seed must be a mapping with projects, nodes, compiles, live")
        unknown = set(data) - {"projects", "nodes", "compiles", "live"}
        if unknown:
            raise ValueError(f"unknown seed sections: {sorted(unknown)}")
        with self.batch():
            self._seed(data)

    def _seed(self, data: Mapping[str, Any]) -> None:
        for item in _items(data, "projects"):
            project_id = item.get("projectId")
            if isinstance(project_id, int) and self.has_project(project_id):
                continue
            self.add_project(
                project_id,  # type: ignore[arg-type]  # checked by add_project
                item.get("name"),
                fail_build=bool(item.get("failBuild", False)),
                fail_login=item.get("failLogin", False),
                description=str(item.get("description", "")),
            )
        for item in _items(data, "nodes"):
            if not self.has_node(item.get("id")):  # type: ignore[arg-type]
                self.add_node(item.get("id"), item.get("name"))  # type: ignore[arg-type]
        for item in _items(data, "compiles"):
            compile_id = item.get("compileId")
            if compile_id is None or not self.has_compile(compile_id):
                self.add_compile(
                    item.get("projectId"),  # type: ignore[arg-type]
                    compile_id,
                    state=item.get("state", "BuildSuccess"),
                )
        for item in _items(data, "live"):
            project_id = item.get("projectId")
            if isinstance(project_id, int) and self._active(project_id) is not None:
                continue
            self.add_live(
                project_id,  # type: ignore[arg-type]
                item.get("nodeId"),  # type: ignore[arg-type]
                item.get("brokerage") or {"id": "QuantConnectBrokerage"},
                status=item.get("status", "Running"),
            )

    # ---- queries for tests ---------------------------------------------------------------

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
            if project_id is None:
                return sum(self.committed.values())
            return self.committed[project_id]

    def active_deployments(self, project_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self._summary(d)
                for d in self.deployments
                if self._status(d) in ACTIVE and project_id in (None, d["projectId"])
            ]

    def safety_stats(self) -> dict[str, Any]:
        """Copies of `created`, `stops` and `rejections` (every rule present, 0 if none)."""
        with self.lock:
            rejections = {rule: 0 for rule in REJECTION_RULES}
            rejections.update(self.rejections)
            return {
                "created": [dict(c) for c in self.created],
                "stops": [dict(s) for s in self.stops],
                "rejections": rejections,
                "rejected": [dict(r) for r in self.rejected],
            }

    # ---- internals ---------------------------------------------------------------------

    def _project(self, project_id: Any) -> dict[str, Any]:
        project = self.projects.get(project_id)
        if project is None:
            raise Rejected(f"Project {project_id} not found.")
        return project

    def _known_project(self, project_id: int) -> dict[str, Any]:
        """The project, for the Python and admin calls, which raise ValueError."""
        project = self.projects.get(project_id)
        if project is None:
            raise ValueError(f"project {project_id} does not exist")
        return project

    def _active(self, project_id: int) -> dict[str, Any] | None:
        for deployment in self._by_project.get(project_id, ()):
            if self._status(deployment) in ACTIVE:
                return deployment
        return None

    def _node_user(self, node_id: str) -> dict[str, Any] | None:
        # The index holds the last deployment started on the node; one whose login has
        # failed since is no longer on it, though nothing rewrote its record.
        user = self._on_node.get(node_id)
        if user is None or self._status(user) not in ACTIVE:
            return None
        return user

    def _state(
        self, deployment: Mapping[str, Any], *, login_known: bool = True
    ) -> tuple[str, float | None, str]:
        """(status, stopped, message) of a deployment as of now.

        A stored status other than Running was set by a stop or an end and stands as it
        is. A stored Running is refined by the clock: start-up phases until `ready`, then
        RuntimeError if the brokerage login fails. `login_known=False` renders what the
        create call answers, before the login has been tried.
        """
        status = deployment["status"]
        if status != "Running":
            return status, deployment["stopped"], deployment["error"]
        launched = deployment["launched"]
        ready = deployment.get("ready", launched)  # state files from before start-up
        now = self.clock()
        if now < ready:
            return ("InQueue" if now < (launched + ready) / 2 else "LoggingIn"), None, ""
        failure = deployment.get("loginError", "") if login_known else ""
        if failure:
            return "RuntimeError", ready, failure
        return "Running", None, deployment["error"]

    def _status(self, deployment: Mapping[str, Any]) -> str:
        return self._state(deployment)[0]

    def _index(self, deployment: dict[str, Any]) -> None:
        self._by_project.setdefault(deployment["projectId"], []).append(deployment)
        if deployment["status"] in ACTIVE:
            self._on_node[deployment["nodeId"]] = deployment

    def _set_status(self, deployment: dict[str, Any], status: str, error: str = "") -> None:
        deployment.update(status=status, stopped=self.clock(), error=error)
        if self._on_node.get(deployment["nodeId"]) is deployment:
            del self._on_node[deployment["nodeId"]]

    def _check_free(self, project_id: int, node_id: str) -> None:
        running = self._active(project_id)
        if running is not None:
            raise Rejected(
                f"Project {project_id} already has a live algorithm running "
                f"({running['deployId']}); stop it before deploying again.",
                rule="project busy",
            )
        busy = self._node_user(node_id)
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
            "deployId": f"L-{_hex()}",
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

    def _compile_state(self, compile: Mapping[str, Any]) -> str:
        if compile["state"] != "InQueue":
            return str(compile["state"])
        if self.projects[compile["projectId"]].get("failBuild"):
            return "BuildError"
        if self.clock() >= compile["created"] + self.compile_delay:
            return "BuildSuccess"
        return "InQueue"

    @staticmethod
    def _shared_fields(
        deployment: Mapping[str, Any], state: tuple[str, float | None, str]
    ) -> dict[str, Any]:
        """What LiveAlgorithmSummary and LiveAlgorithm(Results) have in common."""
        return {
            "deployId": deployment["deployId"],
            "status": state[0],
            "launched": iso(deployment["launched"]),
            "stopped": iso(state[1]),
            "brokerage": deployment["brokerage"],
        }

    def _summary(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        project = self.projects.get(deployment["projectId"], {})
        state = self._state(deployment)
        return {
            "projectId": deployment["projectId"],
            **self._shared_fields(deployment, state),
            "subscription": "Strategy Equity",
            "equity": 100000.0,
            "environment": deployment["environment"],
            "description": project.get("description", ""),
            "error": state[2],
            "leagues": [],
        }

    def _live_algorithm(
        self, deployment: Mapping[str, Any], *, login_known: bool = True
    ) -> dict[str, Any]:
        state = self._state(deployment, login_known=login_known)
        return {
            "message": state[2],
            **self._shared_fields(deployment, state),
            "cloneId": _clone_id(deployment["deployId"]),
            "securityTypes": "Equity",
            "datacenter": "NY7",
            "isPublicStreaming": False,
            "public": False,
            "files": [self._main_file(deployment)],
            "runtimeStatistics": {
                "Equity": "$100,000.00",
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

    def _main_file(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        """The algorithm file of the deployment's snapshot (`files` of live/read)."""
        project = self.projects.get(deployment["projectId"], {})
        return {
            **_project_file(project, deployment["projectId"], deployment["launched"]),
            "id": _clone_id(deployment["deployId"]) * 10 + 1,
        }

    def _owner_id(self) -> int:
        return int(self.user_id) if self.user_id.isdigit() else 0

    def _collaborator(self) -> dict[str, Any]:
        """The account's user: owner and only collaborator of every project."""
        return {
            "uid": self._owner_id(),
            "liveControl": True,
            "permission": "write",
            "publicId": f"emulated-user-{self.user_id}",
            "profileImage": "https://cdn.quantconnect.com/web/i/users/profile/default.png",
            "email": f"user-{self.user_id}@example.com",
            "name": f"Emulated User {self.user_id}",
            "bio": "",
            "owner": True,
        }

    def _project_view(self, project: Mapping[str, Any]) -> dict[str, Any]:
        """Every property of the spec's `Project`; the live ones are null until a deployment
        (`lastLiveDeployment`, `liveForm`), `encryptionKey` null as no project is encrypted."""
        project_id = project["projectId"]
        return {
            "projectId": project_id,
            "organizationId": self.organization,
            "name": project["name"],
            "modified": iso(project["modified"]),
            "created": iso(project["created"]),
            "ownerId": self._owner_id(),
            "language": project["language"],
            "collaborators": [self._collaborator()],
            "leanVersionId": MASTER_VERSION,
            "leanPinnedToMaster": True,
            "owner": True,
            "description": project["description"],
            "channelId": _digest(f"channel {self.organization}/{project_id}"),
            "parameters": [],
            "libraries": [],
            "grid": GRID,
            "liveGrid": GRID,
            "paperEquity": 100000.0,
            "lastLiveDeployment": iso(project["lastLiveDeployment"]),
            "liveForm": project["liveForm"],
            "encrypted": False,
            "codeRunning": self._active(project_id) is not None,
            "leanEnvironment": 1,
            "encryptionKey": None,
        }

    def _node_view(
        self, node: Mapping[str, Any], project: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Every property of the spec's `Node`. Who uses a free node is "" (projectId null);
        `active` is for a project, so false in the organisation's list (`project` None)."""
        user = self._node_user(node["id"])
        used_by = self.projects[user["projectId"]] if user is not None else None
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
            "usedBy": self.user_id if used_by is not None else "",
            "userProfile": (
                f"https://www.quantconnect.com/u/{self.user_id}" if used_by is not None else ""
            ),
            "projectName": used_by["name"] if used_by is not None else "",
            "projectId": used_by["projectId"] if used_by is not None else None,
            "active": project is not None and node["id"] in project["activeNodes"],
        }

    # ---- API operations ----------------------------------------------------------------

    def projects_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId", required=False)
        start = _int(body, "start", required=False) or 0
        end = _int(body, "end", required=False)
        with self.lock:
            if body.get("organizationId") is not None:
                self._organization(body)  # every project is the one organisation's
            if project_id is not None:
                chosen = [self._project(project_id)]
            else:
                chosen = [self.projects[k] for k in sorted(self.projects)][start:end]
            return {
                "projects": [self._project_view(p) for p in chosen],
                "versions": self.versions(),
            }

    def nodes_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId")
        with self.lock:
            project = self._project(project_id)
            return self._nodes_response(project)

    def organization_nodes_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`nodes/read` (not in the spec; lean-cli's `nodes/read`): the organisation's nodes,
        `backtest`, `research` and `live` at the top level, each a list of `Node`."""
        with self.lock:
            self._organization(body)
            live = [self._node_view(n, None) for n in self.nodes.values()]
            return {"backtest": [], "research": [], "live": live}

    def _organization(self, body: Mapping[str, Any]) -> str:
        organization = _str(body, "organizationId")
        if organization != self.organization:
            raise Rejected(
                f"Organization {organization} not found; this account's organization is "
                f"{self.organization}."
            )
        return organization

    def _nodes_response(self, project: Mapping[str, Any]) -> dict[str, Any]:
        live = [self._node_view(n, project) for n in self.nodes.values()]
        return {
            "nodes": {"backtest": [], "research": [], "live": live},
            "autoSelectNode": not project["activeNodes"],
        }

    def nodes_update(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId")
        nodes = body.get("nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise Rejected("nodes must be an array of node ids")
        with self.lock:
            project = self._project(project_id)
            unknown = [n for n in nodes if n not in self.nodes]
            if unknown:
                raise Rejected(f"Unknown node ids: {unknown}")
            project["activeNodes"] = list(nodes)
            self._save()
            return self._nodes_response(project)

    def compile_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId")
        with self.lock:
            self._project(project_id)
            compile_id = self.add_compile(project_id, state="InQueue")  # type: ignore[arg-type]
            state = self._compile_state(self.compiles[compile_id])
        return {
            "compileId": compile_id,
            "state": state,
            "parameters": [],
            "projectId": project_id,
            "signature": _hex(),
            "signatureOrder": ["main.py"],
        }

    def compile_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId")
        compile_id = _str(body, "compileId")
        with self.lock:
            self._project(project_id)
            compile = self.compiles.get(compile_id)
            if compile is None or compile["projectId"] != project_id:
                raise Rejected(f"Compile {compile_id} not found in project {project_id}.")
            state = self._compile_state(compile)
        logs = {
            "InQueue": ["Build request queued."],
            "BuildSuccess": ["Build Success."],
            "BuildError": ["Build Error: main.py(1,1): SyntaxError (emulated)."],
        }[state]
        return {"compileId": compile_id, "state": state, "logs": logs}

    def authenticate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The server answers 401 before any route on bad credentials: reaching here is
        success, and the answer is the bare envelope."""
        return {}

    def live_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`_live_create`, counting every refusal by its rule for `rejections`."""
        try:
            return self._live_create(body)
        except Rejected as error:
            rule = error.rule if error.rule in REJECTION_RULES else "other"
            with self.lock:
                self.rejections[rule] += 1
                self.rejected.append(
                    {"rule": rule, "error": str(error), "projectId": body.get("projectId")}
                )
                del self.rejected[:-REJECTED_KEPT]
            raise

    def _live_create(self, body: Mapping[str, Any]) -> dict[str, Any]:
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
        version = self._version(version_text)
        with self.lock:
            project = self._project(project_id)
            compile = self.compiles.get(compile_id)
            if compile is None or compile["projectId"] != project_id:
                raise Rejected(f"Compile {compile_id} not found in project {project_id}.")
            state = self._compile_state(compile)
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
                bool(body.get("automaticRedeploy", False)),
                startup=self.startup_delay,
                login_error=project.get("failLogin", ""),
            )
            self._commit(deployment)
            return {
                "responseCode": "200 OK",
                "source": "api-v2",
                "deployId": deployment["deployId"],
                "versionId": version,
                "projectId": project_id,
                # The API answers before the brokerage login is tried: a failure shows
                # only on live/read and live/list.
                "live": self._live_algorithm(deployment, login_known=False),
            }

    def _commit(self, deployment: Mapping[str, Any]) -> None:
        """Count a create made through the API and save: from here on it has happened."""
        project_id = deployment["projectId"]
        self.committed[project_id] += 1
        self.created.append(
            {
                "deployId": deployment["deployId"],
                "projectId": project_id,
                "time": deployment["launched"],
            }
        )
        self._save()

    def _version(self, text: str) -> int:
        if text == "-1":
            return MASTER_VERSION
        known = {str(v["id"]): int(v["id"]) for v in LEAN_VERSIONS}
        if text not in known:
            raise Rejected(f"versionId {text!r} is not a LEAN version (see /lean/versions/read)")
        return known[text]

    def live_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId")
        with self.lock:
            project = self._project(project_id)
            deployments = self._by_project.get(project_id, [])  # type: ignore[arg-type]
            if not deployments:
                raise Rejected(f"No live algorithm found for project {project_id}.")
            latest = max(deployments, key=lambda d: d["launched"])
            return {**self._live_algorithm(latest), "projectName": project["name"]}

    def live_list(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id = _int(body, "projectId", required=False)
        status = body.get("status")
        if status is not None and status not in LIST_FILTERS:
            raise Rejected(f"status must be one of {list(LIST_FILTERS)}")
        with self.lock:
            if project_id is not None:
                chosen = self._by_project.get(project_id, [])
            else:
                chosen = self.deployments
            return {
                "live": [
                    self._summary(d) for d in chosen if status is None or self._status(d) == status
                ]
            }

    def live_stop(self, body: Mapping[str, Any], status: str = "Stopped") -> dict[str, Any]:
        project_id = _int(body, "projectId")
        with self.lock:
            self._project(project_id)
            deployment = self._active(project_id)  # type: ignore[arg-type]
            if deployment is None:
                raise Rejected(f"Project {project_id} has no running live algorithm.")
            self._set_status(deployment, status)
            self.stops.append(
                {
                    "deployId": deployment["deployId"],
                    "projectId": project_id,
                    "status": status,
                    "time": deployment["stopped"],
                }
            )
            self._save()
            return {}

    def live_liquidate(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.live_stop(body, status="Liquidated")

    def versions(self) -> list[dict[str, Any]]:
        created = iso(1_700_000_000)
        return [
            {**v, "created": created, "leanHash": _hash(v), "leanCloudHash": "", "public": True}
            for v in LEAN_VERSIONS
        ]

    def lean_versions_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"versions": self.versions()}

    def files_read(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A project's files (its one algorithm file), or the one `name` asks for."""
        project_id = _int(body, "projectId")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise Rejected("name must be a string")
        with self.lock:
            project = self._project(project_id)
            files = [_project_file(project, project["projectId"], project["modified"])]
        if name:
            files = [f for f in files if f["name"] == name]
            if not files:
                raise Rejected(f"File {name} not found in project {project_id}.")
        return {"files": files}


def _project_file(project: Mapping[str, Any], project_id: int, modified: float) -> dict[str, Any]:
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


def _clone_id(deploy_id: str) -> int:
    """The snapshot project a deployment runs (`cloneId`): a project-like id from its id."""
    return 10_000_000 + int(deploy_id.removeprefix("L-")[:6], 16)


def _hash(version: Mapping[str, Any]) -> str:
    return f"{int(version['id']):040x}"


def _items(data: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    items = data.get(section) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"seed section {section!r} must be a list of mappings")
    return items
