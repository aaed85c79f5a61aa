"""`reconciler validate` against check-jsonschema on the same manifests, in the same run.

    python benchmarks/validate_bench.py [--sizes 1000,10000] [--repeat 5] [--peer-repeat 3]
        [--baseline DIR] [--startup-repeat 30]

Generates N manifests (one per file, a realistic mix of the three example shapes:
paper trading, Interactive Brokers with a secret reference, Tradier with a data
provider), then times whole processes, start-up included:

    reconciler validate DIR
    check-jsonschema --schemafile schemas/livedeployment.schema.json FILE...

Peak RSS is each process's own, taken with wait4 (it covers forked workers too).
Both run with compiled bytecode available, as after `pip install`.  Needs
check-jsonschema: `pip install '.[bench]'`.
Target (issue 4): at 10,000 files >= 10x faster than check-jsonschema, peak RSS <= 60 MB.

Also timed: the start-up of `reconciler validate` on the three example files in
deployments/ (the pre-commit case), and the schema's yes/no check per valid document
inside one process (`validation.compiled_schema()`, documents already parsed).
With valgrind installed, the start-up is also counted in instructions (callgrind, one run
per tree, PYTHONHASHSEED=0): unlike seconds, the count does not move with the machine's
load, so a small difference between two trees is visible on a shared, noisy machine.

`--baseline DIR` times an earlier version of this tree the same way in the same run,
runs interleaved with ours (before/after a change), e.g. with a tree made by
`git archive HEAD | tar -x -C /tmp/before`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
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


# Run with the tree to time as the working directory (`python -c` puts it first on sys.path).
PER_DOCUMENT = """
import sys, time
from reconciler import manifests, validation
files, _ = manifests.discover([sys.argv[1]])
documents = [d.data for path in files for d in manifests.load_file(path).documents]
check = validation.compiled_schema()
assert all(check(data) for data in documents), "a generated manifest is not valid"
best = float("inf")
for _ in range(5):
    started = time.perf_counter()
    for data in documents:
        check(data)
    best = min(best, time.perf_counter() - started)
