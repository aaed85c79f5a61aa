"""The stop path, for replace and prune: re-read, stop (or liquidate), confirm.

Never acts on a stale list: the project's live state is read again right before the
stop, and the stop is sent only when the project still runs exactly the deployment the
intent names (the one this reconciler created or adopted).  A stop is not idempotent on
the wire (a second one is refused once the first took effect), so an unknown outcome is
settled by reading live state, as for creates, never by blind re-sending.  A replace's
create is sent only once live state shows that the old deployment no longer runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from reconciler import planner
from reconciler.engine.context import Context
from reconciler.errors import ApiError, OutcomeUnknown, ReconcilerError, TransportError
from reconciler.model import ActionKind, Intent, LiveDeployment
from reconciler.policy.throttle import Throttle

log = logging.getLogger("reconciler.engine")


@dataclass(frozen=True)
class StopResult:
    stopped: bool  # live state shows the old deployment no longer runs
    detail: str = ""
    unknown: bool = False  # live state could not be read: the intent stays open


# Seconds to watch live state after a stop whose outcome is unknown, before sending again.
UNKNOWN_PATIENCE = 2.0
# Polls of live state until a stop shows: 0.1 s, doubling, at most 2 s apart.
STOP_POLL = Throttle(base=0.1, cap=2.0)


class _Unreadable(Exception):
    pass


def _active(ctx: Context, project_id: int) -> LiveDeployment | None:
    try:
        live = ctx.client.list_live(project_id=project_id)
    except ReconcilerError as error:
        raise _Unreadable(str(error)) from None
    return planner.active_by_project(live).get(project_id)


def _wait_until_gone(ctx: Context, intent: Intent, patience: float) -> LiveDeployment | None:
    """Poll the project's live state until the old deployment no longer runs (bounded).

    Returns what runs on the project at the end (None: nothing).
    """
    deadline = time.monotonic() + patience
    for delay in STOP_POLL.delays():
        current = _active(ctx, intent.project_id)
        if current is None or current.deploy_id != intent.old_deploy_id:
            return current
        if time.monotonic() >= deadline:
            return current
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
    raise AssertionError("unreachable: the poll is endless")


def stop(ctx: Context, intent: Intent) -> StopResult:
    """Stop (or, for a prune with `onDelete: liquidate`, liquidate) `intent.old_deploy_id`."""
    project, old = intent.project_id, intent.old_deploy_id
    liquidate = intent.kind is ActionKind.PRUNE and intent.on_delete == "liquidate"
    verb = "liquidate" if liquidate else "stop"
    try:
        current = _active(ctx, project)
    except _Unreadable as error:
        return StopResult(
            False, f"live state could not be read before the {verb} ({error}); nothing was sent"
        )
    if current is None:
        return StopResult(True, f"{old} was already not running")
    if current.deploy_id != old:
        return StopResult(
            False, f"project {project} now runs {current.deploy_id}, not {old}; nothing was sent"
        )
    last_error = ""
    for attempt in range(ctx.options.stop_attempts):
        if attempt:
            time.sleep(ctx.options.retry.delay(attempt))
        patience = ctx.options.stop_confirm_timeout
        try:
            if liquidate:
                ctx.client.liquidate_live(project)
            else:
                ctx.client.stop_live(project)
        except (OutcomeUnknown, TransportError) as error:
            # A second stop is harmless (unlike a second create), so a short look is
            # enough before sending it again.
            last_error, patience = str(error), min(UNKNOWN_PATIENCE, patience)
            log.warning("%s: %s; reading live state before any retry", intent.name, error)
        except ApiError as error:
            # Refused: most likely it stopped meanwhile; one read decides.
            last_error, patience = str(error), 0.0
        try:
            current = _wait_until_gone(ctx, intent, patience)
        except _Unreadable as error:
            return StopResult(
                False,
                f"{verb} sent, and live state could not be read to confirm it ({error}); "
                "the next run checks before doing anything",
                unknown=True,
            )
        if current is None:
            after = f"confirmed from live state after: {last_error}" if last_error else ""
            return StopResult(True, after)
        if current.deploy_id != old:
            return StopResult(
                False, f"project {project} now runs {current.deploy_id}; nothing more was sent"
            )
    return StopResult(
        False,
        f"{old} still runs after {ctx.options.stop_attempts} {verb} attempts"
        + (f" ({last_error})" if last_error else ""),
    )
