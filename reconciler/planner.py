"""The planner: a pure function (desired, recorded, live) -> ordered actions.

No I/O and no clock, so it can be tested exhaustively with data alone.

Rules (DESIGN §4-§5):
- a manifest whose project runs nothing gets `create`;
- a manifest whose project runs the deployment we recorded for it is `noop` when the spec
  hash is unchanged, `replace` when it changed;
- a manifest whose project runs a deployment we did not record: when it matches (same
  brokerage and environment, the most `/live/list` can tell) it is adopted as a `noop`;
  otherwise it is a `conflict`.  Never a second create on a busy project;
- a live deployment we created whose manifest is gone is `prune` (owned only);
- any other live deployment without a manifest is `unmanaged`: reported, never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.model import Action, Deployment, LiveDeployment, Plan, Record


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


def _for_manifest(
    desired: Deployment, record: Record | None, running: LiveDeployment | None
) -> Action:
    name, project, spec_hash = desired.name, desired.project_id, desired.spec_hash
    if running is None:
        if record is not None and record.deploy_id:
            reason = f"recorded deployment {record.deploy_id} is no longer running"
        else:
            reason = "no live deployment on the project"
        return Action("create", name, project, reason, spec_hash)
    if record is not None and record.deploy_id == running.deploy_id:
        if record.spec_hash == spec_hash:
            return Action("noop", name, project, "in sync", spec_hash, running.deploy_id)
        return Action(
            "replace",
            name,
            project,
            "spec changed since it was applied",
            spec_hash,
            running.deploy_id,
        )
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


def plan(
    desired: Iterable[Deployment],
    recorded: Mapping[str, Record],
    live: Iterable[LiveDeployment],
) -> Plan:
    """Compare the three views and return the actions, in a deterministic order."""
    active = active_by_project(live)
    wanted = sorted(desired, key=lambda d: d.name)
    actions = [_for_manifest(d, recorded.get(d.name), active.get(d.project_id)) for d in wanted]

    claimed = {d.project_id for d in wanted}
    names = {d.name for d in wanted}
    owned_running = {
        r.deploy_id: r for r in recorded.values() if r.owned and r.deploy_id and r.name not in names
    }
    leftovers: list[Action] = []
    for project_id, running in sorted(active.items()):
        if project_id in claimed:
            continue
        record = owned_running.get(running.deploy_id)
        if record is not None:
            leftovers.append(
                Action(
                    "prune",
                    record.name,
                    project_id,
                    "manifest removed",
                    record.spec_hash,
                    running.deploy_id,
                )
            )
        else:
            leftovers.append(
                Action(
                    "unmanaged",
                    None,
                    project_id,
                    "running without a manifest; not created by this reconciler",
                    None,
                    running.deploy_id,
                )
            )
    return Plan(tuple(actions + leftovers))
