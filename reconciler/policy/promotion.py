"""Paper first (DESIGN §17): the soak's verdicts and the promotion gate, pure.

    advance   one reconcile's look at the paper twin: a new digest becomes the candidate
              (superseding the one before), a Running deployment gives one equity sample,
              a failed one fails its candidate; then each candidate is judged
    judge     soaking -> passed | failed, from the samples alone: at least MIN_SAMPLES,
              spread over the whole soak with no gap longer than half of it (a gap starts
              the soak again), `sessions` closes of the calendar, the drawdown under
              `maxDrawdown`.  Missing data is never a pass
    gate      a start (create, replace, restart) of a promoted deployment goes ahead only
              with code that passed on paper; else `waiting` (a candidate soaking,
              awaiting approval, none since a rejection) or `blocked` (the candidate
              failed, the live project's code is not the candidate's)

Nothing here reads the API, the store or a clock: the cycle reads (`Paper`, the live
project's digest), this decides, the cycle writes the candidates.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from reconciler.errors import ReconcilerError
from reconciler.model import Action, ActionKind, Plan
from reconciler.model.promotion import (
    MIN_SAMPLES,
    Candidate,
    Evidence,
    Paper,
    Promotion,
    Verdict,
    current,
    short_digest,
)
from reconciler.policy.facts import Facts

GATE = "promotion"

Closes = Callable[[str, float, float], int]
"""How many closes of a calendar fall in (start, end]."""


def calendar_closes(name: str, start: float, end: float) -> int:
    """Closes of `name` in (start, end], from the deploy windows' calendars."""
    from reconciler.policy import calendars

    sessions = calendars.calendar(name).sessions(start, end)
    return sum(1 for _, close in sessions if start < close <= end)


# -- the soak ---------------------------------------------------------------------------


def span(candidate: Candidate) -> tuple[float, tuple[tuple[float, float], ...]]:
    """The unbroken part of the soak: its start and its samples.  A gap longer than half
    the soak (from the start to the first sample, or between two samples) starts the
    soak again at the sample after it."""
    bound = candidate.rule.soak / 2
    start, first, previous = candidate.started_at, 0, candidate.started_at
    for index, (at, _) in enumerate(candidate.samples):
        if at - previous > bound:
            start, first = at, index
        previous = at
    return start, candidate.samples[first:]


def judge(candidate: Candidate, now: float, closes: Closes = calendar_closes) -> Candidate:
    """The candidate with its verdict brought up to date (a final verdict stays)."""
    if candidate.verdict.final:
        return candidate
    rule = candidate.rule
    drawdown = candidate.max_drawdown
    if rule.max_drawdown is not None and drawdown > rule.max_drawdown:
        return candidate.decided(
            Verdict.FAILED,
            f"drawdown {percent(drawdown)} on paper, over maxDrawdown {percent(rule.max_drawdown)}",
            now,
        )
    start, samples = span(candidate)
    elapsed = samples[-1][0] - start if samples else 0.0
    closed, calendar_error = 0, ""
    if rule.sessions and rule.calendar and samples:
        try:
            closed = closes(rule.calendar, start, samples[-1][0])
        except (ReconcilerError, ValueError) as error:  # a calendar not read is no pass
            calendar_error = f"; calendar {rule.calendar} cannot be read ({error})"
    if (
        len(samples) >= MIN_SAMPLES
        and elapsed >= rule.soak
        and closed >= rule.sessions
        and not calendar_error
    ):
        return candidate.decided(Verdict.PASSED, _evidence_text(candidate, samples, elapsed), now)
    progress = f"{human(elapsed)} of {human(rule.soak)}, {len(samples)} sample(s)"
    if len(samples) < MIN_SAMPLES:
        progress += f" (at least {MIN_SAMPLES})"
    if rule.sessions:
        progress += f", {closed} of {rule.sessions} close(s) of {rule.calendar}"
    if start > candidate.started_at:
        progress += f"; the soak started again at {clock(start)} after a gap with no sample"
    last = samples[-1][0] if samples else start
    if now - last > rule.soak / 2:
        progress += f"; no sample since {clock(last)}"
    return dataclasses.replace(candidate, reason=progress + calendar_error)


def _evidence_text(
    candidate: Candidate, samples: Sequence[tuple[float, float]], elapsed: float
) -> str:
    rule = candidate.rule
    text = f"{len(samples)} samples over {human(elapsed)}"
    if rule.sessions:
        text += f", {rule.sessions} close(s) of {rule.calendar}"
    return text + f", max drawdown {percent(candidate.max_drawdown)}"


def advance(
    candidates: Sequence[Candidate],
    name: str,
    rule: Promotion,
    paper: Paper | None,
    now: float,
    closes: Closes = calendar_closes,
) -> tuple[Candidate, ...]:
    """Every candidate of `name` after one look at the paper twin, each judged at `now`."""
    by_digest = {c.digest: c for c in candidates}
    before = current(candidates)
    if paper is not None and paper.digest is not None:
        seen = by_digest.get(paper.digest)
        if seen is None:
            started = paper.started_at if paper.started_at is not None else now
            seen = Candidate(
                name, paper.digest, rule.source, paper.deploy_id, started, rule,
                since=started, reason="soak started", seen_at=now,
            )  # fmt: skip
        else:
            seen = dataclasses.replace(seen, paper_deploy_id=paper.deploy_id, seen_at=now)
        if not seen.verdict.final:
            seen = _observed(dataclasses.replace(seen, rule=rule), paper, now)
        by_digest[seen.digest] = seen
        if before is not None and before.digest != seen.digest and not before.verdict.final:
            by_digest[before.digest] = before.decided(
                Verdict.FAILED,
                f"superseded before it passed: paper code {short_digest(seen.digest)} replaced it",
                now,
            )
    out = []
    for candidate in by_digest.values():
        if not candidate.verdict.final and candidate.rule != rule:
            candidate = dataclasses.replace(candidate, rule=rule)
        out.append(judge(candidate, now, closes))
    return tuple(sorted(out, key=lambda c: (c.seen_at, c.started_at)))


