"""The PostgreSQL state store: what a workspace records (deployments, intents, history,
applied plans), its export and import, over the session's transactions.

One database holds any number of workspaces (`--workspace`); every row carries its
workspace.  An intent is journaled durably, and fenced, before the call it announces;
what a crash could lose of the rest (a closed intent, a record, history) is written in
combined transactions (`_combined`) and re-derived from live state by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from reconciler.model import Intent, Record
from reconciler.state import HistoryEntry, LockHolder, StateSnapshot
from reconciler.state.postgres.leadership import PostgresLeadership
from reconciler.state.postgres.lock import break_lock, read_holder
from reconciler.state.postgres.session import Params, PostgresSession

if TYPE_CHECKING:
    from reconciler.model.promotion import Candidate

_RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
_INTENT_COLUMNS = tuple(f.name for f in dataclasses.fields(Intent))
_HISTORY_COLUMNS = tuple(f.name for f in dataclasses.fields(HistoryEntry))

_RECORD_HEAD = f"INSERT INTO reconciler_deployments (workspace, {', '.join(_RECORD_COLUMNS)})"
_RECORD_TAIL = " ON CONFLICT (workspace, name) DO UPDATE SET " + ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _RECORD_COLUMNS if c != "name"
)
_PUT_RECORD = (
    f"{_RECORD_HEAD} VALUES (%s, {', '.join(['%s'] * len(_RECORD_COLUMNS))}){_RECORD_TAIL}"
)
_INTENT_HEAD = f"INSERT INTO reconciler_intents (workspace, {', '.join(_INTENT_COLUMNS)})"
_HISTORY_HEAD = f"INSERT INTO reconciler_history (workspace, {', '.join(_HISTORY_COLUMNS)})"
_DELETE_RECORD = "DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s"
_FORGET_RECORD = """
WITH gone AS (
    DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s
    RETURNING project_id, deploy_id
)
INSERT INTO reconciler_history (workspace, at, name, project_id, action, outcome, deploy_id,
    detail, revision)
