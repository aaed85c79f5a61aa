"""Soak: `reconciler watch` for N minutes under a seeded random schedule of changes and
faults, its safety invariants checked continuously and its resources sampled (issue 23).

    python benchmarks/soak.py --minutes 60 [--seed 1] [--out DIR] [--stores sqlite,postgres]

Daemons, each a `reconciler watch --prune` subprocess against an emulator on loopback:
- sqlite: `sqlite-a` (steady: never killed, it gets SIGHUPs; its RSS is the growth figure)
  and `sqlite-b` (killed with SIGKILL and restarted), each on a store and manifests of its
  own, sharing one emulator (and its faults);
- postgres (when PostgreSQL answers at RECONCILER_TEST_POSTGRES): `pg-a` and `pg-b`, two
  daemons of one workspace (HA: one leads), on a second emulator; the leader is killed
  with SIGKILL and restarted (it comes back as the standby).

The schedule (one event every few seconds, seeded): a manifest changed (a new compile:
replace), added (create), removed (prune) or re-added; a person's stop (through the API,
as a person would); a deployment failing (restart); a daemon killed and restarted, at any
moment or while its create is in flight (a slow answer: the next daemon must wait for it
and claim it, so that a later removal prunes it); SIGHUP;
API faults on one emulator: latency, 5xx, 429 with Retry-After, commit then drop the
answer, and an outage of every endpoint (a minute long when the run is an hour or more,
scaled down for short runs).

Invariants, checked every half second: never two deployments running on a project, never a
second create sent while one runs (the emulator refuses it: "project busy"), never a stop
the manifests did not ask for (of a deployment whose manifest still wants it, or of one
the reconciler did not create), a person's stop never undone (nothing runs again on that
project until its manifest changes), and each change converged within a bound (the one
deployment running with the manifest's compile, or nothing when removed or stopped by a
person).  Every daemon must exit 0 on SIGTERM at the end.

Resources, sampled every 10 s per daemon process: RSS, open file descriptors, threads; and
the state's size (the SQLite files; the PostgreSQL workspace's history rows).  The summary
(stdout, and `summary.json` under --out with the daemons' logs) gives the violations, RSS at
start (after the first minute, or the first sample of a shorter run) and end, FDs and
threads (min/max), and reconciles per minute.  Exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import NODE, RECONCILER
from reconciler.client import Credentials, QuantConnectClient
from reconciler.emulator import Emulator
from reconciler.emulator.handlers import ROUTES

API_TIMEOUT = 5  # --api-timeout: a create in flight after a crash is waited for ~25 s
RESYNC = 5
LEASE = 3
CHECK_EVERY = 0.5
SAMPLE_EVERY = 10.0
CONVERGE_BOUND = 180.0  # seconds a change may take to show (plus any outage it overlaps)


def now() -> float:
    return time.time()


# ---- a daemon process ------------------------------------------------------------------------


@dataclass
class Incarnation:
    pid: int
    started: float
    samples: list[dict[str, float]] = field(default_factory=list)
    reconciles: float = 0.0
    ended: float | None = None
    exit_code: int | None = None


class DaemonProc:
    """One `reconciler watch`, restartable; its JSON log goes to a file, read for its port
    and counted by event."""

    def __init__(self, name: str, root: Path, home: Path, env: dict[str, str], extra: list[str]):
        self.name, self.root, self.home, self.env, self.extra = name, root, home, env, extra
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / "daemon.log"
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.events: Counter[str] = Counter()
        self.incarnations: list[Incarnation] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.port = None
        self.proc = subprocess.Popen(
            [*RECONCILER, "watch", str(self.root), "--resync", str(RESYNC), "--prune",
             "--prune-grace", "2", "--metrics-port", "0", "--log-format", "json",
             "--api-timeout", str(API_TIMEOUT), *self.extra],
            env=self.env, cwd=self.home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.incarnations.append(Incarnation(self.proc.pid, now()))
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while self.port is None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError(f"{self.name}: no metrics port in its log ({self.log_path})")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        with self.log_path.open("a") as log:
            log.write(f"--- {self.name} pid {proc.pid} started {now():.3f}\n")
            for line in proc.stderr:
                log.write(line)
                try:
                    data = json.loads(line)
                except ValueError:
                    self.events["(not json)"] += 1
                    continue
                event = str(data.get("event", ""))
                self.events[event] += 1
                if event == "metrics_listening" and proc is self.proc:
                    self.port = int(data["port"])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _ended(self, code: int | None) -> None:
        current = self.incarnations[-1]
        current.ended, current.exit_code = now(), code
        if self._reader is not None:
            self._reader.join(timeout=10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.sample()
        self.proc.send_signal(signal.SIGKILL)
        self._ended(self.proc.wait(timeout=30))

    def sighup(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)

    def terminate(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.sample()
            self.proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                code = None
        else:
            code = self.proc.returncode
        if self.incarnations[-1].ended is None:
            self._ended(code)
        return code

    def get(self, path: str) -> str | None:
        import httpx

        if self.port is None or not self.alive:
            return None
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5).text
        except httpx.HTTPError:
            return None

    def role(self) -> str:
        text = self.get("/healthz")
        try:
            return str(json.loads(text).get("role", "")) if text else ""
        except ValueError:
            return ""

    def sample(self) -> None:
        """RSS, FDs, threads of the running incarnation, and its reconciles so far."""
        if not self.alive:
            return
        assert self.proc is not None
        pid = self.proc.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        sample = {
            "t": now(),
            "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "fds": float(fds),
            "threads": float(fields["Threads"]),
        }
        role = self.role()
        sample["leader"] = 1.0 if role == "leader" else 0.0
        self.incarnations[-1].samples.append(sample)
        metrics = self.get("/metrics")
        if metrics:
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("reconciler_reconciles_total")
            )
            self.incarnations[-1].reconciles = total


# ---- a group: manifests, the daemons reconciling them, their emulator -----------------------


@dataclass
class Expect:
    compile_id: str | None = None  # None: no manifest (removed)
    since: float = 0.0  # when it last changed (the convergence clock)
    person_stopped: str | None = None  # deployId a person stopped (respected until a change)
    converged: bool = False
    late: bool = False  # reported once as not converged in time
    fails: int = 0  # failures since the last change (the 3rd restart in a row backs off)


class Group:
    def __init__(self, name: str, emulator: Emulator, root: Path, projects: range) -> None:
        self.name, self.emulator, self.root, self.projects = name, emulator, root, projects
        self.root.mkdir(parents=True, exist_ok=True)
        self.daemons: list[DaemonProc] = []
        self.expect = {p: Expect() for p in projects}
        self.lock = threading.Lock()

    def seed(self) -> None:
        with self.emulator.batch():
            for p in self.projects:
                self.emulator.add_project(p, name=f"soak{p}")
                self.emulator.add_node(NODE.format(p))

    def write(self, p: int) -> None:
        compile_id = self.emulator.add_compile(p)
        text = (
            "apiVersion: reconciler/v1\nkind: LiveDeployment\n"
            f"metadata:\n  name: s{p}\nspec:\n  projectId: {p}\n"
            f'  compileId: "{compile_id}"\n  nodeId: "{NODE.format(p)}"\n'
            "  brokerage: {id: PaperTrading}\n"
        )
        tmp = self.root / f".s{p}.yaml.tmp"
        tmp.write_text(text)
        tmp.replace(self.root / f"s{p}.yaml")  # renamed into place, as git and editors do
        with self.lock:
            self.expect[p] = Expect(compile_id, now())

    def remove(self, p: int) -> None:
        (self.root / f"s{p}.yaml").unlink()
        with self.lock:
            self.expect[p] = Expect(None, now())

    def present(self) -> list[int]:
        with self.lock:
            return [p for p, e in self.expect.items() if e.compile_id is not None]

    def settled(self) -> list[int]:
        """Projects converged a while ago, running their manifest's deployment."""
        with self.lock:
            return [
                p
                for p, e in self.expect.items()
                if e.converged and e.compile_id and not e.person_stopped and now() - e.since > 10
            ]