def _observed(candidate: Candidate, paper: Paper, now: float) -> Candidate:
    """One sample of a Running paper deployment; a failed one fails its candidate."""
    if paper.cause == "failed":
        why = f": {paper.error}" if paper.error else ""
        return candidate.decided(
            Verdict.FAILED, f"paper deployment {paper.deploy_id} is {paper.status}{why}", now
        )
    if paper.status == "Running" and paper.equity is not None:
        return dataclasses.replace(candidate, samples=(*candidate.samples, (now, paper.equity)))
    return candidate


def reject(candidate: Candidate, now: float) -> Candidate:
    return candidate.decided(Verdict.REJECTED, "rejected by `reconciler promotion reject`", now)


# -- the gate ---------------------------------------------------------------------------


def gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """Promoted deployments start only with code that passed on paper."""
    if not facts.promotions:
        return plan
    out = []
    for action in plan.actions:
        evidence = facts.promotions.get(action.name or "")
        if evidence is not None and action.held is None and action.desired is not None:
            action = _judged(action, evidence)
        out.append(action)
    return plan.with_actions(out)


def _judged(action: Action, evidence: Evidence) -> Action:
    found = evidence.current
    record = action.record
    running = record.digest if record is not None else None
    if action.action is ActionKind.NOOP:
        # New paper code on its way (soaking, or passed and awaiting approval): shown.
        pending = (
            found is not None
            and found.digest != running
            and found.verdict in (Verdict.SOAKING, Verdict.PASSED)
            and not found.promotable
        )
        return _waiting(action, evidence) if pending and not action.adopt else action
    if not action.action.starts:
        return action
    reruns = (
        action.action is ActionKind.RESTART
        and record is not None
        and record.compile_verified
        and bool(record.compile_id)
    )
    # A restart runs the compile it ran; anything else compiles the live project now.
    code = running if reruns else evidence.live_code
    wanted = evidence.target
    # A restart brings back the code it ran, if that passed (a newer candidate is promoted by
    # the replace the next plan makes); anything else deploys the candidate to run now.
    allowed = code in evidence.passed if reruns or wanted is None else code == wanted
    if code is not None and allowed:
        promoting = code != running
        action = dataclasses.replace(action, tracks_code=True, digest=None if reruns else code)
        if promoting and found is not None and found.digest == code:
            if action.action is not ActionKind.REPLACE:  # a replace's reason says it already
                action = dataclasses.replace(
                    action, reason=f"{action.reason}; with candidate {short_digest(code)}, "
                    "passed on paper"
                )  # fmt: skip
            action = action.noting(
                f"promoted candidate {short_digest(code)}: passed on paper "
                f"({evidence.rule.source}: {found.reason})"
            )
        return action
    if found is not None and found.promotable:
        shown = short_digest(code) if code else "(its files could not be read)"
        why = (
            f"live project {action.project_id}'s code {shown} is not what passed on paper, "
            f"{short_digest(found.digest)}; nothing is sent ({action.action}: {action.reason})"
        )
        return action.holding(GATE, why, as_kind=ActionKind.BLOCKED, cause="")
    if found is not None and found.verdict is Verdict.FAILED:
        why = (
            f"candidate {short_digest(found.digest)} failed on paper ({found.reason}); nothing "
            f"is promoted until new paper code on {evidence.rule.source} supersedes it"
        )
        return action.holding(GATE, why, as_kind=ActionKind.BLOCKED, cause="")
    return _waiting(action, evidence)


def _waiting(action: Action, evidence: Evidence) -> Action:
    found, source = evidence.current, evidence.rule.source
    if found is None:
        why = evidence.note or f"no candidate yet: paper deployment {source} has not run"
        cause = "none"
    elif found.verdict is Verdict.SOAKING:
        why = f"candidate {short_digest(found.digest)} soaking on {source}: {found.reason}"
        cause = "soaking"
    elif found.verdict is Verdict.PASSED:
        why = (
            f"candidate {short_digest(found.digest)} passed on paper ({found.reason}); "
            f"awaiting `reconciler promotion approve {action.name}`"
        )
        cause = "approval"
    else:
        why = (
            f"candidate {short_digest(found.digest)} was {found.verdict.value}; waiting for "
            f"new paper code on {source}"
        )
        cause = found.verdict.value
    return action.holding(
        GATE, why, as_kind=ActionKind.WAITING, cause=cause, digest=found.digest if found else None
    )


# -- words -------------------------------------------------------------------------------


def human(seconds: float) -> str:
    """`9 s`, `20 m`, `20 h`, `2.5 d`."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size * (2 if unit == "d" else 1):
            value = seconds / size
            return f"{value:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.1f} s".replace(".0 ", " ") if seconds < 10 else f"{seconds:.0f} s"


def percent(value: float) -> str:
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
