"""Deploy windows (DESIGN §16): replace and prune a live algorithm only while its market is
closed.  A window is open when the market is closed by its calendar (from each close plus
`afterClose` to the next open minus `beforeOpen`) or inside an `allow` range, and not
inside a `deny` range (deny always wins).  Past the calendar's horizon it is closed.

`evaluate` is the window function: pure but for the calendar's sessions, handed in.
`gate` holds each replace and prune whose window is not open (long enough, for a
replace: `minRemaining`) as `deferred` until it opens.  Creates, restarts after a failure,
adoptions, releases and renames are never held: they stop nothing that runs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.errors import ConfigError
from reconciler.model import Action, ActionKind, Plan, canonical_json
from reconciler.model.promotion import duration as parse_duration
from reconciler.policy import WINDOW_DENIED, WINDOW_GATE, calendars, window_definition
from reconciler.policy.facts import Facts

GATE, DENIED = WINDOW_GATE, WINDOW_DENIED
DEFAULT_MIN_REMAINING = 600.0
LOOKAHEAD = 60 * 86400.0  # how far ahead the next opening is looked for
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Span = tuple[float, float]


def duration(text: str | None, default: float = 0.0) -> float:
    """`10s`, `30m`, `48h`, `2d` in seconds, `default` for None (ValueError otherwise)."""
    return default if text is None else parse_duration(text)


@dataclass(frozen=True)
class Range:
    """A weekly range (`days` None: every day) or a dated one, in the window's zone."""

    start: str  # HH:MM[:SS], or YYYY-MM-DDTHH:MM[:SS] for a dated range
    end: str
    days: frozenset[int] | None = None  # 0 = Monday

    @property
    def dated(self) -> bool:
        return "T" in self.start

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Range:
        start, end = str(data["from"]), str(data["to"])
        days = data.get("days")
        found = cls(start, end, frozenset(DAYS.index(d) for d in days) if days else None)
        found.check()
        return found

    def check(self) -> None:
        """ValueError for a range that is not one (mixed forms, dated backwards)."""
        if ("T" in self.end) != self.dated:
            raise ValueError("`from` and `to` must be both times of day or both dates")
        if self.dated:
            if self.days is not None:
                raise ValueError("a dated range takes no `days`")
            if _local(self.end) <= _local(self.start):
                raise ValueError(f"the range ends ({self.end}) before it starts ({self.start})")
        else:
            _clock(self.start), _clock(self.end)

    def spans(self, zone: ZoneInfo, start: float, end: float) -> list[Span]:
        """Its occurrences that overlap [start, end), in Unix seconds."""
        if self.dated:
            a = _local(self.start).replace(tzinfo=zone).timestamp()
            b = _local(self.end).replace(tzinfo=zone).timestamp()
            return [(a, b)] if a < end and b > start else []
        out = []
        day = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, zone).date()
        begin, finish = _clock(self.start), _clock(self.end)
        while day <= last:
            if self.days is None or day.weekday() in self.days:
                a = _at(day, begin, zone)
                b = _at(day + timedelta(days=1) if finish <= begin else day, finish, zone)
                if a < end and b > start:
                    out.append((a, b))
            day += timedelta(days=1)
        return out


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _clock(text: str) -> timedelta:
    """HH:MM[:SS] as the time since midnight; 24:00 is the end of the day."""
    parts = [int(p) for p in text.split(":")]
    hours, minutes, seconds = ([*parts, 0, 0])[:3]
    if not (0 <= hours <= 24 and 0 <= minutes < 60 and 0 <= seconds < 60) or (
        hours == 24 and (minutes or seconds)
    ):
        raise ValueError(f"{text!r} is not a time of day (HH:MM or HH:MM:SS, at most 24:00)")
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _at(day: date, since_midnight: timedelta, zone: ZoneInfo) -> float:
    """The instant `since_midnight` after the start of `day` by the wall clock of `zone`
    (DST: a wall time that does not exist is taken as the one an hour later)."""
    moment = datetime.combine(day, time(), tzinfo=zone) + since_midnight
    wall = datetime.combine(moment.date(), moment.time(), tzinfo=zone)
    return wall.astimezone(UTC).timestamp()


