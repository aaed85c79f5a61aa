"""`reconciler apply`: create what is missing, exactly once.

The reconcile cycle run once.  Its review step (under the lock, before anything is sent)
prints the plan, asks for confirmation, and with `--plan FILE` checks that the plan made
now is the saved one: the same inputs (fingerprints), the same actions (kind, name,
target), a nonce not used before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from reconciler import notify, policy, render, secrets
from reconciler.config import ApplyConfig, GitSource
from reconciler.cycle import Ask, Cycle, CycleResult, Hooks
from reconciler.errors import ConfigError, StalePlanError
from reconciler.model import Action, Deployment, Outcome, Plan, Revision
from reconciler.planner import DEFAULT_MAX_PRUNES
from reconciler.render import PLAN_FORMAT_VERSION
from reconciler.runtime import connect, read_desired
from reconciler.state import StateStore

PRUNE_PENDING = "pending: carried out by `reconciler apply --prune`"


def read_plan_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read plan file {path}: {error.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a plan file (not JSON)") from None
    if (
        not isinstance(document, dict)
        or document.get("version") != PLAN_FORMAT_VERSION
        or not isinstance(document.get("fingerprints"), dict)
        or not isinstance(document.get("nonce"), str)
        or not isinstance(document.get("paths"), list)
        or not isinstance(document.get("actions"), list)
    ):
        raise ConfigError(
            f"{path} is not a saved plan of this reconciler (make one with plan --out)"
        )
    return document


def _shown(outcome: Outcome, values: Sequence[str]) -> Outcome:
    """An API message may echo a secret back (a failed brokerage login): masked."""
    if not values or not outcome.detail:
        return outcome
    return dataclasses.replace(outcome, detail=secrets.mask(outcome.detail, values))


def _check_flags(config: ApplyConfig, desired: Sequence[Deployment]) -> None:
    if config.plan and (
        config.replace
        or config.restart
        or config.ignore_window
        or config.max_prunes != DEFAULT_MAX_PRUNES
    ):
        raise ConfigError(
            "--replace, --restart, --ignore-window and --max-prunes change the plan: they "
            "cannot be combined with --plan (apply without --plan, or save a plan made "
            "without them)"
        )
    names = {d.name for d in desired}
    for flag, given in (("--replace", config.replace), ("--restart", config.restart)):
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(f"{flag} {', '.join(unknown)}: no manifest has that name")


def _first_difference(saved: Sequence[Action], now: Plan) -> str | None:
    """The first action (by name) that the saved plan and the plan made now do not list
    alike, by kind and target; None when they list the same actions."""
    then = {a.key[1]: a for a in saved}
    current = {a.key[1]: a for a in now.actions}
    for subject in sorted(then.keys() | current.keys()):
        before, after = then.get(subject), current.get(subject)
        if before is not None and after is not None and before.key == after.key:
            continue
        if after is None:
            assert before is not None
            return f"{subject} was planned as `{before.verb}` and is no longer in the plan"
        if before is None:
            return f"{subject} is now `{after.verb}` ({after.reason}), not in the saved plan"
        if before.verb != after.verb:
            return (
                f"{subject} was `{before.verb}` when the plan was made and is `{after.verb}` "
                f"now ({after.reason})"
            )
        return (
            f"{subject}'s `{after.verb}` now targets {after.deploy_id or 'nothing'}, not "
            f"{before.deploy_id or 'nothing'}"
        )
    return None


def _saved_source(document: dict[str, Any], config: ApplyConfig) -> GitSource:
    """A plan made from a git source is applied at the commit it was made from."""
    saved = document.get("source") or {}
    if saved.get("kind") != "git":
        return config.source
    if config.source.git and config.source.git != saved.get("url"):
        raise StalePlanError(
            f"{config.plan} was made from {saved.get('url')}, not {config.source.git}"
        )
    return config.source._replace(git=saved.get("url"), ref=None, revision=saved.get("revision"))


class SavedPlan:
    """`apply --plan FILE`: what the plan made now must match before anything is sent."""

    def __init__(self, path: str, document: dict[str, Any], api_url: str) -> None:
        self.path, self.document = path, document
        if not document.get("sandbox") and document.get("apiUrl") != api_url:
            raise StalePlanError(f"{path} was made against {document.get('apiUrl')}, not {api_url}")

    def check(self, result: CycleResult, store: StateStore) -> None:
        saved = self.document["fingerprints"]
        prints = result.views.fingerprints()
        changed = [k for k, v in prints.items() if saved.get(k) != v]
        if changed:
            what = {
                "desired": "the manifests",
                "recorded": "the recorded state",
                "live": "the live deployments",
            }
            raise StalePlanError(
                f"saved plan {self.path} is stale: "
                f"{', '.join(what[k] for k in changed)} changed since it was made; "
                "run `reconciler plan` again"
            )
        actions = [Action.from_json(item) for item in self.document["actions"]]
        difference = _first_difference(actions, result.plan)
        if difference is not None:
            raise StalePlanError(
                f"saved plan {self.path} is stale: {difference}; nothing was done; run "
                "`reconciler plan` again"
            )
        if not store.claim_plan(self.document["nonce"]):
            raise StalePlanError(f"saved plan {self.path} was already applied")


class _ApplyHooks(Hooks):
    """apply's part in the cycle: print, confirm, check the saved plan, show progress."""

    def __init__(
        self,
        config: ApplyConfig,
        notifier: notify.Notifier,
        values: Sequence[str],
        saved: SavedPlan | None,
        store: StateStore,
    ) -> None:
        self.config, self.notifier, self.values = config, notifier, values
        self.saved, self.store = saved, store

    def resolved(self, outcome: Outcome) -> None:
        print(f"resolved an interrupted create: {render.outcome_line(self.shown(outcome))}")
        self.notifier.send(notify.outcome_event(outcome))

    def review(self, result: CycleResult) -> Plan | None:
        plan = result.plan
        refused = [
            a for a in plan.actions if a.held is not None and a.held.gate == policy.WINDOW_DENIED
        ]
        if refused:
            raise ConfigError(f"--ignore-window {refused[0].name}: {refused[0].reason}")
        if self.saved is not None:
            self.saved.check(result, self.store)
        print(render.plan_text(plan), flush=True)
        if plan.revision is not None:
            print(render.revision_line(plan.revision), flush=True)
        if plan.carries_out and self.saved is None and not self._confirm():
            print("Apply cancelled; nothing was done.")
            return None
        if plan.carries_out:
            print(flush=True)
        return plan

    def progress(self, outcome: Outcome, done: int, total: int) -> None:
        print(f"[{done}/{total}] {render.outcome_line(self.shown(outcome))}", flush=True)

    def waiting(self, started: int, wait: float) -> None:
        print(
            f"\nWaiting up to {wait:g} s for {started} new deployment(s) to be Running "
            "(--wait 0 skips this)...",
            flush=True,
        )

    def unhealthy(self, outcome: Outcome) -> None:
        print(f"  {render.outcome_line(self.shown(outcome))}", flush=True)

    def shown(self, outcome: Outcome) -> Outcome:
        return _shown(outcome, self.values)

    def _confirm(self) -> bool:
        if self.config.yes:
            return True
        if not sys.stdin.isatty():
            if self.config.connection.sandbox:
                # Nothing real is at stake in the sandbox; a pasted README command just works.
                print("(sandbox, not a terminal: applying without asking)")
                return True
            raise ConfigError(
                "refusing to apply without confirmation: standard input is not a terminal; "
                "review `reconciler plan` and pass --yes"
            )
        try:
            answer = input("\nApply these changes? [y/N] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")


