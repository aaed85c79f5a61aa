"""The planner: a pure function (desired, recorded, live, projects) -> ordered actions.

No I/O and no clock, so it can be tested exhaustively with data alone.

Rules (DESIGN §4, §5, §11):
- a manifest whose project runs nothing gets `create`;
- a manifest whose project runs the deployment we recorded for it is `noop` when the spec
  hash is unchanged, `replace` when it changed (with the changes field by field), when
  `compileId: latest` and the project's code changed after the recorded compile, or when
  `--replace NAME` forces it; `blocked` instead when the manifest is `protected`.  With
  `spec.promotion` (DESIGN §17) new code replaces only by promotion: when the candidate
  to run differs from the code recorded (whether it may start is the promotion gate's);
- a manifest whose project runs a deployment we did not record: when it matches (same
  brokerage and environment, the most `/live/list` can tell) it is adopted as a `noop`;
  otherwise it is a `conflict`.  Never a second create on a busy project;
- a live deployment we created whose manifest is gone is `prune` (owned only; `blocked`
  when it was protected); one we adopted is `unmanaged` and its record is released;
- any other live deployment without a manifest is `unmanaged`: reported, never touched;
- a manifest renamed (no record under its name; the record of a removed manifest names the
  same project and the deployment it runs or last ran) takes that record over, ownership
  included: planned as if never renamed, `renamed_from` telling apply to move the record;
- interlocks refuse every prune of the plan (`blocked`): no manifests at all while
  deployments we created run (a wrong path must not stop everything), or more prunes
  than `max_prunes`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import (
    Action,
    ActionKind,
    Change,
    Deployment,
    LiveDeployment,
    Node,
    Plan,
    Record,
    spec_changes,
)

DEFAULT_MAX_PRUNES = 5

# What each restart policy does for each cause (DESIGN §11's table).
RESTART_TABLE = {
    "OnFailure": frozenset({"failed"}),
    "Always": frozenset({"failed", "stopped", "exited"}),
    "Never": frozenset(),
}
_CAUSE_TEXT = {
    "failed": "it failed",
    "stopped": "stopped by someone else (not by this reconciler)",
    "exited": "the algorithm completed",
}


def latest_by_project(live: Iterable[LiveDeployment]) -> dict[int, LiveDeployment]:
    """Each project's most recently launched deployment, running or not."""
    latest: dict[int, LiveDeployment] = {}
    for item in live:
        current = latest.get(item.project_id)
        if current is None or (item.launched or "", item.deploy_id) > (
            current.launched or "",
            current.deploy_id,
        ):
            latest[item.project_id] = item
    return latest


def active_by_project(live: Iterable[LiveDeployment]) -> dict[int, LiveDeployment]:
    """The deployment occupying each project; the latest launched if several claim to."""
    return latest_by_project(item for item in live if item.active)


def _short(compile_id: str | None) -> str:
    return compile_id or "(unknown)"


@dataclass(frozen=True)
class _Subject:
    """One manifest as the planner decides for it: every action it gets carries the
    manifest, the record it acts from and the project's `modified` (compileId: latest)."""

    desired: Deployment
    record: Record | None
    modified: str | None
    tracks_code: bool = False  # a promotion's paper source: its create records its code
    promoted: str | None = None  # with spec.promotion: the code digest to run now

    def action(
        self, kind: ActionKind, reason: str, deploy_id: str | None = None, **more: Any
    ) -> Action:
        d = self.desired
        return Action(
            kind,
            d.name,
            d.project_id,
            reason,
            d.spec_hash,
            deploy_id,
            desired=d,
            record=self.record,
            modified=self.modified,
            tracks_code=self.tracks_code,
            **more,
        )


