"""Small frozen values every layer speaks: desired, live, recorded, and the plan.

Parse at the edge (manifests, API answers, the state store), pass these inside.

    kinds   ActionKind and Result: what an action is, what became of it
    values  Deployment, LiveDeployment, Node, Record, Intent, Revision, SecretRef
    plan    Change, Hold, Action, Plan, Outcome
"""

from reconciler.model.kinds import ActionKind, Result
from reconciler.model.plan import Action, Change, Hold, Outcome, Plan, spec_changes
from reconciler.model.values import (
    ACTIVE_STATUSES,
    DEFAULT_ON_DELETE,
    DEFAULT_RESTART_POLICY,
    DEFAULT_VERSION_ID,
    DIRTY,
    EXITED_STATUSES,
    FAILED_STATUSES,
    ON_DELETE,
    RESTART_POLICIES,
    STOPPED_STATUSES,
    Deployment,
    Intent,
    LiveDeployment,
    Node,
    Record,
    Revision,
    SecretRef,
    canonical_json,
    parse_secret_refs,
    short_revision,
    split_revision,
)

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_ON_DELETE",
    "DEFAULT_RESTART_POLICY",
    "DEFAULT_VERSION_ID",
    "DIRTY",
    "EXITED_STATUSES",
    "FAILED_STATUSES",
    "ON_DELETE",
    "RESTART_POLICIES",
    "STOPPED_STATUSES",
    "Action",
    "ActionKind",
    "Change",
    "Deployment",
    "Hold",
    "Intent",
    "LiveDeployment",
    "Node",
    "Outcome",
    "Plan",
    "Record",
    "Result",
    "Revision",
    "SecretRef",
    "canonical_json",
    "parse_secret_refs",
    "short_revision",
    "spec_changes",
    "split_revision",
]
