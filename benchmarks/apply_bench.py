"""apply of N creates with injected API latency, against a sequential create loop.

    python benchmarks/apply_bench.py [--creates 1000] [--latency 0.05] [--concurrency 64]

The peer is what a shell loop over `lean cloud live deploy` amounts to: one create after
the other (here without even a process start per deployment, so the peer is flattered).
Both run against the emulator in this process, with the same latency on `/live/create`,
in the same run.  Target (issue 5): >= 20x faster, <= 2.5 s for 1,000 creates at 50 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import NODE, RECONCILER, cli_env, timed, write_paper_manifests
from reconciler.client import Credentials, QuantConnectClient
from reconciler.emulator import Emulator


def seed(emulator: Emulator, projects: range) -> dict[int, str]:
    compile_ids = {}
    for project_id in projects:
        emulator.add_project(project_id)
        emulator.add_node(NODE.format(project_id))
        compile_ids[project_id] = emulator.add_compile(project_id)
    return compile_ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    projects = range(10_001, 10_001 + args.creates)

    with tempfile.TemporaryDirectory() as tmp, Emulator() as ours_emu, Emulator() as peer_emu:
        root = Path(tmp)
        compile_ids = seed(ours_emu, projects)
        write_paper_manifests(root / "deployments", projects, compile_ids)
        ours_emu.inject("live/create", latency=args.latency)
        env = cli_env(ours_emu.url, ours_emu.user_id, ours_emu.token, root / "state.db")
        ours = timed(
            [
                *RECONCILER,
                "apply",
                str(root / "deployments"),
                "--yes",
                "--concurrency",
                str(args.concurrency),
            ],
            env=env,
            cwd=tmp,
        )
        if ours.returncode != 0:
            raise SystemExit(f"apply failed:\n{ours.stdout[-3000:]}")
        ours_ok = sum(ours_emu.creates_committed(p) for p in projects)

        peer_ids = seed(peer_emu, projects)
        peer_emu.inject("live/create", latency=args.latency)
        started = time.perf_counter()
        with QuantConnectClient(
            peer_emu.url, Credentials(peer_emu.user_id, peer_emu.token)
        ) as client:
            for project_id in projects:
                client.create_live(
                    project_id=project_id,
                    compile_id=peer_ids[project_id],
                    node_id=NODE.format(project_id),
                    brokerage={"id": "PaperTrading"},
                )
        peer_seconds = time.perf_counter() - started
        peer_ok = sum(peer_emu.creates_committed(p) for p in projects)

    print(
        f"apply benchmark: {args.creates} creates, "
        f"{args.latency * 1000:.0f} ms latency per create call"
    )
    print(f"  {'runner':<44} {'seconds':>8} {'creates':>8} {'peak RSS':>9}")
    print(
        f"  {'reconciler apply --concurrency ' + str(args.concurrency) + ' (whole process)':<44} "
        f"{ours.seconds:8.2f} {ours_ok:8d} {ours.peak_rss_mb:7.1f}MB"
    )
    print(f"  {'sequential create loop (in-process peer)':<44} {peer_seconds:8.2f} {peer_ok:8d}")
    print(f"  speed-up: {peer_seconds / ours.seconds:.1f}x  (target >= 20x and <= 2.5 s)")
    if ours_ok != args.creates or peer_ok != args.creates:
        raise SystemExit("create counts are wrong: the figures above are not valid")


if __name__ == "__main__":
    main()
