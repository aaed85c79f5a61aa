"""What the create and stop paths share: the client, the store, options, secret values."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import secrets
from reconciler.client import QuantConnectClient
from reconciler.errors import ReconcilerError
from reconciler.model import SecretRef
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
    # The time, for restart backoff: injected in tests, never read by the planner itself.
    clock: Callable[[], float] = time.time


@dataclass
class Context:
    client: QuantConnectClient
    store: StateStore
    options: EngineOptions
    # Each project's `modified` from this reconcile's projects read (compileId: latest).
    project_modified: dict[int, str] = field(default_factory=dict)
    # The values of the secrets this apply sends: an API message may echo one back (a
    # failed brokerage login), and no detail that is stored or shown may carry it.
    secret_values: list[str] = field(default_factory=list)

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
