"""Prometheus metrics and the /healthz, /metrics endpoint of `reconciler watch`."""

from __future__ import annotations

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
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "Unix time of the last reconcile loop that completed without error",
            registry=r,
        )
        self.last_loop = time.monotonic()

    def observe_api(self, endpoint: str, status: str, seconds: float) -> None:
        self.api_seconds.labels(endpoint, status).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """/healthz (200 while reconcile loops are recent, else 503) and /metrics, on loopback."""

    def __init__(
        self, metrics: Metrics, port: int, max_age: float, host: str = "127.0.0.1"
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    age = time.monotonic() - metrics.last_loop
                    healthy = age <= outer.max_age
                    body = f"{'ok' if healthy else 'stale'}: last reconcile {age:.0f}s ago\n"
                    self._send(200 if healthy else 503, body.encode(), "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.max_age = max_age
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
