"""`reconciler plan`: show (and optionally save) what apply would do.

The reconcile cycle run dry: nothing is written (open intents are resolved in memory
only), nothing is sent.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from reconciler import policy, render
from reconciler.config import PlanConfig
from reconciler.cycle import Cycle
from reconciler.errors import ConfigError
from reconciler.runtime import LivePrefetch, connect, read_desired


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


def run(config: PlanConfig) -> int:
    connection = config.connection
    # The live list is read (in a thread) while the manifests are parsed: plan only reads.
    prefetch = None if connection.sandbox else LivePrefetch(connection.api_url)
    desired = read_desired(connection, config.source, config.paths)
    with connect(connection, desired.deployments) as rt:
        cycle = Cycle(rt.engine, rt.store)
        live = prefetch.result if prefetch else None
        # Prunes are shown as what apply --prune would do: no flag holds them here.
        result = cycle.run(desired, policy.Facts(), dry=True, live=live)
        plan = result.plan
        if config.out:
            write_plan_file(
                config.out,
                render.plan_json(
                    plan,
                    {
                        "fingerprints": result.views.fingerprints(),
                        "nonce": uuid.uuid4().hex,
                        "paths": list(config.paths),
                        "apiUrl": rt.api_url,
                        "sandbox": rt.sandbox,
                        "createdAt": time.time(),
                    },
                ),
            )
    if config.format == "json":
        print(render.dumps(render.plan_json(plan)))
    elif config.format == "markdown":
        print(render.plan_markdown(plan), end="")
    else:
        print(render.plan_text(plan))
        if plan.revision is not None:
            print(render.revision_line(plan.revision))
        if config.out:
            print(
                f"\nSaved the plan to {config.out}; apply it with: "
                f"reconciler apply --plan {config.out}"
            )
    if plan.refused:
        return 1
    if config.detailed_exitcode and plan.has_changes:
        return 2
    return 0
