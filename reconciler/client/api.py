"""The QuantConnect REST API v2 client: typed calls over one retrying POST.

Retry policy, and why it differs by call:
- reads (projects, nodes, compile read, live read/list) are idempotent: connection
  errors, timeouts and 5xx are retried with bounded, jittered backoff;
- creates and updates (live create, stop, liquidate, compile create) are NOT: a timeout,
  dropped connection or 5xx may come after the server acted, so the client raises
  `OutcomeUnknown` and the caller must read state back before deciding anything.  A
  connection that was refused before the request was sent is a plain `TransportError`.
- 429 is answered by waiting `Retry-After` (bounded) and re-sending, for every call: the
  server refused the request without acting on it.

Nothing here logs or formats the token, its hash, the Authorization header or a
request body with secrets in it.
"""

from __future__ import annotations

import itertools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from reconciler import brokerages
from reconciler.client.answers import (
    Compile,
    CreatedLive,
    LiveAlgorithm,
    Project,
    live_from_summary,
    money,
    project_from,
)
from reconciler.client.auth import Credentials, QuantConnectAuth
from reconciler.client.urls import USER_AGENT, resolve_api_url
from reconciler.errors import (
    ApiError,
    AuthenticationError,
    OutcomeUnknown,
    RateLimitedError,
    ServerError,
    TransportError,
)
from reconciler.model import LiveDeployment, Node

log = logging.getLogger("reconciler.client")

# Observer of every HTTP exchange: (endpoint, status or error name, seconds).
Observer = Callable[[str, str, float], None]


def _tls_context(base_url: str) -> ssl.SSLContext:
    """Certificate checks as httpx makes them (CA bundle, SSL_CERT_FILE/DIR), built once.

    A plain-http base URL (loopback only: the emulator, tests) never negotiates TLS, so it
    gets a context that trusts no certificate at all instead of loading the CA bundle
    (30 ms): should TLS ever happen there, it fails closed.
    """
    if base_url.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify + hostname check, no CAs
    return httpx.create_ssl_context()


# Connections per lane: see QuantConnectClient.
LANE_CONNECTIONS = 2


class _NoCookies(httpx.Cookies):
    """The API authenticates every request (auth.py) and sets no session: cookies are
    neither kept nor sent.  httpx parses every answer's cookies into the client's jar
    (building a urllib request for each): about a tenth of a call's CPU here."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Lane(httpx.Client):
    """An httpx client that keeps no cookies (see `_NoCookies`)."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None  # httpx.Client.__init__ sets the empty jar it is given: nothing to keep


# ---- the client ----------------------------------------------------------------------


