"""Notifications (`--notify URL`): events, delivery in the background, and what a slow or
failing receiver may not do (delay or fail a reconcile). Receivers are real HTTP servers on
127.0.0.1; apply and watch run as subprocesses against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.emulator import Emulator
from reconciler.errors import ConfigError
from reconciler.model import Outcome
from reconciler.notify import EVENTS, Notifier, make_event, outcome_event, slack_message, targets
from tests.receivers import Receiver, receiver
from tests.test_apply_e2e import SECRET, assert_no_traceback, run, world
from tests.test_watch import Daemon, daemons, root, wait_for

__all__ = ["daemons", "receiver", "root", "world"]  # fixtures used below

EVENT_FIELDS = {"event", "name", "projectId", "deployId", "reason", "time", "revision"}
Receivers = Callable[..., Receiver]


# -- events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "event"),
    [
        ("created", "created"),
        ("replaced", "replaced"),
        ("restarted", "restarted"),
        ("pruned", "pruned"),
        ("adopted", "adopted"),
        ("released", "released"),
        ("drift", "drift"),
        ("blocked", "blocked"),
        ("conflict", "conflict"),
        ("failed", "failed"),
        ("unknown", "failed"),
        ("skipped", "failed"),
        ("in sync", None),
        ("pending", None),
        ("untouched", None),
    ],
)
def test_each_outcome_result_maps_to_one_event_or_none(result: str, event: str | None) -> None:
    sent = outcome_event(Outcome("spy", 1001, "create", result, "L-1", "why"))
    if event is None:
        assert sent is None
        return
    assert sent is not None
    assert set(sent) == EVENT_FIELDS
    assert sent["event"] == event and sent["event"] in EVENTS
    assert (sent["name"], sent["projectId"], sent["deployId"]) == ("spy", 1001, "L-1")
    assert sent["time"].endswith("Z")


def test_slack_receivers_get_slacks_message_format_with_markup_escaped() -> None:
    event = make_event("drift", "spy", 1001, "L-9", "stopped by <!channel> & <from env X>")
    message = slack_message(event)
    assert list(message) == ["text"]
    assert "*drift* spy (project 1001) `L-9`" in message["text"]
    assert "&lt;!channel&gt; &amp; &lt;from env X&gt;" in message["text"]
    assert "<" not in message["text"]


def test_receivers_come_from_flags_or_the_environment_and_plain_http_only_to_loopback() -> None:
    env = {"RECONCILER_NOTIFY": "https://a.example/x, https://hooks.slack.com/services/T/B/C\n"}
    assert targets(None, env) == ["https://a.example/x", "https://hooks.slack.com/services/T/B/C"]
    assert targets(["http://127.0.0.1:9/x"], env) == ["http://127.0.0.1:9/x"]  # flags win
    assert targets(None, {}) == []
    with pytest.raises(ConfigError, match=r"refusing plain http:// to example\.com"):
        targets(["http://example.com/hook"], {})
    with pytest.raises(ConfigError, match="invalid notification URL"):
        targets(["ftp://example.com/hook"], {})


# -- delivery, in process ----------------------------------------------------------------


def test_events_are_delivered_as_json(receiver: Receivers) -> None:
    ok = receiver("ok")
    event = make_event("created", "spy", 1001, "L-1", "")
    notifier = Notifier([ok.url])
    notifier.send(event)
    assert notifier.close(wait=30) == 0  # returns as soon as the queue is delivered
    assert ok.bodies == [event]


def test_a_failing_receiver_is_retried_a_bounded_number_of_times(receiver: Receivers) -> None:
    failing = receiver("fail")
    failures: list[tuple[str, str]] = []
    notifier = Notifier(
        [failing.url], attempts=3, backoff=0.01, on_failure=lambda *f: failures.append(f)
    )
    notifier.send(make_event("failed", "spy", 1001, None, "boom"))
    assert notifier.close(wait=30) == 1
    assert failing.requests == 3
    assert [reason for reason, _ in failures] == ["error"]
    assert "HTTP 500" in failures[0][1]
    assert "token-in-path" not in failures[0][1]  # a webhook's path is its credential


def test_close_does_not_wait_for_a_hanging_receiver(receiver: Receivers) -> None:
    hanging, ok = receiver("hang"), receiver("ok")
    notifier = Notifier([hanging.url, ok.url], timeout=HANG_TIMEOUT)
    for name in ("a", "b", "c"):
        notifier.send(make_event("created", name, 1, None, ""))
    wait_for(lambda: hanging.requests == 1 and ok.requests == 3, what="deliveries")
    undelivered = notifier.close(wait=0.1)
    # close returned while the receiver still holds the first request: nothing waited on it
    assert not hanging.release.is_set()
    assert undelivered == 3  # the one in flight and the two queued behind it
    assert hanging.requests == 1
    assert [b["name"] for b in ok.bodies] == ["a", "b", "c"]  # the other receiver unaffected


HANG_TIMEOUT = 30.0  # longer than any close() in these tests: a timeout never ends a hang


def test_a_full_queue_drops_and_counts_instead_of_blocking(receiver: Receivers) -> None:
    hanging = receiver("hang")
    failures: list[str] = []
    notifier = Notifier(
        [hanging.url],
        timeout=HANG_TIMEOUT,
        queue_size=2,
        on_failure=lambda reason, _: failures.append(reason),
    )
    notifier.send(make_event("created", "first", 1, None, ""))
    wait_for(lambda: hanging.requests == 1, what="the first request in flight")
    for name in ("q1", "q2", "over1", "over2"):
        notifier.send(make_event("created", name, 1, None, ""))
    assert failures == ["dropped", "dropped"]
    notifier.close(wait=0)


# -- apply -----------------------------------------------------------------------------


def test_apply_notifies_each_outcome_and_slow_or_failing_receivers_change_nothing(
    emulator: Emulator, world: Path, tmp_path: Path, receiver: Receivers
) -> None:
    ok, failing, hanging = receiver("ok"), receiver("fail"), receiver("hang")
    result = run(
        emulator, tmp_path, "apply", str(world), "--yes",
        "--notify", hanging.url, "--notify", failing.url, "--notify", ok.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "Apply complete: 3 created." in result.stdout
    events = ok.events()
    assert sorted((e["event"], e["name"]) for e in events) == [
        ("created", "d101"),
        ("created", "d102"),
        ("created", "d103"),
    ]
    assert all(set(e) == EVENT_FIELDS and e["deployId"].startswith("L-") for e in events)
    assert {e["reason"] for e in events} == {"no live deployment on the project"}  # the plan's
    # apply exited while the hanging receiver still held its first request: no retry, no
    # second event was attempted on it; the failing one was tried, and it says so
    assert hanging.requests <= 1 and not hanging.release.is_set()
    assert failing.requests >= 1
    assert "notification(s) not delivered" in result.stderr
    assert "token-in-path" not in result.stderr + result.stdout


def test_no_secret_in_any_event_even_when_the_api_echoes_it(
    emulator: Emulator, world: Path, tmp_path: Path, receiver: Receivers
) -> None:
    ok = receiver("ok")
    # The brokerage login of d102 (its password is {fromEnv: IB_PASSWORD}) fails with a
    # message that repeats the password: the API's text goes into the outcome's detail.
    emulator.update_project(102, fail_login=f"invalid password {SECRET} for jdoe")
    result = run(
        emulator, tmp_path, "apply", str(world), "--yes", "--wait", "30",
        RECONCILER_NOTIFY=f"  {ok.url}  ",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    wait_for(lambda: ok.requests == 3, what="three events")
    raw = json.dumps(ok.bodies)
    assert SECRET not in raw
    assert SECRET not in result.stdout + result.stderr  # nor in apply's own table
    assert "invalid password [redacted] for jdoe" in result.stdout
    (failed,) = ok.events("failed")
    assert failed["name"] == "d102"
    assert "invalid password [redacted] for jdoe" in failed["reason"]
    assert sorted(e["name"] for e in ok.events("created")) == ["d101", "d103"]


# -- watch -----------------------------------------------------------------------------


def test_daemon_notifies_drift_once_and_counts_failed_deliveries(
    emulator: Emulator,
    tmp_path: Path,
    root: Path,
    daemons: list[Daemon],
    receiver: Receivers,
) -> None:
    ok, failing, hanging = receiver("ok"), receiver("fail"), receiver("hang")
    daemon = Daemon(
        emulator, tmp_path, root, "--resync", "0.5",
        "--notify", hanging.url, "--notify", failing.url, "--notify", ok.url,
    )  # fmt: skip
    daemons.append(daemon)
    wait_for(lambda: len(ok.events("created")) == 2, what="two created events")
    emulator.end(101, "Stopped")  # a person's stop: drift, left alone (OnFailure)
    wait_for(lambda: ok.events("drift"), what="the drift event")
    reconciles = daemon.metric('reconciler_reconciles_total{result="ok"}')
    wait_for(
        lambda: daemon.metric('reconciler_reconciles_total{result="ok"}') >= reconciles + 3,
        what="three more resyncs (the hanging receiver delays none)",
    )
    (drift,) = ok.events("drift")  # the same drift is not sent again on every resync
    assert drift["name"] == "d101" and drift["projectId"] == 101
    assert drift["deployId"] and drift["reason"]
    wait_for(
        lambda: daemon.metric('reconciler_notification_failures_total{reason="error"}') >= 1,
        what="the failing receiver counted in /metrics",
    )
    assert daemon.events("notify_failed")
    assert hanging.requests >= 1  # it was tried, and held a request all along
    assert daemon.terminate() == 0
