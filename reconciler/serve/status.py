"""The daemon's route table (`watch --listen`): `/metrics`, `/healthz` and the status page.

Read-only: every route takes GET alone, so any other method on any path is a 405 (nothing
can be triggered over HTTP).  `/healthz` is 200 while reconcile loops are recent and 503
once they are stale, with the daemon's role either way (DESIGN §9, §13); the page and its
JSON (`/`, `/api/status`, DESIGN §14) show the last snapshot only.
"""

from __future__ import annotations

import json
import time

from reconciler.metrics import EXPOSITION_CONTENT_TYPE, Metrics
from reconciler.serve.server import NOT_FOUND, Handler, Request, Response, Route

GET = frozenset({"GET"})


def routes(metrics: Metrics, max_age: float) -> list[Route]:
    """The table; `max_age`: seconds since the last loop after which /healthz is stale."""

    def exposition(request: Request) -> Response:
        return Response(200, metrics.exposition(), EXPOSITION_CONTENT_TYPE)

    def health(request: Request) -> Response:
        return _health(metrics, max_age)

    page = _page(metrics)
    return [
        Route(GET, "/metrics", _bare(exposition)),
        Route(GET, "/healthz", _bare(health)),
        Route(GET, "/", page),
        Route(GET, "/api/status", page),
    ]


def _bare(handler: Handler) -> Handler:
    """The route only without a query string: `/metrics?x` and `/healthz?x` have always
    been 404 (scrapers and probes send the bare path), unlike the page's routes."""

    def answer(request: Request) -> Response:
        return handler(request) if request.target == request.path else NOT_FOUND

    return answer


def _health(metrics: Metrics, max_age: float) -> Response:
    # A standby is healthy too: alive, and ready to take over.
    age = time.monotonic() - metrics.last_loop
    healthy = age <= max_age
    body = json.dumps(
        {
            "status": "ok" if healthy else "stale",
            "role": metrics.role,
            "lastLoopSecondsAgo": round(age, 1),
        }
    )
    return Response(200 if healthy else 503, body.encode(), "application/json")


def _page(metrics: Metrics) -> Handler:
    def answer(request: Request) -> Response:
        # Imported on the first view, as before: jinja2 loads only if someone looks.
        from reconciler import page

        answered = page.respond(request.target, metrics.board.current(metrics.role))
        return NOT_FOUND if answered is None else Response(*answered)

    return answer
