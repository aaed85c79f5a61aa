"""Prometheus metrics of `reconciler watch` (served by `serve.status` at /metrics)."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from reconciler.snapshot import StatusBoard

# What /metrics answers with, named here: prometheus_client is used from this module only.
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST


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
        self.window_open = Gauge(
            "reconciler_window_open",
            "1 while a deploy window is open (its market closed), 0 while it is closed",
            ["window"],
            registry=r,
        )
        self.deferred_actions = Gauge(
            "reconciler_deferred_actions",
            "Replaces and prunes waiting for their deploy window",
            registry=r,
        )
        self._windows: set[str] = set()
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

    def set_windows(self, opened: dict[str, bool]) -> None:
        """The windows of the desired set now: one series each, removed ones gone."""
        for gone in self._windows - set(opened):
            self.window_open.remove(gone)
        for name, is_open in opened.items():
            self.window_open.labels(name).set(1 if is_open else 0)
        self._windows = set(opened)

    def set_role(self, role: str) -> None:
        self.role = role
        self.leader.set(1 if role == "leader" else 0)

    def notification_failed(self, reason: str, message: str) -> None:
        self.notification_failures.labels(reason).inc()

    def observe_api(self, endpoint: str, status: str, seconds: float) -> None:
        self.api_seconds.labels(endpoint, status).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
