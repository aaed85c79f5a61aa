"""`reconciler watch`: the daemon that runs the reconcile cycle in a loop.

loop     the loop: on file changes, every --resync seconds, when a hold comes due;
         leadership with a PostgreSQL state; backoff when a reconcile fails
reports  what it logs, notifies and counts, once per episode
signals  SIGTERM/SIGINT finish in-flight work; SIGHUP re-reads every file
"""

from reconciler.daemon.loop import HEALTH_WAIT, PRUNE_GRACE, Daemon
from reconciler.daemon.signals import install_signals

__all__ = ["HEALTH_WAIT", "PRUNE_GRACE", "Daemon", "install_signals"]
