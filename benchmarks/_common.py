"""Shared helpers for the benchmarks: timed subprocesses with their own peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RECONCILER = [sys.executable, "-m", "reconciler"]
NODE = "LN-{:032x}"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    user_cpu: float = 0.0  # seconds of user CPU of that child alone (wait4)
    sys_cpu: float = 0.0  # seconds of system CPU of that child alone (wait4)

    @property
    def cpu(self) -> float:
        return self.user_cpu + self.sys_cpu


def timed(
    cmd: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> Run:
    """Run a command; wall time and that child's own peak RSS and CPU (wait4, not
    RUSAGE_CHILDREN).  `timeout` seconds: the command is killed and the benchmark fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    killer = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if killer is not None:
        killer.daemon = True
        killer.start()
    reaped = False
    try:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        reaped = True
    finally:
        if killer is not None:
            killer.cancel()
        if not reaped:  # interrupted: the command does not outlive the benchmark
            proc.kill()
            proc.wait()
        proc.stdout.close()
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if timeout is not None and seconds >= timeout and proc.returncode < 0:
        raise SystemExit(f"timed out after {timeout:g} s and killed: {' '.join(cmd)}")
    return Run(
        seconds,
        usage.ru_maxrss / 1024,
        proc.returncode,
        out.decode(errors="replace"),
        usage.ru_utime,
        usage.ru_stime,
    )


def median_run(cmd: Sequence[str], repeat: int, **kwargs: object) -> Run:
    runs = [timed(cmd, **kwargs) for _ in range(repeat)]  # type: ignore[arg-type]
    for run in runs:
        if run.returncode != 0:
            raise SystemExit(
                f"benchmark command failed ({run.returncode}): {' '.join(cmd)}\n"
                + run.stdout[-2000:]
            )
    seconds = statistics.median(r.seconds for r in runs)
    return Run(seconds, max(r.peak_rss_mb for r in runs), 0, runs[-1].stdout)


def running_seed(projects: Sequence[int]) -> tuple[dict[str, object], dict[int, str]]:
    """An emulator seed where each project has a node, a built compile and a running paper
    deployment (what in-sync manifests of `write_paper_manifests` adopt), and the compiles."""
    compile_ids = {p: f"{p:032x}-{p:032x}" for p in projects}
    seed: dict[str, object] = {
        "projects": [{"projectId": p} for p in projects],
        "nodes": [{"id": NODE.format(p)} for p in projects],
        "compiles": [{"projectId": p, "compileId": compile_ids[p]} for p in projects],
        "live": [
            {"projectId": p, "nodeId": NODE.format(p), "brokerage": {"id": "QuantConnectBrokerage"}}
            for p in projects
        ],
    }
    return seed, compile_ids


def write_paper_manifests(
    directory: Path, projects: Sequence[int], compile_ids: dict[int, str]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for project_id in projects:
        (directory / f"algo-{project_id}.yaml").write_text(
            "apiVersion: reconciler/v1\n"
            "kind: LiveDeployment\n"
            f"metadata:\n  name: algo-{project_id}\n  labels: {{team: bench}}\n"
            "spec:\n"
            f"  projectId: {project_id}\n"
            f'  compileId: "{compile_ids[project_id]}"\n'
            f'  nodeId: "{NODE.format(project_id)}"\n'
            "  brokerage:\n    id: PaperTrading\n"
        )


def cli_env(url: str, user_id: str, token: str, state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QC_API_URL=url, QC_USER_ID=user_id, QC_API_TOKEN=token, RECONCILER_STATE=str(state))
    return env


class EmulatorProcess:
    """`reconciler emulator` in a process of its own, seeded from a JSON file.

    Peak RSS of a command is read with wait4, and a child's high-water mark includes the
    memory of the process that forked it (the pages it shared before exec). Keeping the
    emulator, with its thousands of deployments, out of the benchmark's own process keeps
    that inherited share small and the figures honest.
    """

    def __init__(self, seed: dict[str, object], directory: Path) -> None:
        import json
        import secrets

        self.user_id = str(100_000 + secrets.randbelow(900_000))
        self.token = secrets.token_hex(32)
        seed_file = directory / "emulator-seed.json"
        seed_file.write_text(json.dumps(seed))
        env = dict(os.environ, QC_USER_ID=self.user_id, QC_API_TOKEN=self.token)
        self.proc = subprocess.Popen(
            [*RECONCILER, "emulator", "--port", "0", "--seed", str(seed_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = ""
        for line in self.proc.stdout:  # bounded: the emulator prints its URL or exits
            if "listening on" in line:
                self.url = line.rsplit(" ", 1)[1].strip()
                break
        if not self.url:
            self.close()
            raise SystemExit("the emulator did not start")

    def admin(self, action: str, body: dict[str, object] | None = None) -> dict[str, object]:
        """POST `/_emulator/<action>` (faults, faults/clear, stats, seed, ...) with the
        API's authentication; the decoded answer, or SystemExit when it is not a success."""
        import base64
        import hashlib
        import json
        import urllib.request

        stamp = str(int(time.time()))
        digest = hashlib.sha256(f"{self.token}:{stamp}".encode()).hexdigest()
        basic = base64.b64encode(f"{self.user_id}:{digest}".encode()).decode()
        root = self.url.removesuffix("/api/v2")
        request = urllib.request.Request(
            f"{root}/_emulator/{action}",
            data=json.dumps(body or {}).encode(),
            headers={
                "Content-Type": "application/json",
                "Timestamp": stamp,
                "Authorization": f"Basic {basic}",
            },
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
        with opener.open(request, timeout=30) as response:
            answer: dict[str, object] = json.loads(response.read())
        if not answer.get("success"):
            raise SystemExit(f"emulator admin {action} failed: {answer.get('errors')}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