def _replace_of(subject: _Subject, record: Record, forced: bool) -> Action | None:
    """The replace a managed, running deployment needs, or None when it is in sync."""
    desired, modified = subject.desired, subject.modified
    promoted = subject.promoted
    if record.spec_hash != desired.spec_hash:
        changes = spec_changes(record.spec, desired.spec_view())
        if changes:
            reason = "spec changed: " + ", ".join(change.path for change in changes)
        else:
            reason = "spec changed since it was applied (recorded before field diffs existed)"
    elif desired.promotion is not None and promoted and promoted != record.digest:
        from reconciler.model.promotion import short_digest

        reason = (
            f"promotion: candidate {short_digest(promoted)} passed on paper "
            f"({desired.promotion.source}); it runs {short_digest(record.digest)}"
        )
        changes = (Change("code", short_digest(record.digest), short_digest(promoted)),)
    elif (
        desired.promotion is None
        and desired.compile_id == "latest"
        and record.source_modified
        and modified
        and modified != record.source_modified
    ):
        reason = (
            f"project {desired.project_id} changed after compile {_short(record.compile_id)} "
            f"(modified {record.source_modified} -> {modified}); compileId: latest"
        )
        changes = ()
    elif forced:
        reason, changes = "forced by --replace", ()
    else:
        return None
    return subject.action(ActionKind.REPLACE, reason, record.deploy_id, changes=changes)


@dataclass(frozen=True)
class _Restart:
    """What the planner needs to decide restarts: `--restart` names, and what it stopped.

    Whether a restart may run *now* (its backoff) is a gate of `policy/`: the planner
    has no clock."""

    forced: Collection[str]
    ours: Collection[str] = ()  # deployments the journal shows this reconciler stopping


def _not_running(
    subject: _Subject,
    latest: LiveDeployment | None,
    known: Mapping[str, LiveDeployment],
    restart: _Restart,
) -> Action:
    """A manifest whose project runs nothing: create, restart or drift.

    With a record, its deployment's live status says why it is not running; without one
    (an empty or lost store), the project's most recent deployment stands in for the
    record when it matches the manifest: a person's stop is never undone on a guess.
    """
    desired, record = subject.desired, subject.record
    create = ActionKind.CREATE
    if record is not None and record.deploy_id:
        if record.last_action == "replace" and record.last_outcome == "stopped":
            reason = f"continuing a replace: {record.deploy_id} was stopped by this reconciler"
            return subject.action(create, reason)
        if record.spec_hash != desired.spec_hash:
            reason = f"spec changed while {record.deploy_id} was not running: a new deployment"
            return subject.action(create, reason)
        seen = known.get(record.deploy_id)
        if seen is not None and (seen.active or seen.project_id != desired.project_id):
            seen = None  # not what the record says it is: treat it as gone
        status = seen.status if seen is not None else "gone from the live list"
        cause = seen.cause if seen is not None else "stopped"
        return _by_policy(subject, record.deploy_id, status, cause, seen, restart)
    if latest is not None and not latest.active and latest.deploy_id in restart.ours:
        reason = (
            f"the project's last deployment {latest.deploy_id} was stopped by this reconciler "
            "(a prune or a replace): a new deployment"
        )
        return subject.action(create, reason)
    if latest is not None and (latest.brokerage, latest.environment) == desired.identity:
        return _by_policy(subject, latest.deploy_id, latest.status, latest.cause, latest, restart)
    return subject.action(create, "no live deployment on the project")


def _by_policy(
    subject: _Subject,
    deploy_id: str,
    status: str,
    cause: str,
    seen: LiveDeployment | None,
    restart: _Restart,
) -> Action:
    name, policy = subject.desired.name, subject.desired.restart_policy
    forced = name in restart.forced
    why = _CAUSE_TEXT[cause] + (f": {seen.error}" if seen is not None and seen.error else "")
    observed = f"{deploy_id} is {status}, {why}"
    if not forced and cause not in RESTART_TABLE.get(policy, frozenset()):
        guess = "" if subject.record is not None else " (no record: the project's last deployment)"
        reason = (
            f"{deploy_id} is {status}{guess}, {why}; restartPolicy {policy} leaves it: "
            f"`reconciler apply --restart {name}` starts it again"
        )
        return subject.action(ActionKind.DRIFT, reason, deploy_id, cause=cause, observed=observed)
    by = "forced by --restart" if forced else f"restartPolicy {policy}"
    return subject.action(
        ActionKind.RESTART, f"{observed}; {by}", deploy_id, cause=cause, observed=observed
    )


