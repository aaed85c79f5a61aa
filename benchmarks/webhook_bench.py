"""GitOps latency and cost: push -> webhook -> reconcile, and a --git no-op plan.

    python benchmarks/webhook_bench.py [--pushes 20] [--manifests 1000] [--repeat 5]

Push latency: `reconciler watch --git file://... --interval 300 --hooks-listen` (a fetch
only when a hook asks) against the emulator; each round commits one new manifest, pushes
it, sends GitHub's signed push hook and times hook -> the create call received by the
emulator (the reconcile has then started, planned and sent its create: an upper bound of
"reconcile started").  Target (issue 20): p50 <= 1 s.

--git no-op plan: M in-sync manifests committed to a repository; `reconciler plan --git
file://... deployments` (fetch, resolve, ls-tree, cat-file, validate) against `reconciler
plan deployments` in the work tree of the same commit (which records HEAD too), medians
of `--repeat` interleaved runs, in the same run.  Target: <= 1.3x.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    NODE,
    RECONCILER,
    EmulatorProcess,
    cli_env,
    running_seed,
    timed,
    write_paper_manifests,
)
from reconciler.emulator import Emulator

SECRET = b"bench-hook-secret"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
WAIT = 30.0  # seconds one push may take before the benchmark fails


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def repository(root: Path) -> tuple[Path, Path]:
    origin, work = root / "origin.git", root / "work"
    git("init", "-q", "--bare", "--initial-branch=main", str(origin), cwd=root)
    git("init", "-q", "--initial-branch=main", str(work), cwd=root)
    git("remote", "add", "origin", str(origin), cwd=work)
    return origin, work


def commit_and_push(work: Path, message: str) -> None:
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)


def hook(port: int, number: int) -> None:
    import urllib.request

    body = json.dumps({"ref": "refs/heads/main", "repository": {"default_branch": "main"}})
    data = body.encode()
    signature = "sha256=" + hmac.new(SECRET, data, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/github",
        data=data,
        headers={
            "X-Hub-Signature-256": signature,
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": f"bench-{number}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        if response.status != 202:
            raise SystemExit(f"the hook was answered {response.status}")


def push_latency(pushes: int, root: Path) -> list[float]:
    origin, work = repository(root)
    (work / "deployments").mkdir()
    secret_file = root / "secret"
    secret_file.write_bytes(SECRET)
    emulator = Emulator(compile_delay=0.0)
    emulator.start()
    compiles = {}
    projects = range(40_001, 40_002 + pushes)
    for project in projects:
        emulator.add_project(project)
        emulator.add_node(NODE.format(project))
        compiles[project] = emulator.add_compile(project)
    first = projects[0]
    write_paper_manifests(work / "deployments", [first], compiles)
    commit_and_push(work, "first")
    env = cli_env(emulator.url, emulator.user_id, emulator.token, root / "state.db")
    env.update(GIT_ENV, RECONCILER_GIT_CACHE=str(root / "cache"))
    daemon = subprocess.Popen(
        [
            *RECONCILER, "watch", "deployments", "--git", origin.as_uri(), "--interval", "300",
            "--hooks-listen", "127.0.0.1:0", "--hook-secret-file", str(secret_file),
            "--log-format", "json", "--resync", "300",
        ],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    port: list[int] = []
    lines: list[str] = []

    def read() -> None:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            lines.append(line)
            if '"hooks_listening"' in line:
                port.append(int(json.loads(line)["port"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []
    try:
        wait_until(lambda: bool(port) and emulator.creates_committed(first) == 1, lines)
        for number, project in enumerate(projects[1:]):
            write_paper_manifests(work / "deployments", [project], compiles)
            commit_and_push(work, f"deploy {project}")
            started = time.perf_counter()
            hook(port[0], number)
            wait_until(lambda p=project: emulator.creates_committed(p) == 1, lines)
            samples.append(time.perf_counter() - started)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        reader.join(timeout=5)
        emulator.stop()
    return samples


def wait_until(done: object, lines: list[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("timed out; the daemon said:\n" + "".join(lines[-20:]))
        time.sleep(0.002)


def noop_plans(manifests: int, repeat: int, root: Path) -> tuple[list[float], list[float]]:
    origin, work = repository(root)
    projects = range(50_001, 50_001 + manifests)
    seed, compile_ids = running_seed(projects)
    with EmulatorProcess(seed, root) as emulator:
        write_paper_manifests(work / "deployments", projects, compile_ids)
        commit_and_push(work, "manifests")
        env = cli_env(emulator.url, emulator.user_id, emulator.token, root / "state.db")
        env.update(GIT_ENV, RECONCILER_GIT_CACHE=str(root / "cache"))
        setup = timed([*RECONCILER, "apply", "deployments", "--yes"], env=env, cwd=str(work))
        if setup.returncode != 0:
            raise SystemExit(f"set-up apply failed:\n{setup.stdout[-2000:]}")
        from_git = [*RECONCILER, "plan", "--git", origin.as_uri(), "deployments"]
        from_files = [*RECONCILER, "plan", "deployments"]
        timed(from_git, env=env, cwd=str(root))  # the mirror's first clone is not timed
        git_runs, file_runs = [], []
        for _ in range(repeat):
            for cmd, runs, cwd in ((from_git, git_runs, root), (from_files, file_runs, work)):
                run = timed(cmd, env=env, cwd=str(cwd))
                if run.returncode != 0 or "No changes" not in run.stdout:
                    raise SystemExit(f"not a no-op plan:\n{run.stdout[-2000:]}")
                runs.append(run.seconds)
    return git_runs, file_runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "push").mkdir()
        samples = push_latency(args.pushes, Path(tmp) / "push")
    with tempfile.TemporaryDirectory() as tmp:
        git_runs, file_runs = noop_plans(args.manifests, args.repeat, Path(tmp))
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(f"webhook benchmark: {len(samples)} pushes, hook -> create call received")
    print(f"  p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
          f"  (target p50 <= 1000 ms: {'met' if p50 <= 1.0 else 'NOT met'})")  # fmt: skip
    g, f = statistics.median(git_runs), statistics.median(file_runs)
    print(f"no-op plan of {args.manifests} manifests, median of {args.repeat} interleaved runs")
    print(f"  reconciler plan --git file://... deployments   {g:6.2f} s")
    print(f"  reconciler plan deployments (its work tree)    {f:6.2f} s")
    print(f"  --git / files: {g / f:.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