print(best / len(documents) * 1e6)
"""


def interleaved(
    commands: dict[str, tuple[list[str], str]], repeat: int, env: dict[str, str]
) -> dict[str, Run]:
    """Median wall time and highest peak RSS of each command, their runs taken in turn so
    that a slower or busier moment of the machine weighs on all of them alike."""
    runs: dict[str, list[Run]] = {label: [] for label in commands}
    for _ in range(repeat):
        for label, (cmd, cwd) in commands.items():
            run = timed(cmd, env=env, cwd=cwd)
            if run.returncode != 0:
                raise SystemExit(f"{label} failed ({run.returncode}):\n{run.stdout[-2000:]}")
            runs[label].append(run)
    return {
        label: Run(
            statistics.median(r.seconds for r in taken),
            max(r.peak_rss_mb for r in taken),
            0,
            taken[-1].stdout,
        )
        for label, taken in runs.items()
    }


def per_document_us(tree: str, directory: Path, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PER_DOCUMENT, str(directory)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"per-document check failed in {tree}:\n{done.stderr[-2000:]}")
    return float(done.stdout)


def instructions(cmd: list[str], cwd: str, env: dict[str, str]) -> int | None:
    """Instructions the command executes (valgrind's callgrind), or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        cwd=cwd,
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed in {cwd}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated manifest counts")
    parser.add_argument("--repeat", type=int, default=5, help="runs of reconciler per size")
    parser.add_argument("--peer-repeat", type=int, default=3, help="runs of check-jsonschema")
    parser.add_argument("--baseline", metavar="DIR", help="an earlier tree, timed alongside")
    parser.add_argument(
        "--startup-repeat", type=int, default=30, help="runs on the three example files"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peer = peer_command()
    if peer is None:
        raise SystemExit("check-jsonschema not found: pip install '.[bench]'")
    trees = {"reconciler": str(REPO)}
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        if not (baseline / "reconciler" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {baseline}: not a source tree of reconciler")
        trees["baseline"] = str(baseline)

    # As after `pip install`: bytecode compiled once and reused.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rows: list[tuple[int, dict[str, Run], Run]] = []
    per_document: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        interpreter = median_run([sys.executable, "-c", "pass"], args.repeat, env=env)
        examples = [str(p) for p in sorted((REPO / "deployments").glob("*.yaml"))]
        startup_cmd = [*RECONCILER, "validate", *examples]
        for tree in trees.values():
            timed(startup_cmd, env=env, cwd=tree)  # warm-up: bytecode, page cache
        startup = interleaved(
            {label: (startup_cmd, tree) for label, tree in trees.items()},
            args.startup_repeat,
            env,
        )
        counted = {label: instructions(startup_cmd, tree, env) for label, tree in trees.items()}
        for label, run in startup.items():
            if run.stdout.strip() != f"{len(examples)} files, {len(examples)} documents: all valid":
                raise SystemExit(f"unexpected output from {label}: {run.stdout[-500:]}")
        for size in sizes:
            directory = root / f"m{size}"
            names = write_manifests(directory, size)
            ours_cmd = [*RECONCILER, "validate", str(directory)]
            for tree in trees.values():
                timed(ours_cmd, env=env, cwd=tree)  # warm-up: bytecode, page cache
            ours = interleaved(
                {label: (ours_cmd, tree) for label, tree in trees.items()}, args.repeat, env
            )
            expected = f"{size} files, {size} documents: all valid"
            for label, run in ours.items():
                if run.stdout.strip() != expected:
                    raise SystemExit(f"unexpected output from {label}: {run.stdout[-500:]}")
            theirs = median_run([*peer, *names], args.peer_repeat, env=env, cwd=str(directory))
            if "ok -- validation done" not in theirs.stdout:
                raise SystemExit(f"unexpected output from check-jsonschema: {theirs.stdout[-500:]}")
            rows.append((size, ours, theirs))
            if size == sizes[-1]:
                per_document = {
                    label: per_document_us(tree, directory, env) for label, tree in trees.items()
                }

    print(f"cores: {len(os.sched_getaffinity(0))}, python {sys.version.split()[0]}")
    print(f"interpreter start-up (python -c pass): {interpreter.seconds * 1000:.0f} ms")
    print()
    header = f"{'manifests':>9}  {'reconciler':>10}  {'peak RSS':>8}  "
    if "baseline" in trees:
        header += f"{'baseline':>10}  {'peak RSS':>8}  "
    print(header + f"{'check-jsonschema':>16}  {'peak RSS':>8}  {'speed-up':>8}")
    for size, ours, theirs in rows:
        line = f"{size:>9}  "
        for run in ours.values():
            line += f"{run.seconds:>9.2f}s  {run.peak_rss_mb:>6.1f}MB  "
        speed_up = theirs.seconds / ours["reconciler"].seconds
        print(line + f"{theirs.seconds:>15.2f}s  {theirs.peak_rss_mb:>6.1f}MB  {speed_up:>7.1f}x")
    print()
    print(
        f"start-up on the {len(examples)} example files, median of {args.startup_repeat} "
        "(reconciler validate deployments/*.yaml):"
    )
    for label, run in startup.items():
        count = counted[label]
        line = f"  {label:<10}  {run.seconds * 1000:6.1f} ms  {run.peak_rss_mb:5.1f} MB"
        print(line + (f"  {count / 1e6:7.1f} M instructions" if count else ""))
    print(f"schema check per valid document, in one process, {sizes[-1]} documents:")
    for label, micros in per_document.items():
        print(f"  {label:<10}  {micros:6.1f} µs")
    size, ours, theirs = rows[-1]
    ratio = theirs.seconds / ours["reconciler"].seconds
    rss = ours["reconciler"].peak_rss_mb
    verdict = "met" if ratio >= TARGET_RATIO and rss <= TARGET_RSS_MB else "MISSED"
    print()
    print(
        f"target at {size} files: >= {TARGET_RATIO:.0f}x and <= {TARGET_RSS_MB:.0f} MB -> "
        f"{ratio:.1f}x, {rss:.1f} MB: {verdict}"
    )


if __name__ == "__main__":
    main()