def _for_manifest(
    subject: _Subject,
    running: LiveDeployment | None,
    latest: LiveDeployment | None,
    known: Mapping[str, LiveDeployment],
    forced: bool,
    restart: _Restart,
) -> Action:
    desired, record = subject.desired, subject.record
    if running is None:
        return _not_running(subject, latest, known, restart)
    if record is not None and record.deploy_id == running.deploy_id:
        replace = _replace_of(subject, record, forced)
        if replace is None:
            reason = "in sync"
            if desired.name in restart.forced:
                reason = f"in sync; {running.deploy_id} is {running.status}: nothing to restart"
            return subject.action(ActionKind.NOOP, reason, running.deploy_id)
        if desired.protected:
            return subject.action(
                ActionKind.BLOCKED,
                f"protected: needs a replace ({replace.reason}); remove `protected: true` "
                "to allow it",
                running.deploy_id,
                changes=replace.changes,
            )
        return replace
    wanted = desired.identity
    seen = (running.brokerage, running.environment)
    if seen == wanted:
        return subject.action(
            ActionKind.NOOP,
            f"adopting running {running.deploy_id}: same brokerage and environment "
            "(compile not verifiable)",
            running.deploy_id,
            adopt=True,
        )
    return subject.action(
        ActionKind.CONFLICT,
        f"project runs {running.deploy_id} ({seen[0]}/{seen[1]}), not created by this "
        f"reconciler and not matching the manifest ({wanted[0]}/{wanted[1]})",
        running.deploy_id,
    )


def _renames(
    desired: Iterable[Deployment],
    recorded: Mapping[str, Record],
    current: Mapping[int, LiveDeployment],
) -> dict[str, Record]:
    """Manifests renamed since their deployment was recorded: new name -> the old record.

    A manifest with no record of its own is the renamed manifest of a record when that
    record's manifest is gone, both name the same project, and the record's deployment is
    `current` on the project (the one it runs, or last ran): the same deployment, so the
    record (ownership included) follows the manifest instead of the deployment being
    adopted under the new name and the old record lingering.  Never a guess: one such
    record, claimed by one manifest, or no rename.
    """
    wanted = list(desired)
    names = {d.name for d in wanted}
    gone: dict[tuple[int, str | None], list[Record]] = {}
    for record in recorded.values():
        if record.name not in names:
            gone.setdefault((record.project_id, record.deploy_id), []).append(record)
    found: dict[str, Record] = {}
    for d in wanted:
        on_project = current.get(d.project_id)
        if d.name in recorded or on_project is None:
            continue
        candidates = gone.get((d.project_id, on_project.deploy_id), [])
        if len(candidates) == 1:
            found[d.name] = candidates[0]
    claims = Counter(record.name for record in found.values())
    return {name: record for name, record in found.items() if claims[record.name] == 1}


