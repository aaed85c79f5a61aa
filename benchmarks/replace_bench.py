"""apply of N replaces with injected API latency, against a sequential stop-then-create loop;
and the reconciler's own CPU per create and per replace with no latency.

    python benchmarks/replace_bench.py [--count 100] [--latency 0.05] [--concurrency 32]
                                       [--cpu-actions 200] [--repeat 1]
                                       [--baseline DIR] [--profile FILE]

Replace: N deployments created by a first (untimed) apply, then every manifest gets a new
compile and `reconciler apply --yes --concurrency C` replaces all N (timed, whole
process), with `latency` seconds on `live/update/stop` and on `live/create` (none on
reads, as in apply_bench).  Afterwards every project must run exactly one deployment, a
new one, and the emulator must count N stops, 2N creates and no refused create.

The peer is what a user writes with the client: for each deployment, `stop_live`, read
`list_live(project_id=...)` until it no longer runs, `create_live` with the new compile,
one after the other, against an emulator of its own with the same latency, in the same run.
Target: >= 10x faster.

CPU: user + sys seconds of the reconciler process alone (os.wait4) for M creates, then M
replaces, at zero latency, divided by M; and the same of a no-op apply of the M manifests
(start-up, parse, one list call), the fixed part within those figures.  Each emulator is a
process of its own, on 127.0.0.1, so none of its CPU is counted.

`--baseline DIR`: an earlier source tree of the reconciler, its replaces and CPU figures
measured in the same run (each round: this tree, then the baseline), with emulators and
state files of its own.  `--profile FILE`: after the rounds, one more timed replace of this
tree under cProfile, its worker threads included (benchmarks/_profile.py), saved to FILE
and summarised; a profiled run's times are inflated, so none of them is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    NODE,
    RECONCILER,
    EmulatorProcess,
    Run,
    cli_env,
    timed,
    write_paper_manifests,
)
from reconciler.client import Credentials, QuantConnectClient

# Bounds: no wait in this benchmark is open-ended.
APPLY_TIMEOUT = 600.0  # seconds for one reconciler command
STOP_CONFIRM_TIMEOUT = 30.0  # seconds the peer reads live state for one stop to show
LATENCY_ENDPOINTS = ("live/update/stop", "live/create")
PROFILER = str(Path(__file__).resolve().parent / "_profile.py")


def compile_ids(projects: Sequence[int], generation: int) -> dict[int, str]:
    return {p: f"{generation:032x}-{p:032x}" for p in projects}


def start_emulator(
    stack: contextlib.ExitStack, projects: Sequence[int], directory: Path
) -> tuple[EmulatorProcess, dict[int, str]]:
    """An emulator process with N projects, nodes and one built compile each."""
    first = compile_ids(projects, 1)
    seed = {
        "projects": [{"projectId": p} for p in projects],
        "nodes": [{"id": NODE.format(p)} for p in projects],
        "compiles": [{"projectId": p, "compileId": first[p]} for p in projects],
    }
    directory.mkdir(parents=True, exist_ok=True)
    emu = EmulatorProcess(seed, directory)
    stack.callback(emu.close)
    return emu, first


def add_compiles(emu: EmulatorProcess, projects: Sequence[int], generation: int) -> dict[int, str]:
    ids = compile_ids(projects, generation)
    emu.admin("seed", {"compiles": [{"projectId": p, "compileId": ids[p]} for p in projects]})
    return ids


def set_latency(emu: EmulatorProcess, latency: float) -> None:
    for endpoint in LATENCY_ENDPOINTS:
        emu.admin("faults", {"endpoint": endpoint, "latency": latency})


def apply(
    deployments: Path,
    env: dict[str, str],
    cwd: str,
    concurrency: int,
    what: str,
    profile: str | None = None,
) -> Run:
    runner = RECONCILER if profile is None else [sys.executable, PROFILER, profile, "reconciler"]
    cmd = [
        *runner,
        "apply",
        str(deployments),
        "--yes",
        "--concurrency",
        str(concurrency),
    ]
    run = timed(cmd, env=env, cwd=cwd, timeout=APPLY_TIMEOUT)
    if run.returncode != 0:
        raise SystemExit(f"{what}: apply failed ({run.returncode}):\n{run.stdout[-3000:]}")
    return run


def verify(
    emu: EmulatorProcess, projects: Sequence[int], replaces: int, what: str
) -> dict[str, int]:
    """Fail loudly unless the emulator shows exactly what N creates then N replaces leave:
    N stops of the first N deployments, 2N creates, no refusal, and every project running
    exactly one deployment, one of the second N."""
    count = len(projects)
    stats = emu.admin("stats")
    created: list[dict[str, object]] = stats["created"]  # type: ignore[assignment]
    stops: list[dict[str, object]] = stats["stops"]  # type: ignore[assignment]
    rejections: dict[str, int] = stats["rejections"]  # type: ignore[assignment]
    problems = []
    if len(created) != count + replaces:
        problems.append(f"{len(created)} creates committed, expected {count + replaces}")
    if len(stops) != replaces:
        problems.append(f"{len(stops)} stops, expected {replaces}")
    if sum(rejections.values()):
        problems.append(f"creates refused: {rejections}")
    first = {str(c["deployId"]) for c in created[:count]}
    second = {str(c["deployId"]) for c in created[count:]}
    if replaces and {str(s["deployId"]) for s in stops} != first:
        problems.append("the stops are not exactly the first deployments")
    with QuantConnectClient(emu.url, Credentials(emu.user_id, emu.token)) as client:
        live = client.list_live()
    running: dict[int, list[str]] = {p: [] for p in projects}
    for deployment in live:
        if deployment.active:
            running.setdefault(deployment.project_id, []).append(deployment.deploy_id)
    wrong = {p: ids for p, ids in running.items() if len(ids) != 1}
    if wrong:
        problems.append(f"{len(wrong)} projects do not run exactly one deployment: {wrong}")
    expected = second if replaces else first
    stale = [p for p, ids in running.items() if len(ids) == 1 and ids[0] not in expected]
    if stale:
        problems.append(f"{len(stale)} projects run a deployment not from this phase")
    if problems:
        raise SystemExit(f"{what}: WRONG, the figures are not valid:\n  " + "\n  ".join(problems))
    return {"created": len(created), "stops": len(stops), "rejections": sum(rejections.values())}


@dataclass(frozen=True)
class Round:
    ours: Run
    ours_stats: dict[str, int]
    peer_seconds: float
    peer_stats: dict[str, int]
    create_cpu: Run
    replace_cpu: Run
    noop_cpu: Run


def tree_env(env: dict[str, str], tree: Path | None) -> dict[str, str]:
    """The reconciler of `tree` (None: this one) on PYTHONPATH."""
    return env if tree is None else dict(env, PYTHONPATH=str(tree))


def run_ours(
    args: argparse.Namespace,
    root: Path,
    tree: Path | None = None,
    profile: str | None = None,
) -> tuple[Run, dict[str, int]]:
    projects = range(10_001, 10_001 + args.count)
    with contextlib.ExitStack() as stack:
        emu, first = start_emulator(stack, projects, root / "ours-emulator")
        deployments = root / "ours-deployments"
        write_paper_manifests(deployments, projects, first)
        env = tree_env(cli_env(emu.url, emu.user_id, emu.token, root / "ours-state.db"), tree)
        apply(deployments, env, str(root), args.concurrency, "setup creates")
        verify(emu, projects, 0, "setup creates")
        write_paper_manifests(deployments, projects, add_compiles(emu, projects, 2))
        set_latency(emu, args.latency)
        ours = apply(deployments, env, str(root), args.concurrency, "timed replaces", profile)
        return ours, verify(emu, projects, args.count, "reconciler replaces")


def run_peer(args: argparse.Namespace, root: Path) -> tuple[float, dict[str, int]]:
    projects = range(10_001, 10_001 + args.count)
    with contextlib.ExitStack() as stack:
        emu, first = start_emulator(stack, projects, root / "peer-emulator")
        client = stack.enter_context(
            QuantConnectClient(emu.url, Credentials(emu.user_id, emu.token))
        )
        for p in projects:  # set-up, untimed, no latency yet
            client.create_live(
                project_id=p,
                compile_id=first[p],
                node_id=NODE.format(p),
                brokerage={"id": "PaperTrading"},
            )
        second = add_compiles(emu, projects, 2)
        set_latency(emu, args.latency)
        started = time.perf_counter()
        for p in projects:
            client.stop_live(p)
            deadline = time.monotonic() + STOP_CONFIRM_TIMEOUT
            while any(d.active for d in client.list_live(project_id=p)):
                if time.monotonic() > deadline:
                    raise SystemExit(f"peer: project {p} still runs {STOP_CONFIRM_TIMEOUT} s on")
                time.sleep(0.05)
            client.create_live(
                project_id=p,
                compile_id=second[p],
                node_id=NODE.format(p),
                brokerage={"id": "PaperTrading"},
            )
        seconds = time.perf_counter() - started
        return seconds, verify(emu, projects, args.count, "peer loop")


def run_cpu(args: argparse.Namespace, root: Path, tree: Path | None = None) -> tuple[Run, Run, Run]:
    projects = range(30_001, 30_001 + args.cpu_actions)
    with contextlib.ExitStack() as stack:
        emu, first = start_emulator(stack, projects, root / "cpu-emulator")
        deployments = root / "cpu-deployments"
        write_paper_manifests(deployments, projects, first)
        env = tree_env(cli_env(emu.url, emu.user_id, emu.token, root / "cpu-state.db"), tree)
        creates = apply(deployments, env, str(root), args.concurrency, "cpu: creates")
        verify(emu, projects, 0, "cpu: creates")
        write_paper_manifests(deployments, projects, add_compiles(emu, projects, 2))
        replaces = apply(deployments, env, str(root), args.concurrency, "cpu: replaces")
        verify(emu, projects, len(projects), "cpu: replaces")
        noop = apply(deployments, env, str(root), args.concurrency, "cpu: no-op")
        verify(emu, projects, len(projects), "cpu: no-op")
        return creates, replaces, noop


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if len(values) < 2:
        return ""
    return f"  (best of {len(values)}; {fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="replaces timed (default 100)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per stop, create")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--cpu-actions", type=int, default=200, help="creates, then replaces, for CPU (200)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best is reported")
    parser.add_argument("--baseline", metavar="DIR", help="an earlier tree, measured alongside")
    parser.add_argument("--profile", metavar="FILE", help="profile one more replace to FILE")
    args = parser.parse_args()
    if min(args.count, args.cpu_actions, args.concurrency, args.repeat) < 1:
        parser.error("--count, --cpu-actions, --concurrency and --repeat must be >= 1")
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "reconciler" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {baseline}: not a source tree of reconciler")
    trees: list[Path | None] = [None] if baseline is None else [None, baseline]

    rounds: dict[Path | None, list[Round]] = {tree: [] for tree in trees}
    for number in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            peer_seconds, peer_stats = run_peer(args, root)
            for tree in trees:
                where = root / ("this" if tree is None else "baseline")
                ours, ours_stats = run_ours(args, where, tree)
                cpu = run_cpu(args, where, tree)
                rounds[tree].append(Round(ours, ours_stats, peer_seconds, peer_stats, *cpu))
                if args.repeat > 1:
                    print(
                        f"  round {number + 1}{' (baseline)' if tree else ''}: reconciler "
                        f"{ours.seconds:.2f} s, peer {peer_seconds:.2f} s, "
                        f"{peer_seconds / ours.seconds:.1f}x; CPU/action create "
                        f"{cpu[0].cpu / args.cpu_actions * 1000:.2f} ms, replace "
                        f"{cpu[1].cpu / args.cpu_actions * 1000:.2f} ms",
                        flush=True,
                    )
    for tree in trees:
        if tree is not None:
            print()
        report(args, rounds[tree], "this tree" if tree is None else f"baseline {tree}")
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            run_ours(args, Path(tmp), None, args.profile)
        from benchmarks._profile import report as profile_report

        print()
        print(profile_report(args.profile))
        print(f"profile of one more timed replace (times inflated by the profiler): {args.profile}")


def report(args: argparse.Namespace, rounds: list[Round], tree: str) -> None:
    n, m, ms = args.count, args.cpu_actions, args.latency * 1000
    ours_s = [r.ours.seconds for r in rounds]
    peer_s = [r.peer_seconds for r in rounds]
    ups = [r.peer_seconds / r.ours.seconds for r in rounds]
    best = min(rounds, key=lambda r: r.ours.seconds)
    stats = best.ours_stats
    print(
        f"replace benchmark ({tree}): {n} replaces, {ms:.0f} ms latency per live/update/stop "
        f"and per live/create call (none on reads)"
    )
    width = 56
    print(f"  {'runner':<{width}} {'seconds':>8} {'stops':>6} {'creates':>8} {'peak RSS':>9}")
    ours_name = f"reconciler apply --yes --concurrency {args.concurrency} (whole process)"
    print(
        f"  {ours_name:<{width}} {min(ours_s):8.2f} {stats['stops']:6d} "
        f"{stats['created'] - n:8d} {best.ours.peak_rss_mb:7.1f}MB{spread(ours_s)}"
    )
    peer_name = "sequential stop, poll list, create loop (in-process)"
    print(
        f"  {peer_name:<{width}} {min(peer_s):8.2f} {best.peer_stats['stops']:6d} "
        f"{best.peer_stats['created'] - n:8d}{' ' * 10}{spread(peer_s)}"
    )
    up = min(peer_s) / min(ours_s)
    verdict = "met" if up >= 10 else "NOT met"
    print(f"  speed-up: {up:.1f}x{spread(ups, '{:.1f}x')}  (target >= 10x: {verdict})")
    print(
        f"  checked: each of the {n} projects runs exactly one new deployment; emulator "
        f"counts {stats['stops']} stops, {stats['created']} creates (set-up included), "
        f"{stats['rejections']} rejections"
    )

    print()
    print(
        f"reconciler CPU (user + sys of the process, os.wait4), no latency, "
        f"--concurrency {args.concurrency}"
    )
    print(f"  {'command':<{width}} {'user s':>7} {'sys s':>6} {'wall s':>7} {'ms/action':>10}")

    def line(name: str, runs: Sequence[Run], actions: int) -> None:
        per = [r.cpu / actions * 1000 for r in runs]
        pick = min(runs, key=lambda r: r.cpu)
        print(
            f"  {name:<{width}} {pick.user_cpu:7.2f} {pick.sys_cpu:6.2f} {pick.seconds:7.2f} "
            f"{min(per):10.2f}{spread(per)}"
        )

    line(f"apply: {m} creates", [r.create_cpu for r in rounds], m)
    line(f"apply: {m} replaces (stop + confirm + create)", [r.replace_cpu for r in rounds], m)
    line(f"apply: no-op of the same {m} (start-up, parse, list)", [r.noop_cpu for r in rounds], m)
    noop = min(r.noop_cpu.cpu for r in rounds)
    create = min(r.create_cpu.cpu for r in rounds)
    replace = min(r.replace_cpu.cpu for r in rounds)
    print(
        f"  beyond the no-op: {(create - noop) / m * 1000:.2f} ms per create, "
        f"{(replace - noop) / m * 1000:.2f} ms per replace  "
        "(issue 24 targets: <= 2 ms per create, <= 3 ms per replace)"
    )


if __name__ == "__main__":
    main()
