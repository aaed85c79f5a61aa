"""Properties of the pure planner, with data alone (no I/O, no clock)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import policy
from reconciler.model import Action, Deployment, LiveDeployment, Node, Plan, Record, SecretRef
from reconciler.planner import plan, unrecorded_stopped

BROKERAGES = [
    {"id": "PaperTrading"},
    {
        "id": "Interactive",
        "user": "jdoe",
        "account": "U1",
        "password": SecretRef("env", "IB_PASSWORD"),
        "weeklyRestartUtcTime": "22:00:00",
        "environment": "live",
    },
    {
        "id": "Tradier",
        "account": "T1",
        "token": SecretRef("env", "TRADIER"),
        "environment": "paper",
    },
    {"id": "Oanda", "account": "O1", "token": SecretRef("env", "OANDA"), "environment": "live"},
]


def deployment(
    name: str, project_id: int, brokerage: int = 0, compile_id: str = "c1"
) -> Deployment:
    return Deployment(
        name=name,
        project_id=project_id,
        compile_id=compile_id,
        node_id="LN-1",
        version_id="-1",
        brokerage=BROKERAGES[brokerage],
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Deployment], dict[str, Record], list[LiveDeployment]]:
    count = draw(st.integers(0, 8))
    projects = draw(st.lists(st.integers(1, 30), min_size=count, max_size=count, unique=True))
    desired = [
        deployment(
            f"d{i}",
            project,
            draw(st.integers(0, len(BROKERAGES) - 1)),
            draw(st.sampled_from(["c1", "c2", "latest"])),
        )
        for i, project in enumerate(projects)
    ]
    live: list[LiveDeployment] = []
    for n, project in enumerate(draw(st.lists(st.integers(1, 30), max_size=10))):
        brokerage, environment = draw(
            st.sampled_from(
                [
                    ("QuantConnectBrokerage", "paper"),
                    ("InteractiveBrokersBrokerage", "live"),
                    ("TradierBrokerage", "paper"),
                    ("OandaBrokerage", "live"),
                    ("FXCM", "live"),
                ]
            )
        )
        # The API runs one deployment per project: a second active one is not a world.
        busy = any(x.active for x in live if x.project_id == project)
        statuses = (
            ["Stopped", "RuntimeError"]
            if busy
            else ["Running", "Stopped", "RuntimeError", "InQueue"]
        )
        live.append(
            LiveDeployment(
                project,
                f"L-{n}",
                draw(st.sampled_from(statuses)),
                brokerage,
                environment,
                f"2026-01-01T00:00:{n:02d}Z",
            )
        )
    recorded: dict[str, Record] = {}
    for d in desired:
        if draw(st.booleans()):
            deploy = draw(st.sampled_from([None] + [x.deploy_id for x in live]))
            spec = d.spec_hash if draw(st.booleans()) else "sha256:old"
            recorded[d.name] = Record(d.name, d.project_id, spec, deploy, draw(st.booleans()))
    for gone in range(draw(st.integers(0, 2))):
        deploy = draw(st.sampled_from([None] + [x.deploy_id for x in live]))
        project = 99
        home = next((x.project_id for x in live if x.deploy_id == deploy), None)
        if home is not None and draw(st.booleans()):
            project = home  # on its deployment's own project: when a manifest names it, a rename
        recorded[f"gone{gone}"] = Record(f"gone{gone}", project, "sha256:x", deploy, True)
    return desired, recorded, live


def simulate_apply(
    result: Plan,
    desired: Sequence[Deployment],
    recorded: dict[str, Record],
    live: list[LiveDeployment],
) -> tuple[dict[str, Record], list[LiveDeployment]]:
    """What a successful apply (with --prune) leaves behind: stops first (replaces, prunes),
    then creates are live and recorded; adoptions recorded; prunes and releases forgotten."""
    by_name = {d.name: d for d in desired}
    stopped = {
        a.deploy_id for a in result.actions if a.action in ("replace", "prune") and a.deploy_id
    }
    recorded = dict(recorded)
    for action in result.actions:  # renames first: the record moves to the new name
        if action.renamed_from and action.name:
            moved = recorded.pop(action.renamed_from)
            recorded[action.name] = dataclasses.replace(moved, name=action.name)
    live = [dataclasses.replace(x, status="Stopped") if x.deploy_id in stopped else x for x in live]
    for n, action in enumerate(result.actions):
        if action.action in ("create", "replace", "restart"):
            d = by_name[action.name or ""]
            brokerage, environment = d.identity
            deploy = f"L-new-{n}"
            live.append(LiveDeployment(d.project_id, deploy, "Running", brokerage, environment))
            recorded[d.name] = Record(
                d.name, d.project_id, d.spec_hash, deploy, True, spec_json=d.spec_json
            )
        elif action.adopt:
            d = by_name[action.name or ""]
            recorded[d.name] = Record(d.name, d.project_id, d.spec_hash, action.deploy_id, False)
        elif action.action == "prune" or action.release:
            recorded.pop(action.name or "", None)
    return recorded, live


@settings(max_examples=300, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(world, rnd) -> None:  # type: ignore[no-untyped-def]
    desired, recorded, live = world
    shuffled_desired, shuffled_live = list(desired), list(live)
    rnd.shuffle(shuffled_desired)
    rnd.shuffle(shuffled_live)
    assert plan(desired, recorded, live) == plan(shuffled_desired, recorded, shuffled_live)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_never_creates_on_a_project_that_runs_something(world) -> None:  # type: ignore[no-untyped-def]
    desired, recorded, live = world
    busy = {x.project_id for x in live if x.active}
    for action in plan(desired, recorded, live).of_kind("create"):
        assert action.project_id not in busy


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_every_manifest_gets_exactly_one_action(world) -> None:  # type: ignore[no-untyped-def]
    desired, recorded, live = world
    names = [
        a.name for a in plan(desired, recorded, live).actions if a.name in {d.name for d in desired}
    ]
    assert sorted(names) == sorted(d.name for d in desired)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_apply_then_replan_is_all_noop(world) -> None:  # type: ignore[no-untyped-def]
    desired, recorded, live = world
    first = plan(desired, recorded, live)
    recorded2, live2 = simulate_apply(first, desired, recorded, live)
    second = plan(desired, recorded2, live2)
    acted = {a.name for a in first.actions if a.action in ("create", "restart") or a.adopt}
    for action in second.actions:
        assert action.action not in ("create", "restart")
        if action.name in acted:
            assert action.action == "noop" and not action.adopt, action
    if not first.refused:  # blocked and conflict persist until a person acts
        drifted = {a.name for a in first.of_kind("drift")}  # so does a person's stop
        rest = [a for a in second.actions if a.name not in drifted]
        assert {a.action for a in rest} <= {"noop", "unmanaged"}
        assert not any(a.release for a in second.actions)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_a_renamed_record_is_used_once_and_never_pruned(world) -> None:  # type: ignore[no-untyped-def]
    desired, recorded, live = world
    result = plan(desired, recorded, live)
    olds = [a.renamed_from for a in result.actions if a.renamed_from]
    assert len(olds) == len(set(olds))
    for action in result.actions:
        if action.renamed_from:
            old = recorded[action.renamed_from]
            assert action.name not in recorded and action.renamed_from not in desired
            assert old.project_id == action.project_id
        assert action.name not in olds  # no prune, release or other action on the old name


def test_a_renamed_manifest_takes_its_record_over() -> None:
    d = deployment("new-name", 7)
    old = Record("old-name", 7, d.spec_hash, "L-x", True, spec_json=d.spec_json)
    live = [LiveDeployment(7, "L-x", "Running", "QuantConnectBrokerage", "paper")]
    (action,) = plan([d], {"old-name": old}, live).actions
    assert (action.action, action.renamed_from, action.adopt) == ("noop", "old-name", False)
    assert action.reason == "renamed from old-name; in sync"
    assert action.to_json()["renamedFrom"] == "old-name"
    assert type(action).from_json(action.to_json()) == action
    # Renamed and changed: the replace of an owned deployment, not a conflict or an adopt.
    changed = deployment("new-name", 7, compile_id="c2")
    (action,) = plan([changed], {"old-name": old}, live).actions
    assert (action.action, action.renamed_from) == ("replace", "old-name")
    assert [c.path for c in action.changes] == ["compileId"]
    # Renamed while a person had stopped it: still that record's drift, not a new create.
    stopped = [dataclasses.replace(live[0], status="Stopped", launched="2026-01-01")]
    (action,) = plan([d], {"old-name": old}, stopped).actions
    assert (action.action, action.renamed_from) == ("drift", "old-name")


def test_no_rename_without_certainty() -> None:
    d = deployment("new-name", 7)
    live = [LiveDeployment(7, "L-x", "Running", "QuantConnectBrokerage", "paper")]
    other_deployment = Record("old-name", 7, d.spec_hash, "L-earlier", True)
    still_wanted = deployment("old-name", 8)
    cases = [
        ({"old-name": other_deployment}, [d]),  # its record names another deployment
        ({"old-name": Record("old-name", 7, d.spec_hash, "L-x", True)}, [d, still_wanted]),
        (  # two removed manifests' records claim the deployment
            {
                "a": Record("a", 7, d.spec_hash, "L-x", True),
                "b": Record("b", 7, d.spec_hash, "L-x", True),
            },
            [d],
        ),
    ]
    for recorded, desired in cases:
        actions = plan(desired, recorded, live).actions
        assert not any(a.renamed_from for a in actions), actions
    # Its own record wins over a removed manifest's on the same deployment.
    own = {"new-name": Record("new-name", 7, d.spec_hash, "L-x", True)}
    recorded = {**own, "old-name": Record("old-name", 7, d.spec_hash, "L-x", True)}
    action, stale = plan([d], recorded, live).actions
    assert action.renamed_from is None and action.reason == "in sync"
    # ... and the removed manifest's record of that same deployment is dropped, nothing else.
    assert (stale.action, stale.name, stale.release, stale.deploy_id) == (
        "unmanaged", "old-name", True, "L-x",
    )  # fmt: skip


def test_empty_store_adopts_a_matching_deployment() -> None:
    d = deployment("ib", 7, brokerage=1)
    live = [LiveDeployment(7, "L-x", "Running", "InteractiveBrokersBrokerage", "live")]
    (action,) = plan([d], {}, live).actions
    assert (action.action, action.adopt, action.deploy_id) == ("noop", True, "L-x")


def test_empty_store_reports_a_foreign_mismatch_as_conflict() -> None:
    d = deployment("ib", 7, brokerage=1)
    live = [LiveDeployment(7, "L-x", "Running", "QuantConnectBrokerage", "paper")]
    (action,) = plan([d], {}, live).actions
    assert action.action == "conflict"
    assert "L-x" in action.reason and "InteractiveBrokersBrokerage/live" in action.reason


# DESIGN §11's table: what each policy does for each way of not running.
@pytest.mark.parametrize(
    ("policy", "status", "expected"),
    [
        ("OnFailure", "RuntimeError", "restart"),
        ("OnFailure", "DeployError", "restart"),
        ("OnFailure", "Invalid", "restart"),
        ("OnFailure", "Stopped", "drift"),
        ("OnFailure", "Liquidated", "drift"),
        ("OnFailure", "Deleted", "drift"),
        ("OnFailure", "Completed", "drift"),
        ("Always", "RuntimeError", "restart"),
        ("Always", "Stopped", "restart"),
        ("Always", "Liquidated", "restart"),
        ("Always", "Completed", "restart"),
        ("Never", "RuntimeError", "drift"),
        ("Never", "Stopped", "drift"),
        ("Never", "Completed", "drift"),
    ],
)
def test_restart_policy_table(policy: str, status: str, expected: str) -> None:
    d = dataclasses.replace(deployment("p", 3), restart_policy=policy)
    recorded = {"p": Record("p", 3, d.spec_hash, "L-old", True)}
    live = [LiveDeployment(3, "L-old", status, "QuantConnectBrokerage", "paper", "2026-01-01")]
    (action,) = plan([d], recorded, live).actions
    assert (action.action, action.deploy_id) == (expected, "L-old"), action
    assert action.cause == {"RuntimeError": "failed", "DeployError": "failed"}.get(
        status, {"Invalid": "failed", "Completed": "exited"}.get(status, "stopped")
    )
    # `--restart NAME` starts it again whatever the policy and the cause.
    (forced,) = plan([d], recorded, live, force_restart={"p"}).actions
    assert forced.action == "restart" and "forced by --restart" in forced.reason


def test_a_persons_stop_stays_drift_until_the_spec_changes() -> None:
    d = deployment("p", 3)
    recorded = {"p": Record("p", 3, d.spec_hash, "L-old", True)}
    live = [LiveDeployment(3, "L-old", "Stopped", "QuantConnectBrokerage", "paper", "2026-01-01")]
    (action,) = plan([d], recorded, live).actions
    assert action.action == "drift" and "apply --restart p" in action.reason
    assert not plan([d], recorded, live).has_changes  # plan --detailed-exitcode gives 0
    changed = deployment("p", 3, compile_id="c2")
    (action,) = plan([changed], recorded, live).actions
    assert action.action == "create"


def test_without_a_record_the_last_deployment_stands_in() -> None:
    d = deployment("p", 3)
    for status, expected in (
        ("Stopped", "drift"),
        ("Liquidated", "drift"),
        ("RuntimeError", "restart"),
    ):
        live = [LiveDeployment(3, "L-x", status, "QuantConnectBrokerage", "paper", "2026-01-01")]
        (action,) = plan([d], {}, live).actions
        assert action.action == expected, (status, action)
    other = [LiveDeployment(3, "L-x", "Stopped", "InteractiveBrokersBrokerage", "live", "2026")]
    assert plan([d], {}, other).actions[0].action == "create"  # not the manifest's


def test_a_replace_stopped_by_us_continues_with_a_create() -> None:
    d = deployment("p", 3, compile_id="c2")
    record = Record(
        "p", 3, "sha256:old", "L-old", True, last_action="replace", last_outcome="stopped"
    )
    live = [LiveDeployment(3, "L-old", "Stopped", "QuantConnectBrokerage", "paper", "2026")]
    (action,) = plan([d], {"p": record}, live).actions
    assert action.action == "create" and "continuing a replace" in action.reason


def test_restarts_back_off_with_an_injected_clock() -> None:
    # The backoff is a gate of policy/ since issue 19 (the planner has no clock): the
    # planner plans the restart, the gate holds it with the time it may run.
    d = deployment("p", 3)
    live = [LiveDeployment(3, "L-1", "RuntimeError", "QuantConnectBrokerage", "paper", "2026")]

    def gated(record: Record, now: float, forced: frozenset[str] = frozenset()) -> Action:
        planned = plan([d], {"p": record}, live, force_restart=forced)
        (action,) = policy.gate(planned, policy.Facts(force_restart=forced), now).actions
        return action

    def act(restarts: int, last: float, now: float) -> str:
        record = Record("p", 3, d.spec_hash, "L-1", True, restarts=restarts, last_restart_at=last)
        return gated(record, now).action

    assert act(2, 1000.0, 1000.0) == "restart"  # fewer than 3 in a row: at once
    for restarts, minutes in ((3, 1), (4, 2), (5, 4), (6, 8), (9, 60), (30, 60)):
        assert act(restarts, 1000.0, 1000.0 + minutes * 60 - 1) == "blocked", restarts
        assert act(restarts, 1000.0, 1000.0 + minutes * 60) == "restart", restarts
    record = Record("p", 3, d.spec_hash, "L-1", True, restarts=5, last_restart_at=1000.0)
    blocked = gated(record, 1001.0)
    assert "next try at 1970-01-01 00:20:40 UTC" in blocked.reason
    assert blocked.held is not None and blocked.held.until == 1000.0 + 4 * 60
    assert gated(record, 1001.0, frozenset({"p"})).action == "restart"


def test_preflight_blocks_unknown_and_busy_nodes() -> None:
    a = dataclasses.replace(deployment("a", 1), node_id="LN-a")
    b = dataclasses.replace(deployment("b", 2), node_id="LN-b")
    c = dataclasses.replace(deployment("c", 3), node_id="LN-gone")
    nodes = {
        "LN-a": Node("LN-a", "node a"),
        "LN-b": Node("LN-b", "node b", busy=True, project_id=9, project_name="other"),
    }
    actions = {x.name: x for x in plan([a, b, c], {}, [], nodes=nodes).actions}
    assert actions["a"].action == "create"
    assert actions["b"].action == "blocked"
    assert "node b (LN-b) is busy running project 9 (other)" in actions["b"].reason
    assert actions["c"].action == "blocked" and "not a live node" in actions["c"].reason
    # A node freed by a prune of the same plan is not busy for it (when pruning).
    gone = {"old": Record("old", 9, "sha256:o", "L-9", True)}
    live = [LiveDeployment(9, "L-9", "Running", "QuantConnectBrokerage", "paper", "2026")]
    freed = {x.name: x for x in plan([a, b], gone, live, nodes=nodes).actions}
    assert freed["b"].action == "create" and freed["old"].action == "prune"
    kept = {x.name: x for x in plan([a, b], gone, live, nodes=nodes, pruning=False).actions}
    assert kept["b"].action == "blocked"


def test_two_deployments_may_swap_nodes() -> None:
    a = dataclasses.replace(deployment("a", 1), node_id="LN-b")
    b = dataclasses.replace(deployment("b", 2), node_id="LN-a")
    recorded = {
        "a": Record("a", 1, "sha256:old-a", "L-a", True),
        "b": Record("b", 2, "sha256:old-b", "L-b", True),
    }
    live = [
        LiveDeployment(1, "L-a", "Running", "QuantConnectBrokerage", "paper", "2026"),
        LiveDeployment(2, "L-b", "Running", "QuantConnectBrokerage", "paper", "2026"),
    ]
    nodes = {
        "LN-a": Node("LN-a", "a", busy=True, project_id=1),
        "LN-b": Node("LN-b", "b", busy=True, project_id=2),
    }
    assert [x.action for x in plan([a, b], recorded, live, nodes=nodes).actions] == [
        "replace",
        "replace",
    ]


def test_changed_spec_is_replace_and_removed_owned_manifest_is_prune() -> None:
    d = deployment("p", 3, compile_id="c2")
    recorded = {
        "p": Record("p", 3, "sha256:old", "L-1", True),
        "q": Record("q", 4, "sha256:q", "L-2", True),
        "r": Record("r", 5, "sha256:r", "L-3", False),  # adopted, not ours: never pruned
    }
    live = [
        LiveDeployment(3, "L-1", "Running", "QuantConnectBrokerage", "paper"),
        LiveDeployment(4, "L-2", "Running", "QuantConnectBrokerage", "paper"),
        LiveDeployment(5, "L-3", "Running", "QuantConnectBrokerage", "paper"),
        LiveDeployment(6, "L-4", "Running", "QuantConnectBrokerage", "paper"),
    ]
    kinds = [(a.action, a.name, a.project_id, a.release) for a in plan([d], recorded, live).actions]
    # r was adopted: never pruned; its record is released (DESIGN §11) and it keeps running.
    assert kinds == [
        ("replace", "p", 3, False),
        ("prune", "q", 4, False),
        ("unmanaged", "r", 5, True),
        ("unmanaged", None, 6, False),
    ]


def test_defaults_do_not_show_as_changes() -> None:
    explicit = Deployment.from_manifest(
        {
            "metadata": {"name": "a"},
            "spec": {
                "projectId": 1,
                "compileId": "c",
                "nodeId": "n",
                "versionId": "-1",
                "brokerage": {"id": "PaperTrading"},
                "automaticRedeploy": False,
            },
        },
        "x.yaml",
    )
    implicit = Deployment.from_manifest(
        {
            "metadata": {"name": "a"},
            "spec": {
                "projectId": 1,
                "compileId": "c",
                "nodeId": "n",
                "brokerage": {"id": "PaperTrading"},
            },
        },
        "y.yaml",
    )
    assert explicit.spec_hash == implicit.spec_hash


def test_the_seeds_spelled_out_shape_is_not_a_change() -> None:
    def tradier(**extra: object) -> Deployment:
        brokerage = {
            "id": "Tradier",
            "account": "T1",
            "password": {"fromEnv": "TRADIER"},
            "environment": "live",
            **extra,
        }
        spec = {"projectId": 1, "compileId": "c", "nodeId": "n", "brokerage": brokerage}
        return Deployment.from_manifest({"metadata": {"name": "t"}, "spec": spec}, "t.yaml")

    short, seed = tradier(), tradier(user="")
    recorded = {"t": Record("t", 1, short.spec_hash, "L-1", True, spec_json=short.spec_json)}
    live = [LiveDeployment(1, "L-1", "Running", "TradierBrokerage", "live")]
    (action,) = plan([seed], recorded, live).actions
    assert action.action == "noop", action


def test_a_deployment_this_reconciler_stopped_is_never_a_persons_stop() -> None:
    # Pruned (record dropped), then the manifest comes back: the journal says the stop was
    # ours, so it is a new deployment, not a person's stop to respect.
    d = deployment("p", 3)
    live = [LiveDeployment(3, "L-old", "Stopped", "QuantConnectBrokerage", "paper", "2026")]
    assert plan([d], {}, live).actions[0].action == "drift"
    (action,) = plan([d], {}, live, stopped_by_us={"L-old"}).actions
    assert action.action == "create" and "stopped by this reconciler" in action.reason

    assert unrecorded_stopped([d], {}, live) == {"L-old"}
