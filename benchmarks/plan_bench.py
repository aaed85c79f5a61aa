"""No-op plan of N in-sync manifests, against the floor.

    python benchmarks/plan_bench.py [--manifests 10000] [--repeat 3]
                                    [--work-tree] [--baseline DIR]

The floor is what any plan must at least do: `reconciler validate` on the same files
(start-up + parse + validate, whole process) plus one `/live/list` call answering for
every deployment.  Target (issue 5): plan <= 1.3x the floor, peak RSS <= 80 MB.

`--work-tree`: the manifests are committed to a git repository first, so that plan
records their revision (HEAD, and whether a manifest is dirty: issue 20 allows 5 % for
it).  `--baseline DIR`: an earlier source tree of the reconciler, its plan timed in the
same run on the same files, runs interleaved with this tree's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RECONCILER,
    EmulatorProcess,
    Run,
    cli_env,
    median_run,
    running_seed,
    timed,
    write_paper_manifests,
)
from reconciler.client import Credentials, QuantConnectClient


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-tree", action="store_true", help="manifests in a git work tree")
    parser.add_argument("--baseline", metavar="DIR", help="an earlier tree, timed alongside")
    parser.add_argument(
        "--windows",
        metavar="CALENDAR",
        help="also time the same manifests, each on a DeployWindow of CALENDAR (e.g. XNYS)",
    )
    args = parser.parse_args()
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "reconciler" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {baseline}: not a source tree of reconciler")
    projects = range(20_001, 20_001 + args.manifests)

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        seed, compile_ids = running_seed(projects)
        emu = EmulatorProcess(seed, root)
        stack.callback(emu.close)
        deployments = root / "deployments"
        write_paper_manifests(deployments, projects, compile_ids)
        if args.work_tree:
            commit_all(root)
        env = cli_env(emu.url, emu.user_id, emu.token, root / "state.db")
        # Record everything as in sync (the running deployments are adopted, no creates).
        setup = timed([*RECONCILER, "apply", str(deployments), "--yes"], env=env, cwd=tmp)
        if setup.returncode != 0:
            raise SystemExit(f"setup apply failed:\n{setup.stdout[-3000:]}")

        validate = median_run(
            [*RECONCILER, "validate", str(deployments)], args.repeat, env=env, cwd=tmp
        )
        with QuantConnectClient(emu.url, Credentials(emu.user_id, emu.token)) as client:
            samples = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                listed = client.list_live()
                samples.append(time.perf_counter() - started)
            list_seconds = sorted(samples)[len(samples) // 2]
        command = [*RECONCILER, "plan", str(deployments)]
        older = None
        if baseline is not None:  # its own state: an older tree cannot read a newer schema
            older = dict(env, PYTHONPATH=str(baseline), RECONCILER_STATE=str(root / "old.db"))
            setup = timed([*RECONCILER, "apply", str(deployments), "--yes"], env=older, cwd=tmp)
            if setup.returncode != 0:
                raise SystemExit(f"baseline set-up apply failed:\n{setup.stdout[-3000:]}")
        windowed = None
        if args.windows:
            windowed = dict(env, RECONCILER_STATE=str(root / "windowed.db"))
            with_windows(deployments, root / "windowed", args.windows)
            setup = timed([*RECONCILER, "apply", str(root / "windowed"), "--yes"], env=windowed)
            if setup.returncode != 0:
                raise SystemExit(f"windowed set-up apply failed:\n{setup.stdout[-3000:]}")
        plans: list[Run] = []
        baseline_plans: list[Run] = []
        windowed_plans: list[Run] = []
        windowed_command = [*RECONCILER, "plan", str(root / "windowed")]
        for _ in range(args.repeat):
            plans.append(median_run(command, 1, env=env, cwd=tmp))
            if older is not None:
                baseline_plans.append(median_run(command, 1, env=older, cwd=tmp))
            if windowed is not None:
                windowed_plans.append(median_run(windowed_command, 1, env=windowed, cwd=tmp))
        plan = _median(plans)
        if "No changes" not in plan.stdout:
            raise SystemExit(f"the plan is not a no-op:\n{plan.stdout[-2000:]}")

    floor = validate.seconds + list_seconds
    print(f"plan benchmark: {args.manifests} in-sync manifests, median of {args.repeat}")
    print(f"  {'measure':<48} {'seconds':>8} {'peak RSS':>9}")
    print(
        f"  {'reconciler validate (whole process)':<48} "
        f"{validate.seconds:8.2f} {validate.peak_rss_mb:7.1f}MB"
    )
    print(
        f"  {'one /live/list call (' + str(len(listed)) + ' deployments)':<48} {list_seconds:8.2f}"
    )
    print(f"  {'floor = validate + list':<48} {floor:8.2f}")
    print(
        f"  {'reconciler plan (whole process, no-op)':<48} "
        f"{plan.seconds:8.2f} {plan.peak_rss_mb:7.1f}MB"
    )
    print(f"  plan / floor: {plan.seconds / floor:.2f}x  (target <= 1.3x, peak RSS <= 80 MB)")
    if baseline_plans:
        old = _median(baseline_plans)
        print(
            f"  {'baseline plan (' + str(baseline) + ')':<48} "
            f"{old.seconds:8.2f} {old.peak_rss_mb:7.1f}MB"
        )
        print(f"  this tree / baseline: {plan.seconds / old.seconds:.3f}x")
    if windowed_plans:
        on = _median(windowed_plans)
        label = f"plan, every manifest on a {args.windows} window"
        print(f"  {label:<48} {on.seconds:8.2f} {on.peak_rss_mb:7.1f}MB")
        print(f"  with windows / without: {on.seconds / plan.seconds:.3f}x  (target <= 1.2x)")
        print(f"  importing the calendar extra: {calendar_import(args.windows)}")


def _median(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def with_windows(source: Path, target: Path, calendar: str) -> None:
    """The manifests of `source` in `target`, each on one DeployWindow of `calendar`."""
    target.mkdir()
    for path in source.glob("*.yaml"):
        text = path.read_text().replace("  brokerage:\n", "  window: bench\n  brokerage:\n")
        (target / path.name).write_text(text)
    (target / "windows.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: DeployWindow\nmetadata: {name: bench}\n"
        f"spec:\n  calendar: {calendar}\n  afterClose: 10m\n  beforeOpen: 30m\n"
    )


def calendar_import(calendar: str) -> str:
    """What the [calendars] extra costs a process that needs a calendar (median of 5)."""
    code = (
        "import time, warnings; warnings.simplefilter('ignore'); t = time.perf_counter(); "
        "import exchange_calendars as x; i = time.perf_counter(); "
        f"x.get_calendar({calendar!r}); print(i - t, time.perf_counter() - i)"
    )
    runs = [
        [float(v) for v in subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()]
        for _ in range(5)
    ]  # fmt: skip
    imported = sorted(r[0] for r in runs)[2]
    loaded = sorted(r[1] for r in runs)[2]
    return f"import {imported:.2f} s, get_calendar({calendar}) {loaded:.2f} s"


def commit_all(root: Path) -> None:
    """The manifests committed in a repository of their own (`--work-tree`), written an
    hour before the commit, as files usually are: a file as new as the index is "racily
    clean" to git, which then reads all of them again on every `git status`."""
    past = time.time() - 3600
    for path in (root / "deployments").iterdir():
        os.utime(path, (past, past))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
    }  # fmt: skip
    for step in (["init", "-q"], ["add", "deployments"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *step], cwd=root, env=env, check=True, capture_output=True)


if __name__ == "__main__":
    main()
