"""A seeded random day-2 fault campaign: create / change / remove, with faults, over loopback.

Each schedule is drawn from `random.Random(seed)`: 3-5 projects (each with its own node and a
few compiles), some manifests to start with, then 4-8 steps: add a manifest, change one (a new
compile: a replace), remove one (pruned by a later `--prune` run), seed an unmanaged foreign
deployment or an adoptable one, refuse an empty manifest set (the interlock), and reconcile
runs of `reconciler apply` as a subprocess against the real emulator, with zero or one fault:
a create committed then its answer dropped, a 5xx on create or stop, a 429 on create, a stop
committed then dropped, kill -9 mid-run, the state file lost, or two runners on one state file.
A faulted run is followed by a clean run; the schedule ends with up to 3 clean runs that must
converge (`plan --detailed-exitcode` exits 0) with every manifest's project running exactly
one deployment (a project the state lost after pruning it is drift by design, DESIGN §11: the
final run starts it with `--restart`).

The test keeps its own model of what should run (created and owned, adopted, or running with
no record) and, after every run, checks the emulator's own records: never two deployments on a
project, no create refused because the project or node was busy, no stop of anything that was
not created through the API (or seeded and adopted), never a foreign deployment stopped, no
traceback. After every clean run, live state must equal the model, with exactly one committed
create per create or replace and exactly one stop per replace or prune: exactly once.

The default suite runs seeds 0..19; `pytest -m campaign` runs seeds 1000..1199. A failure
prints the seed, the schedule and the runs so far; `pytest -k seed_N` runs it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator import Emulator
from tests.test_apply_e2e import node_for, until_landed
from tests.test_day2_e2e import World, assert_safe

FIRST_PROJECT = 401
FOREIGN_PROJECT = 491  # foreign deployments live on 491, 492, ...: never in a manifest
COMPILES_PER_PROJECT = 3
DEFAULT_SEEDS = range(20)
CAMPAIGN_SEEDS = range(1000, 1200)
FINAL_RUNS = 3
WAIT = 30.0  # seconds: the bound of every polling loop

# Faults of one reconcile run ("" = none), and how often each is drawn.
FAULTS: dict[str, float] = {
    "": 0.30,
    "create-drop": 0.09,
    "create-5xx": 0.08,
    "create-429": 0.08,
    "stop-5xx": 0.05,
    "stop-drop": 0.09,
    "kill9": 0.13,
    "lost-state": 0.09,
    "two-runners": 0.09,
}
IDLE_FAULTS: dict[str, float] = {"": 0.5, "lost-state": 0.5}


def compile_id(project_id: int, index: int) -> str:
    return f"{project_id:032x}-{index + 1:032x}"


@dataclass(frozen=True)
class Step:
    kind: str  # add | change | remove | run | empty | foreign | adoptable
    project: int = 0
    compile: int = 0  # add, change, adoptable: index of the project's compile
    fault: str = ""  # run
    prune: bool = False  # run
    concurrency: int = 8  # run
    status: int = 0  # create-5xx, stop-5xx
    latency: float = 0.0  # kill9, two-runners
    delay: float = 0.0  # kill9: extra seconds after the window opens
    pick: float = 0.0  # kill9: which window when both are open

    def __str__(self) -> str:
        if self.kind in ("add", "change"):
            return f"{self.kind} d{self.project} @c{self.compile}"
        if self.kind == "remove":
            return f"remove d{self.project}"
        if self.kind == "adoptable":
            return f"seed an adoptable deployment on {self.project} @c{self.compile}"
        if self.kind == "foreign":
            return f"seed a foreign deployment on {self.project}"
        if self.kind == "empty":
            return "empty manifest set, apply --prune (interlock), then restore"
        flags = ("--prune " if self.prune else "") + f"--concurrency {self.concurrency}"
        fault = self.fault or "no fault"
        if self.fault.endswith("5xx"):
            fault += f" ({self.status})"
        if self.fault == "kill9":
            window = "stop" if self.pick < 0.5 else "create"
            fault += f" (latency {self.latency:g}, prefer {window}, +{self.delay:g}s)"
        if self.fault == "two-runners":
            fault += f" (create latency {self.latency:g})"
        return f"run {flags}: {fault}"


@dataclass(frozen=True)
class Schedule:
    seed: int
    projects: tuple[int, ...]
    initial: tuple[int, ...]  # projects with a manifest (compile 0) before the first step
    steps: tuple[Step, ...]

    def describe(self, failed_at: int | None = None) -> str:
        lines = [
            f"projects {', '.join(map(str, self.projects))}; initial manifests: "
            + ", ".join(f"d{p} @c0" for p in self.initial)
        ]
        for number, step in enumerate(self.steps, 1):
            mark = ">" if failed_at == number else " "
            lines.append(f"  {mark}{number}. {step}")
        mark = ">" if failed_at == len(self.steps) + 1 else " "
        lines.append(f"  {mark}{len(self.steps) + 1}. final: up to {FINAL_RUNS} clean runs")
        return "\n".join(lines)


def make_schedule(seed: int) -> Schedule:
    rng = random.Random(seed)
    projects = tuple(range(FIRST_PROJECT, FIRST_PROJECT + rng.randint(3, 5)))
    initial = tuple(sorted(rng.sample(projects, rng.randint(1, len(projects)))))
    present = dict.fromkeys(initial, 0)  # project -> compile index in its manifest
    removed_since_prune = False
    dirty = True  # a manifest or live state changed since the last run
    foreign = FOREIGN_PROJECT
    steps: list[Step] = []
    for _ in range(rng.randint(4, 8)):
        absent = [p for p in projects if p not in present]
        weights = {
            "run": 0.5 if dirty else 0.12,
            "change": 0.18,
            "add": 0.12 if absent else 0.0,
            "remove": 0.13 if len(present) >= 2 else 0.0,
            "adoptable": 0.04 if absent else 0.0,
            "foreign": 0.04,
            "empty": 0.04,
        }
        kind = rng.choices(list(weights), list(weights.values()))[0]
        idle, dirty = (
            not dirty,
            kind in ("add", "change", "remove", "adoptable")
            or (dirty and kind in ("foreign", "empty")),
        )
        if kind == "run":
            # A fault matters on a run with something to do; on an idle one, losing the
            # state (everything is adopted) is the fault that still changes something.
            faults = IDLE_FAULTS if idle else FAULTS
            fault = rng.choices(list(faults), list(faults.values()))[0]
            prune = rng.random() < (0.8 if removed_since_prune else 0.25)
            removed_since_prune = removed_since_prune and not prune
            kill = fault == "kill9"
            steps.append(
                Step(
                    "run",
                    fault=fault,
                    prune=prune,
                    concurrency=rng.choice((1, 8, 8)),
                    status=rng.choice((500, 503)) if fault.endswith("5xx") else 0,
                    latency=rng.choice((0.2, 0.3, 0.5)) if kill else 0.0,
                    delay=rng.choice((0.0, 0.0, 0.1, 0.25)) if kill else 0.0,
                    pick=rng.random() if kill else 0.0,
                )
            )
            if fault == "two-runners":
                steps[-1] = dataclasses.replace(steps[-1], latency=rng.choice((0.0, 0.1)))
        elif kind == "change":
            project = rng.choice(sorted(present))
            choices = [i for i in range(COMPILES_PER_PROJECT) if i != present[project]]
            present[project] = rng.choice(choices)
            steps.append(Step("change", project, present[project]))
        elif kind == "add":
            project = rng.choice(absent)
            present[project] = rng.randrange(COMPILES_PER_PROJECT)
            steps.append(Step("add", project, present[project]))
        elif kind == "remove":
            project = rng.choice(sorted(present))
            del present[project]
            removed_since_prune = True
            steps.append(Step("remove", project))
        elif kind == "adoptable":
            steps.append(Step("adoptable", rng.choice(absent), rng.randrange(COMPILES_PER_PROJECT)))
        elif kind == "foreign":
            steps.append(Step("foreign", foreign))
            foreign += 1
        else:
            steps.append(Step("empty"))
    return Schedule(seed, projects, initial, tuple(steps))


@dataclass
class Slot:
    """The test's model of one project: its manifest and what should run on it."""

    project: int
    manifest: str | None = None  # compile id in the manifest; None: no manifest file
    # none: nothing runs; owned: created by the reconciler and recorded; adopted: recorded,
    # not created by it (released, never stopped, once its manifest goes); free: runs with
    # no record (unmanaged: never touched; adopted again if its manifest comes back).
    kind: str = "none"
    running: str | None = None  # compile id of the deployment that should run
    recorded: str | None = None  # compile id in the record's spec (owned and adopted)
    seeded: str | None = None  # deployId of an adoptable deployment the test seeded
    # The project's last deployment is one a prune stopped (nothing ran since), and whether
    # the store still holds that prune. Without it (state lost), a manifest for the project
    # is `drift` by design (DESIGN §11: a stop it cannot prove was its own is a person's,
    # never undone on a guess) until `apply --restart`; with it, the stop was this
    # reconciler's and a manifest that comes back is created.
    pruned: bool = False
    proof: bool = True
    creates: int = 0  # creates and stops the emulator should have committed: exactly once
    stops: int = 0

    @property
    def drifting(self) -> bool:
        return self.kind == "none" and self.pruned and not self.proof

    def __str__(self) -> str:
        drift = " (pruned, state lost since: drift)" if self.drifting else ""
        return (
            f"{self.project}: manifest {_short(self.manifest)}, {self.kind}{drift}, running "
            f"{_short(self.running)}, recorded {_short(self.recorded)}, creates {self.creates}, "
            f"stops {self.stops}"
        )


