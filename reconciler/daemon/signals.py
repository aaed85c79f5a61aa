"""Signals of the daemon: SIGTERM/SIGINT finish in-flight work and exit 0, SIGHUP re-reads
every file."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

log = logging.getLogger("reconciler.watch")


class _Wakeable(Protocol):
    wake: threading.Event
    reread: threading.Event


def install_signals(stop: threading.Event, daemon_ref: Callable[[], _Wakeable | None]) -> None:
    def on_stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "stopping: finishing in-flight work",
            extra={"event": "stopping", "signal": signal.Signals(signum).name},
        )
        stop.set()
        daemon = daemon_ref()
        if daemon is not None:
            daemon.wake.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        daemon = daemon_ref()
        if daemon is not None:
            daemon.reread.set()
            daemon.wake.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
