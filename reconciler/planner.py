"""The planner: a pure function (desired, recorded, live, projects) -> ordered actions.

No I/O and no clock, so it can be tested exhaustively with data alone.

Rules (DESIGN §4, §5, §11):
- a manifest whose project runs nothing gets `create`;
- a manifest whose project runs the deployment we recorded for it is `noop` when the spec
  hash is unchanged, `replace` when it changed (with the changes field by field), when
  `compileId: latest` and the project's code changed after the recorded compile, or when
  `--replace NAME` forces it; `blocked` instead when the manifest is `protected`;
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
from datetime import UTC, datetime

from reconciler.model import (
    Action,
    Deployment,
    LiveDeployment,
    Node,
    Plan,
    Record,
    spec_changes,
)

DEFAULT_MAX_PRUNES = 5

# Restart backoff (DESIGN §11): after this many restarts in a row, the next waits
# 1, 2, 4 ... minutes, at most an hour; the count resets after 30 minutes Running.
RESTARTS_BEFORE_BACKOFF = 3
BACKOFF_BASE = 60.0
BACKOFF_CAP = 3600.0
STABLE_AFTER = 1800.0

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


def _replace_of(
    desired: Deployment, record: Record, modified: str | None, forced: bool
) -> Action | None:
    """The replace a managed, running deployment needs, or None when it is in sync."""
    name, project, spec_hash = desired.name, desired.project_id, desired.spec_hash
    if record.spec_hash != spec_hash:
        changes = spec_changes(record.spec, desired.spec_view())
        if changes:
            reason = "spec changed: " + ", ".join(change.path for change in changes)
        else:
            reason = "spec changed since it was applied (recorded before field diffs existed)"
    elif (
        desired.compile_id == "latest"
        and record.source_modified
        and modified
        and modified != record.source_modified
    ):
        reason = (
            f"project {project} changed after compile {_short(record.compile_id)} "
            f"(modified {record.source_modified} -> {modified}); compileId: latest"
        )
        changes = ()
    elif forced:
        reason, changes = "forced by --replace", ()
    else:
        return None
    return Action("replace", name, project, reason, spec_hash, record.deploy_id, changes=changes)


@dataclass(frozen=True)
class _Restart:
    """What the planner needs to decide restarts: the time, and `--restart` names."""

    now: float | None
    forced: Collection[str]
    ours: Collection[str] = ()  # deployments the journal shows this reconciler stopping


def backoff_until(record: Record) -> float | None:
    """When the next restart may run, once restarts in a row reached the threshold."""
    if record.restarts < RESTARTS_BEFORE_BACKOFF or record.last_restart_at is None:
        return None
    wait = BACKOFF_BASE * (1 << min(16, record.restarts - RESTARTS_BEFORE_BACKOFF))
    return record.last_restart_at + min(BACKOFF_CAP, wait)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _not_running(
    desired: Deployment,
    record: Record | None,
    latest: LiveDeployment | None,
    known: Mapping[str, LiveDeployment],
    restart: _Restart,
) -> Action:
    """A manifest whose project runs nothing: create, restart, drift or blocked.

    With a record, its deployment's live status says why it is not running; without one
    (an empty or lost store), the project's most recent deployment stands in for the
    record when it matches the manifest: a person's stop is never undone on a guess.
    """
    name, project, spec_hash = desired.name, desired.project_id, desired.spec_hash
    if record is not None and record.deploy_id:
        if record.last_action == "replace" and record.last_outcome == "stopped":
            reason = f"continuing a replace: {record.deploy_id} was stopped by this reconciler"
            return Action("create", name, project, reason, spec_hash)
        if record.spec_hash != spec_hash:
            reason = f"spec changed while {record.deploy_id} was not running: a new deployment"
            return Action("create", name, project, reason, spec_hash)
        seen = known.get(record.deploy_id)
        if seen is not None and (seen.active or seen.project_id != project):
            seen = None  # not what the record says it is: treat it as gone
        status = seen.status if seen is not None else "gone from the live list"
        cause = seen.cause if seen is not None else "stopped"
        return _by_policy(desired, record, record.deploy_id, status, cause, seen, restart)
    if latest is not None and not latest.active and latest.deploy_id in restart.ours:
        reason = (
            f"the project's last deployment {latest.deploy_id} was stopped by this reconciler "
            "(a prune or a replace): a new deployment"
        )
        return Action("create", name, project, reason, spec_hash)
    if latest is not None and (latest.brokerage, latest.environment) == desired.identity:
        return _by_policy(
            desired, None, latest.deploy_id, latest.status, latest.cause, latest, restart
        )
    return Action("create", name, project, "no live deployment on the project", spec_hash)


def _by_policy(
    desired: Deployment,
    record: Record | None,
    deploy_id: str,
    status: str,
    cause: str,
    seen: LiveDeployment | None,
    restart: _Restart,
) -> Action:
    name, project, spec_hash, policy = (
        desired.name, desired.project_id, desired.spec_hash, desired.restart_policy,
    )  # fmt: skip
    forced = name in restart.forced
    why = _CAUSE_TEXT[cause] + (f": {seen.error}" if seen is not None and seen.error else "")
    if not forced and cause not in RESTART_TABLE.get(policy, frozenset()):
        guess = "" if record is not None else " (no record: the project's last deployment)"
        reason = (
            f"{deploy_id} is {status}{guess}, {why}; restartPolicy {policy} leaves it: "
            f"`reconciler apply --restart {name}` starts it again"
        )
        return Action("drift", name, project, reason, spec_hash, deploy_id, cause=cause)
    until = backoff_until(record) if record is not None else None
    if not forced and until is not None and restart.now is not None and restart.now < until:
        reason = (
            f"{deploy_id} is {status}, {why}; backing off after {record.restarts if record else 0} "
            f"restarts in a row: next try at {_utc(until)} (or `apply --restart {name}`)"
        )
        return Action("blocked", name, project, reason, spec_hash, deploy_id, cause=cause)
    by = "forced by --restart" if forced else f"restartPolicy {policy}"
    reason = f"{deploy_id} is {status}, {why}; {by}"
    return Action("restart", name, project, reason, spec_hash, deploy_id, cause=cause)


def _for_manifest(
    desired: Deployment,
    record: Record | None,
    running: LiveDeployment | None,
    latest: LiveDeployment | None,
    known: Mapping[str, LiveDeployment],
    modified: str | None,
    forced: bool,
    restart: _Restart,
) -> Action:
    name, project, spec_hash = desired.name, desired.project_id, desired.spec_hash
    if running is None:
        return _not_running(desired, record, latest, known, restart)
    if record is not None and record.deploy_id == running.deploy_id:
        replace = _replace_of(desired, record, modified, forced)
        if replace is None:
            reason = "in sync"
            if name in restart.forced:
                reason = f"in sync; {running.deploy_id} is {running.status}: nothing to restart"
            return Action("noop", name, project, reason, spec_hash, running.deploy_id)
        if desired.protected:
            return Action(
                "blocked",
                name,
                project,
                f"protected: needs a replace ({replace.reason}); remove `protected: true` "
                "to allow it",
                spec_hash,
                running.deploy_id,
                changes=replace.changes,
            )
        return replace
    wanted = desired.identity
    seen = (running.brokerage, running.environment)
    if seen == wanted:
        return Action(
            "noop",
            name,
            project,
            f"adopting running {running.deploy_id}: same brokerage and environment "
            "(compile not verifiable)",
            spec_hash,
            running.deploy_id,
            adopt=True,
        )
    return Action(
        "conflict",
        name,
        project,
        f"project runs {running.deploy_id} ({seen[0]}/{seen[1]}), not created by this "
        f"reconciler and not matching the manifest ({wanted[0]}/{wanted[1]})",
        spec_hash,
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
                    "unmanaged",
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
                    "unmanaged",
                    record.name,
                    project_id,
                    "manifest removed; adopted, not created by this reconciler: its record "
                    "is released and it keeps running",
                    record.spec_hash,
                    running.deploy_id,
                    release=True,
                )
            )
        elif record.protected:
            actions.append(
                Action(
                    "blocked",
                    record.name,
                    project_id,
                    "manifest removed but the deployment is protected: it is not stopped "
                    "(restore the manifest without `protected`, apply, then remove it)",
                    record.spec_hash,
                    running.deploy_id,
                )
            )
        else:
            verb = "liquidate and stop" if record.on_delete == "liquidate" else "stop"
            actions.append(
                Action(
                    "prune",
                    record.name,
                    project_id,
                    f"manifest removed; created by this reconciler (onDelete: {verb})",
                    record.spec_hash,
                    running.deploy_id,
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
                    "unmanaged",
                    record.name,
                    record.project_id,
                    f"manifest removed; its deployment {record.deploy_id} runs under another "
                    "manifest: only this record is dropped",
                    record.spec_hash,
                    record.deploy_id,
                    release=True,
                )
            )
            continue
        actions.append(
            Action(
                "prune",
                record.name,
                record.project_id,
                f"manifest removed; recorded deployment {record.deploy_id or '-'} is not "
                "running: only the record is dropped",
                record.spec_hash,
                None,
            )
        )
    return actions


def _interlocked(
    actions: list[Action], desired_count: int, recorded: Mapping[str, Record], max_prunes: int
) -> tuple[list[Action], str | None]:
    """Refuse every prune (and release) of the plan when an interlock trips.

    Returns the actions and the interlock's one-line reason (None when none tripped).
    """
    stopping = [a for a in actions if a.action == "prune" and a.deploy_id]
    why = None
    if desired_count == 0 and any(r.owned and r.deploy_id for r in recorded.values()):
        owned = sum(1 for a in actions if a.action in ("prune", "blocked") and a.deploy_id)
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
        if action.action == "prune":
            action = Action(
                "blocked",
                action.name,
                action.project_id,
                "prune refused by an interlock (below)",
                action.spec_hash,
                action.deploy_id,
            )
        elif action.release and desired_count == 0:
            action = Action(
                "unmanaged",
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
    now: float | None = None,
    stopped_by_us: Collection[str] = (),
) -> Plan:
    """Compare the views and return the actions, in a deterministic order.

    `projects`: each project's `modified` as `projects/read` reports it now (needed only
    for `compileId: latest`).  `nodes`: the organisation's live nodes by id, for the
    pre-flight check (None: not checked).  `force_replace` / `force_restart`: names from
    `--replace` / `--restart`.  `pruning`: prunes will be carried out (they free nodes).
    `now`: the time, for restart backoff (the planner reads no clock).  `stopped_by_us`:
    deployIds the journal shows this reconciler stopping (see `unrecorded_stopped`).
    """
    live = list(live)
    active = active_by_project(live)
    latest = latest_by_project(live)
    known = {item.deploy_id: item for item in live}
    modified = projects or {}
    restart = _Restart(now, force_restart, stopped_by_us)
    wanted = sorted(desired, key=lambda d: d.name)
    renamed = _renames(wanted, recorded, {**latest, **active})
    actions = []
    for d in wanted:
        old = renamed.get(d.name)
        action = _for_manifest(
            d,
            dataclasses.replace(old, name=d.name) if old else recorded.get(d.name),
            active.get(d.project_id),
            latest.get(d.project_id),
            known,
            modified.get(d.project_id),
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
    return checked if nodes is None else preflight(checked, wanted, nodes, pruning)


STARTING = frozenset({"create", "replace", "restart"})


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


def preflight(
    plan: Plan, desired: Iterable[Deployment], nodes: Mapping[str, Node], pruning: bool = True
) -> Plan:
    """Block what would start on an unknown node or one busy with a project this plan
    does not stop first (DESIGN §11): no create is sent for it.  `pruning`: the plan's
    prunes will be carried out (they free their nodes)."""
    by_name = {d.name: d for d in desired}
    actions = plan.actions
    freed = {a.project_id for a in actions if a.action == "replace"}
    if pruning:
        freed |= {a.project_id for a in actions if a.action == "prune" and a.deploy_id}
    out = []
    for action in actions:
        wanted = by_name.get(action.name or "")
        why = _node_problem(wanted, nodes, freed) if action.action in STARTING else None
        if wanted is not None and why is not None:
            action = Action(
                "blocked",
                action.name,
                action.project_id,
                f"{why}; no {action.action} is sent ({action.reason})",
                action.spec_hash,
                action.deploy_id,
                changes=action.changes,
            )
        out.append(action)
    return Plan(tuple(out), plan.notes)


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
