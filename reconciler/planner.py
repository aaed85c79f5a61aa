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
- interlocks refuse every prune of the plan (`blocked`): no manifests at all while
  deployments we created run (a wrong path must not stop everything), or more prunes
  than `max_prunes`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from reconciler.model import (
    Action,
    Deployment,
    LiveDeployment,
    Plan,
    Record,
    spec_changes,
)

DEFAULT_MAX_PRUNES = 5


def active_by_project(live: Iterable[LiveDeployment]) -> dict[int, LiveDeployment]:
    """The deployment occupying each project; the latest launched if several claim to."""
    active: dict[int, LiveDeployment] = {}
    for item in live:
        if not item.active:
            continue
        current = active.get(item.project_id)
        if current is None or (item.launched or "", item.deploy_id) > (
            current.launched or "",
            current.deploy_id,
        ):
            active[item.project_id] = item
    return active


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


def _for_manifest(
    desired: Deployment,
    record: Record | None,
    running: LiveDeployment | None,
    modified: str | None,
    forced: bool,
) -> Action:
    name, project, spec_hash = desired.name, desired.project_id, desired.spec_hash
    if running is None:
        if record is not None and record.deploy_id:
            if record.last_action == "replace" and record.last_outcome == "stopped":
                reason = f"continuing a replace: {record.deploy_id} was stopped by this reconciler"
            else:
                reason = f"recorded deployment {record.deploy_id} is no longer running"
        else:
            reason = "no live deployment on the project"
        return Action("create", name, project, reason, spec_hash)
    if record is not None and record.deploy_id == running.deploy_id:
        replace = _replace_of(desired, record, modified, forced)
        if replace is None:
            return Action("noop", name, project, "in sync", spec_hash, running.deploy_id)
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
    for record in sorted(recorded.values(), key=lambda r: r.name):
        if record.name in names or record.name in seen:
            continue
        if record.project_id in claimed and record.deploy_id in {
            a.deploy_id for a in active.values()
        }:
            continue  # its deployment runs under another manifest's name: left alone
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
) -> list[Action]:
    """Refuse every prune (and release) of the plan when an interlock trips."""
    stopping = [a for a in actions if a.action == "prune" and a.deploy_id]
    why = None
    if desired_count == 0 and any(r.owned and r.deploy_id for r in recorded.values()):
        owned = sum(1 for a in actions if a.action in ("prune", "blocked") and a.deploy_id)
        why = (
            "prune refused: no manifests were found, and a wrong path must not stop "
            f"everything ({owned} deployment(s) created by this reconciler run); nothing "
            "will be stopped"
        )
    elif len(stopping) > max_prunes:
        why = (
            f"prune refused: {len(stopping)} prunes exceed --max-prunes {max_prunes}; "
            "nothing will be stopped (raise --max-prunes if this is intended)"
        )
    if why is None:
        return actions
    out = []
    for action in actions:
        if action.action == "prune":
            action = Action(
                "blocked", action.name, action.project_id, why, action.spec_hash, action.deploy_id
            )
        elif action.release and desired_count == 0:
            action = Action(
                "unmanaged", action.name, action.project_id, why, None, action.deploy_id
            )
        out.append(action)
    return out


def plan(
    desired: Iterable[Deployment],
    recorded: Mapping[str, Record],
    live: Iterable[LiveDeployment],
    *,
    projects: Mapping[int, str] | None = None,
    force_replace: Collection[str] = (),
    max_prunes: int = DEFAULT_MAX_PRUNES,
) -> Plan:
    """Compare the views and return the actions, in a deterministic order.

    `projects`: each project's `modified` as `projects/read` reports it now (needed only
    for `compileId: latest`).  `force_replace`: names to replace although in sync.
    """
    active = active_by_project(live)
    modified = projects or {}
    wanted = sorted(desired, key=lambda d: d.name)
    actions = [
        _for_manifest(
            d,
            recorded.get(d.name),
            active.get(d.project_id),
            modified.get(d.project_id),
            d.name in force_replace,
        )
        for d in wanted
    ]
    names = {d.name for d in wanted}
    claimed = {d.project_id for d in wanted}
    leftovers = _removed(recorded, names, claimed, active)
    return Plan(tuple(_interlocked(actions + leftovers, len(wanted), recorded, max_prunes)))