def _removed(
    recorded: Mapping[str, Record],
    names: Collection[str],
    claimed: Collection[int],
    active: Mapping[int, LiveDeployment],
) -> list[Action]:
    """Actions for live deployments no manifest claims and records whose manifest is gone."""
    gone = {r.deploy_id: r for r in recorded.values() if r.deploy_id and r.name not in names}
    actions: list[Action] = []
    seen: set[str] = set()
    for project_id, running in sorted(active.items()):
        if project_id in claimed:
            continue
        record = gone.get(running.deploy_id)
        if record is None:
            actions.append(
                Action(
                    ActionKind.UNMANAGED,
                    None,
                    project_id,
                    "running without a manifest; not created by this reconciler",
                    None,
                    running.deploy_id,
                )
            )
            continue
        seen.add(record.name)
        if not record.owned:
            actions.append(
                Action(
                    ActionKind.UNMANAGED,
                    record.name,
                    project_id,
                    "manifest removed; adopted, not created by this reconciler: its record "
                    "is released and it keeps running",
                    record.spec_hash,
                    running.deploy_id,
                    release=True,
                    record=record,
                )
            )
        elif record.protected:
            actions.append(
                Action(
                    ActionKind.BLOCKED,
                    record.name,
                    project_id,
                    "manifest removed but the deployment is protected: it is not stopped "
                    "(restore the manifest without `protected`, apply, then remove it)",
                    record.spec_hash,
                    running.deploy_id,
                    record=record,
                )
            )
        else:
            verb = "liquidate and stop" if record.on_delete == "liquidate" else "stop"
            actions.append(
                Action(
                    ActionKind.PRUNE,
                    record.name,
                    project_id,
                    f"manifest removed; created by this reconciler (onDelete: {verb})",
                    record.spec_hash,
                    running.deploy_id,
                    record=record,
                )
            )
    running_ids = {a.deploy_id for a in active.values()}
    for record in sorted(recorded.values(), key=lambda r: r.name):
        if record.name in names or record.name in seen:
            continue
        if record.project_id in claimed and record.deploy_id in running_ids:
            # Its deployment runs under another manifest, which has it recorded or adopts
            # it now: this stale record is dropped, the deployment is never touched.
            actions.append(
                Action(
                    ActionKind.UNMANAGED,
                    record.name,
                    record.project_id,
                    f"manifest removed; its deployment {record.deploy_id} runs under another "
                    "manifest: only this record is dropped",
                    record.spec_hash,
                    record.deploy_id,
                    release=True,
                    record=record,
                )
            )
            continue
        actions.append(
            Action(
                ActionKind.PRUNE,
                record.name,
                record.project_id,
                f"manifest removed; recorded deployment {record.deploy_id or '-'} is not "
                "running: only the record is dropped",
                record.spec_hash,
                None,
                record=record,
            )
        )
    return actions


def _interlocked(
    actions: list[Action], desired_count: int, recorded: Mapping[str, Record], max_prunes: int
) -> tuple[list[Action], str | None]:
    """Refuse every prune (and release) of the plan when an interlock trips.

    Returns the actions and the interlock's one-line reason (None when none tripped).
    """
    stopping = [a for a in actions if a.action is ActionKind.PRUNE and a.deploy_id]
    why = None
    if desired_count == 0 and any(r.owned and r.deploy_id for r in recorded.values()):
        owned = sum(
            1 for a in actions if a.action in (ActionKind.PRUNE, ActionKind.BLOCKED) and a.deploy_id
        )
        why = (
            f"prune refused: no manifests were found while {owned} deployment(s) created by "
            "this reconciler run; a wrong path must not stop everything. Nothing will be "
            "stopped."
        )
    elif len(stopping) > max_prunes:
        why = (
            f"prune refused: {len(stopping)} prunes exceed --max-prunes {max_prunes}. Nothing "
            "will be stopped; raise --max-prunes if this is intended."
        )
    if why is None:
        return actions, None
    out = []
    for action in actions:
        if action.action is ActionKind.PRUNE:
            action = Action(
                ActionKind.BLOCKED,
                action.name,
                action.project_id,
                "prune refused by an interlock (below)",
                action.spec_hash,
                action.deploy_id,
            )
        elif action.release and desired_count == 0:
            action = Action(
                ActionKind.UNMANAGED,
                action.name,
                action.project_id,
                "record kept: prune refused by an interlock (below)",
                None,
                action.deploy_id,
            )
        out.append(action)
    return out, why


