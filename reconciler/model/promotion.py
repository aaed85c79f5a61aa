"""Paper first (DESIGN §17): a live manifest's promotion rule, the candidates its paper
twin offers, and the code digest that names "the same code" in two projects."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*%$")
MIN_SAMPLES = 3  # a pass needs at least this many samples, spread over the soak


def duration(text: str) -> float:
    """`10s`, `30m`, `48h`, `2d` in seconds (ValueError otherwise)."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration (a number and s, m, h or d: 10s, 48h, 2d)")
    return float(found.group(1)) * _UNITS[found.group(2)]


def fraction(value: Any) -> float:
    """`5%`, `"0.05"` or 0.05 as the fraction 0.05 (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a percentage or a fraction")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        percent = _PERCENT.match(text)
        try:
            number = float(percent.group(1)) / 100 if percent else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage (5%) or a fraction (0.05)") from None
    if not 0 < number < 1:
        raise ValueError(f"{value!r} is not between 0 and 100% (a drawdown)")
    return number


def code_digest(files: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over a project's files, sorted by name: the identity of "the same code" in
    the paper project and its live twin (`/files/read`)."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        for part in (name, content):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return "sha256:" + digest.hexdigest()


def short_digest(digest: str | None) -> str:
    """`a1b2c3d4e5f6` (12 hex digits), or `-`."""
    return digest.removeprefix("sha256:")[:12] if digest else "-"


@dataclass(frozen=True)
class Promotion:
    """A live manifest's `spec.promotion`."""

    source: str  # `from`: the paper manifest's name
    soak: float  # seconds on paper
    sessions: int = 0  # closes of `calendar` it must live through
    calendar: str | None = None
    max_drawdown: float | None = None  # a fraction of the paper equity's peak
    approval: str = "auto"  # auto | manual

    @classmethod
    def from_spec(cls, data: Mapping[str, Any]) -> Promotion:
        drawdown = data.get("maxDrawdown")
        return cls(
            source=str(data["from"]),
            soak=duration(str(data["soak"])),
            sessions=int(data.get("sessions", 0)),
            calendar=data.get("calendar"),
            max_drawdown=None if drawdown is None else fraction(drawdown),
            approval=str(data.get("approval", "auto")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "soak": self.soak,
            "sessions": self.sessions,
            "calendar": self.calendar,
            "maxDrawdown": self.max_drawdown,
            "approval": self.approval,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Promotion:
        return cls(
            str(data["from"]),
            float(data["soak"]),
            int(data.get("sessions") or 0),
            data.get("calendar"),
            data.get("maxDrawdown"),
            str(data.get("approval") or "auto"),
        )


class Verdict(StrEnum):
    SOAKING = "soaking"
    PASSED = "passed"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        """It stays with its code: code that failed or was rejected is never promoted, and
        code that passed stays passed."""
        return self is not Verdict.SOAKING


@dataclass(frozen=True)
class Candidate:
    """One paper digest offered to a live manifest, with its evidence."""

    name: str  # the live manifest's
    digest: str
    source: str  # the paper manifest's name
    paper_deploy_id: str  # the paper deployment that runs it
    started_at: float  # when the paper deployment's create returned: the soak's start
    rule: Promotion  # the rule it was last judged by
    samples: tuple[tuple[float, float], ...] = ()  # (time, equity) while Running
    verdict: Verdict = Verdict.SOAKING
    since: float = 0.0  # when the verdict was reached (the start, for soaking)
    reason: str = ""
    approved_at: float | None = None  # `promotion approve`, for approval: manual
    seen_at: float = 0.0  # when its code last ran on paper (the current one: the latest)

    @property
    def max_drawdown(self) -> float:
        """The deepest fall of the equity from its running peak, as a fraction."""
        peak, deepest = 0.0, 0.0
        for _, equity in self.samples:
            peak = max(peak, equity)
            if peak > 0:
                deepest = max(deepest, (peak - equity) / peak)
        return deepest

    @property
    def promotable(self) -> bool:
        """It may run on the live project: passed (and approved, when approval is manual)."""
        return self.verdict is Verdict.PASSED and (
            self.rule.approval != "manual" or self.approved_at is not None
        )

    def decided(self, verdict: Verdict, reason: str, at: float) -> Candidate:
        return dataclasses.replace(self, verdict=verdict, reason=reason, since=at)

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "paperDeployId": self.paper_deploy_id,
                "startedAt": self.started_at,
                "rule": self.rule.to_json(),
                "samples": [list(sample) for sample in self.samples],
                "verdict": self.verdict.value,
                "since": self.since,
                "reason": self.reason,
                "approvedAt": self.approved_at,
                "seenAt": self.seen_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, name: str, digest: str, text: str) -> Candidate:
        data = json.loads(text)
        return cls(
            name=name,
            digest=digest,
            source=str(data["source"]),
            paper_deploy_id=str(data["paperDeployId"]),
            started_at=float(data["startedAt"]),
            rule=Promotion.from_json(data["rule"]),
            samples=tuple((float(t), float(e)) for t, e in data.get("samples") or ()),
            verdict=Verdict(data.get("verdict") or "soaking"),
            since=float(data.get("since") or 0.0),
            reason=str(data.get("reason") or ""),
            approved_at=data.get("approvedAt"),
            seen_at=float(data.get("seenAt") or 0.0),
        )


def current(candidates: Iterable[Candidate]) -> Candidate | None:
    """The candidate whose code the paper deployment runs (or last ran): the latest seen."""
    return max(candidates, key=lambda c: (c.seen_at, c.started_at), default=None)


@dataclass(frozen=True)
class Paper:
    """The paper twin as one reconcile read it: its latest deployment on its project."""

    deploy_id: str
    status: str
    cause: str  # running | failed | stopped | exited (LiveDeployment.cause)
    error: str = ""
    digest: str | None = None  # the code it runs, as recorded at its create
    started_at: float | None = None  # when its create returned (the record's)
    equity: float | None = None  # `/live/read` runtimeStatistics.Equity, while Running
    untracked: str = ""  # why its code is not known (started before promotion tracked it)


@dataclass(frozen=True)
class Evidence:
    """What the promotion gate judges a live manifest by (read by the cycle)."""

    rule: Promotion
    candidates: tuple[Candidate, ...] = ()  # every digest offered so far, judged now
    live_code: str | None = None  # the live project's own files' digest, read now
    paper: Paper | None = None
    note: str = ""  # why nothing can be offered yet (no paper deployment, untracked code)

    @property
    def current(self) -> Candidate | None:
        return current(self.candidates)

    @property
    def target(self) -> str | None:
        """The digest to run live now: the current candidate, once promotable."""
        found = self.current
        return found.digest if found is not None and found.promotable else None

    @property
    def passed(self) -> frozenset[str]:
        """Every digest that may run live (passed; approved where approval is manual)."""
        return frozenset(c.digest for c in self.candidates if c.promotable)
