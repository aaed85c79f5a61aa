"""The route table itself (`reconciler.serve.HttpServer`), against a real server on loopback
port 0, started and stopped by each test: the answers every listener shares (404, 405 with
Allow, 501, the body checks) in their order, before any handler runs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from reconciler.serve import HttpServer, Request, Response, Route
from tests.test_listen import _ipv6_loopback

LIMIT = 16


class Recorder:
    """Handlers that remember what they were asked (and whether they ran at all)."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    def hello(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(200, b"hello", "text/plain", {"X-Query": request.query})

    def echo(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(202, request.read_body(), "application/octet-stream")


@contextmanager
def serving(recorder: Recorder, host: str = "127.0.0.1") -> Iterator[HttpServer]:
    server = HttpServer(
        [
            Route(frozenset({"GET"}), "/hello", recorder.hello),
            Route(frozenset({"POST"}), "/hooks/echo", recorder.echo, max_body=LIMIT),
        ],
        host,
        0,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[HttpServer]:
    with serving(recorder) as started:
        yield started


def url(server: HttpServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def raw(server: HttpServer, head: bytes) -> tuple[int, bytes]:
    """Send exactly these bytes (and keep the connection open for more), then read the
    answer: what an httpx client cannot do, a Content-Length that the body does not meet."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_route_answers_and_matches_its_path_without_the_query(
    server: HttpServer, recorder: Recorder
) -> None:
    answer = httpx.get(url(server, "/hello?who=me&x=1"), timeout=5)
    assert (answer.status_code, answer.text) == (200, "hello")
    assert answer.headers["content-type"] == "text/plain"
    assert answer.headers["x-query"] == "who=me&x=1"
    [request] = recorder.seen
    assert (request.method, request.path, request.target) == ("GET", "/hello", "/hello?who=me&x=1")
    assert request.headers.get("host") == f"127.0.0.1:{server.port}"  # case-insensitive


def test_an_unknown_path_is_404(server: HttpServer, recorder: Recorder) -> None:
    answer = httpx.get(url(server, "/nope"), timeout=5)
    assert (answer.status_code, answer.text) == (404, "not found\n")
    assert answer.headers["content-type"] == "text/plain"
    assert httpx.get(url(server, "/hello/"), timeout=5).status_code == 404  # exact paths
    assert recorder.seen == []


def test_a_method_the_route_does_not_take_is_405_with_its_allow(
    server: HttpServer, recorder: Recorder
) -> None:
    answer = httpx.post(url(server, "/hello"), timeout=5)
    assert (answer.status_code, answer.text) == (405, "method not allowed\n")
    assert answer.headers["allow"] == "GET"
    assert httpx.get(url(server, "/hooks/echo"), timeout=5).headers["allow"] == "POST"
    assert recorder.seen == []


def test_a_method_no_route_takes_is_405_on_any_path(server: HttpServer) -> None:
    # Checked before the path: an unknown path is no 404 for a method nothing here takes.
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = httpx.request(method, url(server, "/nope"), timeout=5)
        assert answer.status_code == 405, method
        assert answer.headers["allow"] == "GET, POST", method


def test_a_method_outside_the_answered_ones_is_http_servers_501(server: HttpServer) -> None:
    assert httpx.head(url(server, "/hello"), timeout=5).status_code == 501


def test_a_body_within_the_limit_reaches_the_handler(
    server: HttpServer, recorder: Recorder
) -> None:
    answer = httpx.post(url(server, "/hooks/echo"), content=b"x" * LIMIT, timeout=5)
    assert (answer.status_code, answer.content) == (202, b"x" * LIMIT)
    empty = httpx.post(url(server, "/hooks/echo"), timeout=5)
    assert (empty.status_code, empty.content) == (202, b"")


def test_a_body_over_the_limit_is_413_by_its_content_length_before_reading(
    server: HttpServer, recorder: Recorder
) -> None:
    # Only the headers are sent: a server that read the body would wait for it until the
    # client's timeout instead of answering.
    head = f"POST /hooks/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
    assert raw(server, head.encode()) == (413, b"request body too large\n")
    huge = b"POST /hooks/echo HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    assert raw(server, huge)[0] == 413
    assert recorder.seen == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\n", 411),  # its length is known only by reading it
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: 1 2\r\n", 400),
        ("Content-Length: 3\r\nContent-Length: 4\r\n", 400),
    ],
)
def test_a_body_whose_length_is_not_declared_plainly_is_refused(
    server: HttpServer, recorder: Recorder, headers: str, status: int
) -> None:
    # Headers only: what would follow is never read, and unread bytes could reset the
    # connection before the answer is read here.
    head = f"POST /hooks/echo HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
    assert raw(server, head.encode())[0] == status
    assert recorder.seen == []


def test_a_body_cut_short_is_400(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(b"POST /hooks/echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        connection.shutdown(socket.SHUT_WR)  # the rest never comes
        answer = connection.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.0 400 ")


def test_a_route_without_a_limit_reads_no_body(server: HttpServer, recorder: Recorder) -> None:
    # A GET with a declared body that is never sent: answered at once, nothing read.
    head = b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    assert raw(server, head) == (200, b"hello")


def test_port_0_binds_a_free_port_and_stop_closes_it(recorder: Recorder) -> None:
    with serving(recorder) as server:
        assert server.port != 0
        assert httpx.get(url(server, "/hello"), timeout=5).status_code == 200
        threads = {thread.name for thread in threading.enumerate()}
        assert "http" in threads
    with pytest.raises(httpx.ConnectError):
        httpx.get(url(server, "/hello"), timeout=5)
    assert "http" not in {thread.name for thread in threading.enumerate()}


def test_two_routes_for_one_path_are_refused(recorder: Recorder) -> None:
    twice = [Route(frozenset({"GET"}), "/a", recorder.hello)] * 2
    with pytest.raises(ValueError, match="two routes for /a"):
        HttpServer(twice)


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_serves_on_ipv6_loopback(recorder: Recorder) -> None:
    with serving(recorder, host="::1") as server:
        answer = httpx.get(f"http://[::1]:{server.port}/hello", timeout=5)
        assert (answer.status_code, answer.text) == (200, "hello")
        assert httpx.get(f"http://[::1]:{server.port}/nope", timeout=5).status_code == 404
