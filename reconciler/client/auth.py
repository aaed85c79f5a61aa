"""QuantConnect credentials and the API's own auth scheme, as an httpx Auth.

A `Timestamp` header (unix seconds) and HTTP Basic `user_id : sha256(f"{token}:{timestamp}")`
(hex), recomputed for every request, retries included.  Nothing here logs or formats the
token, its hash or the Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass

import httpx

from reconciler.errors import ConfigError


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


def _timestamp() -> str:
    """Now, in unix seconds, by the clock of the `reconciler.client` package.

    Looked up there at each request, not imported here, so that the package's `time` stays
    the one clock the auth signs with: a test skews exactly that one (the client's clock
    wrong, the emulator's right), as it did when the client was a single module.
    """
    import reconciler.client as package  # the package imports this module: not at load time

    return str(int(package.time.time()))


class QuantConnectAuth(httpx.Auth):
    """Fresh timestamp and hash per request (and per retry)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return "<QuantConnectAuth redacted>"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = _timestamp()
        digest = hashlib.sha256(f"{self._credentials.token}:{timestamp}".encode()).hexdigest()
        request.headers["Timestamp"] = timestamp
        pair = f"{self._credentials.user_id}:{digest}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        yield request
