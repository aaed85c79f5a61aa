"""Human and machine output for plans, apply outcomes and status."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.model import (
    Action,
    ActionKind,
    Change,
    Outcome,
    Plan,
    Result,
    Revision,
)

PLAN_FORMAT_VERSION = 1

_SYMBOLS = {
    ActionKind.CREATE: "+",
    ActionKind.REPLACE: "~",
    ActionKind.RESTART: "^",
    ActionKind.PRUNE: "-",
    ActionKind.DRIFT: "*",
    ActionKind.BLOCKED: "x",
    ActionKind.CONFLICT: "!",
    ActionKind.UNMANAGED: "?",
    ActionKind.NOOP: "=",
    ActionKind.DEFERRED: ">",
    ActionKind.WAITING: ".",
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
            ("deferred", "deferred"),
            ("waiting", "waiting"),
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


def _shown_in_plan(action: Action) -> bool:
    """In sync says nothing; a noop with something to say is shown."""
    return not (
        action.action is ActionKind.NOOP and not action.adopt and action.reason == "in sync"
    )


def plan_text(plan: Plan) -> str:
    """Terraform-like text: one line per action worth a look, then the summary line."""
    lines = []
    for action in plan.actions:
        if not _shown_in_plan(action):
            continue
        symbol = _SYMBOLS[action.action]
        subject = action.name or f"(no manifest) {action.deploy_id}"
        lines.append(
            f"  {symbol} {action.verb:<9} {subject} (project {action.project_id}): {action.reason}"
        )
        lines.extend(f"        {change_line(change)}" for change in action.changes)
    if not plan.has_changes and not plan.refused:
        body = "\n".join([*lines, ""]) if lines else ""
        drifted = len(plan.of_kind("drift"))
        waiting = len(plan.of_kind("waiting"))
        if drifted:
            verdict = f"No changes. {drifted} not running, left as its restart policy says (above)."
        elif waiting:
            verdict = f"No changes. {waiting} waiting for code to pass on paper (above)."
        else:
            verdict = "No changes. Live deployments match the manifests."
        return body + verdict + "\n" + plan_summary_line(plan)
    header = "The reconciler will perform the following actions:\n\n"
    footer = "".join(f"\n{note}" for note in plan.notes)
    if plan.of_kind("prune"):
        footer += "\nPrunes are carried out only by `reconciler apply --prune`."
    return header + "\n".join(lines) + "\n\n" + plan_summary_line(plan) + footer


def source_json(revision: Revision | None) -> dict[str, Any]:
    """Where the manifests came from (DESIGN §15): a work tree's or a git source's commit."""
    if revision is None:
        return {"kind": "files", "revision": None, "dirty": False, "url": None, "ref": None}
    return revision.to_json()


def revision_line(revision: Revision | None) -> str:
    """`Manifests at 3b5f156cf4a5 (first manifests)`, or "" when not known."""
    if revision is None:
        return ""
    where = f" of {revision.url}" if revision.url else ""
    subject = f" ({revision.subject})" if revision.subject else ""
    return f"Manifests at {revision.short}{where}{subject}"


def plan_json(plan: Plan, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": PLAN_FORMAT_VERSION,
        "source": source_json(plan.revision),
        "actions": [action.to_json() for action in plan.actions],
        "summary": plan.summary(),
    }
    if plan.notes:
        document["notes"] = list(plan.notes)
    if extra:
        document.update(extra)
    return document


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


# ---- markdown: the plan as a pull-request comment ---------------------------------------

# GitHub refuses a comment longer than 65,536 characters; the default leaves room for a
# heading or a link the workflow puts around the plan.
MARKDOWN_LIMIT = 60_000
# First line of every markdown plan: lets a CI script find its own comment to update it.
MARKDOWN_MARKER = "<!-- qc-live-reconciler plan -->"
_CELL_LIMIT = 1_000  # one reason or one change line: an API message can be long
# Actions that need a reader first, so a truncated plan still shows them (DESIGN §13).
_READER_ORDER = {
    kind: rank
    for rank, kind in enumerate(
        (
            "blocked", "conflict", "replace", "prune", "deferred", "restart", "drift",
            "create", "unmanaged", "noop",
        )
    )
}  # fmt: skip
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_NEWLINES = re.compile(r"\r\n|\r|\n")
_MENTION = re.compile(r"@(?=\w)")


def md_cell(text: str, limit: int = _CELL_LIMIT) -> str:
    """User text made inert for GitHub markdown, table cells included: no markup, no HTML,
    no @mention that would notify someone, no line break that would end the row."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = html.escape(text, quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MENTION.sub("@\u2060", text)  # a word joiner: GitHub links no mention
    return _NEWLINES.sub("<br>", text)


