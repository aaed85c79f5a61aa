"""The emulator's HTTP face: routing, authentication, fault injection, statistics.

A stdlib `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive, one thread per
connection. `disable_nagle_algorithm` matters: without it every keep-alive answer waits
for the peer's delayed ACK (~40 ms here). `stop()` closes every open connection and joins
every thread it started, so a test that stops the emulator leaves nothing behind.

Authentication is the API's: a `Timestamp` header (unix seconds) and HTTP Basic
`user_id : sha256(f"{token}:{timestamp}")` in lowercase hex. A missing header, an unknown
user, a wrong hash, or a timestamp more than `AUTH_WINDOW` seconds away from the
emulator's clock is answered 401 with `WWW-Authenticate` and a JSON error body.

Both methods, as the API's own client uses them: every read endpoint (`READS`) answers GET
with query parameters exactly as it answers POST (same authentication, faults, envelope and
errors); POST takes a JSON body or a form-encoded one. Query and form values are text, typed
as the JSON body's fields in one place (`params.parse_fields`). An endpoint that changes
state answers GET with 405 (`Allow: POST`); other methods get 405 everywhere.

Faults are injected per endpoint (`live/create`, `live/list`, ...), in this order on each
authenticated call: `latency` (seconds, every call), `ratelimit` (answer the next k calls
429 with `Retry-After`), `fail` (answer the next k calls with `status`, doing nothing),
`drop_before` (close the next k connections without acting), `drop` (act, then close
without answering: "commit then drop", the client cannot know the outcome).

Admin endpoints (same authentication, outside the API prefix; each answers `success`
and `errors`, `success: false` with the reason for a bad request or an unknown project):
- `POST /_emulator/faults` `{"endpoint": "live/create", "latency": 0.05, ...}`: set faults
  (answers the `faults` now set); `POST /_emulator/faults/clear`: remove them all.
- `POST /_emulator/stats` (or GET): what `Emulator.stats()` returns.
- `POST /_emulator/seed`: add what a seed document describes.
- `POST /_emulator/live/kill` `{"projectId": N}`: the running algorithm dies (RuntimeError);
  answers its `deployId`.
- `POST /_emulator/live/end` `{"projectId": N, "status": "Stopped", "message": "..."}`: the
  active deployment ends with any non-running status (a stop in the web IDE, a crash, a
  completion); answers its `deployId`.
- `POST /_emulator/projects/touch` `{"projectId": N}`: the project's code changed; its
  `modified` moves (answered as `modified`, as `projects/read` renders it).
- `POST /_emulator/projects/update` `{"projectId": N, "failLogin": true|false|"reason",
  "failBuild": true|false}`: change how the project's compiles and deployments behave.
- `POST /_emulator/projects/files` `{"projectId": N, "files": {"main.py": "..."}}` (or
  `"copyFrom": M`, another project's files): the project's files, as `files/read` shows
  them; its `modified` moves.
- `POST /_emulator/live/equity` `{"projectId": N, "equity": 95000}`: the equity its running
  deployment reports (`live/read` runtimeStatistics, `live/list`); answers its `deployId`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from reconciler.emulator.handlers import ROUTES, Route
from reconciler.emulator.params import parse_fields
from reconciler.emulator.seed import add_seed
from reconciler.emulator.shapes import iso, live_summary, project_files
from reconciler.emulator.spec import Rejected
from reconciler.emulator.world import World

API_PREFIX = "/api/v2/"
ADMIN_PREFIX = "/_emulator/"
AUTH_WINDOW = 600  # seconds either side of the emulator's clock
REALM = 'Basic realm="QuantConnect API v2"'
MAX_BODY = 1 << 20
FORM = "application/x-www-form-urlencoded"


@dataclass
class Fault:
    latency: float = 0.0
    fail: int = 0
    status: int = 500
    ratelimit: int = 0
    retry_after: float = 1.0
    drop: int = 0
    drop_before: int = 0


FAULT_KNOBS = frozenset(f.name for f in fields(Fault))


def parse_fault(spec: str) -> tuple[str, dict[str, float]]:
    """`live/create:fail=2,status=500` -> ("live/create", {"fail": 2, "status": 500})."""
    endpoint, _, knobs = spec.partition(":")
    if not endpoint or not knobs:
        raise ValueError(f"fault {spec!r}: expected ENDPOINT:KNOB=VALUE[,KNOB=VALUE...]")
    values: dict[str, float] = {}
    for part in knobs.split(","):
        name, _, text = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in FAULT_KNOBS:
            raise ValueError(f"fault {spec!r}: unknown knob {name!r}; know {sorted(FAULT_KNOBS)}")
        try:
            values[name] = float(text)
        except ValueError:
            raise ValueError(f"fault {spec!r}: {name} needs a number, not {text!r}") from None
    return endpoint, values


def _endpoint(path: str) -> str:
    path = path.split("?", 1)[0].strip("/")
    return path.removeprefix("api/v2/")


def _media_type(header: str | None) -> str:
    """`application/x-www-form-urlencoded; charset=utf-8` -> `application/x-www-form-urlencoded`."""
    return (header or "").partition(";")[0].strip().lower()


def _fields(text: str | bytes, where: str) -> dict[str, Any] | str:
    """Typed fields of a query string or form body, or why they cannot be read."""
    try:
        return parse_fields(text.decode() if isinstance(text, bytes) else text)
    except ValueError as error:  # UnicodeDecodeError included
        return f"{where} is not valid: {error}"


# What answers GET as well as POST: the endpoints that change nothing (lean-cli reads with
# GET). The others change state, and a GET must not: they answer it 405.
READS = frozenset(
    {
        "authenticate",
        "projects/read",
        "projects/nodes/read",
        "nodes/read",
        "compile/read",
        "live/read",
        "live/list",
        "lean/versions/read",
        "files/read",
    }
)
ADMIN_READS = frozenset({"stats"})


class _Drop(Exception):
    """Close the connection without an answer."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: a client opening 64 connections at once would
    # see SYNs dropped and retransmitted a second later.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self.connections: dict[socket.socket, threading.Thread] = {}
        self.guard = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="emulator-connection",
            daemon=True,
        )
        with self.guard:
            self.connections[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.guard:
                self.connections.pop(request, None)

    def close_connections(self, timeout: float) -> None:
        with self.guard:
            open_now = list(self.connections.items())
        for connection, _ in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    server_version = "qc-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # never the auth header; the access log below prints path and status only

    def do_PUT(self) -> None:
        try:
            self._read_body()
        except _Drop:
            self.close_connection = True
            return
        self._answer(
            405,
            {"success": False, "errors": ["The API answers GET and POST only."]},
            headers={"Allow": "GET, POST"},
        )

    do_DELETE = do_PATCH = do_PUT

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        started = time.monotonic()
        emulator = self.server.emulator
        status = 0
        endpoint = _endpoint(self.path)
        try:
            status = self._handle(emulator, endpoint, method)
        except _Drop:
            status = 0
            self.close_connection = True
        finally:
            emulator._record(endpoint, method, status, started)

    def _handle(self, emulator: Emulator, endpoint: str, method: str) -> int:
        raw = self._read_body()
        admin = self.path.startswith(ADMIN_PREFIX)
        if not admin and not self.path.startswith(API_PREFIX):
            return self._answer(404, {"success": False, "errors": [f"No such path {self.path}"]})
        problem = emulator._authenticate(
            self.headers.get("Authorization"), self.headers.get("Timestamp")
        )
        if problem:
            return self._answer(401, {"success": False, "errors": [problem]}, auth=True)
        if raw is None:
            return self._answer(413, {"success": False, "errors": ["Request body too large."]})
        body = self._body(method, raw)
        if isinstance(body, str):
            return self._answer(400, {"success": False, "errors": [body]})
        if admin:
            action = endpoint.removeprefix("_emulator/")
            if method == "GET" and action not in ADMIN_READS:
                return self._post_only(endpoint)
            return self._answer(*emulator._admin(action, body))
        route = ROUTES.get(endpoint)
        if route is None:
            return self._answer(
                404, {"success": False, "errors": [f"Endpoint {endpoint} is not emulated."]}
            )
        if method == "GET" and endpoint not in READS:
            return self._post_only(endpoint)
        return self._call(emulator, endpoint, route, body)

    def _call(
        self,
        emulator: Emulator,
        endpoint: str,
        route: Route,
        body: Mapping[str, Any],
    ) -> int:
        """The API call proper, through the faults injected on its endpoint."""
        if endpoint == "live/create":
            emulator._note_create(body)
        fault = emulator._take_fault(endpoint)
        if fault is not None:
            kind, value = fault
            if kind == "ratelimit":
                return self._answer(
                    429,
                    {"success": False, "errors": ["Too many requests."]},
                    headers={"Retry-After": f"{value:g}"},
                )
            if kind == "fail":
                return self._answer(
                    int(value), {"success": False, "errors": ["Injected server error."]}
                )
            if kind == "drop_before":
                raise _Drop
        try:
            answer = {**route(emulator.world, body), "success": True, "errors": []}
        except Rejected as error:
            answer = {"success": False, "errors": [str(error)]}
        if fault is not None and fault[0] == "drop":
            raise _Drop
        return self._answer(200, answer)

    def _body(self, method: str, raw: bytes) -> dict[str, Any] | str:
        """The request's fields (a GET's from its query string, a POST's from its JSON or
        form-encoded body), or why they cannot be read."""
        if method == "GET":
            return _fields(self.path.partition("?")[2], "Query string")
        if _media_type(self.headers.get("Content-Type")) == FORM:
            return _fields(raw, "Form body")
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return "Request body is not JSON."
        if not isinstance(body, dict):
            return "Request body must be a JSON object."
        return body

    def _post_only(self, endpoint: str) -> int:
        return self._answer(
            405,
            {"success": False, "errors": [f"{endpoint} changes state: use POST, not GET."]},
            headers={"Allow": "POST"},
        )

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.close_connection = True
            return None
        raw = self.rfile.read(length) if length > 0 else b""
        if len(raw) < length:
            # The client went away before its body was complete (killed mid-send): there
            # is no request to answer, and an empty body must not pass for `{}`.
            raise _Drop
        return raw

    def _answer(
        self,
        status: int,
        payload: Mapping[str, Any],
        *,
        auth: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if auth:
            self.send_header("WWW-Authenticate", REALM)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status


class Emulator:
    """A QuantConnect API v2 emulator on loopback; a context manager.

    `Emulator(compile_delay=0.0)` for tests; `url`, `user_id` and `token` once started.
    Seed it with `add_project` / `add_node` / `add_compile` / `add_live` or `seed(dict)`,
    inject faults with `inject(endpoint, **knobs)`, read counters with `stats()`; act
    behind the client's back with `kill`, `end`, `touch_project`, `update_project`.

    `startup_delay` seconds: a new deployment is InQueue, then LoggingIn, then Running
    (0: Running at once). `clock` is the world's time (compiles, start-up, timestamps in
    answers), for tests that step it; authentication always uses the real time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user_id: str | None = None,
        token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        compile_delay: float = 1.0,
        startup_delay: float = 0.0,
        access_log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.user_id = user_id or str(secrets.randbelow(900_000) + 100_000)
        self.token = token or secrets.token_hex(32)
        self.world = World(
            self.user_id,
            compile_delay=compile_delay,
            startup_delay=startup_delay,
            data_dir=data_dir,
            clock=clock,
        )
        self.access_log = access_log
        self._faults: dict[str, Fault] = {}
        self._calls: dict[str, dict[str, int]] = {}
        self._methods: dict[str, dict[str, int]] = {}
        self._create_times: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the token
        return f"Emulator(url={self.url if self._server else None!r}, user_id={self.user_id!r})"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/api/v2"

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping on injected latency
        server.shutdown()
        thread.join(timeout)
        server.server_close()
        server.close_connections(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- seeding and inspection (delegated to the world) -------------------------------------

    def add_project(self, project_id: int, name: str | None = None, **options: Any) -> None:
        self.world.add_project(project_id, name, **options)

    def add_node(self, node_id: str, name: str | None = None, **options: Any) -> None:
        self.world.add_node(node_id, name, **options)

    def add_compile(
        self, project_id: int, compile_id: str | None = None, *, state: str = "BuildSuccess"
    ) -> str:
        return self.world.add_compile(project_id, compile_id, state=state)

    def add_live(
        self, project_id: int, node_id: str, brokerage: Mapping[str, Any], **options: Any
    ) -> str:
        return self.world.add_live(project_id, node_id, brokerage, **options)

    def seed(self, data: Mapping[str, Any]) -> None:
        add_seed(self.world, data)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Many add_* calls, one save of the data directory at the end."""
        return self.world.batch()

    def kill(self, project_id: int) -> str:
        return self.world.kill(project_id)

    def end(self, project_id: int, status: str, message: str = "") -> str:
        """End the project's active deployment with `status`; returns its deployId."""
        return self.world.end(project_id, status, message)

    def touch_project(self, project_id: int) -> str:
        """The project's code changed; returns its new `modified` as projects/read shows it."""
        return str(iso(self.world.touch_project(project_id)))

    def update_project(
        self,
        project_id: int,
        *,
        fail_login: bool | str | None = None,
        fail_build: bool | None = None,
    ) -> None:
        """Change `failLogin` / `failBuild` of a project (None leaves one as it is)."""
        self.world.update_project(project_id, fail_login=fail_login, fail_build=fail_build)

    def set_files(self, project_id: int, files: Mapping[str, str]) -> str:
        """Replace a project's files (its `modified` moves); returns the new `modified`."""
        return str(iso(self.world.set_files(project_id, files)))

    def set_equity(self, project_id: int, equity: float) -> str:
        """Set the equity the project's running deployment reports; returns its id."""
        return self.world.set_equity(project_id, equity)

    def has_project(self, project_id: int) -> bool:
        return self.world.has_project(project_id)

    def has_node(self, node_id: str) -> bool:
        return self.world.has_node(node_id)

    def has_compile(self, compile_id: str) -> bool:
        return self.world.has_compile(compile_id)

    def creates_committed(self, project_id: int | None = None) -> int:
        return self.world.creates_committed(project_id)

    def active_deployments(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """The active deployments (of one project, if given), as live/list shows them."""
        with self.world.lock:
            return [live_summary(self.world, d) for d in self.world.all_active(project_id)]

    # ---- faults and statistics -------------------------------------------------------------

    def inject(self, endpoint: str, **knobs: float) -> None:
        """Set faults on one endpoint, e.g. `inject("live/create", fail=2, status=503)`."""
        unknown = set(knobs) - FAULT_KNOBS
        if unknown:
            raise TypeError(f"unknown fault knobs {sorted(unknown)}; know {sorted(FAULT_KNOBS)}")
        endpoint = _endpoint(endpoint)
        if endpoint not in ROUTES:
            raise ValueError(f"unknown endpoint {endpoint!r}; know {sorted(ROUTES)}")
        with self._lock:
            fault = self._faults.setdefault(endpoint, Fault())
            for name, value in knobs.items():
                current = getattr(fault, name)
                setattr(fault, name, type(current)(value))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {endpoint: asdict(fault) for endpoint, fault in self._faults.items()}

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks, since this emulator started.

        `calls[endpoint]` = {"total", "<status>": n}; `methods[endpoint]` = {"GET": n,
        "POST": n}; `create_times` = every create received
        ({"time", "projectId"}); `creates_committed` = {"<projectId>": n} (kept with the data
        directory). For safety invariants: `created` = [{"deployId", "projectId", "time"}]
        for every create committed; `stops` = [{"deployId", "projectId", "status", "time"}]
        for every deployment live/update/stop or liquidate stopped; `rejections` =
        {"project busy": n, "node busy": n, "other": n}, refused creates by rule; `rejected` =
        the last of them with their rule, error and projectId.
        """
        safety = self.world.safety_stats()  # takes the world's lock, never under ours
        with self._lock:
            return {
                "calls": {k: dict(v) for k, v in self._calls.items()},
                "methods": {k: dict(v) for k, v in self._methods.items()},
                "create_times": [dict(t) for t in self._create_times],
                **safety,
            }

    def _take_fault(self, endpoint: str) -> tuple[str, float] | None:
        with self._lock:
            fault = self._faults.get(endpoint)
            if fault is None:
                return None
            latency = fault.latency
        if latency > 0:
            self._stopping.wait(latency)
        with self._lock:
            for kind in ("ratelimit", "fail", "drop_before", "drop"):
                if getattr(fault, kind) > 0:
                    setattr(fault, kind, getattr(fault, kind) - 1)
                    value = {"ratelimit": fault.retry_after, "fail": fault.status}.get(kind, 0)
                    return kind, float(value)
        return None

    def _note_create(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            self._create_times.append({"time": time.time(), "projectId": body.get("projectId")})

    def _record(self, endpoint: str, method: str, status: int, started: float) -> None:
        with self._lock:
            counts = self._calls.setdefault(endpoint, {"total": 0})
            counts["total"] += 1
            key = str(status) if status else "dropped"
            counts[key] = counts.get(key, 0) + 1
            methods = self._methods.setdefault(endpoint, {})
            methods[method] = methods.get(method, 0) + 1
        if self.access_log is not None:
            elapsed = (time.monotonic() - started) * 1000
            self.access_log(f"{method} /{endpoint} {key} {elapsed:.1f} ms")

    def _authenticate(self, header: str | None, stamp: str | None) -> str | None:
        """None when the call is authenticated, else the reason for the 401."""
        if not header or not header.startswith("Basic "):
            return "Authorization header missing: use HTTP Basic with your user id."
        if not stamp or not stamp.isdigit():
            return "Timestamp header missing: send the unix time the hash was made with."
        if abs(time.time() - int(stamp)) > AUTH_WINDOW:
            return f"Timestamp is too old for hash (allowed window {AUTH_WINDOW} s)."
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "Authorization header is not valid Basic credentials."
        user, _, given = decoded.partition(":")
        if user != self.user_id:
            return "Unknown user id."
        expected = hashlib.sha256(f"{self.token}:{stamp}".encode()).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return "Hash doesn't match."
        return None

    def admin(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """An admin action (`live/end`, `projects/touch`, ...) without HTTP: the answer the
        admin endpoint would give, `success` saying whether it was done."""
        return self._admin(action, body)[1]

    def _admin(self, action: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        handler = self._admin_actions().get(action)
        if handler is None:
            return 404, {"success": False, "errors": [f"No admin action {action!r}."]}
        try:
            extra = handler(body)
        except (TypeError, ValueError) as error:
            return 200, {"success": False, "errors": [str(error)]}
        return 200, {"success": True, "errors": [], **extra}

    def _admin_actions(self) -> dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]:
        """Admin action -> handler returning the answer's fields beyond the envelope."""
        return {
            "faults": self._admin_faults,
            "faults/clear": self._admin_clear,
            "stats": lambda body: self.stats(),
            "seed": self._admin_seed,
            "live/kill": self._admin_kill,
            "live/end": self._admin_end,
            "projects/touch": self._admin_touch,
            "projects/update": self._admin_update_project,
            "projects/files": self._admin_files,
            "live/equity": self._admin_equity,
        }

    def _admin_files(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`{"projectId": 2002, "files": {"main.py": "..."}}` sets a project's files;
        `{"projectId": 2002, "copyFrom": 1001}` gives it another project's (its twin's)."""
        project_id = body.get("projectId")
        files = body.get("files")
        if "copyFrom" in body:
            files = self.world.files_of(body["copyFrom"]) or {
                f["name"]: f["content"]
                for f in project_files(self.world.known_project(body["copyFrom"]), 0)
            }
        modified = self.world.set_files(project_id, files)  # type: ignore[arg-type]
        return {"modified": iso(modified)}

    def _admin_equity(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`{"projectId": 1001, "equity": 95000}`: what its running deployment reports."""
        deploy_id = self.world.set_equity(body.get("projectId"), body.get("equity"))  # type: ignore[arg-type]
        return {"deployId": deploy_id}

    def _admin_faults(self, body: Mapping[str, Any]) -> dict[str, Any]:
        knobs = {k: v for k, v in body.items() if k != "endpoint"}
        self.inject(str(body.get("endpoint", "")), **knobs)
        return {"faults": self.faults()}

    def _admin_clear(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.clear_faults()
        return {}

    def _admin_seed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.seed(body)
        return {}

    def _admin_kill(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"deployId": self.kill(body.get("projectId"))}  # type: ignore[arg-type]

    def _admin_touch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"modified": self.touch_project(body.get("projectId"))}  # type: ignore[arg-type]

    def _admin_end(self, body: Mapping[str, Any]) -> dict[str, Any]:
        project_id, status = body.get("projectId"), body.get("status")
        if not isinstance(status, str):
            raise ValueError("status is required: the status the deployment ends with")
        deploy_id = self.end(project_id, status, body.get("message", ""))  # type: ignore[arg-type]
        return {"deployId": deploy_id}

    def _admin_update_project(self, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - {"projectId", "failLogin", "failBuild"}
        if unknown:
            raise ValueError(f"unknown project options {sorted(unknown)}")
        self.update_project(
            body.get("projectId"),  # type: ignore[arg-type]
            fail_login=body.get("failLogin"),
            fail_build=body.get("failBuild"),
        )
        return {}
