"""Deploy windows (DESIGN §16): the window function against exchange_calendars' own answers
with an injected clock, validation, and the gate end to end against the emulator."""

from __future__ import annotations

import bisect
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import validation
from reconciler.emulator import Emulator
from reconciler.policy import calendar_names, calendars
from reconciler.policy.windows import Range, Window, evaluate, schedule
from tests.test_day2_e2e import World, doc, running_ids, stops
from tests.test_watch import Daemon, daemons, wait_for

__all__ = ["daemons"]

xc = pytest.importorskip("exchange_calendars")
pd = pytest.importorskip("pandas")
XNYS = xc.get_calendar("XNYS", start="2025-12-01")
NEW_YORK = ZoneInfo("America/New_York")
START = time.time() - 20 * 86400  # the calendar module reads sessions from 30 days back
END = XNYS.closes.iloc[-1].timestamp()


def at(text: str, zone: ZoneInfo | None = None) -> float:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=zone or UTC).timestamp()


def window(**spec: object) -> Window:
    return Window.from_document(
        {"metadata": {"name": "w"}, "spec": {"calendar": "XNYS", "minRemaining": "0s", **spec}}
    )


OPENS = [ts.timestamp() for ts in XNYS.opens]
CLOSES = [ts.timestamp() for ts in XNYS.closes]


def around(t: float) -> tuple[float, float]:
    """The exchange's last close at or before `t` and its next open after `t`."""
    previous = CLOSES[bisect.bisect_right(CLOSES, t) - 1]
    return previous, OPENS[bisect.bisect_right(OPENS, t)]


def market_open(t: float) -> bool:
    return bool(XNYS.is_open_at_time(pd.Timestamp(t, unit="s", tz="UTC"), side="left"))


