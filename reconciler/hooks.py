"""The webhook receiver's logic (DESIGN §15): GitHub and GitLab push hooks that wake the git
source's fetch.  A hook carries no manifest: what is reconciled always comes from git.

Answers, checked in this order: 405 anything but POST; 404 an unknown path; 413 a body over
1 MiB (by its Content-Length, before reading it; 400 without one); 401 a missing or wrong
signature (GitHub: `X-Hub-Signature-256`, HMAC-SHA256 of the raw body; GitLab:
`X-Gitlab-Token`; both compared in constant time, before the body is parsed); 200 a
delivery id already seen in the last 24 h (remembered only once its signature was good);
400 not JSON; 204 a ping, another ref or another event; 202 a push for the ref followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

MAX_BODY = 1024 * 1024
DELIVERY_MEMORY = 24 * 3600.0  # seconds a delivery id is remembered
MAX_DELIVERIES = 10_000  # ... and at most this many (the oldest forgotten first)
PATHS = {"/hooks/github": "github", "/hooks/gitlab": "gitlab"}


class Answer(NamedTuple):
    status: int
    result: str  # the label of reconciler_webhook_requests_total{result}
    message: str


class Receiver:
    """Judges one hook request at a time (thread-safe); `on_push` wakes the fetch."""

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

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
    ) -> Answer:
        """`headers` by lower-case name; `read_body(n)` reads the n bytes of the body."""
        if method != "POST":
            return Answer(405, "method_not_allowed", "only POST")
        kind = PATHS.get(path.split("?", 1)[0])
        if kind is None:
            return Answer(404, "not_found", "not found")
        length = _length(headers.get("content-length"))
        if length is None:
            return Answer(400, "bad_request", "a Content-Length is required")
        if length > MAX_BODY:
            return Answer(413, "too_large", f"the body is over {MAX_BODY} bytes")
        body = read_body(length)
        if not self._signed(kind, headers, body):
            return Answer(401, "unauthorized", "missing or wrong signature")
        delivery = headers.get(
            "x-github-delivery" if kind == "github" else "x-gitlab-event-uuid", ""
        )
        if delivery and self._repeated(f"{kind}:{delivery}"):
            return Answer(200, "duplicate", "delivery already received")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return Answer(400, "bad_request", "the body is not JSON")
        if not isinstance(payload, dict):
            return Answer(400, "bad_request", "the body is not a JSON object")
        if not self._push_for_us(kind, headers, payload):
            return Answer(204, "ignored", "not a push of the ref followed")
        self._on_push()
        return Answer(202, "accepted", "fetching")

    def _signed(self, kind: str, headers: Mapping[str, str], body: bytes) -> bool:
        if kind == "github":
            given = headers.get("x-hub-signature-256", "")
            expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(given.encode(), expected.encode())
        return hmac.compare_digest(headers.get("x-gitlab-token", "").encode(), self._secret)

    def _repeated(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            while self._seen and (
                len(self._seen) > MAX_DELIVERIES
                or next(iter(self._seen.values())) < now - DELIVERY_MEMORY
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return True
            self._seen[key] = now
            return False

    def _push_for_us(self, kind: str, headers: Mapping[str, str], payload: dict[str, Any]) -> bool:
        if kind == "github":
            if headers.get("x-github-event") != "push":
                return False  # ping, and every other event
            default = (payload.get("repository") or {}).get("default_branch")
        else:
            if headers.get("x-gitlab-event") != "Push Hook":
                return False
            default = (payload.get("project") or {}).get("default_branch")
        wanted = self._ref or (_full_ref(str(default)) if default else None)
        return wanted is not None and payload.get("ref") == wanted


def _full_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def _length(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text)


def read_secret(path: str | None, environ: Mapping[str, str]) -> bytes:
    """The secret from `--hook-secret-file` (its first line), else RECONCILER_HOOK_SECRET."""
    from reconciler.errors import ConfigError

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
        secret = environ.get("RECONCILER_HOOK_SECRET", "").strip().encode()
    if not secret:
        raise ConfigError(
            "--hooks-listen needs a secret: --hook-secret-file FILE or RECONCILER_HOOK_SECRET "
            "(a receiver without one would let anyone trigger fetches)"
        )
    return secret