@dataclass(frozen=True)
class Window:
    """A DeployWindow document's definition: what is recorded with each deployment."""

    name: str
    calendar: str
    after_close: float = 0.0
    before_open: float = 0.0
    min_remaining: float = DEFAULT_MIN_REMAINING
    time_zone: str = "UTC"
    allow: tuple[Range, ...] = ()
    deny: tuple[Range, ...] = ()
    override: str = "allowed"

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> Window:
        """From a document the schema accepted; ValueError for what it cannot tell."""
        spec = data["spec"]
        zone = str(spec.get("timeZone") or "UTC")
        zone_of(zone)
        return cls(
            name=str(data["metadata"]["name"]),
            calendar=str(spec["calendar"]),
            after_close=duration(spec.get("afterClose")),
            before_open=duration(spec.get("beforeOpen")),
            min_remaining=duration(spec.get("minRemaining"), DEFAULT_MIN_REMAINING),
            time_zone=zone,
            allow=tuple(Range.parse(r) for r in spec.get("allow") or ()),
            deny=tuple(Range.parse(r) for r in spec.get("deny") or ()),
            override=str(spec.get("override") or "allowed"),
        )

    def to_json(self) -> str:
        def ranges(items: Sequence[Range]) -> list[dict[str, Any]]:
            return [
                {"from": r.start, "to": r.end, "days": sorted(r.days) if r.days else None}
                for r in items
            ]

        return canonical_json(
            {
                "name": self.name, "calendar": self.calendar, "afterClose": self.after_close,
                "beforeOpen": self.before_open, "minRemaining": self.min_remaining,
                "timeZone": self.time_zone, "allow": ranges(self.allow),
                "deny": ranges(self.deny), "override": self.override,
            }
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Window:
        data = json.loads(text)

        def ranges(items: Iterable[Mapping[str, Any]]) -> tuple[Range, ...]:
            return tuple(
                Range(r["from"], r["to"], frozenset(r["days"]) if r.get("days") else None)
                for r in items
            )

        return cls(
            name=data["name"], calendar=data["calendar"], after_close=data["afterClose"],
            before_open=data["beforeOpen"], min_remaining=data["minRemaining"],
            time_zone=data["timeZone"], allow=ranges(data["allow"]), deny=ranges(data["deny"]),
            override=data["override"],
        )  # fmt: skip


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {name!r}: an IANA name such as America/New_York"
        raise ValueError(message) from None


def _merged(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _without(spans: Sequence[Span], holes: Sequence[Span]) -> list[Span]:
    out = []
    for a, b in spans:
        pieces = [(a, b)]
        for ha, hb in holes:
            pieces = [
                piece
                for pa, pb in pieces
                for piece in ((pa, min(pb, ha)), (max(pa, hb), pb))
                if piece[1] > piece[0]
            ]
        out.extend(pieces)
    return out


def open_spans(
    window: Window, calendar: calendars.Calendar, start: float, end: float
) -> list[Span]:
    """When the window is open within [start, end): merged, in order."""
    zone = zone_of(window.time_zone)
    closed: list[Span] = []
    if calendar.name != calendars.NONE:
        week = 8 * 86400.0
        sessions = calendar.sessions(start - week, end + week)
        for (_, close), (opens, _) in itertools.pairwise(sessions):
            closed.append((close + window.after_close, opens - window.before_open))
    allowed = [s for r in window.allow for s in r.spans(zone, start, end)]
    denied = _merged(s for r in window.deny for s in r.spans(zone, start, end))
    spans = _without(_merged(closed + allowed), denied)
    if calendar.horizon is not None:
        spans = [(a, min(b, calendar.horizon)) for a, b in spans if a < calendar.horizon]
    return [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]


@dataclass(frozen=True)
class Verdict:
    open: bool  # open now, and (for a replace) long enough
    opens_at: float | None  # when it next is (now when open); None: not within the lookahead
    closes_at: float | None  # when that opening ends
    why: str = ""  # why it is closed, in a few words
    error: str | None = None  # it cannot be known: a calendar past its horizon, or missing


def evaluate(
    window: Window,
    now: float,
    need: float = 0.0,
    calendar_of: Callable[[str], calendars.Calendar] = calendars.calendar,
) -> Verdict:
    """Whether `window` is open at `now` for at least `need` seconds, and when it opens."""
    try:
        calendar = calendar_of(window.calendar)
    except ConfigError as error:
        return Verdict(False, None, None, "its calendar is missing", str(error))
    if calendar.horizon is not None and now >= calendar.horizon:
        horizon = _utc(calendar.horizon)
        message = f"past the horizon of calendar {window.calendar} ({horizon}): counted as closed"
        return Verdict(False, None, None, "past its calendar's horizon", message)
    spans = open_spans(window, calendar, now, now + LOOKAHEAD)
    for a, b in spans:
        start = max(a, now)
        if b - start >= need or b >= now + LOOKAHEAD:
            why = "" if start <= now else _why(window, spans, now)
            return Verdict(start <= now, start, b, why)
    return Verdict(False, None, None, _why(window, spans, now))


def _why(window: Window, spans: Sequence[Span], now: float) -> str:
    """Why the window is not open now (long enough), in a few words."""
    for a, b in spans:
        if a <= now < b:
            return f"it closes at {_utc(b)}, before {window.min_remaining / 60:g} min"
    zone = zone_of(window.time_zone)
    if any(r.spans(zone, now, now + 1) for r in window.deny):
        return "a deny range"
    if window.calendar == calendars.NONE:
        return "no allow range now"
    return f"{window.calendar} open"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def opens_text(verdict: Verdict) -> str:
    if verdict.error:
        return verdict.error
    if verdict.opens_at is None:
        return "does not open within 60 days"
    return f"opens {_utc(verdict.opens_at)}"


# ---- the gate ------------------------------------------------------------------------


def window_of(action: Action) -> Window | None:
    """The window that gates this action: a replace's manifest's, a prune's recorded one."""
    text = window_definition(action)
    return Window.from_json(text) if text else None


def gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """Every replace and prune outside its window waits (`deferred`), unless
    `--ignore-window NAME` names it and its window allows that."""
    out = []
    for action in plan.actions:
        window = window_of(action) if action.held is None else None
        if window is not None:
            action = _judged(action, window, facts, now)
        out.append(action)
    return plan.with_actions(out)


def _judged(action: Action, window: Window, facts: Facts, now: float) -> Action:
    replacing = action.action is ActionKind.REPLACE
    verdict = evaluate(window, now, window.min_remaining if replacing else 0.0)
    if verdict.open:
        return action
    if action.name in facts.ignore_windows:
        if window.override == "denied":
            why = (
                f"window {window.name} does not allow --ignore-window (override: denied); "
                f"nothing is stopped: {opens_text(verdict)}"
            )
            return action.holding(DENIED, why, as_kind=ActionKind.BLOCKED)
        return action.noting(f"window {window.name} ignored by --ignore-window")
    what = f"{action.action} waits for window {window.name}"
    reason = f"{what} ({verdict.why}): {opens_text(verdict)}"
    return action.holding(
        GATE,
        reason,
        verdict.opens_at,
        as_kind=ActionKind.DEFERRED,
        deferred=action.action,
        window=window.name,
        opens_at=verdict.opens_at,
    )


@dataclass(frozen=True)
class Schedule:
    """A window seen from now: for `reconciler windows`, the status page and /metrics."""

    window: Window
    open: bool
    next_open: float | None  # the next opening (after the current one, when open now)
    next_close: float | None  # the end of the current opening, or of the next one
    error: str | None = None


def schedule(
    window: Window,
    now: float,
    calendar_of: Callable[[str], calendars.Calendar] = calendars.calendar,
) -> Schedule:
    verdict = evaluate(window, now, 0.0, calendar_of)
    if verdict.error is not None:
        return Schedule(window, False, None, None, verdict.error)
    if not verdict.open:
        return Schedule(window, False, verdict.opens_at, verdict.closes_at)
    later = [a for a, _ in open_spans(window, calendar_of(window.calendar), now, now + LOOKAHEAD)]
    following = next((a for a in later if a > (verdict.closes_at or now)), None)
    return Schedule(window, True, following, verdict.closes_at)
