"""What the daemon says about a plan, once per episode (issue 23: found while soaking)."""

from __future__ import annotations

import logging

import pytest

from reconciler.daemon.reports import Reports
from reconciler.metrics import Metrics
from reconciler.model import Action, ActionKind
from reconciler.notify import Notifier


def blocked(name: str, deploy_id: str = "", reason: str = "node busy") -> Action:
    return Action(ActionKind.BLOCKED, name, 1, reason, deploy_id=deploy_id or None)


def unmanaged(deploy_id: str) -> Action:
    return Action(ActionKind.UNMANAGED, None, 2, "no manifest", deploy_id=deploy_id)


@pytest.fixture
def reports() -> Reports:
    return Reports(Metrics(), Notifier([]))


def said(caplog: pytest.LogCaptureFixture, event: str) -> int:
    return sum(1 for r in caplog.records if getattr(r, "event", None) == event)


def test_an_episode_is_said_once_and_again_when_it_comes_back(
    reports: Reports, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.watch")
    reports.plan([blocked("a")], {})
    reports.plan([blocked("a")], {})  # a resync: the same block, not news
    assert said(caplog, "blocked") == 1
    reports.plan([], {})  # it ended
    reports.plan([blocked("a")], {})  # and came back: a new episode
    assert said(caplog, "blocked") == 2


def test_what_the_daemon_remembers_does_not_grow_with_every_deployment_it_saw(
    reports: Reports,
) -> None:
    """Weeks unattended: each unmanaged (or drifted, blocked) deployment that came and went
    left a key behind, forever."""
    for n in range(1000):
        reports.plan([unmanaged(f"L-{n}")], {})
    assert len(reports._reported) == 1
