"""The apply lock both stores hold: take it (waiting up to a timeout), keep it alive with a
heartbeat thread, release it.  Where the lock lives and what "free" means is the store's
`LockBackend`; the wait, the thread and the order of release are the same for every store.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Protocol

from reconciler.errors import StateLockedError

# How often a waiting runner asks again: short enough that a freed lock is taken at once,
# long enough that a queue of waiting runners does not load the store.
POLL = 0.1


class LockBackend(Protocol):
    """One store's lock: the statements the shared loop calls."""

    @property
    def heartbeat(self) -> float:
        """Seconds between renewals (read before every wait, so a store may change it)."""
        ...

    def attempt(self, token: str) -> Callable[[], bool]:
        """The attempt to take the lock as `token`, called until it returns True or the
        wait ends.  What is fixed for the whole wait (the moment it began, say) is fixed
        here, once."""
        ...

    def holder(self) -> str:
        """Who holds the lock, for the message of a wait that timed out."""
        ...

    def renew(self, token: str) -> bool:
        """Extend the lock; False when it is lost (the heartbeat stops)."""
        ...

    def release(self, token: str) -> None:
        """Free the lock (the heartbeat has stopped); never raises."""
        ...


class HeartbeatLock:
    """A lock held by a token, renewed by a daemon thread while held."""

    def __init__(self, backend: LockBackend) -> None:
        self._backend = backend
        self.token: str | None = None  # set while held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        """Hold the lock; wait at most `timeout` seconds for it."""
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def acquire(self, timeout: float) -> None:
        token = uuid.uuid4().hex
        take = self._backend.attempt(token)
        deadline = time.monotonic() + timeout
        while not take():
            if time.monotonic() >= deadline:
                raise StateLockedError(
                    f"state is locked by {self._backend.holder()}; waited {timeout:g}s; if "
                    "that process is gone, `reconciler state unlock` frees it"
                )
            time.sleep(POLL)
        self.token = token
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, args=(token,), name="state-lock-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self, token: str) -> None:
        while not self._stop.wait(self._backend.heartbeat):
            if not self._backend.renew(token):
                return

    def release(self) -> None:
        """Stop the heartbeat and free the lock; nothing to do when it is not held."""
        token = self.token
        if token is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        # No longer held before the release is sent: a store that refuses to replace a
        # lost connection while holding the lock may reconnect to release it.
        self.token = None
        self._backend.release(token)