def _short(compile_: str | None) -> str:
    """`c0`, `c1`, ... for the compile ids of `compile_id`."""
    if compile_ is None:
        return "-"
    index = compile_.rpartition("-")[2]
    return f"c{int(index, 16) - 1}" if len(index) == 32 else repr(compile_)


@dataclass
class Campaign:
    emulator: Emulator
    tmp_path: Path
    schedule: Schedule
    world: World = field(init=False)
    slots: dict[int, Slot] = field(default_factory=dict)
    foreign: dict[str, int] = field(default_factory=dict)  # deployId -> project
    adopted_seeds: set[str] = field(default_factory=set)  # seeded ones that were adopted
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.world = World(self.emulator, self.tmp_path)
        for project in self.schedule.projects:
            self.emulator.add_project(project, name=f"p{project}")
            self.emulator.add_node(node_for(project))
            for index in range(COMPILES_PER_PROJECT):
                self.emulator.add_compile(project, compile_id(project, index))
            self.slots[project] = Slot(project)
        for project in self.schedule.initial:
            self.write(project, 0)

    # ---- the schedule ------------------------------------------------------------------------

    def execute(self) -> None:
        number = 0
        try:
            for number, step in enumerate(self.schedule.steps, 1):
                self.log.append(f"-- step {number}: {step}")
                self.do(step)
            number = len(self.schedule.steps) + 1
            self.log.append(f"-- step {number}: final")
            self.converge()
        except (AssertionError, subprocess.TimeoutExpired) as error:
            seed = self.schedule.seed
            test = "test_campaign" if seed in CAMPAIGN_SEEDS else "test_schedule"
            marker = " -m campaign" if seed in CAMPAIGN_SEEDS else ""
            raise AssertionError(
                f"seed {seed} failed at step {number}: {error}\n"
                f"reproduce: pytest{marker} 'tests/test_day2_campaign.py::{test}[seed_{seed}]'\n"
                f"schedule:\n{self.schedule.describe(number)}\n"
                "model:\n" + "\n".join(f"  {slot}" for slot in self.slots.values()) + "\n"
                "runs:\n" + "\n".join(self.log[-60:])
            ) from error

    def do(self, step: Step) -> None:
        if step.kind in ("add", "change"):
            self.write(step.project, step.compile)
        elif step.kind == "remove":
            self.world.remove(step.project)
            self.slots[step.project].manifest = None
        elif step.kind == "adoptable":
            self.seed_adoptable(step)
        elif step.kind == "foreign":
            self.emulator.add_project(step.project, name=f"foreign{step.project}")
            self.emulator.add_node(node_for(step.project))
            deploy_id = self.emulator.add_live(
                step.project, node_for(step.project), {"id": "QuantConnectBrokerage"}
            )
            self.foreign[deploy_id] = step.project
        elif step.kind == "empty":
            self.empty_set()
        elif step.fault:
            self.faulted_run(step)
            self.clean_run(step.prune, step.concurrency)
        else:
            self.clean_run(step.prune, step.concurrency)

    def write(self, project: int, index: int) -> None:
        self.slots[project].manifest = compile_id(project, index)
        self.world.write(project, compile_id=compile_id(project, index))

    def seed_adoptable(self, step: Step) -> None:
        slot = self.slots[step.project]
        if slot.manifest is not None or slot.kind != "none":
            self.log.append(f"   skipped: project {step.project} is not free")
            return
        slot.seeded = self.emulator.add_live(
            step.project,
            node_for(step.project),
            {"id": "QuantConnectBrokerage"},
            compile_id=compile_id(step.project, step.compile),
        )
        slot.kind, slot.running = "free", compile_id(step.project, step.compile)
        slot.pruned = False

    def converge(self) -> None:
        """Up to FINAL_RUNS clean runs until `plan --detailed-exitcode` says no changes.

        The model says whether the first is needed: when it expects nothing to change,
        the plan comes first (and must then agree).
        """
        runs = 0
        restart = [p for p, s in self.slots.items() if s.drifting and s.manifest is not None]
        if any(self.planned(prune=True)) or restart:
            self.clean_run(prune=True, concurrency=8, restart=restart)
            runs += 1
        while True:
            plan = self.cli("plan", str(self.world.root), "--detailed-exitcode")
            if plan.returncode == 0:
                break
            assert plan.returncode == 2, f"plan exited {plan.returncode}"
            assert runs < FINAL_RUNS, f"no convergence after {FINAL_RUNS} clean runs"
            self.clean_run(prune=True, concurrency=8)
            runs += 1
        assert not any(self.planned(prune=True)), "plan says no changes; the model disagrees"
        self.settle(prune=True)  # adoptions and releases only, if anything
        self.check_live()

    # ---- runs ----------------------------------------------------------------------------------

    def apply_args(self, prune: bool, concurrency: int, restart: Sequence[int] = ()) -> list[str]:
        args = ["apply", str(self.world.root), "--yes", "--concurrency", str(concurrency)]
        args += [f"--restart=d{project}" for project in restart]
        return [*args, "--prune"] if prune else args

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.world.run(*args)  # asserts no traceback
        self.note(" ".join(args[:1] + args[2:]), result.returncode, result.stdout, result.stderr)
        return result

    def note(self, what: str, code: int | None, stdout: str, stderr: str) -> None:
        lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
        elapsed = time.monotonic() - self.started
        self.log.append(f"   $ reconciler {what} -> exit {code} (at {elapsed:.2f}s)")
        self.log.extend(f"     | {line}" for line in lines[-12:])

    def clean_run(self, prune: bool, concurrency: int, restart: Sequence[int] = ()) -> None:
        before = self.counts()
        self.mark_adoptions()
        expected = self.settle(prune, restart)
        args = self.apply_args(prune, concurrency, restart)
        result = until_landed(lambda: self.cli(*args))
        assert result.returncode == expected, f"clean run exited {result.returncode}"
        if expected == 1:  # the interlock: nothing stopped, nothing created
            assert "no manifests were found" in result.stdout
            assert self.counts() == before, "the interlock let a create or a stop through"
        self.check_safe()
        self.check_live()

    def empty_set(self) -> None:
        saved = {p: s.manifest for p, s in self.slots.items() if s.manifest is not None}
        for project in saved:
            self.world.remove(project)
            self.slots[project].manifest = None
        self.clean_run(prune=True, concurrency=8)
        for project, compile_ in saved.items():
            self.slots[project].manifest = compile_
            self.world.write(project, compile_id=compile_)

    def faulted_run(self, step: Step) -> None:
        self.mark_adoptions()
        if step.fault == "lost-state":
            for suffix in ("", "-wal", "-shm"):
                (self.tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
            for slot in self.slots.values():
                slot.proof = False
                if slot.kind in ("owned", "adopted"):
                    slot.kind, slot.recorded = "free", None
            self.mark_adoptions()
        elif step.fault == "create-drop":
            self.emulator.inject("live/create", drop=1)
        elif step.fault == "create-5xx":
            self.emulator.inject("live/create", fail=1, status=step.status)
        elif step.fault == "create-429":
            self.emulator.inject("live/create", ratelimit=1, retry_after=0.2)
        elif step.fault == "stop-5xx":
            self.emulator.inject("live/update/stop", fail=1, status=step.status)
        elif step.fault == "stop-drop":
            self.emulator.inject("live/update/stop", drop=1)
        args = self.apply_args(step.prune, step.concurrency)
        if step.fault == "kill9":
            # A create it stamped can land for at most 1 + 3 + 1 s after (issue 23): the
            # clean run after it waits that long for a create stamped but never sent.
            args = [*args, "--api-timeout", "1"]
            self.killed_run(step, args)
        elif step.fault == "two-runners":
            if step.latency:
                self.emulator.inject("live/create", latency=step.latency)
            with contextlib.ExitStack() as stack:
                procs = [self.spawn(stack, args) for _ in range(2)]
                for proc in procs:
                    stdout, stderr = proc.communicate(timeout=90)
                    what = f"{' '.join(args[:1] + args[2:])} (one of two)"
                    self.note(what, proc.returncode, stdout, stderr)
                    self.check_output(proc.returncode, stdout, stderr)
        else:
            result = self.cli(*args)
            assert result.returncode in (0, 1), f"faulted run exited {result.returncode}"
        self.emulator.clear_faults()
        self.settle_in_flight()
        self.check_safe()

    def killed_run(self, step: Step, args: list[str]) -> None:
        """kill -9 once the emulator saw a stop or a create, with latency making a window."""
        stops_planned, creates_planned = self.planned(step.prune)
        on_stop = stops_planned and (step.pick < 0.5 or not creates_planned)
        self.emulator.inject("live/list" if on_stop else "live/create", latency=step.latency)
        stats = self.emulator.stats()
        creates, stops = len(stats["create_times"]), len(stats["stops"])
        with contextlib.ExitStack() as stack:
            proc = self.spawn(stack, args)
            deadline = time.monotonic() + WAIT
            while proc.poll() is None:
                stats = self.emulator.stats()
                if len(stats["stops"]) > stops or len(stats["create_times"]) > creates:
                    time.sleep(step.delay)
                    proc.kill()
                    break
                assert time.monotonic() < deadline, "the kill window never opened"
                time.sleep(0.005)
            stdout, stderr = proc.communicate(timeout=30)
        self.note(f"{' '.join(args[:1] + args[2:])} (kill -9)", proc.returncode, stdout, stderr)
        assert "Traceback" not in stdout + stderr, stderr
        if proc.returncode != -signal.SIGKILL:
            self.check_output(proc.returncode, stdout, stderr)

    def spawn(self, stack: contextlib.ExitStack, args: list[str]) -> subprocess.Popen[str]:
        """`apply` in the background; killed (if still running) and reaped on leaving."""
        proc = stack.enter_context(self.world.popen(*args[3:]))  # after "apply DIR --yes"
        stack.callback(_kill_if_running, proc)
        return proc

    def check_output(self, code: int | None, stdout: str, stderr: str) -> None:
        assert "Traceback" not in stdout + stderr, stderr
        assert code in (0, 1), f"faulted run exited {code}: {stderr[-2000:]}"

    def settle_in_flight(self) -> None:
        """Wait until every request a killed run left in flight has landed server-side."""
        deadline = time.monotonic() + WAIT
        last: dict[str, Any] = {}
        while True:
            time.sleep(0.05)
            stats = self.emulator.stats()
            received = len(stats["create_times"])
            answered = stats["calls"].get("live/create", {}).get("total", 0)
            if answered >= received and stats["calls"] == last:
                return
            last = stats["calls"]
            assert time.monotonic() < deadline, "requests still in flight"

    # ---- the model -----------------------------------------------------------------------------

    def planned(self, prune: bool) -> tuple[bool, bool]:
        """(stops, creates) the next run should send, from the model."""
        stops = creates = False
        for s in self.slots.values():
            if s.manifest is not None and s.kind == "none" and not s.drifting:
                creates = True
            elif s.manifest is not None and s.kind != "free" and s.recorded != s.manifest:
                stops = creates = True
            elif s.manifest is None and s.kind == "owned" and prune:
                stops = True
        return stops, creates

    def mark_adoptions(self) -> None:
        """Seeded deployments a run may adopt (and a later replace then stop)."""
        for slot in self.slots.values():
            if slot.seeded and slot.manifest is not None and slot.kind == "free":
                self.adopted_seeds.add(slot.seeded)

    def settle(self, prune: bool, restart: Sequence[int] = ()) -> int:
        """What a clean run does to the model; returns the exit status it should have."""
        slots = self.slots.values()
        if all(s.manifest is None for s in slots) and any(s.kind == "owned" for s in slots):
            return 1  # the interlock: no manifests while deployments we created run
        for s in slots:
            if s.manifest is not None:
                if s.kind == "none" and s.drifting and s.project not in restart:
                    pass  # drift: reported, exit 0, nothing started on a guess
                elif s.kind == "none":
                    s.kind, s.running, s.recorded = "owned", s.manifest, s.manifest
                    s.creates += 1
                    s.pruned = False
                elif s.kind == "free":
                    s.kind, s.recorded = "adopted", s.manifest
                elif s.recorded != s.manifest:  # a replace: stop, then create
                    s.kind, s.running, s.recorded = "owned", s.manifest, s.manifest
                    s.creates += 1
                    s.stops += 1
            elif s.kind == "owned" and prune:
                s.kind, s.running, s.recorded = "none", None, None
                s.stops += 1
                s.pruned, s.proof = True, True
            elif s.kind == "adopted":  # released: keeps running, unmanaged
                s.kind, s.recorded = "free", None
        return 0

    # ---- checks --------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        stats = self.emulator.stats()
        return len(stats["created"]), len(stats["stops"])

    def check_safe(self) -> None:
        """The invariants, from the emulator's own records, after every run."""
        assert_safe(self.emulator, frozenset(self.adopted_seeds))
        stats = self.emulator.stats()
        assert stats["rejections"]["other"] == 0, (stats["rejections"], stats["rejected"])
        for stop in stats["stops"]:
            assert stop["deployId"] not in self.foreign, f"a foreign deployment stopped: {stop}"
            assert stop["status"] == "Stopped", stop
        for deploy_id, project in self.foreign.items():
            running = [d["deployId"] for d in self.emulator.active_deployments(project)]
            assert running == [deploy_id], f"foreign {deploy_id} on {project}: {running}"

    def check_live(self) -> None:
        """Live state equals the model, every create and stop committed exactly once."""
        compiles = {d["deployId"]: d["compileId"] for d in list(self.emulator.world.deployments)}
        stats = self.emulator.stats()
        for slot in self.slots.values():
            project = slot.project
            running = [compiles[d["deployId"]] for d in self.emulator.active_deployments(project)]
            expected = [slot.running] if slot.running else []
            assert running == expected, (
                f"project {project} runs {list(map(_short, running))}, "
                f"not {list(map(_short, expected))}"
            )
            committed = self.emulator.creates_committed(project)
            assert committed == slot.creates, (
                f"project {project}: {committed} creates committed, not {slot.creates}"
            )
            stopped = sum(1 for s in stats["stops"] if s["projectId"] == project)
            assert stopped == slot.stops, f"project {project}: {stopped} stops, not {slot.stops}"


def _kill_if_running(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()


def run_schedule(emulator: Emulator, tmp_path: Path, seed: int) -> None:
    Campaign(emulator, tmp_path, make_schedule(seed)).execute()


def _seeds(seeds: range, *marks: pytest.MarkDecorator) -> list[Any]:
    return [pytest.param(seed, id=f"seed_{seed}", marks=list(marks)) for seed in seeds]


@pytest.mark.parametrize("seed", _seeds(DEFAULT_SEEDS))
def test_schedule(emulator: Emulator, tmp_path: Path, seed: int) -> None:
    run_schedule(emulator, tmp_path, seed)


@pytest.mark.parametrize("seed", _seeds(CAMPAIGN_SEEDS, pytest.mark.campaign))
def test_campaign(emulator: Emulator, tmp_path: Path, seed: int) -> None:
    run_schedule(emulator, tmp_path, seed)


def test_schedules_are_reproducible_and_cover_every_step_and_fault() -> None:
    """The generator is a function of the seed, and the default seeds draw every kind."""
    assert make_schedule(7) == make_schedule(7)
    drawn = [step for seed in DEFAULT_SEEDS for step in make_schedule(seed).steps]
    assert all(4 <= len(make_schedule(seed).steps) <= 8 for seed in DEFAULT_SEEDS)
    kinds = {step.kind for step in drawn}
    assert {"add", "change", "remove", "run"} <= kinds
    campaign = [step for seed in CAMPAIGN_SEEDS for step in make_schedule(seed).steps]
    assert {step.fault for step in campaign if step.kind == "run"} == set(FAULTS)
    assert {step.kind for step in campaign} == {
        "add", "change", "remove", "run", "empty", "foreign", "adoptable",
    }  # fmt: skip