class QuantConnectClient:
    """Typed calls to the API; a context manager that owns its connections.

    Safe to share between threads. The connections are split into lanes of
    LANE_CONNECTIONS, each an httpx.Client of its own, and each thread sticks to one lane:
    httpcore's pool does its bookkeeping under one lock per pool, and 64 threads on a
    single pool spent 2.4 s of CPU (2.4 s wall) on 1,000 creates at 50 ms latency here,
    against 0.8-1.0 s with lanes. The TLS context is built once and shared.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        read_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        rate_limit_retries: int = 5,
        max_connections: int = 16,
        observer: Observer | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = resolve_api_url(base_url)
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._read_retries = read_retries
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._rate_limit_retries = rate_limit_retries
        self._observer = observer
        self._lane_options: dict[str, Any] = {
            "base_url": self.base_url + "/",
            "verify": _tls_context(self.base_url),
            "auth": QuantConnectAuth(credentials),
            "timeout": httpx.Timeout(read_timeout, connect=connect_timeout),
            "limits": httpx.Limits(
                max_connections=LANE_CONNECTIONS, max_keepalive_connections=LANE_CONNECTIONS
            ),
            "transport": transport,
            "headers": {"User-Agent": USER_AGENT},
        }
        lanes = max(1, -(-max_connections // LANE_CONNECTIONS))
        self._lanes: list[httpx.Client | None] = [None] * lanes
        self._lanes_lock = threading.Lock()
        self._next_lane = itertools.count()
        self._local = threading.local()
        self._closed = False
        # Each endpoint's absolute URL, parsed once: a relative one is parsed and joined
        # with the base URL on every request.
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"QuantConnectClient({self.base_url!r}, user_id={self.credentials.user_id!r})"

    def __enter__(self) -> QuantConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lanes_lock:
            self._closed = True
            lanes, self._lanes = self._lanes, [None] * len(self._lanes)
        for lane in lanes:
            if lane is not None:
                lane.close()

    def _lane(self) -> httpx.Client:
        """This thread's httpx client (threads are dealt lanes in turn)."""
        lane: httpx.Client | None = getattr(self._local, "lane", None)
        if lane is not None and not lane.is_closed:
            return lane
        with self._lanes_lock:
            if self._closed:
                raise RuntimeError("the QuantConnect client is closed")
            index = next(self._next_lane) % len(self._lanes)
            lane = self._lanes[index]
            if lane is None:
                lane = self._lanes[index] = _Lane(**self._lane_options)
        self._local.lane = lane
        return lane

    @property
    def in_flight_bound(self) -> float:
        """Seconds within which a request sent now has its answer or is given up on by this
        client: waiting for a pooled connection, connecting, writing the body, reading the
        answer (httpx's pool, write and read timeouts are all `read_timeout`)."""
        return self.connect_timeout + 3 * self.read_timeout

    # -- transport -------------------------------------------------------------------

    def _url(self, endpoint: str) -> httpx.URL:
        url = self._urls.get(endpoint)
        if url is None:
            url = self._urls[endpoint] = httpx.URL(f"{self.base_url}/{endpoint}")
        return url

    def _sleep_backoff(self, attempt: int) -> None:
        # Full jitter: a fleet of reconcilers does not retry in lockstep.
        time.sleep(random.uniform(0, self._backoff * (2**attempt)))

    def _observe(self, endpoint: str, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(endpoint, outcome, time.monotonic() - started)

    def _post(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        idempotent: bool,
        before_send: Callable[[], None] | None = None,
    ) -> Any:
        """POST and return the decoded `success: true` body, or raise a typed error.

        `before_send` is called before every send of the request (a 429 re-sends it): it
        may raise to send nothing more."""
        attempt = 0
        rate_limited = 0
        while True:
            if before_send is not None:
                before_send()
            started = time.monotonic()
            try:
                response = self._lane().post(self._url(endpoint), json=dict(body))
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                # Refused before anything was sent: the server cannot have acted.
                self._observe(endpoint, type(error).__name__, started)
                if idempotent and attempt < self._read_retries:
                    attempt += 1
                    self._sleep_backoff(attempt)
                    continue
                raise TransportError(
                    f"cannot reach the QuantConnect API at {self.base_url} ({endpoint}): "
                    f"{type(error).__name__}"
                ) from None
            except httpx.TransportError as error:
                self._observe(endpoint, type(error).__name__, started)
                if not idempotent:
                    raise OutcomeUnknown(
                        f"{endpoint}: no answer ({type(error).__name__}); the request may or "
                        "may not have taken effect",
                        endpoint=endpoint,
                    ) from None
                if attempt < self._read_retries:
                    attempt += 1
                    self._sleep_backoff(attempt)
                    continue
                raise TransportError(
                    f"{endpoint}: no answer from {self.base_url} after {attempt + 1} "
                    f"attempts ({type(error).__name__})"
                ) from None

            status = response.status_code
            self._observe(endpoint, str(status), started)
            log.debug("POST %s -> %s in %.3fs", endpoint, status, time.monotonic() - started)
            if status == 429:
                wait = self._retry_after(response)
                if rate_limited < self._rate_limit_retries and wait <= self._max_retry_after:
                    rate_limited += 1
                    log.info("rate limited on %s; waiting %.1fs", endpoint, wait)
                    time.sleep(wait)
                    continue
                raise RateLimitedError(
                    f"{endpoint}: rate limited by the API (HTTP 429, Retry-After {wait:g}s)",
                    endpoint=endpoint,
                    status_code=429,
                )
            if status == 401:
                raise AuthenticationError(
                    f"{endpoint}: the API rejected the credentials (HTTP 401{self._why(response)})"
                    f": check that QC_API_TOKEN is the API token of user id "
                    f"{self.credentials.user_id} (QC_USER_ID), and that this machine's clock "
                    "is right (the hash includes the time)",
                    endpoint=endpoint,
                    status_code=401,
                )
            if status >= 500:
                if not idempotent:
                    raise OutcomeUnknown(
                        f"{endpoint}: server error HTTP {status}; the request may or may not "
                        "have taken effect",
                        endpoint=endpoint,
                    )
                if attempt < self._read_retries:
                    attempt += 1
                    self._sleep_backoff(attempt)
                    continue
                raise ServerError(
                    f"{endpoint}: QuantConnect API server error HTTP {status} after "
                    f"{attempt + 1} attempts (an outage, not a credentials problem)",
                    endpoint=endpoint,
                    status_code=status,
                )
            if status >= 400:
                raise ApiError(
                    f"{endpoint}: HTTP {status}{self._why(response)}",
                    endpoint=endpoint,
                    status_code=status,
                )
            return self._decode(endpoint, response, idempotent=idempotent)

    @staticmethod
    def _retry_after(response: httpx.Response) -> float:
        try:
            return max(0.0, float(response.headers.get("Retry-After", "1")))
        except ValueError:
            return 1.0

    @staticmethod
    def _errors_of(data: Any) -> list[str]:
        if not isinstance(data, Mapping):
            return []
        for key in ("errors", "messages", "Message"):
            value = data.get(key)
            if isinstance(value, list):
                return [str(item) for item in value]
            if isinstance(value, str) and value:
                return [value]
        return []

    def _why(self, response: httpx.Response) -> str:
        try:
            errors = self._errors_of(response.json())
        except ValueError:
            errors = []
        return f": {'; '.join(errors)}" if errors else ""

    def _decode(self, endpoint: str, response: httpx.Response, *, idempotent: bool) -> Any:
        try:
            data = response.json()
        except ValueError:
            if not idempotent:
                raise OutcomeUnknown(
                    f"{endpoint}: the API answered with something that is not JSON; the "
                    "request may or may not have taken effect",
                    endpoint=endpoint,
                ) from None
            raise ApiError(
                f"{endpoint}: the API answered with something that is not JSON",
                endpoint=endpoint,
                status_code=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise ApiError(f"{endpoint}: unexpected answer shape", endpoint=endpoint)
        if data.get("success") is False:
            errors = self._errors_of(data)
            text = "; ".join(errors) or "the API reported failure without a reason"
            if any(error.startswith("Hash doesn't match") for error in errors):
                raise AuthenticationError(
                    f"{endpoint}: {text} (check QC_API_TOKEN for user id "
                    f"{self.credentials.user_id}, and the clock)",
                    endpoint=endpoint,
                    errors=errors,
                )
            raise ApiError(f"{endpoint}: {text}", endpoint=endpoint, errors=errors)
        return data

    # -- typed calls -----------------------------------------------------------------

    def authenticate(self) -> None:
        """Check the credentials with the cheapest authenticated call there is.

        The OpenAPI document has no `/authenticate` (lean-cli 1.0.230 does GET it, and the
        emulator answers it): the call here is one the document defines, `projects/read`,
        asking for at most one project.
        """
        self._post("projects/read", {"start": 0, "end": 1}, idempotent=True)

    def list_projects(self) -> list[Project]:
        data = self._post("projects/read", {}, idempotent=True)
        return [project_from(item) for item in data.get("projects") or []]

    def read_project(self, project_id: int) -> Project:
        data = self._post("projects/read", {"projectId": project_id}, idempotent=True)
        projects = data.get("projects") or []
        if not projects:
            raise ApiError(f"projects/read: project {project_id} not found")
        return project_from(projects[0])

    def read_nodes(self, project_id: int) -> list[Node]:
        """The organisation's live nodes, with `active` for this project."""
        data = self._post("projects/nodes/read", {"projectId": project_id}, idempotent=True)
        nodes = (data.get("nodes") or {}).get("live") or []
        return [
            Node(
                id=str(node.get("id") or ""),
                name=str(node.get("name") or ""),
                sku=str(node.get("sku") or ""),
                busy=bool(node.get("busy")),
                used_by=node.get("usedBy"),
                project_id=node.get("projectId"),
                project_name=node.get("projectName"),
                active=bool(node.get("active")),
            )
            for node in nodes
        ]

    def create_compile(self, project_id: int) -> Compile:
        data = self._post("compile/create", {"projectId": project_id}, idempotent=False)
        return Compile(compile_id=str(data.get("compileId") or ""), state=str(data.get("state")))

    def read_compile(self, project_id: int, compile_id: str) -> Compile:
        data = self._post(
            "compile/read", {"projectId": project_id, "compileId": compile_id}, idempotent=True
        )
        return Compile(
            compile_id=str(data.get("compileId") or compile_id),
            state=str(data.get("state") or ""),
            logs=tuple(str(line) for line in data.get("logs") or []),
        )

    def create_live(
        self,
        *,
        project_id: int,
        compile_id: str,
        node_id: str,
        brokerage: Mapping[str, Any],
        version_id: str = "-1",
        data_providers: Mapping[str, Any] | None = None,
        automatic_redeploy: bool | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> CreatedLive:
        """`/live/create`.  Never retried here: see the module docstring.

        `brokerage` may be in the portable or the module form, with secret values
        already resolved; it goes on the wire in the module form.  `before_send`: called
        before each send (the first, and a re-send after a 429), to journal it.
        """
        body: dict[str, Any] = {
            "versionId": str(version_id),
            "projectId": int(project_id),
            "compileId": compile_id,
            "nodeId": node_id,
            "brokerage": brokerages.to_wire(brokerage),
        }
        if data_providers:
            body["dataProviders"] = dict(data_providers)
        if automatic_redeploy is not None:
            body["automaticRedeploy"] = bool(automatic_redeploy)
        data = self._post("live/create", body, idempotent=False, before_send=before_send)
        live = data.get("live") or {}
        version = data.get("versionId")
        return CreatedLive(
            project_id=int(data.get("projectId") or project_id),
            deploy_id=str(data.get("deployId") or live.get("deployId") or ""),
            status=str(live.get("status") or ""),
            version_id=int(version) if isinstance(version, int | str) and version != "" else None,
        )

    def read_live(self, project_id: int) -> LiveAlgorithm:
        data = self._post("live/read", {"projectId": project_id}, idempotent=True)
        return LiveAlgorithm(
            project_id=int(data.get("projectId") or project_id),
            deploy_id=str(data.get("deployId") or ""),
            status=str(data.get("status") or ""),
            brokerage=str(data.get("brokerage") or ""),
            launched=data.get("launched"),
            stopped=data.get("stopped"),
            message=str(data.get("message") or ""),
            equity=money((data.get("runtimeStatistics") or {}).get("Equity")),
        )

    def read_files(self, project_id: int) -> list[tuple[str, str]]:
        """A project's files as (name, content): what its code digest is taken over."""
        data = self._post("files/read", {"projectId": project_id}, idempotent=True)
        return [
            (str(item.get("name") or ""), str(item.get("content") or ""))
            for item in data.get("files") or []
        ]

    def list_live(
        self, *, project_id: int | None = None, status: str | None = None
    ) -> list[LiveDeployment]:
        """Past and current deployments: one call answers for every project."""
        body: dict[str, Any] = {}
        if project_id is not None:
            body["projectId"] = project_id
        if status is not None:
            body["status"] = status
        data = self._post("live/list", body, idempotent=True)
        return [live_from_summary(item) for item in data.get("live") or []]

    def stop_live(self, project_id: int) -> None:
        self._post("live/update/stop", {"projectId": project_id}, idempotent=False)

    def liquidate_live(self, project_id: int) -> None:
        self._post("live/update/liquidate", {"projectId": project_id}, idempotent=False)
