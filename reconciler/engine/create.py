"""The create path: one `/live/create`, exactly once (DESIGN §6).

The intent is already journaled when this runs.  Before each send (the first, a retry, a
re-send after a 429) the intent is stamped durably with the latest time that send can
take effect (`lands_by`, see `journal.landing_deadline`): a run that finds the intent open
after a crash waits until then before it decides nothing landed, and claims what landed
within that span as its own.  The stamp is written after the compile of `compileId:
latest`, so the span covers the create, however long the compile took; a crash before it
leaves no stamp: no create was sent.  A success closes the intent with the deployId.
An outcome-unknown failure (timeout, dropped connection, 5xx) is followed by a read of
that project's live state, adopting a deployment that appeared, and only when none
exists by a bounded, backed-off retry.  A replace's create runs here too, under the
replace's intent, once its stop is confirmed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler import planner
from reconciler.client import QuantConnectClient
from reconciler.engine.context import Context
from reconciler.engine.journal import is_from_intent, landing_deadline, record_for
from reconciler.errors import ApiError, OutcomeUnknown, ReconcilerError, TransportError
from reconciler.model import (
    ActionKind,
    Deployment,
    Intent,
    LiveDeployment,
    Outcome,
    Record,
    Result,
)
from reconciler.policy.throttle import Throttle

log = logging.getLogger("reconciler.engine")


# Polls of a compile still InQueue: 0.1 s, doubling, at most 2 s apart.
COMPILE_POLL = Throttle(base=0.1, cap=2.0)


class _Halted(Exception):
    """Nothing more is sent: the daemon is shutting down (or the store failed)."""


def create(
    ctx: Context,
    desired: Deployment,
    intent: Intent,
    should_stop: Callable[[], bool] | None = None,
    previous: Record | None = None,
    modified: str | None = None,
    code: CodeCheck | None = None,
) -> Outcome:
    """One create (a replace's second half, a restart), exactly once.  Never raises for
    expected failures.  `previous`: the deployment's record, if any (a restart runs the
    compile it ran); `modified`: the project's `modified` the plan read (compileId:
    latest); `code`: paper first's check of the project's code (DESIGN §17)."""
    name, project, kind = desired.name, desired.project_id, intent.kind
    done = kind.done
    if should_stop is not None and should_stop():
        ctx.store.close_intent(intent, "not sent", detail="shutting down")
        return Outcome(name, project, kind, Result.SKIPPED, None, "shutting down; not sent")

    def fail(result: Result, detail: str) -> Outcome:
        detail = ctx.mask(detail)
        if result is Result.FAILED:
            ctx.store.close_intent(intent, "failed", detail=detail)
        return Outcome(name, project, kind, result, None, detail)

    try:
        brokerage = ctx.resolved(desired.brokerage)
        providers = ctx.resolved(desired.data_providers) if desired.data_providers else None
        compile_id, source_modified, digest = compiled_code(
            ctx, desired, intent, previous, modified, code
        )
    except ReconcilerError as error:
        return fail(Result.FAILED, str(error))

    last_error = ""
    had_unknown = False
    last_unknown = False

    def before_send() -> None:
        nonlocal intent
        if should_stop is not None and should_stop():
            raise _Halted
        lands_by = landing_deadline(
            ctx.options.clock(), ctx.client.in_flight_bound, ctx.client.read_timeout
        )
        ctx.store.mark_sending(intent, lands_by)  # durable, and fenced, before the send
        intent = dataclasses.replace(intent, lands_by=max(lands_by, intent.lands_by or 0.0))

    for attempt in range(ctx.options.create_attempts):
        if attempt:
            time.sleep(ctx.options.retry.delay(attempt))
        try:
            created = ctx.client.create_live(
                project_id=project,
                compile_id=compile_id,
                node_id=desired.node_id,
                brokerage=brokerage,
                version_id=desired.version_id,
                data_providers=providers,
                automatic_redeploy=desired.automatic_redeploy,
                before_send=before_send,
            )
        except _Halted:
            if had_unknown:
                # An earlier attempt may still land: the intent stays open (and stamped)
                # for the next run to resolve.
                return fail(
                    Result.UNKNOWN,
                    f"{ctx.mask(last_error)}; shutting down before a retry: the next run "
                    "checks before creating",
                )
            # Every attempt so far was refused (or none was sent): nothing of ours can land.
            ctx.store.close_intent(intent, "not sent", detail="shutting down")
            return Outcome(name, project, kind, Result.SKIPPED, None, "shutting down; not sent")
        except (OutcomeUnknown, TransportError) as error:
            last_unknown = isinstance(error, OutcomeUnknown)
            had_unknown = had_unknown or last_unknown
            last_error = str(error)
            log.warning("%s: %s; reading live state before any retry", name, ctx.mask(last_error))
        except ApiError as error:
            if not had_unknown:
                return fail(Result.FAILED, str(error))
            # Refused after an unknown outcome: most likely our earlier attempt
            # committed ("project already running"); the read below decides.
            last_error = str(error)
            last_unknown = False
        else:
            running = LiveDeployment(project, created.deploy_id, created.status or "Running")
            record = record_for(
                intent,
                running,
                owned=True,
                desired=desired,
                compile_id=compile_id,
                source_modified=source_modified,
                previous=previous,
                now=ctx.options.clock(),
                digest=digest,
            )
            ctx.store.close_intent(intent, done.value, record=record)
            return Outcome(name, project, kind, done, created.deploy_id)

        try:
            found = planner.active_by_project(ctx.client.list_live(project_id=project))
        except ReconcilerError as error:
            # We cannot know whether the create happened: leave the intent open; the
            # next run resolves it from live state before planning anything.
            return fail(
                Result.UNKNOWN,
                f"{last_error}; and live state could not be read ({error}); "
                "the next run will check before creating anything",
            )
        appeared = found.get(project)
        if appeared is not None:
            owned = is_from_intent(intent, appeared)
            record = record_for(
                intent,
                appeared,
                owned=owned,
                desired=desired,
                compile_id=compile_id if owned else None,
                source_modified=source_modified if owned else None,
                previous=previous,
                now=ctx.options.clock(),
                digest=digest if owned else None,
            )
            last_error = ctx.mask(last_error)
            ctx.store.close_intent(
                intent, done.value, record=record, detail=f"verified after: {last_error}"
            )
            return Outcome(
                name,
                project,
                kind,
                done,
                appeared.deploy_id,
                f"confirmed from live state after: {last_error}",
            )
    if last_unknown:
        # The last attempt may still land server-side: keep the intent open so the
        # next run checks live state (and keeps ownership) before creating anything.
        return fail(
            Result.UNKNOWN,
            f"gave up after {ctx.options.create_attempts} attempts, the last with an "
            f"unknown outcome ({last_error}); the next run checks before creating",
        )
    return fail(
        Result.FAILED, f"gave up after {ctx.options.create_attempts} attempts: {last_error}"
    )


@dataclass(frozen=True)
class CodeCheck:
    """Paper first: the project's code digest is read around its compile and recorded;
    `expected` (a promotion): nothing is sent unless the code compiled is this one."""

    expected: str | None = None


def code_of(client: QuantConnectClient, project_id: int) -> str:
    """The digest of a project's files (`/files/read`)."""
    from reconciler.model.promotion import code_digest

    return code_digest(client.read_files(project_id))


