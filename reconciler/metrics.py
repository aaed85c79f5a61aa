"""Prometheus metrics and the /healthz, /metrics endpoint of `reconciler watch`."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from reconciler.snapshot import StatusBoard


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "reconciler_reconciles", "Reconcile loops run, by result", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "reconciler_reconcile_duration_seconds", "Duration of a reconcile loop", registry=r
        )
        self.actions = Counter(
            "reconciler_actions", "Actions by kind and outcome", ["action", "outcome"], registry=r
        )
        self.api_seconds = Histogram(
            "reconciler_api_request_duration_seconds",
            "QuantConnect API request latency by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.invalid_manifests = Gauge(
            "reconciler_invalid_manifest_files",
            "Manifest files that currently fail to parse or validate (last good content kept)",
            registry=r,
        )
        self.manifests = Gauge(
            "reconciler_desired_deployments", "Deployments in the desired set", registry=r
        )
        self.backing_off = Gauge(
            "reconciler_deployments_backing_off",
            "Deployments whose creates are delayed after repeated failures or deaths",
            registry=r,
        )
        self.errors = Counter("reconciler_errors", "Reconcile errors by kind", ["kind"], registry=r)
        self.drift = Counter(
            "reconciler_drift",
            "Episodes of a managed deployment found not running, by kind "
            "(failed, stopped by someone else, exited), each counted once",
            ["kind"],
            registry=r,
        )
        self.notification_failures = Counter(
            "reconciler_notification_failures",
            "Notifications (one event to one --notify receiver) not delivered: error (every "
            "attempt failed) or dropped (queue full, or shutting down)",
            ["reason"],
            registry=r,
        )
        for reason in ("error", "dropped"):
            self.notification_failures.labels(reason)
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "Unix time of the last reconcile loop that completed without error",
            registry=r,
        )
        self.leader = Gauge(
            "reconciler_leader",
            "1 while this daemon leads its workspace and acts, 0 while it stands by "
            "(always 1 with a SQLite state)",
            registry=r,
        )
        self.source_info = Gauge(
            "reconciler_source_info",
            "The revision the desired state was last read at (1 for the current one)",
            ["kind", "revision"],
            registry=r,
        )
        self.git_fetch_failures = Counter(
            "reconciler_git_fetch_failures",
            "Fetches of the git source that failed (network, auth, timeout)",
            registry=r,
        )
        self.last_fetch_success = Gauge(
            "reconciler_source_last_fetch_success_timestamp_seconds",
            "Unix time of the last fetch of the git source that succeeded",
            registry=r,
        )
        self.webhook_requests = Counter(
            "reconciler_webhook_requests",
            "Webhook requests by answer (accepted, ignored, duplicate, unauthorized, ...)",
            ["result"],
            registry=r,
        )
        self._source: tuple[str, str] | None = None
        self.role = "standby"  # "leader" | "standby", shown by /healthz
        self.board = StatusBoard()  # what the status page shows (DESIGN §14)
        self.last_loop = time.monotonic()

    def set_source(self, kind: str, revision: str | None) -> None:
        """The revision in force: one series of `reconciler_source_info`, the old one gone."""
        labels = (kind, revision or "")
        if labels == self._source:
            return
        if self._source is not None:
            self.source_info.remove(*self._source)
        self.source_info.labels(*labels).set(1)
        self._source = labels

    def set_role(self, role: str) -> None:
        self.role = role
        self.leader.set(1 if role == "leader" else 0)

    def notification_failed(self, reason: str, message: str) -> None:
        self.notification_failures.labels(reason).inc()

    def observe_api(self, endpoint: str, status: str, seconds: float) -> None:
        self.api_seconds.labels(endpoint, status).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """/healthz (200 while reconcile loops are recent, else 503; JSON with the daemon's
    role, leader or standby), /metrics, and the status page (`/`, `/api/status`), on `host`
    (loopback unless told otherwise: `watch --listen 0.0.0.0:PORT` in a container)."""

    def __init__(
        self, metrics: Metrics, port: int, max_age: float, host: str = "127.0.0.1"
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    # A standby is healthy too: alive, and ready to take over.
                    age = time.monotonic() - metrics.last_loop
                    healthy = age <= outer.max_age
                    body = json.dumps(
                        {
                            "status": "ok" if healthy else "stale",
                            "role": metrics.role,
                            "lastLoopSecondsAgo": round(age, 1),
                        }
                    )
                    self._send(200 if healthy else 503, body.encode(), "application/json")
                else:
                    self._page()

            def _page(self) -> None:
                """The status page and its JSON (DESIGN §14): from the last snapshot only."""
                from reconciler import page

                answer = page.respond(self.path, metrics.board.current(metrics.role))
                if answer is None:
                    self._send(404, b"not found\n", "text/plain")
                else:
                    self._send(*answer)

            def _read_only(self) -> None:
                """Nothing can be triggered over HTTP: every other method is refused."""
                self._send(405, b"method not allowed\n", "text/plain", {"Allow": "GET"})

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.max_age = max_age
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
