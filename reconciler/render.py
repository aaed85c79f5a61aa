"""Human and machine output for plans, apply outcomes and status."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.model import Action, Change, Outcome, Plan

PLAN_FORMAT_VERSION = 1

_SYMBOLS = {
    "create": "+",
    "replace": "~",
    "restart": "^",
    "prune": "-",
    "drift": "*",
    "blocked": "x",
    "conflict": "!",
    "unmanaged": "?",
    "noop": "=",
}


def plan_summary_line(plan: Plan) -> str:
    counts = plan.summary()
    line = (
        f"Plan: {counts['create']} to create, {counts['replace']} to replace, "
        f"{counts['prune']} to prune."
    )
    extras = [
        f"{counts[kind]} {label}"
        for kind, label in (
            ("restart", "to restart"),
            ("blocked", "blocked"),
            ("conflict", "in conflict"),
            ("drift", "drifted"),
            ("noop", "in sync"),
            ("unmanaged", "unmanaged"),
        )
        if counts[kind]
    ]
    return line + (f" ({', '.join(extras)})" if extras else "")


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def change_line(change: Change) -> str:
    """`~ compileId: "8c3b" -> "91fa"`; `+`/`-` for a field added or removed."""
    if change.before is None:
        return f"+ {change.path}: {_shown(change.after)}"
    if change.after is None:
        return f"- {change.path}: {_shown(change.before)}"
    return f"~ {change.path}: {_shown(change.before)} -> {_shown(change.after)}"


def _verb(action: Action) -> str:
    if action.adopt:
        return "adopt"
    if action.release:
        return "release"
    return action.action


def plan_text(plan: Plan) -> str:
    """Terraform-like text: one line per action worth a look, then the summary line."""
    lines = []
    for action in plan.actions:
        if action.action == "noop" and not action.adopt and action.reason == "in sync":
            continue  # in sync says nothing; a noop with something to say is shown
        symbol = _SYMBOLS[action.action]
        subject = action.name or f"(no manifest) {action.deploy_id}"
        lines.append(
            f"  {symbol} {_verb(action):<9} {subject} (project {action.project_id}): "
            f"{action.reason}"
        )
        lines.extend(f"        {change_line(change)}" for change in action.changes)
    if not plan.has_changes and not plan.refused:
        body = "\n".join([*lines, ""]) if lines else ""
        return (
            body + "No changes. Live deployments match the manifests.\n" + plan_summary_line(plan)
        )
    header = "The reconciler will perform the following actions:\n\n"
    footer = ""
    if plan.of_kind("prune"):
        footer = "\nPrunes are carried out only by `reconciler apply --prune`."
    return header + "\n".join(lines) + "\n\n" + plan_summary_line(plan) + footer


def plan_json(plan: Plan, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": PLAN_FORMAT_VERSION,
        "actions": [action.to_json() for action in plan.actions],
        "summary": plan.summary(),
    }
    if extra:
        document.update(extra)
    return document


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip()]
    lines += [fmt.format(*row).rstrip() for row in rows]
    return "\n".join(lines)


def outcome_line(outcome: Outcome) -> str:
    subject = outcome.name or f"project {outcome.project_id}"
    text = f"{subject}: {outcome.result}"
    if outcome.deploy_id:
        text += f" {outcome.deploy_id}"
    if outcome.detail and outcome.result not in ("created",):
        text += f" ({outcome.detail})"
    return text


def outcomes_text(outcomes: Sequence[Outcome]) -> str:
    shown = [o for o in outcomes if o.result != "in sync"]
    rows = [
        (
            o.name or "-",
            str(o.project_id),
            o.action,
            o.result,
            o.deploy_id or "-",
            o.detail,
        )
        for o in sorted(shown, key=lambda o: (o.name or "~", o.project_id))
    ]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
    failed = sum(1 for o in outcomes if o.failed)
    verdict = "Apply failed" if failed else "Apply complete"
    table = _table(("NAME", "PROJECT", "ACTION", "RESULT", "DEPLOY ID", "DETAIL"), rows)
    text = (table + "\n\n" if rows else "") + f"{verdict}: {summary or 'nothing to do'}."
    if counts.get("pending"):
        text += f"\n{counts['pending']} prune(s) pending: run `reconciler apply --prune`."
    return text


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


_NOT_RUNNING = {
    "failed": "failed",
    "stopped": "stopped by someone else",
    "exited": "completed",
}


def _live_cell(row: Mapping[str, Any]) -> str:
    text = str(row["liveStatus"])
    if row.get("notRunning"):
        text += f" ({_NOT_RUNNING.get(str(row['notRunning']), str(row['notRunning']))})"
    if row.get("nextRestartAt"):
        text += f", next restart {when(row['nextRestartAt'])}"
    return text


def status_text(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "No deployments recorded yet. Run `reconciler apply` first."
    table = [
        (
            str(r["name"]),
            str(r["projectId"]),
            str(r["compile"]),
            str(r["node"] or "-"),
            _live_cell(r),
            str(r["deployId"] or "-"),
            f"{r['lastAction'] or '-'} {when(r['lastActionAt'])}",
        )
        for r in rows
    ]
    text = _table(("NAME", "PROJECT", "COMPILE", "NODE", "LIVE", "DEPLOY ID", "LAST ACTION"), table)
    drifting = [r["name"] for r in rows if r.get("notRunning")]
    if drifting:
        text += (
            f"\n\n{len(drifting)} not running: `reconciler plan` says what the restart "
            "policy does; `reconciler apply --restart NAME` starts one again."
        )
    return text
