"""Health after apply: new deployments watched until Running or failed, one list per poll."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from reconciler.client import QuantConnectClient
from reconciler.errors import ReconcilerError
from reconciler.model import Outcome
from reconciler.policy.throttle import Throttle

log = logging.getLogger("reconciler.engine")

# One list call per poll: 0.5 s, doubling, at most 5 s apart.
HEALTH_POLL = Throttle(base=0.5, cap=5.0)


def watch(
    client: QuantConnectClient,
    started: Mapping[str, Outcome],
    wait: float,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, tuple[str, str]]:
    """(result, detail) by deployId: `running` or `failed`, for each deployment in
    `started`, after at most `wait` seconds (a backed-off poll of the whole live list)."""
    pending = dict(started)
    verdicts: dict[str, tuple[str, str]] = {}
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + wait
    polls = HEALTH_POLL.delays()
    last_error = ""
    while pending:
        try:
            live = {item.deploy_id: item for item in client.list_live()}
        except ReconcilerError as error:
            last_error = str(error)
            live = {}
        for deploy_id in list(pending):
            item = live.get(deploy_id)
            if item is None:
                continue
            statuses[deploy_id] = item.status
            if item.status == "Running":
                verdicts[deploy_id] = ("running", "Running")
                del pending[deploy_id]
            elif not item.active:
                message = item.error or "no message from the API"
                verdicts[deploy_id] = ("failed", f"{item.status} after start: {message}")
                del pending[deploy_id]
        if should_stop is not None and should_stop():
            return verdicts  # shutting down: the next start looks at them again
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            break
        time.sleep(min(next(polls), remaining))
    for deploy_id in pending:
        status = statuses.get(deploy_id, "not yet listed")
        why = f"; live state unreadable: {last_error}" if last_error else ""
        verdicts[deploy_id] = ("failed", f"still {status} after {wait:g} s (left running){why}")
    return verdicts
