"""`reconciler watch`: the long-running reconciler daemon."""

from __future__ import annotations

import argparse
import logging
import threading

from reconciler import logs
from reconciler.engine import load_desired
from reconciler.errors import ManifestError
from reconciler.metrics import Metrics, MetricsServer
from reconciler.runtime import connect
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
    server = None
    if args.metrics_port is not None:
        server = MetricsServer(metrics, args.metrics_port, max_age=3 * args.resync + 30)
        server.start()
        log.info(
            "metrics on http://127.0.0.1:%d/metrics",
            server.port,
            extra={"event": "metrics_listening", "port": server.port},
        )
    try:
        with connect(args, seed, observer=metrics.observe_api) as rt:
            daemon = Daemon(
                rt, DesiredTracker(args.paths), metrics, args.resync, stop, prune=args.prune
            )
            holder.append(daemon)
            log.info(
                "watching %s (resync every %gs)",
                ", ".join(args.paths),
                args.resync,
                extra={"event": "started", "api_url": rt.api_url},
            )
            daemon.run()
    finally:
        if server is not None:
            server.stop()
    log.info("stopped", extra={"event": "stopped"})
    return 0
