"""What the create and stop paths share for one apply: the client, the store, the options,
and the values of the secrets the plan's deployments reference.

Built by `Engine.apply` from the plan it is given, never filled in by an earlier step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import secrets
from reconciler.client import QuantConnectClient
from reconciler.errors import ReconcilerError
from reconciler.model import SecretRef
from reconciler.policy.throttle import Throttle
from reconciler.state import StateStore


@dataclass
class EngineOptions:
    concurrency: int = 8
    create_attempts: int = 3
    stop_attempts: int = 3
    retry_backoff: float = 1.0
    compile_timeout: float = 600.0
    # How long a stop may take to show in live state before the replace gives up.
    stop_confirm_timeout: float = 120.0
    # Sandbox only: a secret reference that cannot be resolved gets a dummy value.
    secret_fallback: bool = False
    # The time, for the records' timestamps and the restart count: injected in tests.
    clock: Callable[[], float] = time.time

    @property
    def retry(self) -> Throttle:
        """Between attempts of a create or a stop whose answer was lost or refused."""
        return Throttle(base=self.retry_backoff, jitter=(0.5, 1.0))


@dataclass(frozen=True)
class Context:
    client: QuantConnectClient
    store: StateStore
    options: EngineOptions
    # The values of the secrets this apply sends: an API message may echo one back (a
    # failed brokerage login), and no detail that is stored or shown may carry it.
    secret_values: Sequence[str] = ()

    def mask(self, text: str) -> str:
        return secrets.mask(text, self.secret_values)

    def resolved(self, value: Any) -> Any:
        """Secret references replaced by their values, just before an API call."""
        if not self.options.secret_fallback:
            return secrets.resolve(value)
        try:
            return secrets.resolve(value)
        except ReconcilerError:
            return _sandbox_values(value)


def _sandbox_values(value: Any) -> Any:
    """Dummy values for unresolvable secrets, in the sandbox only."""
    if isinstance(value, SecretRef):
        try:
            return secrets.resolve_ref(value)
        except ReconcilerError:
            return f"sandbox-{value.name}"
    if isinstance(value, Mapping):
        return {key: _sandbox_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sandbox_values(item) for item in value]
    return value
