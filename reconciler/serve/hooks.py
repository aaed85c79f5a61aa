"""The webhook receiver (DESIGN §15): GitHub and GitLab push hooks that wake the git
source's fetch.  A hook carries no manifest: what is reconciled always comes from git
(its `after` is not even read).

On a listener of its own (`watch --hooks-listen`), with only these two routes.  Answers,
in this order: 405 anything but POST, 404 an unknown path, 413 a body over 1 MiB by its
Content-Length (the route table answers these before a byte of the body is read); then
401 a missing or wrong signature (GitHub: `X-Hub-Signature-256`, the HMAC-SHA256 of the
raw body; GitLab: `X-Gitlab-Token`; both compared in constant time before the body is
parsed), 200 a delivery id already seen in the last 24 h (remembered only once its
signature was good: no second fetch), 400 not JSON, 204 a ping, another ref or another
event, 202 a push of the ref followed (the fetch is woken now).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.errors import ConfigError
from reconciler.serve.server import Request, Response, Route, plain

MAX_BODY = 1024 * 1024
DELIVERY_MEMORY = 24 * 3600.0  # seconds a delivery id is remembered
MAX_DELIVERIES = 10_000  # ... and at most this many (the oldest forgotten first)
CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request
SECRET_ENV = "RECONCILER_HOOK_SECRET"
POST = frozenset({"POST"})

# reconciler_webhook_requests_total{result}, by the answer's status.
RESULTS = {
    202: "accepted",
    204: "ignored",
    200: "duplicate",
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
}


class Receiver:
    """Judges hook requests (thread-safe); `on_push` wakes the fetch, nothing else."""

    def __init__(
        self,
        secret: bytes,
        ref: str | None,
        on_push: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret:
            raise ValueError("a webhook receiver needs a secret")
        self._secret = secret
        self._ref = _full_ref(ref) if ref else None
        self._on_push = on_push
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()

    def routes(self) -> list[Route]:
        return [
            Route(POST, "/hooks/github", lambda r: self.handle("github", r), MAX_BODY),
            Route(POST, "/hooks/gitlab", lambda r: self.handle("gitlab", r), MAX_BODY),
        ]

    def handle(self, kind: str, request: Request) -> Response:
        headers = request.headers
        body = request.read_body()
        if not self._signed(kind, headers, body):
            return plain(401, "missing or wrong signature")
        delivery = headers.get(
            "X-GitHub-Delivery" if kind == "github" else "X-Gitlab-Event-UUID", ""
        )
        if delivery and self._repeated(f"{kind}:{delivery}"):
            return plain(200, "delivery already received")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return plain(400, "bad request: the body is not JSON")
        if not isinstance(payload, dict):
            return plain(400, "bad request: the body is not a JSON object")
        if not self._push_for_us(kind, headers, payload):
            return Response(204, b"", "text/plain")
        self._on_push()
        return plain(202, "accepted: fetching")

    def _signed(self, kind: str, headers: Any, body: bytes) -> bool:
        if kind == "github":
            given = str(headers.get("X-Hub-Signature-256", ""))
            expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(given.encode(), expected.encode())
        token = str(headers.get("X-Gitlab-Token", "")).encode()
        return hmac.compare_digest(token, self._secret)

    def _repeated(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._seen and (
                len(self._seen) >= MAX_DELIVERIES
                or next(iter(self._seen.values())) < now - DELIVERY_MEMORY
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return True
            self._seen[key] = now
            return False

    def _push_for_us(self, kind: str, headers: Any, payload: dict[str, Any]) -> bool:
        if kind == "github":
            if headers.get("X-GitHub-Event") != "push":
                return False  # ping, and every other event
            default = (payload.get("repository") or {}).get("default_branch")
        else:
            if headers.get("X-Gitlab-Event") != "Push Hook":
                return False
            default = (payload.get("project") or {}).get("default_branch")
        wanted = self._ref or (_full_ref(str(default)) if default else None)
        return wanted is not None and payload.get("ref") == wanted


def _full_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def read_secret(path: str | None, environ: Mapping[str, str]) -> bytes:
    """The secret from `--hook-secret-file` (its first line), else RECONCILER_HOOK_SECRET;
    none: the receiver refuses to start."""
    if path:
        try:
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError as error:
            raise ConfigError(
                f"cannot read the webhook secret from {path}: {error.strerror}"
            ) from None
        secret = lines[0].strip() if lines else b""
    else:
        secret = environ.get(SECRET_ENV, "").strip().encode()
    if not secret:
        raise ConfigError(
            f"--hooks-listen needs a secret: --hook-secret-file FILE or {SECRET_ENV} (a "
            "receiver without one would let anyone start fetches)"
        )
    return secret
