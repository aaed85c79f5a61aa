"""`reconciler watch`: the long-running reconciler daemon."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reconciler import logs, notify
from reconciler.config import WatchConfig
from reconciler.daemon import Daemon, install_signals
from reconciler.errors import ConfigError, ManifestError
from reconciler.metrics import Metrics
from reconciler.runtime import connect
from reconciler.serve import HttpServer, Route, hooks, status
from reconciler.sources import files, git

if TYPE_CHECKING:
    from reconciler.sources import Source

log = logging.getLogger("reconciler.watch")


# Events of the git source, by how loud they are; those also notified (DESIGN §15).
_GIT_EVENTS = {
    "git_fetch_failed": logging.ERROR,
    "git_fetch_recovered": logging.INFO,
    "invalid_revision": logging.ERROR,
    "verify_failed": logging.ERROR,
    "history_rewritten": logging.WARNING,
}
_NOTIFIED = frozenset({"verify_failed", "history_rewritten", "invalid_revision"})


def _git_source(
    config: WatchConfig, metrics: Metrics, notifier: notify.Notifier
) -> git.GitFollower:
    def on_event(event: str, fields: dict[str, object]) -> None:
        why = str(fields.get("error") or fields.get("previous") or "")
        log.log(
            _GIT_EVENTS.get(event, logging.INFO),
            "%s %s",
            event,
            why,
            extra={"event": event, **fields},
        )
        if event in _NOTIFIED:
            reason = (
                f"revision {fields.get('revision')} does not descend from {why}: a force push"
                if event == "history_rewritten"
                else why
                or f"{fields.get('problems')} problem(s) in revision {fields.get('revision')}"
            )
            notifier.send(notify.make_event(event, None, 0, None, reason))

    def on_fetch(ok: bool) -> None:
        if ok:
            metrics.last_fetch_success.set_to_current_time()
        else:
            metrics.git_fetch_failures.inc()

    source = config.source
    assert source.git is not None
    follower = git.GitFollower(
        source.git,
        config.paths,
        ref=source.ref,
        interval=source.interval,
        allowed_signers=source.verify_signatures,
        on_event=on_event,
        on_fetch=on_fetch,
    )
    follower.poll()  # the first revision, before the first reconcile
    return follower


@contextlib.contextmanager
def _serving(
    routes: list[Route],
    listen: tuple[str, int],
    name: str,
    first_path: str,
    **options: Any,
) -> Iterator[HttpServer]:
    """A route table served on `listen` until the block ends; its address logged."""
    host, port = listen
    try:
        server = HttpServer(routes, host, port, name=name, **options)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    server.start()
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "%s on http://%s:%d%s",
        name,
        shown,
        server.port,
        first_path,
        extra={"event": f"{name}_listening", "host": host, "port": server.port},
    )
    try:
        yield server
    finally:
        server.stop()


def run(config: WatchConfig) -> int:
    logs.configure(config.log_format)
    if not config.source.git:
        files.check_paths(config.paths)
    stop = threading.Event()
    holder: list[Daemon] = []
    install_signals(stop, lambda: holder[0] if holder else None)
    try:
        sandboxed = config.connection.sandbox and not config.source.git
        seed = files.read(config.paths).deployments if sandboxed else ()
    except ManifestError:
        seed = ()  # the daemon reports invalid files itself and keeps going
    metrics = Metrics()
    receivers = notify.targets(config.notify)
    secret = None
    if config.source.hooks_listen is not None:  # no secret, no receiver: refused at once
        secret = hooks.read_secret(config.source.hook_secret_file, os.environ)

    def notification_failed(reason: str, message: str) -> None:
        metrics.notification_failed(reason, message)
        log.warning(message, extra={"event": "notify_failed", "reason": reason})

    notifier = notify.Notifier(receivers, on_failure=notification_failed)
    servers = contextlib.ExitStack()
    if config.listen is not None:
        routes = status.routes(metrics, max_age=3 * config.resync + 30)
        servers.enter_context(_serving(routes, config.listen, "metrics", "/metrics"))
    watched: Source
    if config.source.git:
        follower = _git_source(config, metrics, notifier)
        watched = follower
        if config.source.hooks_listen is not None and secret is not None:
            receiver = hooks.Receiver(secret, config.source.ref, follower.wake.set)
            servers.enter_context(
                _serving(
                    receiver.routes(),
                    config.source.hooks_listen,
                    "hooks",
                    "/hooks/github",
                    timeout=hooks.CLIENT_TIMEOUT,
                    on_answer=lambda request, response: metrics.webhook_requests.labels(
                        hooks.RESULTS.get(response.status, str(response.status))
                    ).inc(),
                )
            )
    else:
        watched = files.FileTracker(config.paths)
    try:
        with servers, connect(config.connection, seed, observer=metrics.observe_api) as rt:
            leadership = rt.store.leadership(config.lease)  # PostgreSQL: one leader acts
            daemon = Daemon(
                rt,
                watched,
                metrics,
                config.resync,
                stop,
                prune=config.prune,
                prune_grace=config.prune_grace,
                notifier=notifier,
                leadership=leadership,
            )
            holder.append(daemon)
            leadership.start(daemon.on_role)
            log.info(
                "watching %s (resync every %gs)",
                watched.description,
                config.resync,
                extra={
                    "event": "started",
                    "api_url": rt.api_url,
                    "state": rt.store.location,
                    "workspace": rt.store.workspace,
                },
            )
            try:
                daemon.run()
            finally:
                leadership.stop()  # a leader hands its lease over at once
    finally:
        notifier.close(wait=1.0)
        servers.close()
    log.info("stopped", extra={"event": "stopped"})
    return 0
