"""Shared helpers for the benchmarks: timed subprocesses with their own peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
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


def timed(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> Run:
    """Run a command; wall time and that child's own peak RSS (wait4, not RUSAGE_CHILDREN)."""
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
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(seconds, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace"))


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
