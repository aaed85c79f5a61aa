"""QuantConnect REST API v2 client: the only module that imports httpx.

Auth is the API's own: a `Timestamp` header (unix seconds) and HTTP Basic
`user_id : sha256(f"{token}:{timestamp}")` (hex), recomputed for every request,
retries included.

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

import base64
import hashlib
import ipaddress
import itertools
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler import __version__, brokerages
from reconciler.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    OutcomeUnknown,
    RateLimitedError,
    ServerError,
    TransportError,
)
from reconciler.model import LiveDeployment, Node

log = logging.getLogger("reconciler.client")

DEFAULT_API_URL = "https://www.quantconnect.com/api/v2"

# Observer of every HTTP exchange: (endpoint, status or error name, seconds).
Observer = Callable[[str, str, float], None]


@dataclass(frozen=True)
class Credentials:
    user_id: str
    token: str

    def __repr__(self) -> str:  # the token never appears in a repr or a log line
        return f"Credentials(user_id={self.user_id!r}, token=<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        user_id = env.get("QC_USER_ID", "").strip()
        token = env.get("QC_API_TOKEN", "").strip()
        if not user_id or not token:
            missing = [n for n, v in (("QC_USER_ID", user_id), ("QC_API_TOKEN", token)) if not v]
            raise ConfigError(
                f"QuantConnect credentials missing: set QC_USER_ID and QC_API_TOKEN "
                f"(unset: {', '.join(missing)}); or use --sandbox to run against the emulator"
            )
        return cls(user_id, token)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_api_url(url: str | None) -> str:
    """The API base URL to use; plain http:// is refused except to loopback."""
    chosen = (url or os.environ.get("QC_API_URL") or DEFAULT_API_URL).rstrip("/")
    parts = urlsplit(chosen)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"invalid API URL {chosen!r}: expected https://host/path")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"refusing plain http:// to {parts.hostname}: credentials would cross the "
            "network unencrypted; use https:// (http is allowed only for loopback)"
        )
    return chosen


class _QuantConnectAuth(httpx.Auth):
    """Fresh timestamp and hash per request (and per retry)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return "<QuantConnectAuth redacted>"

    def auth_flow(self, request: httpx.Request) -> Any:
        timestamp = str(int(time.time()))
        digest = hashlib.sha256(f"{self._credentials.token}:{timestamp}".encode()).hexdigest()
        request.headers["Timestamp"] = timestamp
        pair = f"{self._credentials.user_id}:{digest}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        yield request


# ---- typed answers -------------------------------------------------------------------


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


def _live_from_summary(item: Mapping[str, Any]) -> LiveDeployment:
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
        self._read_retries = read_retries
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._rate_limit_retries = rate_limit_retries
        self._observer = observer
        self._lane_options: dict[str, Any] = {
            "base_url": self.base_url + "/",
            "verify": _tls_context(self.base_url),
            "auth": _QuantConnectAuth(credentials),
            "timeout": httpx.Timeout(read_timeout, connect=connect_timeout),
            "limits": httpx.Limits(
                max_connections=LANE_CONNECTIONS, max_keepalive_connections=LANE_CONNECTIONS
            ),
            "transport": transport,
            "headers": {"User-Agent": f"qc-live-reconciler/{__version__}"},
        }
        lanes = max(1, -(-max_connections // LANE_CONNECTIONS))
        self._lanes: list[httpx.Client | None] = [None] * lanes
        self._lanes_lock = threading.Lock()
        self._next_lane = itertools.count()
        self._local = threading.local()
        self._closed = False

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
                lane = self._lanes[index] = httpx.Client(**self._lane_options)
        self._local.lane = lane
        return lane

    # -- transport -------------------------------------------------------------------

    def _sleep_backoff(self, attempt: int) -> None:
        # Full jitter: a fleet of reconcilers does not retry in lockstep.
        time.sleep(random.uniform(0, self._backoff * (2**attempt)))

    def _observe(self, endpoint: str, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(endpoint, outcome, time.monotonic() - started)

    def _post(self, endpoint: str, body: Mapping[str, Any], *, idempotent: bool) -> Any:
        """POST and return the decoded `success: true` body, or raise a typed error."""
        attempt = 0
        rate_limited = 0
        while True:
            started = time.monotonic()
            try:
                response = self._lane().post(endpoint, json=dict(body))
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
        return [self._project(item) for item in data.get("projects") or []]

    def read_project(self, project_id: int) -> Project:
        data = self._post("projects/read", {"projectId": project_id}, idempotent=True)
        projects = data.get("projects") or []
        if not projects:
            raise ApiError(f"projects/read: project {project_id} not found")
        return self._project(projects[0])

    @staticmethod
    def _project(item: Mapping[str, Any]) -> Project:
        live_form = item.get("liveForm") or {}
        return Project(
            project_id=int(item.get("projectId") or 0),
            name=str(item.get("name") or ""),
            language=str(item.get("language") or ""),
            lean_version_id=item.get("leanVersionId"),
            live_node=live_form.get("node") if isinstance(live_form, Mapping) else None,
            modified=str(item["modified"]) if item.get("modified") else None,
        )

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
    ) -> CreatedLive:
        """`/live/create`.  Never retried here: see the module docstring.

        `brokerage` may be in the portable or the module form, with secret values
        already resolved; it goes on the wire in the module form.
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
        data = self._post("live/create", body, idempotent=False)
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
        )

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
        return [_live_from_summary(item) for item in data.get("live") or []]

    def stop_live(self, project_id: int) -> None:
        self._post("live/update/stop", {"projectId": project_id}, idempotent=False)

    def liquidate_live(self, project_id: int) -> None:
        self._post("live/update/liquidate", {"projectId": project_id}, idempotent=False)


# ---- notification receivers (`--notify URL`) -----------------------------------------

SLACK_WEBHOOK_HOST = "hooks.slack.com"


def url_origin(url: str) -> str:
    """`scheme://host[:port]`: what may be shown of a receiver's URL (a webhook's path is
    often its credential, as Slack's are)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def resolve_webhook_url(url: str) -> str:
    """A notification receiver's URL; plain http:// is refused except to loopback, as for
    the API (events name live deployments; the URL often carries a token)."""
    chosen = url.strip()
    parts = urlsplit(chosen)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"invalid notification URL {url_origin(chosen)!r}: expected https://host/path"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"refusing plain http:// to {parts.hostname} for notifications: use https:// "
            "(http is allowed only for loopback)"
        )
    return chosen


def is_slack_webhook(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() == SLACK_WEBHOOK_HOST


class WebhookSender:
    """POSTs JSON to notification receivers: one connection pool, a timeout on every
    request, no redirects (one could carry an event elsewhere), no retries (the caller's
    policy). Errors name the receiver by its origin only."""

    def __init__(self, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": f"qc-live-reconciler/{__version__}"},
        )

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def post_json(self, url: str, body: Mapping[str, Any]) -> None:
        try:
            response = self._client.post(url, json=dict(body))
        except httpx.HTTPError as error:
            raise TransportError(f"{url_origin(url)}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise ApiError(
                f"{url_origin(url)} answered HTTP {response.status_code}",
                status_code=response.status_code,
            )
