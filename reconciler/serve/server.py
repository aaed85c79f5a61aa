"""One small threaded HTTP server that answers from a route table.

Every listener of the daemon is this server with a table of its own (the status page and
metrics on one, the webhook receiver on another): a route is a set of methods, a path and
a handler from a `Request` to a `Response`.  The server's answers come in a fixed order,
before any handler runs:

1. 405 (with `Allow`) for a method that no route of this listener takes, whatever the path;
2. 404 for a path no route has (the path without its query string);
3. 405 (with `Allow`) for a method the path's route does not take;
4. for a route that declares a body limit, judged by the headers before a byte of the body
   is read: 411 for a Transfer-Encoding (a chunked body is measured only by reading it),
   400 for a malformed Content-Length, 413 for one over the limit (none: an empty body).

Methods outside `methods` get http.server's own 501.  Nothing is logged per request.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

# The methods a listener answers at all (405 when no route takes them): those the daemon's
# listener has always refused with 405. Anything else gets http.server's 501.
ANSWERED_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class IncompleteBody(Exception):
    """The client sent fewer bytes than its Content-Length: no request (answered 400)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def plain(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    """A one-line text/plain answer."""
    return Response(status, f"{text}\n".encode(), "text/plain", dict(headers or {}))


NOT_FOUND = plain(404, "not found")


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request target as sent: path and query string
    path: str  # without the query string: what routes match
    query: str  # after the first "?", "" without one
    headers: Message  # case-insensitive `get`
    _read: Callable[[], bytes] = field(repr=False)

    def read_body(self) -> bytes:
        """The body, within the route's limit (checked by Content-Length before reading);
        b"" for a route that declares none. Raises IncompleteBody if it is cut short."""
        return self._read()


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    path: str
    handler: Handler
    max_body: int | None = None  # bytes; None: the route reads no body, whatever is sent


class HttpServer:
    """A route table served on `host:port` (IPv4, or IPv6 when the host has a colon) by
    daemon threads; `port` is the bound one (ask for 0, read the port)."""

    def __init__(
        self,
        routes: Iterable[Route],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "http",
        methods: Collection[str] = ANSWERED_METHODS,
        timeout: float | None = None,
        on_answer: Callable[[Request | None, Response], None] | None = None,
    ) -> None:
        """`timeout`: seconds a client may take to send its request (a listener facing
        the internet sets it, so that a slow client cannot hold a thread); `on_answer`:
        told of every answer, those the table gives before any handler runs too (None
        for the request then)."""
        self._routes: dict[str, Route] = {}
        for route in routes:
            if route.path in self._routes:
                raise ValueError(f"two routes for {route.path}")
            self._routes[route.path] = route
        self._taken = frozenset().union(*(route.methods for route in self._routes.values()))
        answered = frozenset(methods) | self._taken
        exchange = type(
            "Exchange",
            (_Exchange,),
            {"timeout": timeout, **{f"do_{m}": _Exchange.dispatch for m in answered}},
        )
        self._on_answer = on_answer
        listener = _IPv6Listener if ":" in host else _Listener
        self._server = listener((host, port), exchange)
        self._server.daemon_threads = True
        self._server.answer = self.answer
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket, and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(
        self, method: str, target: str, headers: Message, stream: io.BufferedIOBase
    ) -> Response:
        request, response = self._answer(method, target, headers, stream)
        if self._on_answer is not None:
            self._on_answer(request, response)
        return response

    def _answer(
        self, method: str, target: str, headers: Message, stream: io.BufferedIOBase
    ) -> tuple[Request | None, Response]:
        """The answer to one request, in the order of the module docstring."""
        if method not in self._taken:
            return None, _not_allowed(self._taken)
        path, _, query = target.partition("?")
        route = self._routes.get(path)
        if route is None:
            return None, NOT_FOUND
        if method not in route.methods:
            return None, _not_allowed(route.methods)
        size = 0  # a route without a limit never reads a body, whatever is sent
        if route.max_body is not None:
            checked = _checked_size(route.max_body, headers)
            if isinstance(checked, Response):
                return None, checked
            size = checked
        request = Request(method, target, path, query, headers, _body_reader(stream, size))
        try:
            return request, route.handler(request)
        except IncompleteBody:
            return request, plain(400, "bad request: the body was cut short")


def _not_allowed(methods: Collection[str]) -> Response:
    return plain(405, "method not allowed", {"Allow": ", ".join(sorted(methods))})


def _checked_size(limit: int, headers: Message) -> int | Response:
    """The body's size by its headers alone, or the answer refusing it."""
    if headers.get("Transfer-Encoding") is not None:
        return plain(411, "length required")  # a chunked body is measured only by reading it
    declared = headers.get_all("Content-Length") or []
    if not declared:
        return 0
    size = _declared_size(declared[0]) if len(declared) == 1 else None
    if size is None:
        return plain(400, "bad request: malformed Content-Length")
    if size > limit:
        return plain(413, "request body too large")
    return size


def _declared_size(value: str) -> int | None:
    """A Content-Length as a number; None unless it is ASCII digits only (no sign, no
    space, no list)."""
    if not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    # int() refuses 4,300 digits and more; 19 already exceed any limit a route declares.
    return int(digits) if len(digits) <= 18 else 10**18


# ---- http.server plumbing --------------------------------------------------------------


class _Listener(ThreadingHTTPServer):
    answer: Callable[[str, str, Message, io.BufferedIOBase], Response]


class _IPv6Listener(_Listener):
    address_family = socket.AF_INET6


class _Exchange(BaseHTTPRequestHandler):
    """One request: made into a `Request`, answered by the listener, written back."""

    def dispatch(self) -> None:
        listener = cast(_Listener, self.server)
        self._send(listener.answer(self.command, self.path, self.headers, self.rfile))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        return  # no request log on stderr: the daemon's own logs are structured


def _body_reader(stream: io.BufferedIOBase, size: int) -> Callable[[], bytes]:
    """Reads the body's `size` bytes once, when the handler asks (a handler that refuses
    a request on its headers never reads it)."""
    read: list[bytes] = []

    def body() -> bytes:
        if not read:
            data = stream.read(size) if size else b""
            if len(data) < size:
                raise IncompleteBody(f"{len(data)} of {size} bytes")
            read.append(data)
        return read[0]

    return body