# ---- the run ---------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.rng = random.Random(args.seed)
        self.groups: list[Group] = []
        self.violations: list[dict[str, Any]] = []
        self.events: Counter[str] = Counter()
        self.outages: list[tuple[float, float]] = []
        self.person_stops: set[str] = set()
        self.seen_stops: dict[int, int] = {}  # emulator id -> stops already checked
        self.busy_seen: dict[tuple[int, str], int] = {}
        self.state_samples: list[dict[str, float]] = []
        self.stop_flag = threading.Event()
        self.started = now()
        self.fault_until = 0.0
        self.pg_url: str | None = None
        self.workspace = f"soak-{uuid.uuid4().hex[:8]}"

    # -- invariants ------------------------------------------------------------------------

    def violation(self, kind: str, **detail: Any) -> None:
        entry = {"at": round(now() - self.started, 1), "kind": kind, **detail}
        self.violations.append(entry)
        print(f"VIOLATION {json.dumps(entry)}", flush=True)

    def check(self) -> None:
        for emulator in self.emulators():
            groups = [g for g in self.groups if g.emulator is emulator]
            owner = {p: g for g in groups for p in g.projects}
            stats = emulator.stats()
            created = {c["deployId"] for c in stats["created"]}
            with emulator.world.lock:
                compiles = {d["deployId"]: d.get("compileId") for d in emulator.world.deployments}
            active = {p: emulator.world.all_active(p) for p in owner}
            for p, running in active.items():
                if len(running) > 1:
                    self.violation("two running", group=owner[p].name, project=p,
                                   deployIds=[d["deployId"] for d in running])  # fmt: skip
            stops = stats["stops"]
            for stop in stops[self.seen_stops.get(id(emulator), 0) :]:
                p, deploy_id = int(stop["projectId"]), stop["deployId"]
                if p not in owner or deploy_id in self.person_stops:
                    continue
                group = owner[p]
                with group.lock:
                    wanted = group.expect[p].compile_id
                if deploy_id not in created:
                    self.violation("stop of a deployment not created by us", group=group.name,
                                   project=p, deployId=deploy_id)  # fmt: skip
                elif compiles.get(deploy_id) == wanted:
                    self.violation("stop the manifests did not ask for", group=group.name,
                                   project=p, deployId=deploy_id)  # fmt: skip
            self.seen_stops[id(emulator)] = len(stops)
            for rule in ("project busy", "node busy"):
                count = stats["rejections"].get(rule, 0)
                if count > self.busy_seen.get((id(emulator), rule), 0):
                    self.busy_seen[(id(emulator), rule)] = count
                    self.violation(f"a create refused: {rule} (sent while one ran)",
                                   groups=[g.name for g in groups])  # fmt: skip
            for group in groups:
                self._check_expectations(group, active)

    def emulators(self) -> list[Emulator]:
        return list({id(g.emulator): g.emulator for g in self.groups}.values())

    def _check_expectations(self, group: Group, active: dict[int, list[dict[str, Any]]]) -> None:
        t = now()
        with group.lock:
            for p, e in group.expect.items():
                running = active[p]
                if e.person_stopped is not None:
                    if running:
                        self.violation("a person's stop undone", group=group.name, project=p,
                                       stopped=e.person_stopped,
                                       running=running[0]["deployId"])  # fmt: skip
                        e.person_stopped = None  # reported once
                    continue
                if e.compile_id is None:
                    ok = not running
                else:
                    ok = len(running) == 1 and running[0].get("compileId") == e.compile_id
                if ok and not e.converged:
                    e.converged = True
                elif not ok and e.converged and e.compile_id is not None:
                    e.converged = False  # a failure or a replace in progress: clock from now
                    e.since = t
                if not e.converged and not e.late and t - e.since > self.bound(e.since):
                    e.late = True
                    self.violation("not converged in time", group=group.name, project=p,
                                   wanted=e.compile_id,
                                   running=[d.get("compileId") for d in running],
                                   seconds=round(t - e.since))  # fmt: skip

    def bound(self, since: float) -> float:
        overlap = sum(max(0.0, min(end, now()) - max(start, since)) for start, end in self.outages)
        return CONVERGE_BOUND + overlap

    def checker(self) -> None:
        next_sample = 0.0
        while not self.stop_flag.wait(CHECK_EVERY):
            try:
                self.check()
            except Exception as error:  # a harness bug must not end the run silently
                self.violation("checker error", error=repr(error))
            if time.monotonic() >= next_sample:
                next_sample = time.monotonic() + SAMPLE_EVERY
                for group in self.groups:
                    for daemon in group.daemons:
                        daemon.sample()
                self.sample_state()

    # -- the state's size ------------------------------------------------------------------

    def sample_state(self) -> None:
        sample: dict[str, float] = {"t": now()}
        for group in self.groups:
            for daemon in group.daemons:
                db = daemon.env.get("RECONCILER_STATE", "")
                if db and not db.startswith("postgresql"):
                    size = sum(
                        Path(db + s).stat().st_size for s in ("", "-wal") if Path(db + s).exists()
                    )
                    sample[f"{daemon.name}_kb"] = size / 1024
        if self.pg_url:
            try:
                import psycopg

                with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM reconciler_history WHERE workspace = %s",
                        (self.workspace,),
                    ).fetchone()
                    sample["pg_history_rows"] = float(row[0]) if row else 0.0
            except Exception:  # sampling only: a failed sample is skipped
                pass
        self.state_samples.append(sample)

    # -- the schedule ----------------------------------------------------------------------

    def schedule(self, minutes: float) -> None:
        end = self.started + minutes * 60
        outage = min(60.0, max(5.0, minutes * 60 / 12))  # a minute, shorter in short runs
        outage_at = [self.started + minutes * 60 * f for f in (0.35, 0.75)]
        kinds = [
            ("change", 5), ("add", 3), ("remove", 3), ("person_stop", 2), ("fail", 1),
            ("crash", 2), ("sighup", 1), ("fault", 4), ("leader_kill", 1),
            ("crash_mid_create", 2),
        ]  # fmt: skip
        kinds = [(k, w) for k, w in kinds if k not in self.args.without]
        names = [k for k, _ in kinds]
        weights = [w for _, w in kinds]
        first = list(names)
        self.rng.shuffle(first)
        while now() < end:
            time.sleep(self.rng.uniform(2.0, 6.0))
            if now() >= end:
                break
            if outage_at and now() >= outage_at[0]:
                outage_at.pop(0)
                self.outage(self.rng.choice(self.groups), outage)
                continue
            # Every kind once first (in a seeded order), so that a short run has them all.
            from_first = bool(first)
            kind = first.pop() if first else self.rng.choices(names, weights)[0]
            group = self.group_for(kind)
            try:
                done = getattr(self, f"do_{kind}")(group)
            except Exception as error:
                self.violation("harness error", event=kind, error=repr(error))
                done = False
            if not done and from_first:
                first.insert(0, kind)  # not possible now (nothing settled yet, ...): later
            if done:
                self.events[kind] += 1
                print(f"[{now() - self.started:7.1f}s] {group.name}: {kind} {done}", flush=True)
        self.clear_faults()

    def group_for(self, kind: str) -> Group:
        """A leader kill needs an HA pair; a crash, a daemon that may be killed."""
        if kind == "leader_kill":
            pairs = [g for g in self.groups if len(g.daemons) > 1]
            return self.rng.choice(pairs or self.groups)
        if kind in ("crash", "crash_mid_create"):
            crashable = [g for g in self.groups if any(d.name != "sqlite-a" for d in g.daemons)]
            return self.rng.choice(crashable or self.groups)
        return self.rng.choice(self.groups)

    def faulted(self) -> bool:
        return now() < self.fault_until

    def clear_faults(self) -> None:
        for emulator in self.emulators():
            emulator.clear_faults()

    def do_change(self, group: Group) -> Any:
        candidates = [p for p in group.present()]
        if not candidates:
            return False
        p = self.rng.choice(candidates)
        group.write(p)
        return p

    def do_add(self, group: Group) -> Any:
        absent = [p for p in group.projects if p not in group.present()]
        if not absent:
            return self.do_change(group)
        p = self.rng.choice(absent)
        group.write(p)
        return p

    def do_remove(self, group: Group) -> Any:
        present = group.present()
        if len(present) <= 3:  # never near an empty set (that interlock is tested elsewhere)
            return False
        p = self.rng.choice(present)
        group.remove(p)
        return p

    def do_person_stop(self, group: Group) -> Any:
        # A person stops through the API too, but our injected faults are not theirs: only
        # while none is set (a failed stop would be taken for one undone).
        if self.faulted() or fault_active(group.emulator):
            return False
        candidates = group.settled()
        if not candidates:
            return False
        p = self.rng.choice(candidates)
        running = group.emulator.world.all_active(p)
        if len(running) != 1:
            return False
        deploy_id = running[0]["deployId"]
        self.person_stops.add(deploy_id)  # before the stop: the checker may see it at once
        credentials = Credentials(group.emulator.user_id, group.emulator.token)
        with QuantConnectClient(group.emulator.url, credentials) as client:
            client.stop_live(p)
        with group.lock:
            group.expect[p].person_stopped = deploy_id
        return f"{p} {deploy_id}"

    def do_fail(self, group: Group) -> Any:
        with group.lock:
            failed = {p for p, e in group.expect.items() if e.fails >= 2}
        candidates = [p for p in group.settled() if p not in failed]
        if not candidates:
            return False
        p = self.rng.choice(candidates)
        with group.lock:
            group.expect[p].fails += 1
            group.expect[p].converged = False
            group.expect[p].since = now()
        return f"{p} {group.emulator.end(p, 'RuntimeError', 'soak: the algorithm crashed')}"

    def do_crash(self, group: Group) -> Any:
        crashable = [d for d in group.daemons if d.name != "sqlite-a" and d.alive]
        if not crashable:
            return False
        daemon = self.rng.choice(crashable)
        daemon.kill9()
        time.sleep(self.rng.uniform(0.5, 5.0))
        daemon.start()
        return daemon.name

    def do_crash_mid_create(self, group: Group) -> Any:
        """The daemon that acts killed while its create is in flight (a slow answer): the
        next one (restarted, or the new leader) must wait for it, claim it as created, and
        prune it once its manifest is removed (the convergence check sees it if not)."""
        if self.faulted() or fault_active(group.emulator):
            return False
        actors = [d for d in group.daemons if d.name != "sqlite-a" and d.alive]
        if len(group.daemons) > 1:
            actors = [d for d in actors if d.role() == "leader"]
        if not actors:
            return False
        daemon = actors[0]
        emulator = group.emulator
        p = self.rng.choice(list(group.projects))
        received = sum(1 for t in emulator.stats()["create_times"] if t["projectId"] == p)
        emulator.inject("live/create", latency=self.rng.uniform(1.0, 4.0))
        self.fault_until = now() + 60
        try:
            group.write(p)  # a create (or a replace's) for p
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sent = sum(1 for t in emulator.stats()["create_times"] if t["projectId"] == p)
                if sent > received:
                    break
                time.sleep(0.02)
            else:
                return False  # not sent (a wait, a backoff): no crash this time
            daemon.kill9()
        finally:
            emulator.clear_faults()  # the create in flight keeps its latency
            self.fault_until = 0.0
        time.sleep(self.rng.uniform(0.5, 3.0))
        daemon.start()
        return f"{daemon.name} {p}"

    def do_leader_kill(self, group: Group) -> Any:
        if len(group.daemons) < 2:
            return False
        leaders = [d for d in group.daemons if d.alive and d.role() == "leader"]
        if not leaders:
            return False
        leaders[0].kill9()
        time.sleep(self.rng.uniform(0.5, 3.0))
        leaders[0].start()
        return leaders[0].name

    def do_sighup(self, group: Group) -> Any:
        daemon = self.rng.choice(group.daemons)
        daemon.sighup()
        return daemon.name

    def do_fault(self, group: Group) -> Any:
        if self.faulted():
            return False
        emulator = group.emulator
        kind = self.rng.choice(["latency", "5xx", "429", "drop"])
        if kind == "latency":
            emulator.inject("live/create", latency=self.rng.uniform(1.0, 3.0))
            emulator.inject("live/list", latency=self.rng.uniform(0.2, 1.0))
            self.fault_until = now() + 20
            threading.Timer(20, emulator.clear_faults).start()
        elif kind == "5xx":
            endpoint = self.rng.choice(["live/create", "live/list", "live/update/stop"])
            emulator.inject(endpoint, fail=self.rng.randint(1, 3), status=503)
        elif kind == "429":
            endpoint = self.rng.choice(["live/create", "live/list"])
            emulator.inject(endpoint, ratelimit=self.rng.randint(1, 3), retry_after=1)
        else:
            emulator.inject("live/create", drop=1)
        self.events[f"fault:{kind}"] += 1
        return kind

    def outage(self, group: Group, seconds: float) -> None:
        emulator = group.emulator
        for endpoint in ROUTES:
            emulator.inject(endpoint, fail=10_000_000, status=503)
        start = now()
        self.fault_until = start + seconds
        print(f"[{start - self.started:7.1f}s] {group.name}: outage {seconds:.0f}s", flush=True)
        self.events["outage"] += 1
        time.sleep(seconds)
        emulator.clear_faults()
        self.outages.append((start, now()))

    # -- setup and the end -------------------------------------------------------------------

    def build(self, emulators: list[Emulator]) -> None:
        stores = set(self.args.stores.split(","))
        base = self.out / "work"
        if "sqlite" in stores:
            emulator = emulators[0]
            for name, first in (("sqlite-a", 3001), ("sqlite-b", 3101)):
                group = Group(name, emulator, base / name / "manifests", range(first, first + 8))
                env = self.env(emulator, RECONCILER_STATE=str(base / name / "state.db"))
                group.daemons.append(DaemonProc(name, group.root, base / name, env, []))
                self.groups.append(group)
        if "postgres" in stores:
            from tests.postgres_support import postgres_url, unavailable

            reason = unavailable()
            if reason is not None:
                raise SystemExit(f"soak: postgres asked for, but {reason}")
            self.pg_url = postgres_url()
            emulator = emulators[1]
            group = Group("postgres", emulator, base / "pg" / "manifests", range(4001, 4009))
            env = self.env(
                emulator, RECONCILER_STATE=self.pg_url, RECONCILER_WORKSPACE=self.workspace
            )
            for name in ("pg-a", "pg-b"):
                group.daemons.append(
                    DaemonProc(name, group.root, base / "pg" / name, env, ["--lease", str(LEASE)])
                )
            self.groups.append(group)
        for group in self.groups:
            group.seed()
            for p in list(group.projects)[:6]:
                group.write(p)
            for daemon in group.daemons:
                daemon.start()

    @staticmethod
    def env(emulator: Emulator, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QC_", "RECONCILER_"))}
        env.update(QC_USER_ID=emulator.user_id, QC_API_TOKEN=emulator.token,
                   QC_API_URL=emulator.url, PYTHONUNBUFFERED="1", **extra)  # fmt: skip
        return env

    def settle(self) -> None:
        """After the schedule: every change converges (within its bound), then SIGTERM."""
        deadline = now() + CONVERGE_BOUND + 30
        while now() < deadline:
            with_pending = [
                (g.name, p)
                for g in self.groups
                for p, e in g.expect.items()
                if not e.converged and e.person_stopped is None and not e.late
            ]
            if not with_pending:
                break
            time.sleep(1)
        time.sleep(2 * CHECK_EVERY)
        self.stop_flag.set()
        for group in self.groups:
            for daemon in group.daemons:
                code = daemon.terminate()
                if code != 0:
                    self.violation("SIGTERM did not exit 0", daemon=daemon.name, code=code)
        if self.pg_url:
            from tests.postgres_support import drop_workspace

            drop_workspace(self.workspace)

    def summary(self, minutes: float) -> dict[str, Any]:
        elapsed = (now() - self.started) / 60
        daemons = {}
        for group in self.groups:
            for daemon in group.daemons:
                incs = daemon.incarnations
                longest = max(incs, key=lambda i: (i.ended or now()) - i.started)
                samples = longest.samples
                warm = [s for s in samples if s["t"] - longest.started >= 60] or samples
                all_samples = [s for i in incs for s in i.samples]
                daemons[daemon.name] = {
                    "incarnations": len(incs),
                    "longest_minutes": round(((longest.ended or now()) - longest.started) / 60, 1),
                    "rss_mb_start": round(warm[0]["rss_mb"], 1) if warm else None,
                    "rss_mb_end": round(samples[-1]["rss_mb"], 1) if samples else None,
                    "rss_growth_pct": round(
                        100 * (samples[-1]["rss_mb"] - warm[0]["rss_mb"]) / warm[0]["rss_mb"], 1
                    )
                    if warm
                    else None,
                    "fds_min_max": _span(all_samples, "fds"),
                    "fds_longest_start_end": _ends(warm, samples, "fds"),
                    "threads_min_max": _span(all_samples, "threads"),
                    "threads_longest_start_end": _ends(warm, samples, "threads"),
                    "reconciles": sum(i.reconciles for i in incs),
                    # The longest incarnation's samples: seconds since it started, RSS MB,
                    # FDs, threads, leading (1) or standing by (0).
                    "longest_samples": [
                        [
                            round(x["t"] - longest.started),
                            round(x["rss_mb"], 1),
                            x["fds"],
                            x["threads"],
                            x["leader"],
                        ]
                        for x in samples
                    ],
                    "log_events": dict(daemon.events.most_common(12)),
                }
        reconciles = sum(d["reconciles"] for d in daemons.values())
        return {
            "minutes_asked": minutes,
            "minutes_run": round(elapsed, 2),
            "seed": self.args.seed,
            "violations": self.violations,
            "violation_count": len(self.violations),
            "events": dict(self.events),
            "reconciles_per_minute": round(reconciles / elapsed, 1) if elapsed else None,
            "daemons": daemons,
            "state_first": self.state_samples[0] if self.state_samples else None,
            "state_last": self.state_samples[-1] if self.state_samples else None,
        }


def fault_active(emulator: Emulator) -> bool:
    knobs = ("latency", "ratelimit", "fail", "drop", "drop_before")
    return any(any(fault[k] for k in knobs) for fault in emulator.faults().values())


def _span(samples: list[dict[str, float]], key: str) -> list[float] | None:
    values = [s[key] for s in samples]
    return [min(values), max(values)] if values else None


def _ends(warm: list[dict[str, float]], samples: list[dict[str, float]], key: str) -> Any:
    return [warm[0][key], samples[-1][key]] if warm and samples else None


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="summary.json and daemon logs")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument(
        "--without",
        type=lambda text: frozenset(text.split(",")),
        default=frozenset(),
        metavar="KIND,...",
        help="leave these events out (e.g. crash,leader_kill: one incarnation per daemon)",
    )
    args = parser.parse_args(argv)
    # Stopped early (SIGTERM, or SIGINT even when started in the background, which ignores
    # it): the daemons are still stopped on the way out.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        soak = Soak(args, out)
        with Emulator() as first, Emulator() as second:
            checker = threading.Thread(target=soak.checker, daemon=True)
            try:
                soak.build([first, second])
                checker.start()
                soak.schedule(args.minutes)
                soak.settle()
            finally:
                soak.stop_flag.set()
                for group in soak.groups:
                    for daemon in group.daemons:
                        daemon.terminate()
            checker.join(timeout=10)
            summary = soak.summary(args.minutes)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        return 1 if summary["violation_count"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
