"""`reconciler plan`: show (and optionally save) what apply would do."""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

from reconciler import render
from reconciler.errors import ConfigError
from reconciler.runtime import LivePrefetch, connect, load_desired_for


def write_plan_file(path: str, document: dict[str, object]) -> None:
    """Atomically: a half-written plan file must never be applied."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write plan file {path}: {error.strerror}") from None


def run(args: argparse.Namespace) -> int:
    # The live list is read (in a thread) while the manifests are parsed: plan only reads.
    prefetch = None if args.sandbox else LivePrefetch(args)
    desired = load_desired_for(args, args.paths)
    with connect(args, desired) as rt:
        live = prefetch.result() if prefetch else rt.engine.fetch_live()
        if rt.store.open_intents():
            with rt.store.lock():
                rt.engine.resolve_open_intents(live)
        plan, fingerprints = rt.engine.make_plan(desired, live, fingerprinted=bool(args.out))
        if args.out:
            write_plan_file(
                args.out,
                render.plan_json(
                    plan,
                    {
                        "fingerprints": fingerprints,
                        "nonce": uuid.uuid4().hex,
                        "paths": list(args.paths),
                        "apiUrl": rt.api_url,
                        "sandbox": rt.sandbox,
                        "createdAt": time.time(),
                    },
                ),
            )
    if args.format == "json":
        print(render.dumps(render.plan_json(plan)))
    elif args.format == "markdown":
        print(render.plan_markdown(plan), end="")
    else:
        print(render.plan_text(plan))
        if args.out:
            print(
                f"\nSaved the plan to {args.out}; apply it with: reconciler apply --plan {args.out}"
            )
    if plan.refused:
        return 1
    if args.detailed_exitcode and plan.has_changes:
        return 2
    return 0
