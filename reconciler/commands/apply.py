"""`reconciler apply`: create what is missing, exactly once."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from reconciler import notify, render, secrets
from reconciler.engine import Engine
from reconciler.errors import ConfigError, StalePlanError
from reconciler.model import Deployment, Outcome
from reconciler.planner import DEFAULT_MAX_PRUNES
from reconciler.render import PLAN_FORMAT_VERSION
from reconciler.runtime import connect, load_desired_for


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
    ):
        raise ConfigError(
            f"{path} is not a saved plan of this reconciler (make one with plan --out)"
        )
    return document


def _confirm(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        if args.sandbox:
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


def _progress(outcome: Outcome, done: int, total: int) -> None:
    print(f"[{done}/{total}] {render.outcome_line(outcome)}", flush=True)


def _shown(outcome: Outcome, values: Sequence[str]) -> Outcome:
    """An API message may echo a secret back (a failed brokerage login): masked."""
    if not values or not outcome.detail:
        return outcome
    return dataclasses.replace(outcome, detail=secrets.mask(outcome.detail, values))


def _check_flags(args: argparse.Namespace, desired: list[Deployment]) -> None:
    if args.plan and (args.replace or args.restart or args.max_prunes != DEFAULT_MAX_PRUNES):
        raise ConfigError(
            "--replace, --restart and --max-prunes change the plan: they cannot be combined "
            "with --plan (apply without --plan, or save a plan made without them)"
        )
    names = {d.name for d in desired}
    for flag, given in (("--replace", args.replace), ("--restart", args.restart)):
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(f"{flag} {', '.join(unknown)}: no manifest has that name")


def _await_health(
    engine: Engine, outcomes: list[Outcome], wait: float, values: Sequence[str]
) -> list[Outcome]:
    started = [o for o in outcomes if o.result in ("created", "replaced", "restarted")]
    if not started or wait <= 0:
        return outcomes
    print(
        f"\nWaiting up to {wait:g} s for {len(started)} new deployment(s) to be Running "
        "(--wait 0 skips this)...",
        flush=True,
    )
    checked = engine.await_health(outcomes, wait)
    for outcome in checked:
        if outcome.failed and outcome not in outcomes:
            print(f"  {render.outcome_line(_shown(outcome, values))}", flush=True)
    return checked


def run(args: argparse.Namespace) -> int:
    """With `--format json` only the outcomes go to stdout; all else goes to stderr."""
    notifier = notify.Notifier(notify.targets(args.notify))
    stdout = sys.stdout
    done: list[Outcome] = []
    to_stderr = args.format == "json"
    try:
        with contextlib.redirect_stdout(sys.stderr) if to_stderr else contextlib.nullcontext():
            code = _apply(args, notifier, done)
    finally:
        # A slow or failing receiver costs at most about a second here, never the apply.
        undelivered = notifier.close(wait=1.0)
        if undelivered:
            print(
                f"warning: {undelivered} notification(s) not delivered ({notifier.last_error})",
                file=sys.stderr,
            )
    if to_stderr:
        print(render.dumps(render.outcomes_json(done)), file=stdout)
    return code


def _apply(args: argparse.Namespace, notifier: notify.Notifier, done: list[Outcome]) -> int:
    saved = read_plan_file(args.plan) if args.plan else None
    paths = [str(p) for p in saved["paths"]] if saved else args.paths
    if saved and saved.get("sandbox") and not args.sandbox:
        raise ConfigError(f"{args.plan} was made with --sandbox; apply it with --sandbox")
    desired = load_desired_for(args, paths)
    notifier.watch_secrets(desired)
    values = secrets.known_values(secrets.referenced(desired))
    _check_flags(args, desired)
    with connect(args, desired, concurrency=args.concurrency) as rt:
        if saved and not saved.get("sandbox") and saved.get("apiUrl") != rt.api_url:
            raise StalePlanError(
                f"{args.plan} was made against {saved.get('apiUrl')}, not {rt.api_url}"
            )
        with rt.store.lock():
            live = rt.engine.fetch_live()
            for outcome in rt.engine.resolve_open_intents(live):
                shown = render.outcome_line(_shown(outcome, values))
                print(f"resolved an interrupted create: {shown}")
                notifier.send(notify.outcome_event(outcome))
            plan, fingerprints = rt.engine.make_plan(
                desired,
                live,
                fingerprinted=saved is not None,
                force_replace=set(args.replace),
                force_restart=set(args.restart),
                max_prunes=args.max_prunes,
                pruning=args.prune,
            )
            if saved is not None:
                changed = [k for k, v in fingerprints.items() if saved["fingerprints"].get(k) != v]
                if changed:
                    what = {
                        "desired": "the manifests",
                        "recorded": "the recorded state",
                        "live": "the live deployments",
                    }
                    raise StalePlanError(
                        f"saved plan {args.plan} is stale: "
                        f"{', '.join(what[k] for k in changed)} changed since it was made; "
                        "run `reconciler plan` again"
                    )
                if not rt.store.claim_plan(saved["nonce"]):
                    raise StalePlanError(f"saved plan {args.plan} was already applied")
            print(render.plan_text(plan), flush=True)
            acting = any(a.action in ("create", "replace", "restart") for a in plan.actions) or (
                args.prune and bool(plan.of_kind("prune"))
            )
            if acting and saved is None and not _confirm(args):
                print("Apply cancelled; nothing was done.")
                return 1
            if acting:
                print(flush=True)
            outcomes = rt.engine.apply(
                plan,
                desired,
                prune=args.prune,
                progress=lambda o, n, total: _progress(_shown(o, values), n, total),
            )
        # Outside the lock: watching new deployments start changes nothing, and another
        # runner need not wait up to --wait seconds for it.
        outcomes = _await_health(rt.engine, outcomes, args.wait, values)
    outcomes = [_shown(o, values) for o in outcomes]
    done.extend(outcomes)
    notifier.send_outcomes(outcomes, plan)
    print()
    print(render.outcomes_text(outcomes))
    for note in plan.notes:
        print(note)
    return 1 if any(o.failed for o in outcomes) else 0
