"""Webhook receivers for notification tests: stdlib HTTP servers on 127.0.0.1.

`ok` answers 204, `fail` answers 500, `hang` keeps every request until the test ends.
Every receiver is stopped (and a hanging one released) when its `with` block ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

HANG_LIMIT = 60.0  # a hanging request is released at the latest after this long


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        assert mode in ("ok", "fail", "hang")
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.bodies.append(json.loads(raw))
                if outer.mode == "hang":
                    outer.release.wait(HANG_LIMIT)
                try:
                    self.send_response(500 if outer.mode == "fail" else 204)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on us: what a hanging receiver is for

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/T0/token-in-path"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.bodies)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.bodies if kind is None or b.get("event") == kind]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Callable[[str], Receiver]]:
    """`receiver("ok" | "fail" | "hang")`: a started receiver, stopped after the test."""
    with ExitStack() as stack:
        yield lambda mode="ok": stack.enter_context(Receiver(mode))
