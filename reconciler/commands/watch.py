"""`reconciler watch`: the long-running reconciler daemon."""

from __future__ import annotations

import logging
import threading

from reconciler import logs, notify
from reconciler.config import WatchConfig
from reconciler.daemon import Daemon, install_signals
from reconciler.errors import ConfigError, ManifestError
from reconciler.metrics import Metrics, MetricsServer
from reconciler.runtime import connect
from reconciler.sources import files

log = logging.getLogger("reconciler.watch")


def run(config: WatchConfig) -> int:
    logs.configure(config.log_format)
    files.check_paths(config.paths)
    stop = threading.Event()
    holder: list[Daemon] = []
    install_signals(stop, lambda: holder[0] if holder else None)
    try:
        seed = files.read(config.paths).deployments if config.connection.sandbox else ()
    except ManifestError:
        seed = ()  # the daemon reports invalid files itself and keeps going
    metrics = Metrics()
    receivers = notify.targets(config.notify)
    server = None
    if config.listen is not None:
        host, port = config.listen
        try:
            server = MetricsServer(metrics, port, max_age=3 * config.resync + 30, host=host)
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None
        server.start()
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "metrics on http://%s:%d/metrics",
            shown,
            server.port,
            extra={"event": "metrics_listening", "host": host, "port": server.port},
        )

    def notification_failed(reason: str, message: str) -> None:
        metrics.notification_failed(reason, message)
        log.warning(message, extra={"event": "notify_failed", "reason": reason})

    notifier = notify.Notifier(receivers, on_failure=notification_failed)
    try:
        with connect(config.connection, seed, observer=metrics.observe_api) as rt:
            leadership = rt.store.leadership(config.lease)  # PostgreSQL: one leader acts
            daemon = Daemon(
                rt,
                files.FileTracker(config.paths),
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
                ", ".join(config.paths),
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
        if server is not None:
            server.stop()
    log.info("stopped", extra={"event": "stopped"})
    return 0
