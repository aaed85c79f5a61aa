"""The gates of policy/: pure functions of (plan, facts, now), with data alone."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import policy
from reconciler.model import Action, ActionKind, Hold, Outcome, Plan, Record
from reconciler.policy import prune, restart, retry
from reconciler.policy.throttle import Throttle

KINDS = list(ActionKind)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    count = draw(st.integers(0, 12))
    actions = []
    for i in range(count):
        kind = draw(st.sampled_from(KINDS))
        record = None
        if draw(st.booleans()):
            record = Record(
                f"d{i}",
                i + 1,
                "sha256:x",
                f"L-{i}",
                True,
                restarts=draw(st.integers(0, 12)),
                last_restart_at=draw(st.one_of(st.none(), st.floats(0, 10_000))),
            )
        actions.append(
            Action(
                kind,
                f"d{i}",
                i + 1,
                "why",
                deploy_id=f"L-{i}" if draw(st.booleans()) else None,
                record=record,
                observed=f"L-{i} is RuntimeError, it failed",
            )
        )
    return Plan(tuple(actions))


@st.composite
def facts(draw: st.DrawFn) -> policy.Facts:
    names = st.sampled_from([f"d{i}" for i in range(12)])
    return policy.Facts(
        force_restart=frozenset(draw(st.sets(names, max_size=3))),
        prune_pending=draw(st.sampled_from([None, "pending"])),
        prune_suppressed=draw(st.sampled_from([None, "suppressed"])),
        prune_grace=draw(st.sampled_from([0.0, 10.0])),
        gone_since=draw(st.dictionaries(names, st.floats(0, 10_000), max_size=4)),
        retry_after=draw(st.dictionaries(names, st.floats(0, 10_000), max_size=4)),
    )


@settings(max_examples=300, deadline=None)
@given(plans(), facts(), st.floats(0, 20_000))
def test_gates_only_hold_never_add_or_drop(plan: Plan, known: policy.Facts, now: float) -> None:
    gated = policy.gate(plan, known, now)
    assert [a.name for a in gated.actions] == [a.name for a in plan.actions]
    for before, after in zip(plan.actions, gated.actions, strict=True):
        if after.held is None:
            assert after == before  # untouched
            continue
        assert not after.carried_out
        assert after.held.why
        # A hold keeps what the action acts on, and its target.
        assert (after.name, after.project_id, after.deploy_id, after.record) == (
            before.name,
            before.project_id,
            before.deploy_id,
            before.record,
        )
        if after.held.until is not None:
            assert after.held.until > now  # held only until a time still to come
    # Gating twice holds nothing more: each gate looks only at what no gate holds yet.
    assert policy.gate(gated, known, now) == gated


@settings(max_examples=200, deadline=None)
@given(plans(), facts(), st.floats(0, 20_000))
def test_prunes_are_carried_out_only_when_nothing_holds_them(
    plan: Plan, known: policy.Facts, now: float
) -> None:
    gated = policy.gate(plan, known, now)
    for action in gated.actions:
        if action.action is ActionKind.PRUNE and action.carried_out:
            assert known.prune_pending is None and known.prune_suppressed is None
            if known.prune_grace:
                since = known.gone_since.get(action.name or "", now)
                assert now >= since + known.prune_grace


def test_without_the_flag_a_prune_is_pending_with_the_flags_words() -> None:
    plan = Plan((Action(ActionKind.PRUNE, "gone", 5, "manifest removed", deploy_id="L-5"),))
    (held,) = policy.gate(plan, policy.Facts(prune_pending="pending: use --prune"), 0.0).actions
    assert held.action is ActionKind.PRUNE  # still shown as a prune
    assert held.held == Hold(prune.FLAG, "pending: use --prune")
    (free,) = policy.gate(plan, policy.Facts(), 0.0).actions
    assert free.carried_out


def test_the_prune_grace_counts_from_the_first_plan_that_had_the_removal() -> None:
    plan = Plan((Action(ActionKind.PRUNE, "gone", 5, "manifest removed", deploy_id="L-5"),))
    known = policy.Facts(prune_grace=10.0)
    (first,) = policy.gate(plan, known, 100.0).actions
    assert first.held is not None and first.held.until == 110.0
    since = prune.track_removals({}, policy.gate(plan, known, 100.0), 100.0)
    assert since == {"gone": 100.0}
    later = dataclasses.replace(known, gone_since=since)
    (waiting,) = policy.gate(plan, later, 109.0).actions
    assert waiting.held is not None and "pruned in 1.0 s" in waiting.held.why
    (due,) = policy.gate(plan, later, 110.0).actions
    assert due.carried_out
    # Back before the grace ran out (a rename, a checkout): forgotten, counted anew.
    assert prune.track_removals(since, Plan(()), 105.0) == {}
    # Held by the flag, a removal starts no count; counted once it could be carried out.
    pending = policy.gate(plan, dataclasses.replace(known, prune_pending="pending"), 100.0)
    assert prune.track_removals({}, pending, 100.0) == {}


def test_a_restart_backs_off_after_three_in_a_row_unless_forced() -> None:
    record = Record("p", 3, "sha256:x", "L-1", True, restarts=3, last_restart_at=1000.0)
    action = Action(
        ActionKind.RESTART, "p", 3, "L-1 is RuntimeError, it failed; restartPolicy OnFailure",
        deploy_id="L-1", cause="failed", record=record, observed="L-1 is RuntimeError, it failed",
    )  # fmt: skip
    plan = Plan((action,))
    (held,) = policy.gate(plan, policy.Facts(), 1030.0).actions
    assert held.action is ActionKind.BLOCKED and held.cause == "failed"
    assert held.held is not None and held.held.gate == restart.GATE
    assert held.held.until == 1060.0
    assert held.reason.startswith("L-1 is RuntimeError, it failed; backing off after 3 restarts")
    assert policy.gate(plan, policy.Facts(), 1060.0).actions[0].carried_out
    forced = policy.Facts(force_restart=frozenset({"p"}))
    assert policy.gate(plan, forced, 1030.0).actions[0].carried_out
    assert restart.backoff_until(dataclasses.replace(record, restarts=2)) is None


def test_the_retry_book_spaces_out_failed_starts_and_forgets_on_success() -> None:
    book = retry.RetryBook(Throttle(base=2.0, cap=600.0))
    failed = Outcome("p", 3, ActionKind.CREATE, "failed", None, "login failed")
    book.record("p", failed, 100.0)
    assert book.retry_after(100.0) == {"p": 102.0}
    book.record("p", failed, 102.0)
    assert book.retry_after(102.0) == {"p": 106.0}
    plan = Plan((Action(ActionKind.CREATE, "p", 3, "no live deployment"),))
    known = policy.Facts(retry_after=book.retry_after(103.0))
    (held,) = policy.gate(plan, known, 103.0).actions
    assert held.held is not None and held.held.gate == retry.GATE and held.held.until == 106.0
    book.record("p", Outcome("p", 3, ActionKind.CREATE, "created", "L-1"), 106.0)
    assert book.retry_after(106.0) == {}


def test_one_throttle_for_every_backoff() -> None:
    assert [Throttle(base=60.0, cap=3600.0, free=2).delay(n) for n in range(1, 11)] == [
        0.0, 0.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0,
    ]  # fmt: skip
    polls = Throttle(base=0.1, cap=2.0).delays()
    assert [round(next(polls), 3) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    jittered = Throttle(base=1.0, cap=8.0, jitter=(0.8, 1.2))
    for attempt in range(1, 10):
        raw = min(8.0, 2.0 ** (attempt - 1))
        assert 0.8 * raw <= jittered.delay(attempt) <= 1.2 * raw
    assert Throttle(base=1.0, cap=5.0).delay(10_000) == 5.0  # no overflow, however many