def plan(
    desired: Iterable[Deployment],
    recorded: Mapping[str, Record],
    live: Iterable[LiveDeployment],
    *,
    projects: Mapping[int, str] | None = None,
    nodes: Mapping[str, Node] | None = None,
    force_replace: Collection[str] = (),
    force_restart: Collection[str] = (),
    max_prunes: int = DEFAULT_MAX_PRUNES,
    pruning: bool = True,
    stopped_by_us: Collection[str] = (),
    promoted: Mapping[str, str] | None = None,
) -> Plan:
    """Compare the views and return the actions, in a deterministic order.

    `projects`: each project's `modified` as `projects/read` reports it now (needed only
    for `compileId: latest`).  `nodes`: the organisation's live nodes by id, for the
    pre-flight check (None: not checked).  `force_replace` / `force_restart`: names from
    `--replace` / `--restart`.  `pruning`: prunes will be carried out (they free nodes).
    `stopped_by_us`:
    deployIds the journal shows this reconciler stopping (see `unrecorded_stopped`).
    `promoted`: manifests with `spec.promotion` -> the candidate's digest to run now.
    """
    live = list(live)
    active = active_by_project(live)
    latest = latest_by_project(live)
    known = {item.deploy_id: item for item in live}
    modified = projects or {}
    restart = _Restart(force_restart, stopped_by_us)
    wanted = sorted(desired, key=lambda d: d.name)
    sources = {d.promotion.source for d in wanted if d.promotion is not None}
    targets = promoted or {}
    renamed = _renames(wanted, recorded, {**latest, **active})
    actions = []
    for d in wanted:
        old = renamed.get(d.name)
        subject = _Subject(
            d,
            dataclasses.replace(old, name=d.name) if old else recorded.get(d.name),
            modified.get(d.project_id),
            d.name in sources,
            targets.get(d.name),
        )
        action = _for_manifest(
            subject,
            active.get(d.project_id),
            latest.get(d.project_id),
            known,
            d.name in force_replace,
            restart,
        )
        if old is not None:
            action = dataclasses.replace(
                action, reason=f"renamed from {old.name}; {action.reason}", renamed_from=old.name
            )
        actions.append(action)
    names = {d.name for d in wanted}
    claimed = {d.project_id for d in wanted}
    kept = names | {record.name for record in renamed.values()}
    leftovers = _removed(recorded, kept, claimed, active)
    actions, interlock = _interlocked(actions + leftovers, len(wanted), recorded, max_prunes)
    checked = Plan(tuple(actions), (interlock,) if interlock else ())
    return checked if nodes is None else preflight(checked, nodes, pruning)


def unrecorded_stopped(
    desired: Iterable[Deployment], recorded: Mapping[str, Record], live: Iterable[LiveDeployment]
) -> set[str]:
    """The deployments whose stopper the planner needs the journal for: a manifest's
    project runs nothing and its last deployment is not the one recorded for the name."""
    live = list(live)
    latest = latest_by_project(live)
    active = active_by_project(live)
    out = set()
    for d in desired:
        last = latest.get(d.project_id)
        record = recorded.get(d.name)
        unrecorded = record is None or (last is not None and record.deploy_id != last.deploy_id)
        if last is not None and d.project_id not in active and unrecorded:
            out.add(last.deploy_id)
    return out


def preflight(plan: Plan, nodes: Mapping[str, Node], pruning: bool = True) -> Plan:
    """Block what would start on an unknown node or one busy with a project this plan
    does not stop first (DESIGN §11): no create is sent for it.  `pruning`: the plan's
    prunes will be carried out (they free their nodes); a prune a gate holds frees
    nothing."""
    actions = plan.actions
    freed = {a.project_id for a in actions if a.action is ActionKind.REPLACE and not a.held}
    if pruning:
        freed |= {
            a.project_id
            for a in actions
            if a.action is ActionKind.PRUNE and a.deploy_id and not a.held
        }
    out = []
    for action in actions:
        starting = action.action.starts and not action.held
        why = _node_problem(action.desired, nodes, freed) if starting else None
        if why is not None:
            action = action.holding(
                "preflight",
                f"{why}; no {action.action} is sent ({action.reason})",
                as_kind=ActionKind.BLOCKED,
                cause="",  # not a restart backing off: a node in the way
            )
        out.append(action)
    return plan.with_actions(out)


def _node_problem(
    desired: Deployment | None, nodes: Mapping[str, Node], freed: Collection[int]
) -> str | None:
    if desired is None:
        return None
    node = nodes.get(desired.node_id)
    if node is None:
        return f"node {desired.node_id} is not a live node of the organisation"
    if not node.busy or node.project_id == desired.project_id or node.project_id in freed:
        return None
    label = (
        f"node {node.name} ({node.id})"
        if node.name and node.name != node.id
        else (f"node {node.id}")
    )
    if node.project_id is None:
        return f"{label} is busy (used by {node.used_by or 'someone else'})"
    project = f" ({node.project_name})" if node.project_name else ""
    return f"{label} is busy running project {node.project_id}{project}"
