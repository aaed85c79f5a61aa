"""`reconciler validate` against check-jsonschema on the same manifests, in the same run.

    python benchmarks/validate_bench.py [--sizes 1000,10000] [--repeat 5] [--peer-repeat 3]

Generates N manifests (one per file, a realistic mix of the three example shapes:
paper trading, Interactive Brokers with a secret reference, Tradier with a data
provider), then times whole processes, start-up included:

    reconciler validate DIR
    check-jsonschema --schemafile schemas/livedeployment.schema.json FILE...

Peak RSS is each process's own, taken with wait4 (it covers forked workers too).
Both run with compiled bytecode available, as after `pip install`.  Needs
check-jsonschema: `pip install '.[bench]'`.
Target (issue 4): at 10,000 files >= 10x faster than check-jsonschema, peak RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RECONCILER, Run, median_run, timed

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "livedeployment.schema.json"
TARGET_RATIO = 10.0
TARGET_RSS_MB = 60.0

HEADER = """\
# yaml-language-server: $schema=../schemas/livedeployment.schema.json
apiVersion: reconciler/v1
kind: LiveDeployment
metadata:
  name: algo-{i}
  labels:
    team: {team}
spec:
  projectId: {project}      # one manifest per project
  compileId: {compile}
  nodeId: LN-{project:032x}
"""
BROKERAGES = [
    """\
  brokerage:
    id: PaperTrading
    cash:
      - amount: 100000
        currency: USD
""",
    """\
  versionId: "-1"
  brokerage:
    id: Interactive
    environment: live
    user: trader{i}
    account: U{i:07}
    password: {{fromEnv: IB_PASSWORD}}
    weeklyRestartUtcTime: "22:00:00"
  automaticRedeploy: true
""",
    """\
  brokerage:
    id: Tradier
    environment: paper
    account: VA{i:08}
    token: {{fromEnv: TRADIER_TOKEN}}
  dataProviders:
    QuantConnectBrokerage:
      id: QuantConnectBrokerage
""",
]


def write_manifests(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True)
    names = []
    for i in range(count):
        project = 100_000 + i
        compile_id = "latest" if i % 4 == 0 else f"{project:032x}-{i:032x}"
        team = ("alpha", "beta")[i % 2]
        text = HEADER.format(i=i, team=team, project=project, compile=compile_id)
        text += BROKERAGES[i % 3].format(i=i)
        name = f"algo-{i:05}.yaml"
        (directory / name).write_text(text, encoding="utf-8")
        names.append(name)
    return names


def peer_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "check-jsonschema"
    found = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    return [found, "--schemafile", str(SCHEMA)] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated manifest counts")
    parser.add_argument("--repeat", type=int, default=5, help="runs of reconciler per size")
    parser.add_argument("--peer-repeat", type=int, default=3, help="runs of check-jsonschema")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peer = peer_command()
    if peer is None:
        raise SystemExit("check-jsonschema not found: pip install '.[bench]'")

    # As after `pip install`: bytecode compiled once and reused.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rows: list[tuple[int, Run, Run]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        interpreter = median_run([sys.executable, "-c", "pass"], args.repeat, env=env)
        for size in sizes:
            directory = root / f"m{size}"
            names = write_manifests(directory, size)
            ours_cmd = [*RECONCILER, "validate", str(directory)]
            timed(ours_cmd, env=env, cwd=str(REPO))  # warm-up: bytecode, page cache
            ours = median_run(ours_cmd, args.repeat, env=env, cwd=str(REPO))
            expected = f"{size} files, {size} documents: all valid"
            if ours.stdout.strip() != expected:
                raise SystemExit(f"unexpected output from reconciler: {ours.stdout[-500:]}")
            theirs = median_run([*peer, *names], args.peer_repeat, env=env, cwd=str(directory))
            if "ok -- validation done" not in theirs.stdout:
                raise SystemExit(f"unexpected output from check-jsonschema: {theirs.stdout[-500:]}")
            rows.append((size, ours, theirs))

    print(f"cores: {len(os.sched_getaffinity(0))}, python {sys.version.split()[0]}")
    print(f"interpreter start-up (python -c pass): {interpreter.seconds * 1000:.0f} ms")
    print()
    print(
        f"{'manifests':>9}  {'reconciler':>10}  {'peak RSS':>8}  "
        f"{'check-jsonschema':>16}  {'peak RSS':>8}  {'speed-up':>8}"
    )
    for size, ours, theirs in rows:
        print(
            f"{size:>9}  {ours.seconds:>9.2f}s  {ours.peak_rss_mb:>6.1f}MB  "
            f"{theirs.seconds:>15.2f}s  {theirs.peak_rss_mb:>6.1f}MB  "
            f"{theirs.seconds / ours.seconds:>7.1f}x"
        )
    size, ours, theirs = rows[-1]
    ratio = theirs.seconds / ours.seconds
    verdict = "met" if ratio >= TARGET_RATIO and ours.peak_rss_mb <= TARGET_RSS_MB else "MISSED"
    print()
    print(
        f"target at {size} files: >= {TARGET_RATIO:.0f}x and <= {TARGET_RSS_MB:.0f} MB -> "
        f"{ratio:.1f}x, {ours.peak_rss_mb:.1f} MB: {verdict}"
    )


if __name__ == "__main__":
    main()
