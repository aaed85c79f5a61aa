"""apply of N creates with injected API latency, against a sequential create loop; and the
reconciler's own CPU per create, with its fixed start-up reported apart.

    python benchmarks/apply_bench.py [--creates 1000] [--latency 0.05] [--concurrency 64]
                                     [--repeat 1] [--baseline DIR] [--profile FILE]

The peer is what a shell loop over `lean cloud live deploy` amounts to: one create after
the other (here without even a process start per deployment, so the peer is flattered).
Both run against emulators in this process, with the same latency on `/live/create`,
in the same run.  Target (issue 5): >= 20x faster, <= 2.5 s for 1,000 creates at 50 ms;
(issue 24): 200 creates at `--concurrency 32` >= 12x, <= 2 ms of CPU per create.

CPU: user + sys seconds of the reconciler process alone (os.wait4).  Per create: the
apply's CPU divided by N, and the same less a no-op apply of the same N manifests right
after (start-up, parse, validate, one list call: the fixed part, shown on its own line,
wall time too: "nothing to do").  The emulator's CPU is this process's, never counted.

`--baseline DIR`: an earlier source tree of the reconciler, timed in the same run (its
rounds interleaved with this tree's), each on an emulator and a state file of its own.
`--profile FILE`: after the timed rounds, one more apply of this tree under cProfile,
its worker threads included (benchmarks/_profile.py), saved to FILE and summarised.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import NODE, RECONCILER, Run, cli_env, timed, write_paper_manifests
from reconciler.client import Credentials, QuantConnectClient
from reconciler.emulator import Emulator

PROFILER = str(Path(__file__).resolve().parent / "_profile.py")


def seed(emulator: Emulator, projects: range) -> dict[int, str]:
    compile_ids = {}
    for project_id in projects:
        emulator.add_project(project_id)
        emulator.add_node(NODE.format(project_id))
        compile_ids[project_id] = emulator.add_compile(project_id)
    return compile_ids


@dataclass(frozen=True)
class Round:
    apply: Run
    noop: Run
    apply_lists: int  # live/list calls the apply made: one to plan, one per health poll
    noop_lists: int


def list_calls(emulator: Emulator) -> int:
    calls: dict[str, dict[str, int]] = emulator.stats()["calls"]
    return calls.get("live/list", {}).get("total", 0)


def one_round(
    args: argparse.Namespace,
    projects: range,
    tree: Path | None,
    profile: str | None = None,
) -> Round:
    """N creates on a fresh emulator and state, then a no-op apply of the same manifests."""
    with tempfile.TemporaryDirectory() as tmp, Emulator() as emu:
        root = Path(tmp)
        compile_ids = seed(emu, projects)
        write_paper_manifests(root / "deployments", projects, compile_ids)
        emu.inject("live/create", latency=args.latency)
        env = cli_env(emu.url, emu.user_id, emu.token, root / "state.db")
        if tree is not None:  # an older tree cannot read a newer state: its own file
            env["PYTHONPATH"] = str(tree)
        command = ["apply", str(root / "deployments"), "--yes"]
        command += ["--concurrency", str(args.concurrency)]
        runner = (
            RECONCILER if profile is None else [sys.executable, PROFILER, profile, "reconciler"]
        )
        lists = list_calls(emu)
        applied = timed([*runner, *command], env=env, cwd=tmp)
        apply_lists, lists = list_calls(emu) - lists, list_calls(emu)
        if applied.returncode != 0:
            raise SystemExit(f"apply failed:\n{applied.stdout[-3000:]}")
        committed = sum(emu.creates_committed(p) for p in projects)
        if committed != args.creates:
            raise SystemExit(f"{committed} creates committed, not {args.creates}: not valid")
        noop = timed([*RECONCILER, *command], env=env, cwd=tmp)
        noop_lists = list_calls(emu) - lists
        if noop.returncode != 0 or "No changes" not in noop.stdout:
            raise SystemExit(f"the second apply is not a no-op:\n{noop.stdout[-3000:]}")
        if sum(emu.creates_committed(p) for p in projects) != args.creates:
            raise SystemExit("the no-op apply created something: the figures are not valid")
        return Round(applied, noop, apply_lists, noop_lists)


def peer_loop(args: argparse.Namespace, projects: range) -> float:
    with Emulator() as emu:
        peer_ids = seed(emu, projects)
        emu.inject("live/create", latency=args.latency)
        started = time.perf_counter()
        with QuantConnectClient(emu.url, Credentials(emu.user_id, emu.token)) as client:
            for project_id in projects:
                client.create_live(
                    project_id=project_id,
                    compile_id=peer_ids[project_id],
                    node_id=NODE.format(project_id),
                    brokerage={"id": "PaperTrading"},
                )
        seconds = time.perf_counter() - started
        if sum(emu.creates_committed(p) for p in projects) != args.creates:
            raise SystemExit("the peer's create count is wrong: the figures are not valid")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best is reported")
    parser.add_argument("--baseline", metavar="DIR", help="an earlier tree, timed alongside")
    parser.add_argument("--profile", metavar="FILE", help="profile one more apply to FILE")
    args = parser.parse_args()
    if min(args.creates, args.concurrency, args.repeat) < 1:
        parser.error("--creates, --concurrency and --repeat must be >= 1")
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "reconciler" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {baseline}: not a source tree of reconciler")
    projects = range(10_001, 10_001 + args.creates)

    ours: list[Round] = []
    older: list[Round] = []
    for _ in range(args.repeat):
        ours.append(one_round(args, projects, None))
        if baseline is not None:
            older.append(one_round(args, projects, baseline))
    peer_seconds = peer_loop(args, projects)

    n = args.creates
    print(
        f"apply benchmark: {n} creates, {args.latency * 1000:.0f} ms latency per create call, "
        f"--concurrency {args.concurrency}"
        + (f", best of {args.repeat} rounds" if args.repeat > 1 else "")
    )
    width = 46
    print(
        f"  {'runner':<{width}} {'seconds':>8} {'speed-up':>8} {'peak RSS':>9} "
        f"{'user s':>7} {'sys s':>6} {'CPU ms/create':>14}"
    )
    trees = [("this tree", ours)] + ([(f"baseline {baseline}", older)] if older else [])
    for name, rounds in trees:
        best = min(rounds, key=lambda r: r.apply.seconds)
        low = min(rounds, key=lambda r: r.apply.cpu)
        print(
            f"  {'reconciler apply, ' + name:<{width}} {best.apply.seconds:8.2f} "
            f"{peer_seconds / best.apply.seconds:7.1f}x {best.apply.peak_rss_mb:7.1f}MB "
            f"{low.apply.user_cpu:7.2f} {low.apply.sys_cpu:6.2f} {low.apply.cpu / n * 1000:14.2f}"
        )
        noop = min(rounds, key=lambda r: r.noop.cpu)
        fastest = min(r.noop.seconds for r in rounds)
        print(
            f"    {'no-op apply of the same (nothing to do)':<{width - 2}} {fastest:8.2f} "
            f"{'':8} {noop.noop.peak_rss_mb:7.1f}MB {noop.noop.user_cpu:7.2f} "
            f"{noop.noop.sys_cpu:6.2f}"
        )
        beyond = min(r.apply.cpu - r.noop.cpu for r in rounds)
        print(f"    CPU beyond the no-op's fixed part: {beyond / n * 1000:.2f} ms per create")
        lists = sorted({(r.apply_lists, r.noop_lists) for r in rounds})
        print(
            "    live/list calls (apply, no-op): "
            + ", ".join(f"{a}, {b}" for a, b in lists)
            + "  (the apply's second one is the health wait)"
        )
        if len(rounds) > 1:
            spread = sorted(r.apply.seconds for r in rounds)
            print(f"    apply seconds over {len(rounds)} rounds: {spread[0]:.2f}-{spread[-1]:.2f}")
    print(f"  {'sequential create loop (in-process peer)':<{width}} {peer_seconds:8.2f}")
    print("  targets: issue 5 (1,000 at 64) >= 20x, <= 2.5 s; issue 24 (200 at 32) >= 12x,")
    print("  <= 2 ms CPU per create, no-op apply (start-up) <= 150 ms")

    if args.profile:
        one_round(args, projects, None, profile=args.profile)
        from benchmarks._profile import report

        print()
        print(report(args.profile))
        print(f"profile of one more apply (times inflated by the profiler): {args.profile}")


if __name__ == "__main__":
    main()