def compiled_code(
    ctx: Context,
    desired: Deployment,
    intent: Intent,
    previous: Record | None,
    modified: str | None,
    code: CodeCheck | None,
) -> tuple[str, str | None, str | None]:
    """The compile to deploy, the `modified` it was built from, and (with `code`) the
    digest of the code it was built from: read before and after the compile, so code
    that changed while it built is never taken for the code read."""
    if code is None:
        return (*compile_for(ctx, desired, intent, previous, modified), None)
    from reconciler.model.promotion import short_digest

    project = desired.project_id
    if reruns(intent, previous) and previous is not None and previous.compile_id:
        return previous.compile_id, previous.source_modified, previous.digest  # its own code
    before = code_of(ctx.client, project)
    if code.expected is not None and before != code.expected:
        raise ApiError(
            f"project {project}'s code {short_digest(before)} is not what passed on paper, "
            f"{short_digest(code.expected)}; nothing created"
        )
    compile_id, source_modified = compile_for(ctx, desired, intent, previous, modified)
    after = code_of(ctx.client, project)
    if after != before:
        if code.expected is not None:
            raise ApiError(
                f"project {project}'s code changed while it compiled "
                f"({short_digest(before)} -> {short_digest(after)}); nothing created"
            )
        return compile_id, source_modified, None  # not known: no candidate is offered
    return compile_id, source_modified, before


def reruns(intent: Intent, previous: Record | None) -> bool:
    """A restart runs the compile the deployment ran, when the record knows it."""
    return (
        intent.kind is ActionKind.RESTART
        and previous is not None
        and previous.compile_verified
        and bool(previous.compile_id)
    )


def compile_for(
    ctx: Context,
    desired: Deployment,
    intent: Intent,
    previous: Record | None,
    modified: str | None = None,
) -> tuple[str, str | None]:
    """The compile to deploy, and (for `latest`) the project's `modified` it was built from.

    A restart runs the compile the deployment ran, when the record knows it (new code is
    a replace, not a restart).  `modified` is read before a compile starts: should the code
    change while it builds, the next reconcile sees a newer value and replaces once more,
    never the reverse.
    """
    if reruns(intent, previous) and previous is not None and previous.compile_id:
        return previous.compile_id, previous.source_modified
    if desired.compile_id != "latest":
        return desired.compile_id, None
    project = desired.project_id
    if modified is None:
        modified = ctx.client.read_project(project).modified
    started = time.monotonic()
    compiled = ctx.client.create_compile(project)
    state = compiled.state
    polls = COMPILE_POLL.delays()
    while state == "InQueue":
        if time.monotonic() - started > ctx.options.compile_timeout:
            raise ApiError(
                f"compile {compiled.compile_id} of project {project} still "
                f"InQueue after {ctx.options.compile_timeout:g}s"
            )
        time.sleep(next(polls))
        read = ctx.client.read_compile(project, compiled.compile_id)
        state = read.state
        if state == "BuildError":
            tail = read.logs[-1] if read.logs else "no log"
            raise ApiError(f"compile of project {project} failed: {tail}")
    if state != "BuildSuccess":
        raise ApiError(f"compile of project {project} ended in state {state}")
    return compiled.compile_id, modified
