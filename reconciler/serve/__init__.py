"""The daemon's HTTP side: one small server, and the route tables it serves.

- `server`: `HttpServer`, a threaded stdlib server answering from a table of `Route`s,
  each a method set, a path and a handler from `Request` to `Response`;
- `status`: the daemon's table: `/metrics`, `/healthz`, the status page (`/`, `/api/status`).
"""

from reconciler.serve.server import (
    NOT_FOUND,
    Handler,
    HttpServer,
    IncompleteBody,
    Request,
    Response,
    Route,
    plain,
)

__all__ = [
    "NOT_FOUND",
    "Handler",
    "HttpServer",
    "IncompleteBody",
    "Request",
    "Response",
    "Route",
    "plain",
]
