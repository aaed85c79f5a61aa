"""`reconciler watch`: the long-running reconciler daemon."""

from __future__ import annotations

import argparse
import logging
import threading

from reconciler import logs, notify
from reconciler.engine import load_desired
from reconciler.errors import ConfigError, ManifestError
from reconciler.metrics import Metrics
from reconciler.runtime import connect
from reconciler.serve import HttpServer, status
from reconciler.watcher import Daemon, DesiredTracker, check_paths, install_signals

log = logging.getLogger("reconciler.watch")


def run(args: argparse.Namespace) -> int:
    logs.configure(args.log_format)
    check_paths(args.paths)
    stop = threading.Event()
    holder: list[Daemon] = []
    install_signals(stop, lambda: holder[0] if holder else None)
    try:
        seed = load_desired(args.paths) if args.sandbox else []
    except ManifestError:
        seed = []  # the daemon reports invalid files itself and keeps going
    metrics = Metrics()
    receivers = notify.targets(args.notify)
    server = None
    if args.listen is not None:
        host, port = args.listen
        try:
            routes = status.routes(metrics, max_age=3 * args.resync + 30)
            server = HttpServer(routes, host, port, name="metrics")
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
        with connect(args, seed, observer=metrics.observe_api) as rt:
            leadership = rt.store.leadership(args.lease)  # PostgreSQL: one leader acts
            daemon = Daemon(
                rt,
                DesiredTracker(args.paths),
                metrics,
                args.resync,
                stop,
                prune=args.prune,
                prune_grace=args.prune_grace,
                notifier=notifier,
                leadership=leadership,
            )
            holder.append(daemon)
            leadership.start(daemon.on_role)
            log.info(
                "watching %s (resync every %gs)",
                ", ".join(args.paths),
                args.resync,
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
