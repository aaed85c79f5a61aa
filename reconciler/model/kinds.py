"""What a plan's actions are and what became of them: enums with the properties every
layer asks (`starts`, `stops`, `is_change`, `failed`, ...), never string sets."""

from __future__ import annotations

from enum import StrEnum


class ActionKind(StrEnum):
    """What the plan does about one deployment (DESIGN §5, §11).  A `StrEnum`: it compares
    equal to, prints as and serialises as its name (`"create"`), as the JSON plan has it."""

    CREATE = "create"
    REPLACE = "replace"
    RESTART = "restart"
    PRUNE = "prune"
    DRIFT = "drift"
    BLOCKED = "blocked"
    CONFLICT = "conflict"
    NOOP = "noop"
    UNMANAGED = "unmanaged"
    DEFERRED = "deferred"  # a replace or prune waiting for its deploy window (DESIGN §16)
    WAITING = "waiting"  # a promoted deployment waiting for a candidate to pass (DESIGN §17)

    @property
    def starts(self) -> bool:
        """It sends a create (a replace's second half, a restart)."""
        return self in _STARTS

    @property
    def stops(self) -> bool:
        """It stops a running deployment (a replace's first half, a prune)."""
        return self in _STOPS

    @property
    def acts(self) -> bool:
        """It is sent to the API: one journaled intent."""
        return self in _STARTS or self in _STOPS

    @property
    def is_change(self) -> bool:
        """A change the plan will make: `plan --detailed-exitcode` exits 2 for it (a
        deferred one too: it is pending)."""
        return self in _STARTS or self in _STOPS or self is ActionKind.DEFERRED

    @property
    def refused(self) -> bool:
        """The plan cannot carry it out: plan and apply exit 1."""
        return self in (ActionKind.BLOCKED, ActionKind.CONFLICT)

    @property
    def done(self) -> Result:
        """The result of carrying it out (create -> created ...); only for kinds that act."""
        return _DONE_RESULT[self]


_STARTS = frozenset({ActionKind.CREATE, ActionKind.REPLACE, ActionKind.RESTART})
_STOPS = frozenset({ActionKind.REPLACE, ActionKind.PRUNE})


class Result(StrEnum):
    """What became of one action (DESIGN §6, §13): the outcome table's RESULT column."""

    CREATED = "created"
    REPLACED = "replaced"
    RESTARTED = "restarted"
    PRUNED = "pruned"
    ADOPTED = "adopted"
    RELEASED = "released"
    IN_SYNC = "in sync"
    PENDING = "pending"  # a prune without --prune
    DEFERRED = "deferred"  # waits for its deploy window
    WAITING = "waiting"  # waits for a candidate to pass on paper
    DRIFT = "drift"
    UNTOUCHED = "untouched"
    BLOCKED = "blocked"
    CONFLICT = "conflict"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the outcome of a call is not known yet: the next run checks
    SKIPPED = "skipped"  # shutting down: not sent

    @property
    def failed(self) -> bool:
        """It makes apply exit 1."""
        return self in _FAILED

    @property
    def started(self) -> bool:
        """A new deployment was started: health after apply watches it."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED)

    @property
    def changed(self) -> bool:
        """Live state changed (the GitHub Action's `has-changes`)."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED, Result.PRUNED)

    @property
    def in_sync(self) -> bool:
        """The deployment now runs what its manifest says."""
        return self in (Result.CREATED, Result.REPLACED, Result.RESTARTED, Result.ADOPTED)


_FAILED = frozenset(
    {Result.FAILED, Result.UNKNOWN, Result.SKIPPED, Result.CONFLICT, Result.BLOCKED}
)
_DONE_RESULT = {
    ActionKind.CREATE: Result.CREATED,
    ActionKind.REPLACE: Result.REPLACED,
    ActionKind.RESTART: Result.RESTARTED,
    ActionKind.PRUNE: Result.PRUNED,
}