# Half a minute past a whole minute: exchange_calendars answers by the minute, and a time
# within the minute of a close is still that session's there.
instants = st.integers(int(START) // 60, int(END - 86400) // 60).map(lambda m: m * 60 + 30.0)


@settings(max_examples=400, deadline=None)
@given(instants)
def test_open_exactly_when_the_exchange_says_it_is_closed(t: float) -> None:
    assert evaluate(window(), t).open == (not market_open(t))


@settings(max_examples=300, deadline=None)
@given(instants, st.integers(0, 120), st.integers(0, 120))
def test_margins_keep_the_window_inside_the_closed_market(
    t: float, after: int, before: int
) -> None:
    after, before = after * 60, before * 60  # whole minutes, as the calendar's answers
    verdict = evaluate(window(afterClose=f"{after}s", beforeOpen=f"{before}s"), t)
    if verdict.open:
        assert not market_open(t)
        previous, following = around(t)
        assert previous + after <= t < following - before
    elif not market_open(t):
        previous, following = around(t)
        assert t < previous + after or t >= following - before


@settings(max_examples=200, deadline=None)
@given(instants, st.integers(0, 4 * 3600))
def test_a_replace_starts_only_with_min_remaining_left_and_deny_always_wins(
    t: float, need: int
) -> None:
    verdict = evaluate(window(), t, float(need))
    if verdict.open:
        assert verdict.closes_at is not None and verdict.closes_at - t >= need
    if verdict.opens_at is not None:
        assert verdict.opens_at >= t and not market_open(verdict.opens_at)
    local = datetime.fromtimestamp(t, UTC)
    deny = [{"from": (local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
             "to": (local + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}]  # fmt: skip
    every_day = [{"from": "00:00", "to": "24:00"}]
    assert not evaluate(window(allow=every_day, deny=deny), t).open


def test_an_early_close_and_a_holiday_as_the_calendar_knows_them() -> None:
    after_thanksgiving = window(afterClose="10m")
    # XNYS closes at 13:00 New York time on 2026-11-27: the window opens at 13:10.
    assert not evaluate(after_thanksgiving, at("2026-11-27T13:05", NEW_YORK)).open
    assert evaluate(after_thanksgiving, at("2026-11-27T13:11", NEW_YORK)).open
    assert evaluate(after_thanksgiving, at("2026-11-27T13:00", NEW_YORK)).opens_at == at(
        "2026-11-27T13:10", NEW_YORK
    )
    # Christmas Day 2026 is a holiday: open all day, until Monday's open.
    christmas = evaluate(window(), at("2026-12-25T12:00", NEW_YORK))
    assert christmas.open and christmas.closes_at == at("2026-12-28T09:30", NEW_YORK)


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2027-03-14", 2.0), ("2027-11-07", 4.0), ("2027-03-21", 3.0)],  # DST starts, ends, not
)
def test_ranges_follow_daylight_saving_time(day: str, hours: float) -> None:
    """01:00 to 04:00 New York time on Sunday lasts 2 h when clocks jump forward, 4 h when
    they fall back, 3 h any other Sunday."""
    sunday = Range("01:00", "04:00", frozenset({6}))
    start = at(f"{day}T00:00", NEW_YORK)
    (span,) = sunday.spans(NEW_YORK, start, start + 86400)
    assert span[1] - span[0] == hours * 3600
    assert span[0] == datetime(*map(int, day.split("-")), 1, tzinfo=NEW_YORK).timestamp()


def test_a_range_runs_into_the_next_day_and_24_00_ends_the_day() -> None:
    nights = window(calendar="none", timeZone="America/New_York",
                    allow=[{"days": ["Fri"], "from": "22:00", "to": "02:00"}])  # fmt: skip
    assert evaluate(nights, at("2026-12-05T01:30", NEW_YORK)).open  # Saturday 01:30
    assert not evaluate(nights, at("2026-12-05T02:30", NEW_YORK)).open
    whole = window(calendar="none", allow=[{"from": "00:00", "to": "24:00", "days": ["Wed"]}])
    assert schedule(whole, at("2026-12-02T12:00")).next_close == at("2026-12-03T00:00")


def test_fx_none_and_past_the_horizon() -> None:
    fx = window(calendar="fx")
    assert evaluate(fx, at("2026-12-05T12:00", NEW_YORK)).open  # Saturday
    assert not evaluate(fx, at("2026-12-02T12:00", NEW_YORK)).open  # Wednesday
    assert evaluate(fx, at("2026-12-04T16:59", NEW_YORK)).opens_at == at(
        "2026-12-04T17:00", NEW_YORK
    )
    never = evaluate(window(calendar="none"), at("2026-12-02T12:00"))
    assert not never.open and never.opens_at is None
    horizon = calendars.calendar("XNYS").horizon
    assert horizon is not None
    late = evaluate(window(), horizon + 86400)
    assert not late.open and late.error is not None and "horizon" in late.error


def test_the_names_list_is_the_installed_librarys() -> None:
    assert frozenset(xc.get_calendar_names(include_aliases=True)) == calendar_names.NAMES


def test_validation_points_at_each_problem(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "apiVersion: reconciler/v1\n"
        "kind: DeployWindow\n"
        "metadata: {name: w}\n"
        "spec:\n"
        "  calendar: XNSY\n"
        "  timeZone: America/Nowhere\n"
        '  allow: [{from: "2026-12-24T00:00", to: "2026-12-23T00:00"}]\n'
        '  deny: [{from: "10:00", to: "2026-12-23T00:00"}]\n'
        "---\n" + doc("d1", 1, "c1", extra="  window: nope\n")
    )
    report = validation.validate_paths([str(tmp_path / "w.yaml")])
    found = [str(p).replace(str(tmp_path) + "/", "") for p in report.problems]
    assert found == [
        "w.yaml:5:13: spec.calendar: unknown calendar 'XNSY': an exchange code of "
        "exchange_calendars, fx or none; did you mean XNYS, XNAS?",
        "w.yaml:6:13: spec.timeZone: unknown time zone 'America/Nowhere': an IANA name such "
        "as America/New_York",
        "w.yaml:7:11: spec.allow[0]: the range ends (2026-12-23T00:00) before it starts "
        "(2026-12-24T00:00)",
        "w.yaml:8:10: spec.deny[0]: `from` and `to` must be both times of day or both dates",
        "w.yaml:19:11: spec.window: no DeployWindow named 'nope' in these manifests (windows: w)",
    ], found


# ---- end to end --------------------------------------------------------------------------


def window_doc(name: str, **spec: str) -> str:
    body = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    head = f"apiVersion: reconciler/v1\nkind: DeployWindow\nmetadata: {{name: {name}}}\n"
    return f"{head}spec:\n{body}"


def closed_for_a_month() -> str:
    """calendar none, with one allow range a month from now: closed now."""
    start = datetime.now(UTC) + timedelta(days=30)
    end = start + timedelta(hours=1)
    return f'[{{from: "{start:%Y-%m-%dT%H:%M}", to: "{end:%Y-%m-%dT%H:%M}"}}]'


def test_a_replace_waits_for_its_window_and_can_be_ignored(
    world: World, emulator: Emulator
) -> None:
    world.add(301, extra="  window: later\n")
    (world.root / "windows.yaml").write_text(
        window_doc("later", calendar="none", allow=closed_for_a_month())
        + "---\n"
        + window_doc("never", calendar="none", override="denied")
    )
    world.apply()  # a create is never held by a window
    assert len(running_ids(emulator, 301)) == 1
    world.new_build(301, extra="  window: later\n")
    planned = world.run("plan", str(world.root), "--format", "json", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    (action,) = json.loads(planned.stdout)["actions"]
    assert (action["action"], action["deferred"], action["window"]) == (
        "deferred", "replace", "later",
    )  # fmt: skip
    assert action["opensAt"].endswith("Z") and action["changes"][0]["path"] == "compileId"
    text = world.run("plan", str(world.root)).stdout
    assert "> deferred  d301 (project 301): replace waits for window later" in text
    deferred = world.apply()
    assert "1 deferred" in deferred.stdout and len(stops(emulator)) == 0
    ignored = world.apply("--ignore-window", "d301")
    assert "1 replaced" in ignored.stdout and len(stops(emulator)) == 1
    shown = world.run("state", "history", "d301", "--format", "json").stdout
    assert "window later ignored by --ignore-window" in shown
    # A window that says override: denied refuses --ignore-window: nothing is stopped.
    world.new_build(301, extra="  window: never\n")
    refused = world.apply("--ignore-window", "d301", expect=1)
    assert "override: denied" in refused.stderr and len(stops(emulator)) == 1


def test_a_prune_is_gated_by_the_window_it_was_recorded_with(
    world: World, emulator: Emulator
) -> None:
    world.add(301, extra="  window: later\n")
    (world.root / "windows.yaml").write_text(
        window_doc("later", calendar="none", allow=closed_for_a_month())
    )
    world.apply()
    for name in ("d301.yaml", "windows.yaml"):  # the manifest and the window both gone
        (world.root / name).unlink()
    world.add(302)  # something stays, so the empty-set interlock does not trip
    pruned = world.apply("--prune")
    assert "1 deferred" in pruned.stdout, pruned.stdout
    assert len(stops(emulator)) == 0 and len(running_ids(emulator, 301)) == 1
    now = world.apply("--prune", "--ignore-window", "d301")
    assert "1 pruned" in now.stdout and len(stops(emulator)) == 1


def test_the_daemon_replaces_within_seconds_of_its_window_opening(
    world: World, emulator: Emulator, daemons: list[Daemon]
) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=6)
    until = opens + timedelta(hours=1)
    allow = f'[{{from: "{opens:%Y-%m-%dT%H:%M:%S}", to: "{until:%Y-%m-%dT%H:%M:%S}"}}]'
    world.add(301, extra="  window: soon\n")
    (world.root / "windows.yaml").write_text(
        window_doc("soon", calendar="none", allow=allow, minRemaining="1m")
    )
    world.apply()
    daemon = Daemon(emulator, world.tmp_path, world.root, "--resync", "300")
    daemons.append(daemon)
    world.new_build(301, extra="  window: soon\n")
    wait_for(lambda: bool(daemon.events("deferred")), what="the replace deferred")
    assert len(stops(emulator)) == 0
    wait_for(lambda: len(stops(emulator)) == 1, timeout=30, what="the replace, the window open")
    assert time.time() >= opens.replace(microsecond=0).timestamp()  # the range's own second
    assert daemon.metric('reconciler_window_open{window="soon"}') == 1
    wait_for(lambda: len(running_ids(emulator, 301)) == 1, what="the new deployment")
    assert daemon.get("/api/status").json()["windows"][0]["open"] is True


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path) -> World:
    return World(emulator, tmp_path)


def test_without_the_extra_validate_says_which_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "exchange_calendars" else real(name, *a),
    )
    (tmp_path / "w.yaml").write_text(window_doc("w", calendar="XNYS"))
    (tmp_path / "fx.yaml").write_text(window_doc("f", calendar="fx"))
    report = validation.validate_paths([str(tmp_path)])
    assert [str(p).replace(str(tmp_path) + "/", "") for p in report.problems] == [
        "w.yaml:5:13: spec.calendar: calendar XNYS is an exchange calendar: "
        "pip install 'qc-live-reconciler[calendars]' (exchange_calendars)"
    ]