def _md_code(lines: Sequence[str]) -> str:
    """A fenced block that no backtick run in `lines` can close early."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence, *lines, fence])


def _md_row(action: Action) -> str:
    subject = action.name or f"(no manifest) {action.deploy_id}"
    verb = f"`{_SYMBOLS[action.action]} {action.verb}`"
    return f"| {verb} | {md_cell(subject)} | {action.project_id} | {md_cell(action.reason)} |"


def _md_changes(action: Action) -> str:
    if action.action is not ActionKind.REPLACE or not action.changes:
        return ""
    lines = [change_line(change)[:_CELL_LIMIT] for change in action.changes]
    title = f"**{md_cell(action.name or '')}** (project {action.project_id})"
    return f"{title}\n\n{_md_code(lines)}\n"


def plan_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan for a pull-request comment or a job summary: the summary line, a table of
    the actions, each replace's field changes (secrets are already references).

    At most `limit` characters: past it, the actions that need a reader (blocked,
    conflict, replace, prune, restart, drift) are kept before creates and the rest, and a
    note says how many were left out.
    """
    actions = sorted(
        (a for a in plan.actions if _shown_in_plan(a)), key=lambda a: _READER_ORDER[a.action]
    )
    head = [MARKDOWN_MARKER, f"**{plan_summary_line(plan)}**", ""]
    if plan.revision is not None:
        head += [md_cell(revision_line(plan.revision)), ""]
    if not plan.has_changes and not plan.refused:
        drifted = len(plan.of_kind("drift"))
        head += [
            f"No changes. {drifted} not running, left as its restart policy says."
            if drifted
            else "No changes. Live deployments match the manifests.",
            "",
        ]
    tail = [md_cell(note) for note in plan.notes]
    if plan.of_kind("prune"):
        tail.append("Prunes are carried out only by `reconciler apply --prune`.")
    table_head = ["| action | name | project | reason |", "|---|---|---|---|"]
    budget = limit - sum(len(line) + 1 for line in head + table_head + tail) - 400  # the note
    rows: list[str] = []
    changes: list[str] = []
    for action in actions:
        row, change = _md_row(action), _md_changes(action)
        cost = len(row) + 1 + (len(change) + 1 if change else 0)
        if cost > budget:
            break
        budget -= cost
        rows.append(row)
        if change:
            changes.append(change)
    lines = list(head)
    if rows:
        lines += [*table_head, *rows, ""]
    if changes:
        lines += ["Changes, field by field:", "", *changes]
    left = actions[len(rows) :]
    if left:
        kinds: dict[str, int] = {}
        for action in left:
            kinds[action.verb] = kinds.get(action.verb, 0) + 1
        detail = ", ".join(f"{n:,} {verb}" for verb, n in kinds.items())
        lines += [
            f"> **{len(left):,} of {len(actions):,} actions not shown** ({detail}) to stay "
            "under GitHub's comment size limit; `reconciler plan` prints them all.",
            "",
        ]
    lines += tail
    return "\n".join(lines).rstrip("\n") + "\n"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
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
    if outcome.detail and outcome.result is not Result.CREATED:
        text += f" ({outcome.detail})"
    return text


def _outcome_rows(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The rows of the outcome table (text, JSON, markdown): all but the in-sync ones."""
    shown = [o for o in outcomes if o.result is not Result.IN_SYNC]
    return sorted(shown, key=lambda o: (o.name or "~", o.project_id))


def _result_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return dict(sorted(counts.items()))


def outcomes_text(outcomes: Sequence[Outcome]) -> str:
    rows = [
        (
            o.name or "-",
            str(o.project_id),
            o.action,
            o.result,
            o.deploy_id or "-",
            o.detail,
        )
        for o in _outcome_rows(outcomes)
    ]
    counts = _result_counts(outcomes)
    summary = ", ".join(f"{n} {result}" for result, n in counts.items())
    failed = sum(1 for o in outcomes if o.failed)
    verdict = "Apply failed" if failed else "Apply complete"
    shown = table(("NAME", "PROJECT", "ACTION", "RESULT", "DEPLOY ID", "DETAIL"), rows)
    text = (shown + "\n\n" if rows else "") + f"{verdict}: {summary or 'nothing to do'}."
    if counts.get("pending"):
        text += f"\n{counts['pending']} prune(s) pending: run `reconciler apply --prune`."
    if counts.get("deferred"):
        text += (
            f"\n{counts['deferred']} action(s) deferred until their deploy window opens "
            "(`reconciler windows`; `apply --ignore-window NAME` to carry one out now)."
        )
    return text


OUTCOMES_FORMAT_VERSION = 1


def outcomes_json(outcomes: Sequence[Outcome], revision: Revision | None = None) -> dict[str, Any]:
    """`apply --format json`: the rows of the text table, counts by result, and where the
    manifests came from."""
    return {
        "version": OUTCOMES_FORMAT_VERSION,
        "source": source_json(revision),
        "outcomes": [o.to_json() for o in _outcome_rows(outcomes)],
        "summary": {
            "total": len(outcomes),
            "failed": sum(1 for o in outcomes if o.failed),
            "results": _result_counts(outcomes),
        },
    }


def outcomes_markdown(document: Mapping[str, Any]) -> str:
    """The outcome table for a CI job summary, from `outcomes_json`'s document."""
    summary = document["summary"]
    counts = ", ".join(f"{n} {result}" for result, n in summary["results"].items())
    verdict = "Apply failed" if summary["failed"] else "Apply complete"
    lines = [f"**{verdict}: {counts or 'nothing to do'}.**", ""]
    revision = Revision.from_json(document.get("source"))
    if revision is not None:
        lines += [md_cell(revision_line(revision)), ""]
    if document["outcomes"]:
        lines += ["| name | project | action | result | deploy id | detail |", "|---" * 6 + "|"]
        lines += [
            f"| {md_cell(o['name'] or '-')} | {o['projectId']} | {md_cell(o['action'])} "
            f"| {md_cell(o['result'])} | {md_cell(o['deployId'] or '-')} "
            f"| {md_cell(o['detail'] or '')} |"
            for o in document["outcomes"]
        ]
    return "\n".join(lines) + "\n"


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


def _revision_cell(row: Mapping[str, Any]) -> str:
    if not row.get("revision"):
        return "-"
    return str(row["revision"])[:12] + ("+dirty" if row.get("dirty") else "")


def status_text(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "No deployments recorded yet. Run `reconciler apply` first."
    cells: list[tuple[str, ...]] = [
        (
            str(r["name"]),
            str(r["projectId"]),
            str(r["compile"]),
            str(r["node"] or "-"),
            _live_cell(r),
            str(r["deployId"] or "-"),
            f"{r['lastAction'] or '-'} {when(r['lastActionAt'])}",
            _revision_cell(r),
        )
        for r in rows
    ]
    headers: tuple[str, ...] = (
        "NAME", "PROJECT", "COMPILE", "NODE", "LIVE", "DEPLOY ID", "LAST ACTION", "REVISION",
    )  # fmt: skip
    if any(r.get("code") for r in rows):  # paper first: the code each runs
        headers += ("CODE",)
        cells = [
            (*c, str(r["code"] or "-").removeprefix("sha256:")[:12])
            for c, r in zip(cells, rows, strict=True)
        ]
    text = table(headers, cells)
    drifting = [r["name"] for r in rows if r.get("notRunning")]
    if drifting:
        text += (
            f"\n\n{len(drifting)} not running: `reconciler plan` says what the restart "
            "policy does; `reconciler apply --restart NAME` starts one again."
        )
    return text
