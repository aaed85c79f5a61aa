"""The PostgreSQL state beside the SQLite state, in one run; and failover of `watch`.

    python benchmarks/state_bench.py [--postgres URL] [--manifests 10000] [--creates 1000]
        [--latency 0.05] [--concurrency 64] [--repeat 3] [--kills 10] [--lease 10]

- a no-op `plan` of N in-sync manifests with each state (target: PostgreSQL <= 1.3x SQLite);
- `apply` of 1,000 creates at 50 ms of API latency with each state (target <= 1.2x);
- failover: two `watch` daemons on one PostgreSQL workspace; the leader is killed with
  SIGKILL, and the time until the standby's /healthz says "leader" is measured, over
  `--kills` kills (p50 and max; the contract: within 2x the lease).

The server defaults to RECONCILER_TEST_POSTGRES, else postgresql://postgres@127.0.0.1:5432/test;
each run uses workspaces of its own and deletes their rows afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    NODE,
    RECONCILER,
    EmulatorProcess,
    Run,
    cli_env,
    median_run,
    running_seed,
    timed,
    write_paper_manifests,
)
from reconciler.emulator import Emulator

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = (
    "reconciler_deployments",
    "reconciler_intents",
    "reconciler_history",
    "reconciler_applied_plans",
    "reconciler_locks",
    "reconciler_leases",
)


def drop_workspaces(url: str, workspaces: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,):
                conn.execute(
                    f"DELETE FROM {table} WHERE workspace = ANY(%s)",  # fixed table names
                    (workspaces,),
                )


def pg_env(env: dict[str, str], url: str, workspace: str) -> dict[str, str]:
    return {**env, "RECONCILER_STATE": url, "RECONCILER_WORKSPACE": workspace}


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{what} failed:\n{run.stdout[-3000:]}")
    return run


# -- no-op plan ------------------------------------------------------------------------


def plan_figures(url: str, workspace: str, manifests: int, repeat: int) -> tuple[Run, Run]:
    projects = range(20_001, 20_001 + manifests)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        seed, compile_ids = running_seed(projects)
        emu = EmulatorProcess(seed, root)
        stack.callback(emu.close)
        deployments = root / "deployments"
        write_paper_manifests(deployments, projects, compile_ids)
        sqlite_env = cli_env(emu.url, emu.user_id, emu.token, root / "state.db")
        postgres_env = pg_env(sqlite_env, url, workspace)
        for env, name in ((sqlite_env, "SQLite"), (postgres_env, "PostgreSQL")):
            # Everything recorded as in sync (the running deployments adopted, no creates).
            apply = [*RECONCILER, "apply", str(deployments), "--yes", "--wait", "0"]
            checked(timed(apply, env=env, cwd=tmp), f"setup apply ({name})")
        plan = [*RECONCILER, "plan", str(deployments)]
        runs = []
        for env in (sqlite_env, postgres_env):
            run = median_run(plan, repeat, env=env, cwd=tmp)
            if "No changes" not in run.stdout:
                raise SystemExit(f"the plan is not a no-op:\n{run.stdout[-2000:]}")
            runs.append(run)
    return runs[0], runs[1]


# -- creates ---------------------------------------------------------------------------


def apply_figures(
    url: str, workspace: str, creates: int, latency: float, concurrency: int, repeat: int
) -> tuple[Run, Run]:
    """Median of `repeat` runs each, SQLite and PostgreSQL alternating (so that whatever
    else the machine does weighs on both alike)."""
    projects = range(10_001, 10_001 + creates)
    runs: dict[bool, list[Run]] = {False: [], True: []}
    for attempt in range(repeat):
        for postgres in (False, True):
            with tempfile.TemporaryDirectory() as tmp, Emulator() as emu:
                root = Path(tmp)
                compile_ids = {}
                for project_id in projects:
                    emu.add_project(project_id)
                    emu.add_node(NODE.format(project_id))
                    compile_ids[project_id] = emu.add_compile(project_id)
                write_paper_manifests(root / "deployments", projects, compile_ids)
                emu.inject("live/create", latency=latency)
                env = cli_env(emu.url, emu.user_id, emu.token, root / "state.db")
                if postgres:
                    env = pg_env(env, url, f"{workspace}-{attempt}")
                command = [*RECONCILER, "apply", str(root / "deployments"), "--yes", "--wait",
                           "0", "--concurrency", str(concurrency)]  # fmt: skip
                run = checked(timed(command, env=env, cwd=tmp), "apply")
                made = sum(emu.creates_committed(p) for p in projects)
                if made != creates:
                    raise SystemExit(f"{made} creates committed, not {creates}: figures invalid")
                runs[postgres].append(run)

    def median(of: list[Run]) -> Run:
        return sorted(of, key=lambda r: r.seconds)[len(of) // 2]

    return median(runs[False]), median(runs[True])


# -- failover --------------------------------------------------------------------------


class Daemon:
    def __init__(self, env: dict[str, str], root: Path, cwd: Path, lease: float) -> None:
        self.port: int | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [*RECONCILER, "watch", str(root), "--metrics-port", "0", "--log-format", "json",
             "--resync", "5", "--lease", str(lease)],
            env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30):
            self.kill()
            raise SystemExit("a watch daemon did not start")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "metrics_listening":
                    self.port = int(event["port"])
                    self._ready.set()

    def role(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return str(json.loads(r.read()).get("role"))
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def wait_role(daemon: Daemon, role: str, timeout: float) -> float:
    started = time.perf_counter()
    while daemon.role() != role:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"no daemon became {role} within {timeout:g} s")
        time.sleep(0.01)
    return time.perf_counter() - started


def failover_figures(url: str, workspace: str, kills: int, lease: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp, Emulator() as emu:
        root = Path(tmp) / "deployments"
        project_id = 30_001
        emu.add_project(project_id)
        emu.add_node(NODE.format(project_id))
        write_paper_manifests(root, [project_id], {project_id: emu.add_compile(project_id)})
        env = pg_env(cli_env(emu.url, emu.user_id, emu.token, Path(tmp) / "x.db"), url, workspace)
        leader = Daemon(env, root, Path(tmp), lease)
        wait_role(leader, "leader", 3 * lease)
        standby = Daemon(env, root, Path(tmp), lease)
        times = []
        try:
            for _ in range(kills):
                wait_role(standby, "standby", 3 * lease)
                time.sleep(lease * (0.3 + 0.5 * (len(times) % 3) / 2))  # kill at varied phases
                killed = time.perf_counter()
                leader.kill()
                wait_role(standby, "leader", 4 * lease)
                times.append(time.perf_counter() - killed)
                leader, standby = standby, Daemon(env, root, Path(tmp), lease)
            if emu.creates_committed(project_id) != 1:
                raise SystemExit("the deployment was created more than once: figures invalid")
        finally:
            leader.kill()
            standby.kill()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("RECONCILER_TEST_POSTGRES") or DEFAULT_URL
    )
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    url = args.postgres
    run_id = uuid.uuid4().hex[:8]
    workspaces = [f"bench-{kind}-{run_id}" for kind in ("plan", "apply", "failover")]
    workspaces += [f"{workspaces[1]}-{n}" for n in range(args.repeat)]
    try:
        plan_sqlite, plan_pg = plan_figures(url, workspaces[0], args.manifests, args.repeat)
        apply_sqlite, apply_pg = apply_figures(
            url, workspaces[1], args.creates, args.latency, args.concurrency, args.repeat
        )
        failover = failover_figures(url, workspaces[2], args.kills, args.lease)
    finally:
        drop_workspaces(url, workspaces)

    from reconciler.state import redact

    print(f"state benchmark: SQLite file vs PostgreSQL ({redact(url)}), in one run")
    print(f"  {'measure':<58} {'seconds':>8} {'peak RSS':>9}")
    rows = [
        (f"plan, {args.manifests} in-sync manifests, SQLite (median of {args.repeat})",
         plan_sqlite),
        (f"plan, {args.manifests} in-sync manifests, PostgreSQL", plan_pg),
        (f"apply, {args.creates} creates at {args.latency * 1000:.0f} ms, SQLite (median)",
         apply_sqlite),
        (f"apply, {args.creates} creates at {args.latency * 1000:.0f} ms, PostgreSQL", apply_pg),
    ]  # fmt: skip
    for label, run in rows:
        print(f"  {label:<58} {run.seconds:8.2f} {run.peak_rss_mb:7.1f}MB")
    print(
        f"  plan PostgreSQL / SQLite: {plan_pg.seconds / plan_sqlite.seconds:.2f}x (target <= 1.3x)"
    )
    print(
        f"  apply PostgreSQL / SQLite: {apply_pg.seconds / apply_sqlite.seconds:.2f}x "
        "(target <= 1.2x)"
    )
    print(
        f"  failover after SIGKILL of the leader, lease {args.lease:g} s, {len(failover)} kills: "
        f"p50 {statistics.median(failover):.2f} s, max {max(failover):.2f} s "
        f"(contract: within {2 * args.lease:g} s)"
    )


if __name__ == "__main__":
    main()