def run(config: ApplyConfig) -> int:
    """With `--format json` only the outcomes go to stdout; all else goes to stderr."""
    notifier = notify.Notifier(notify.targets(config.notify))
    stdout = sys.stdout
    done = _Done()
    to_stderr = config.format == "json"
    try:
        with contextlib.redirect_stdout(sys.stderr) if to_stderr else contextlib.nullcontext():
            code = _apply(config, notifier, done)
    finally:
        # A slow or failing receiver costs at most about a second here, never the apply.
        undelivered = notifier.close(wait=1.0)
        if undelivered:
            print(
                f"warning: {undelivered} notification(s) not delivered ({notifier.last_error})",
                file=sys.stderr,
            )
    if to_stderr:
        print(render.dumps(render.outcomes_json(done.outcomes, done.revision)), file=stdout)
    return code


@dataclasses.dataclass
class _Done:
    """What `--format json` prints once the apply ended, however it ended."""

    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    revision: Revision | None = None


def _apply(config: ApplyConfig, notifier: notify.Notifier, done: _Done) -> int:
    connection = config.connection
    document = read_plan_file(config.plan) if config.plan else None
    paths = [str(p) for p in document["paths"]] if document else config.paths
    if document and document.get("sandbox") and not connection.sandbox:
        raise ConfigError(f"{config.plan} was made with --sandbox; apply it with --sandbox")
    source = _saved_source(document, config) if document else config.source
    desired = read_desired(connection, source, paths)
    notifier.watch_secrets(desired.deployments)
    notifier.at_revision(desired.revision)
    done.revision = desired.revision
    values = secrets.known_values(secrets.referenced(desired.deployments))
    _check_flags(config, desired.deployments)
    with connect(connection, desired.deployments, concurrency=config.concurrency) as rt:
        saved = SavedPlan(config.plan, document, rt.api_url) if config.plan and document else None
        hooks = _ApplyHooks(config, notifier, values, saved, rt.store)
        cycle = Cycle(rt.engine, rt.store, health_wait=config.wait)
        facts = policy.Facts(
            force_restart=frozenset(config.restart),
            prune_pending=None if config.prune else PRUNE_PENDING,
            ignore_windows=frozenset(config.ignore_window),
        )
        ask = Ask(frozenset(config.replace), frozenset(config.restart), config.max_prunes)
        result = cycle.run(desired, facts, ask, hooks=hooks)
    if not result.applied:
        return 1  # cancelled at the prompt
    outcomes = [_shown(o, values) for o in result.outcomes]
    done.outcomes.extend(outcomes)
    notifier.send_outcomes(outcomes, result.plan)
    print()
    print(render.outcomes_text(outcomes))
    for note in result.plan.notes:
        print(note)
    return 1 if any(o.failed for o in outcomes) else 0
