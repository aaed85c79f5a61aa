"""One exception tree for every expected failure.

The CLI turns a `ReconcilerError` into one line on stderr and exit code 1; anything
else is a bug and keeps its traceback.  Messages must never contain a secret value,
the API token, its hash or the Authorization header.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every expected failure; `str(error)` is the one line a user sees."""

    exit_code = 1


class ConfigError(ReconcilerError):
    """Bad configuration: missing credentials, a refused API URL, a bad flag value."""


class ManifestError(ReconcilerError):
    """Manifests that fail to load or validate (details are in `problems`)."""

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class SecretError(ReconcilerError):
    """A secret reference that cannot be resolved (missing env var or file)."""


class StateError(ReconcilerError):
    """The state store is unreadable, of a newer schema, or otherwise unusable."""


class StateLockedError(StateError):
    """Another reconciler holds the state lock."""


class StateFencedError(StateError):
    """A daemon's write refused: its leadership epoch has passed (another daemon leads)."""


class StalePlanError(ReconcilerError):
    """A saved plan no longer matches the manifests, recorded state or live state."""


class ApiError(ReconcilerError):
    """The API answered, and the answer was a failure (`success: false` or an HTTP error)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status_code: int | None = None,
        errors: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.errors = list(errors or [])


class AuthenticationError(ApiError):
    """401: the key is missing or wrong, or the timestamp is too far from the server's clock."""


class RateLimitedError(ApiError):
    """429 that persisted past the client's bounded waiting."""


class ServerError(ApiError):
    """5xx on an idempotent call that persisted past the client's bounded retries."""


class TransportError(ReconcilerError):
    """The API could not be reached (connect failure, timeout) on an idempotent call."""


class OutcomeUnknown(ReconcilerError):
    """A non-idempotent call may or may not have taken effect.

    Raised for a timeout, a dropped connection or a 5xx on `/live/create`, stop,
    liquidate and compile create.  The caller must read state back before any retry:
    blindly re-sending could start a second live algorithm trading real money.
    """

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint
