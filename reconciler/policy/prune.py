"""Gates on prunes: the flag that allows them, a suspect read of the manifests, and the
daemon's grace (DESIGN §9, §11).

- Without `--prune` a prune is pending: shown and reported, never carried out.
- The daemon never prunes from a read where some file is invalid or most manifests
  vanished at once: what may be pruned is decided from a whole, valid desired set.
- The daemon prunes a removal only once it has lasted `--prune-grace` seconds: a rename
  or a checkout in progress (old file gone, new one not yet written) stops nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reconciler.model import Action, ActionKind, Plan
from reconciler.policy.facts import Facts

FLAG = "prune-flag"
SUPPRESSED = "prune-suppressed"
GRACE = "prune-grace"


def _holding(plan: Plan, hold: Callable[[Action], Action | None]) -> Plan:
    """The plan with each prune no gate holds yet passed through `hold` (None: kept)."""
    out = []
    for action in plan.actions:
        if action.action is ActionKind.PRUNE and action.held is None:
            action = hold(action) or action
        out.append(action)
    return plan.with_actions(out)


def flag_gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """Every prune is pending unless this run carries prunes out."""
    why = facts.prune_pending
    return plan if why is None else _holding(plan, lambda a: a.holding(FLAG, why))


def suppressed_gate(plan: Plan, facts: Facts, now: float) -> Plan:
    why = facts.prune_suppressed
    return plan if why is None else _holding(plan, lambda a: a.holding(SUPPRESSED, why))


def grace_gate(plan: Plan, facts: Facts, now: float) -> Plan:
    """A prune waits until its removal has lasted `prune_grace` seconds."""
    if facts.prune_grace <= 0:
        return plan

    def hold(action: Action) -> Action | None:
        due = facts.gone_since.get(action.name or "", now) + facts.prune_grace
        if now >= due:
            return None
        why = (
            f"its manifest is gone; pruned in {due - now:.1f} s (--prune-grace) unless it "
            "comes back meanwhile"
        )
        return action.holding(GRACE, why, due)

    return _holding(plan, hold)


def track_removals(since: Mapping[str, float], plan: Plan, now: float) -> dict[str, float]:
    """After a gated plan: when each removal was first planned for pruning, for the next
    reconcile's grace gate.  A prune that only the grace held, or none, is counted from
    `now` when new; one held by the flag or a suspect read starts no count (its grace
    begins once it could be carried out); a removal no longer planned (its manifest came
    back, or its new name took the record over) is forgotten."""
    out = {}
    for action in plan.actions:
        if action.action is not ActionKind.PRUNE or not action.name:
            continue
        counting = action.held is None or action.held.gate == GRACE
        if action.name in since:
            out[action.name] = since[action.name]
        elif counting:
            out[action.name] = now
    return out
