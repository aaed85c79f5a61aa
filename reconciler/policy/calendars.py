"""Market sessions for deploy windows: the only module that imports exchange_calendars.

A calendar answers one question: the market's sessions (open, close) that touch a span of
time, in Unix seconds.  Three kinds:
- an exchange of exchange_calendars (XNYS, XLON, CMES, aliases too), an optional extra
  (`pip install 'qc-live-reconciler[calendars]'`), imported only when a window names an
  exchange; holidays and early closes are the library's; a session's break (a lunch
  pause) counts as open, never as a window; the library knows sessions up to its
  horizon (a year ahead by default), after which nothing is known;
- `fx`: the FX market, open from Sunday 17:00 to Friday 17:00 America/New_York;
- `none`: no market at all (only a window's allow ranges open it).
"""

from __future__ import annotations

import difflib
import functools
import threading
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from reconciler.errors import ConfigError
from reconciler.policy.calendar_names import NAMES

EXTRA = "pip install 'qc-live-reconciler[calendars]'"
FX, NONE = "fx", "none"
BUILT_IN = (FX, NONE)
NEW_YORK = ZoneInfo("America/New_York")
HISTORY_DAYS = 30  # sessions read before today: a window needs the last close


Session = tuple[float, float]  # (open, close), Unix seconds


class Calendar(Protocol):
    name: str

    def sessions(self, start: float, end: float) -> list[Session]:
        """The sessions that end after `start` and begin before `end`, in order."""
        ...

    @property
    def horizon(self) -> float | None:
        """Past this time nothing is known (None: always known)."""
        ...


def is_exchange(name: str) -> bool:
    return name not in BUILT_IN


def unknown_calendar(name: str) -> str | None:
    """Why `name` is not a calendar (with close matches), or None when it is one."""
    if name in BUILT_IN or name in NAMES:
        return None
    if _installed_names() and name in _installed_names():
        return None  # a newer exchange_calendars than the list was made from
    matches = difflib.get_close_matches(name.upper(), sorted(NAMES | set(BUILT_IN)), n=3)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return f"unknown calendar {name!r}: an exchange code of exchange_calendars, fx or none{hint}"


def missing_extra(name: str) -> str | None:
    """Why the exchange calendar `name` cannot be read here (the extra is not installed),
    or None; asked without importing it."""
    if name in BUILT_IN:
        return None
    import importlib.util

    if importlib.util.find_spec("exchange_calendars") is None:
        return f"calendar {name} is an exchange calendar: {EXTRA} (exchange_calendars)"
    return None


@functools.cache
def _installed_names() -> frozenset[str]:
    try:
        import exchange_calendars
    except ImportError:
        return frozenset()
    return frozenset(exchange_calendars.get_calendar_names(include_aliases=True))


class _None:
    name = NONE
    horizon = None

    def sessions(self, start: float, end: float) -> list[Session]:
        return []


class _Fx:
    """Open Sunday 17:00 to Friday 17:00 New York time, every week (no holidays)."""

    name = FX
    horizon = None

    def sessions(self, start: float, end: float) -> list[Session]:
        first = datetime.fromtimestamp(start, NEW_YORK).date() - timedelta(days=7)
        sunday = first - timedelta(days=(first.weekday() + 1) % 7)
        out: list[Session] = []
        while True:
            opens = datetime(sunday.year, sunday.month, sunday.day, 17, tzinfo=NEW_YORK)
            friday = sunday + timedelta(days=5)
            closes = datetime(friday.year, friday.month, friday.day, 17, tzinfo=NEW_YORK)
            if opens.timestamp() >= end:
                return out
            if closes.timestamp() > start:
                out.append((opens.timestamp(), closes.timestamp()))
            sunday += timedelta(days=7)


class _Exchange:
    """An exchange of exchange_calendars; its sessions read once per process."""

    def __init__(self, name: str, library: Any) -> None:
        self.name = name
        today = datetime.now(UTC).date()
        start = (today - timedelta(days=HISTORY_DAYS)).isoformat()
        try:
            with warnings.catch_warnings():
                # The library's own deprecation warnings (pandas 3) are not a user's concern.
                warnings.simplefilter("ignore")
                calendar = library.get_calendar(name, start=start)
                opens, closes = list(calendar.opens), list(calendar.closes)
        except (library.errors.CalendarError, ValueError) as error:
            raise ConfigError(f"calendar {name}: {error}") from None
        self._opens = [ts.timestamp() for ts in opens]
        self._closes = [ts.timestamp() for ts in closes]
        self._horizon = self._closes[-1] if self._closes else None

    @property
    def horizon(self) -> float | None:
        return self._horizon

    def sessions(self, start: float, end: float) -> list[Session]:
        import bisect

        first = max(0, bisect.bisect_right(self._closes, start) - 1)
        out = []
        for opens, closes in zip(self._opens[first:], self._closes[first:], strict=True):
            if opens >= end:
                break
            if closes > start:
                out.append((opens, closes))
        return out


_lock = threading.Lock()
_loaded: dict[str, Calendar] = {}


def calendar(name: str) -> Calendar:
    """The calendar `name` names (ConfigError when it cannot be had)."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name == NONE:
            found: Calendar = _None()
        elif name == FX:
            found = _Fx()
        else:
            try:
                import exchange_calendars
                import exchange_calendars.errors
            except ImportError:
                raise ConfigError(
                    f"calendar {name} is an exchange calendar: {EXTRA} (exchange_calendars)"
                ) from None
            found = _Exchange(name, exchange_calendars)
        _loaded[name] = found
        return found