SELECT %s, %s, %s, (SELECT project_id FROM gone), %s, %s, (SELECT deploy_id FROM gone), %s, %s
"""
_INSERT_HISTORY = f"{_HISTORY_HEAD} VALUES (%s, {', '.join(['%s'] * len(_HISTORY_COLUMNS))})"


def _values(head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> list[tuple[str, Params]]:
    """One multi-row INSERT (none for no rows)."""
    if not rows:
        return []
    one = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
    return [(f"{head} VALUES {', '.join([one] * len(rows))}{tail}", [v for r in rows for v in r])]


class PostgresStateStore(PostgresSession):
    """One workspace of a PostgreSQL database; safe to share between threads of one process."""

    def lock(self, timeout: float = 60.0) -> contextlib.AbstractContextManager[None]:
        """Hold the workspace's apply lock; wait at most `timeout` seconds for it."""
        return self._apply_lock.held(timeout)

    # -- records ---------------------------------------------------------------------

    def records(self) -> dict[str, Record]:
        rows = self._read(
            "cannot read records",
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM reconciler_deployments "
            "WHERE workspace = %s ORDER BY name",
            (self._workspace,),
        )
        return {row[0]: Record(*row) for row in rows}

    def put_record(self, record: Record) -> None:
        self._combined((_PUT_RECORD, self._record_args(record)))

    def _record_args(self, record: Record) -> tuple[Any, ...]:
        return (self._workspace, *(getattr(record, c) for c in _RECORD_COLUMNS))

    def forget_record(
        self,
        name: str,
        *,
        action: str,
        outcome: str,
        detail: str,
        revision: str | None = None,
    ) -> None:
        """Drop a record (its deployment was pruned, or is released), with history."""
        args = (self._workspace, name, self._workspace, time.time(), name, action, outcome,
                detail, revision)  # fmt: skip
        self._combined((_FORGET_RECORD, args))

    def rename_record(self, old: str, record: Record, *, detail: str) -> None:
        """Move the record of `old` to `record.name` (a renamed manifest), in one
        transaction, with history under both names."""
        at, project, deploy = time.time(), record.project_id, record.deploy_id
        history = [
            (
                _INSERT_HISTORY,
                (
                    self._workspace,
                    at,
                    name,
                    project,
                    "rename",
                    "renamed",
                    deploy,
                    detail,
                    record.revision,
                ),
            )
            for name in (old, record.name)
        ]
        self._combined(
            (_DELETE_RECORD, (self._workspace, old)),
            (_PUT_RECORD, self._record_args(record)),
            *history,
        )

    # -- intents ---------------------------------------------------------------------

    def open_intents(self) -> list[Intent]:
        rows = self._read(
            "cannot read intents",
            f"SELECT {', '.join(_INTENT_COLUMNS)} FROM reconciler_intents "
            "WHERE workspace = %s AND closed_at IS NULL ORDER BY created_at",
            (self._workspace,),
        )
        return [Intent(*row) for row in rows]

    def begin_intents(self, items: Sequence[tuple[str, int, str] | Intent]) -> list[Intent]:
        """Journal mutations durably, in one transaction, before any is sent.

        Refused (StateLockedError) when this run's lock is no longer its own, and
        (StateFencedError) when a daemon's leadership has passed.
        """
        now = time.time()
        intents = [
            item if isinstance(item, Intent) else Intent.new(*item, now=now) for item in items
        ]
        rows = [(self._workspace, *(getattr(i, c) for c in _INTENT_COLUMNS)) for i in intents]
        if rows:
            self._write(
                "cannot write intents", _values(_INTENT_HEAD, rows), durable=True, own_lock=True
            )
        return intents

    def mark_sending(self, intent: Intent, lands_by: float) -> None:
        """Durably, and fenced as an intent is, before a create is sent under `intent`: the
        latest time it can still take effect.  A run resolving the intent after a crash (or
        a failover) waits until then."""
        self._combined(
            (
                "UPDATE reconciler_intents SET lands_by = GREATEST(lands_by, %s) "
                "WHERE workspace = %s AND attempt_id = %s",
                (lands_by, self._workspace, intent.attempt_id),
            ),
            durable=True,
        )  # concurrent creates' stamps share one synchronous commit

    def close_intent(
        self,
        intent: Intent,
        outcome: str,
        *,
        record: Record | None = None,
        detail: str | None = None,
        forget: bool = False,
    ) -> None:
        """Close an intent, record its result (or drop the record) and append history,
        atomically (in one transaction with other threads' writes of the moment)."""
        now = time.time()
        deploy_id = record.deploy_id if record else intent.old_deploy_id
        closing = (now, outcome, deploy_id, self._workspace, intent.attempt_id)
        history = (self._workspace, now, intent.name, intent.project_id, intent.kind, outcome,
                   deploy_id, detail, intent.revision)  # fmt: skip
        statements: list[tuple[str, Params]] = [
            (
                "UPDATE reconciler_intents SET closed_at = %s, outcome = %s, deploy_id = %s "
                "WHERE workspace = %s AND attempt_id = %s",
                closing,
            )
        ]
        if record is not None:
            statements.append((_PUT_RECORD, self._record_args(record)))
        elif forget:
            statements.append(
                (
                    "DELETE FROM reconciler_deployments WHERE workspace = %s AND name = %s",
                    (self._workspace, intent.name),
                )
            )
        statements.append((_INSERT_HISTORY, history))
        self._combined(*statements)

    # -- history ---------------------------------------------------------------------

    def add_history(
        self,
        action: str,
        outcome: str,
        *,
        name: str | None = None,
        project_id: int | None = None,
        deploy_id: str | None = None,
        detail: str | None = None,
        revision: str | None = None,
    ) -> None:
        args = (self._workspace, time.time(), name, project_id, action, outcome, deploy_id,
                detail, revision)  # fmt: skip
        self._combined((_INSERT_HISTORY, args))

    def history(self, limit: int = 100, name: str | None = None) -> list[HistoryEntry]:
        """The latest `limit` entries (of one deployment name, if given), newest first."""
        where = "workspace = %s" + (" AND name = %s" if name is not None else "")
        args = (self._workspace, name, limit) if name is not None else (self._workspace, limit)
        rows = self._read(
            "cannot read history",
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM reconciler_history "
            f"WHERE {where} ORDER BY id DESC LIMIT %s",
            args,
        )
        return [HistoryEntry(*row) for row in rows]

    def stopped_by_us(self, deploy_ids: Collection[str]) -> set[str]:
        """Which of these deployments the journal shows this reconciler stopping (a prune,
        or a replace's stop): a stop of ours, never "someone else's" (DESIGN §11)."""
        ids = sorted(set(deploy_ids))
        if not ids:
            return set()
        rows = self._read(
            "cannot read history",
            "SELECT DISTINCT deploy_id FROM reconciler_history WHERE workspace = %s AND "
            "deploy_id = ANY(%s) AND ((action = 'prune' AND outcome = 'pruned') OR "
            "(action = 'stop' AND outcome = 'stopped'))",
            (self._workspace, ids),
        )
        return {str(row[0]) for row in rows}

    # -- candidates (paper first) ------------------------------------------------------

    def candidates(self, name: str | None = None) -> list[Candidate]:
        """Every candidate offered to `name` (or to any manifest), oldest first."""
        from reconciler.model.promotion import Candidate

        where, args = (" AND name = %s", (self._workspace, name)) if name else ("", ())
        rows = self._read(
            "cannot read candidates",
            "SELECT name, digest, data FROM reconciler_candidates WHERE workspace = %s"
            f"{where} ORDER BY updated_at",
            args or (self._workspace,),
        )
        return [Candidate.from_json(str(n), str(d), str(data)) for n, d, data in rows]

    def put_candidates(self, candidates: Sequence[Candidate]) -> None:
        if candidates:
            self._combined(*self._candidate_rows(candidates))

    def _candidate_rows(self, candidates: Sequence[Candidate]) -> list[tuple[str, Params]]:
        return _values(
            "INSERT INTO reconciler_candidates (workspace, name, digest, data, updated_at)",
            [(self._workspace, c.name, c.digest, c.to_json(), c.seen_at) for c in candidates],
            " ON CONFLICT (workspace, name, digest) DO UPDATE SET data = EXCLUDED.data, "
            "updated_at = EXCLUDED.updated_at",
        )

    # -- plans -----------------------------------------------------------------------

    def claim_plan(self, nonce: str) -> bool:
        """Mark a saved plan as applied; False if it was applied before."""
        cur = self._write(
            "cannot claim the plan",
            [
                (
                    "INSERT INTO reconciler_applied_plans VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (self._workspace, nonce, time.time()),
                )
            ],
            durable=True,
        )
        return cur.rowcount == 1

    # -- administration (`reconciler state`) ------------------------------------------

    def lock_holder(self) -> LockHolder | None:
        return read_holder(self)

    def break_lock(self) -> None:
        """Drop the apply lock whoever holds it, and end the holder's session if it is
        still connected (`reconciler state unlock`): its writes are refused from then on."""
        break_lock(self)

    def export_state(self) -> StateSnapshot:
        ws = (self._workspace,)
        history = self._read(
            "cannot read history",
            f"SELECT {', '.join(_HISTORY_COLUMNS)} FROM reconciler_history "
            "WHERE workspace = %s ORDER BY id",
            ws,
        )
        plans = self._read(
            "cannot read plans",
            "SELECT nonce, applied_at FROM reconciler_applied_plans WHERE workspace = %s "
            "ORDER BY applied_at",
            ws,
        )
        return StateSnapshot(
            records=list(self.records().values()),
            intents=self.open_intents(),
            history=[HistoryEntry(*row) for row in history],
            plans=[(str(nonce), float(at)) for nonce, at in plans],
            candidates=self.candidates(),
        )

    def import_state(self, snapshot: StateSnapshot) -> None:
        """Make this workspace a copy of `snapshot` (what it held before is replaced)."""
        ws = self._workspace
        statements: list[tuple[str, Params]] = [
            (f"DELETE FROM {table} WHERE workspace = %s", (ws,))
            for table in (
                "reconciler_deployments",
                "reconciler_intents",
                "reconciler_history",
                "reconciler_applied_plans",
                "reconciler_candidates",
            )
        ]
        statements += _values(
            _RECORD_HEAD, [self._record_args(r) for r in snapshot.records], _RECORD_TAIL
        )
        intents = [(ws, *(getattr(i, c) for c in _INTENT_COLUMNS)) for i in snapshot.intents]
        statements += _values(_INTENT_HEAD, intents)
        statements += _values(
            _HISTORY_HEAD,
            [(ws, *(getattr(h, c) for c in _HISTORY_COLUMNS)) for h in snapshot.history],
        )
        statements += _values(
            "INSERT INTO reconciler_applied_plans", [(ws, n, at) for n, at in snapshot.plans]
        )
        statements += self._candidate_rows(snapshot.candidates)
        self._write("cannot import state", statements, durable=True)

    def leadership(self, lease: float) -> PostgresLeadership:
        return PostgresLeadership(self, lease)
