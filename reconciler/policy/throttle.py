"""One throttling helper for every backoff in the reconciler (kopf's `throttlers` is the
model): capped exponential delays, optionally jittered.

Who uses it: the API client's retries of idempotent calls, the create and stop paths'
bounded retries, the polls of compile, stop and health, the daemon's loop after a failed
reconcile, the per-deployment retry gate and the restart backoff.  Each names its own
`Throttle`; none writes the formula again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Throttle:
    """The n-th delay past `free` attempts: `base * factor ** (n - 1)`, at most `cap`,
    times a random factor drawn from `jitter` (lo, hi)."""

    base: float
    cap: float = math.inf
    factor: float = 2.0
    free: int = 0  # attempts that wait nothing (a restart backs off only after 3 in a row)
    jitter: tuple[float, float] = (1.0, 1.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after `attempt` (1-based) failed; 0 within the free attempts."""
        n = attempt - self.free
        if n <= 0:
            return 0.0
        raw = min(self.cap, self.base * self.factor ** min(n - 1, 64))
        low, high = self.jitter
        return raw * (random.uniform(low, high) if low != high else low)

    def delays(self) -> Iterator[float]:
        """An endless series of delays, for a poll that stops by its own deadline."""
        attempt = self.free
        while True:
            attempt += 1
            yield self.delay(attempt)
