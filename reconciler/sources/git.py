"""The git source, and the revision of a work tree: the only module that runs `git`.

A repository is read through a bare mirror per URL under `.reconciler/git/` (env
RECONCILER_GIT_CACHE): each read fetches the ref, resolves it to one commit, and reads the
manifests of that commit from the object store (`ls-tree`, `cat-file --batch`), never from
a work tree, so a half-pulled tree is never read (DESIGN §15).

Every git call: no prompt (`GIT_TERMINAL_PROMPT=0`), a timeout, the URL after `--`.
Credentials: ssh uses the user's keys, agent and GIT_SSH_COMMAND; for https,
RECONCILER_GIT_TOKEN reaches git through an askpass helper that reads it from git's
environment, so it is never on a command line (`ps`), in a URL, in a log or in an error.
A URL with embedded credentials is refused with the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import os
import re
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from reconciler import manifests, validation
from reconciler.errors import ConfigError, ManifestError, ReconcilerError
from reconciler.policy.throttle import Throttle
from reconciler.sources import DesiredSet, Refresh, Revision, judged

TOKEN_ENV = "RECONCILER_GIT_TOKEN"
USERNAME_ENV = "RECONCILER_GIT_USERNAME"  # default x-access-token (GitHub; GitLab: oauth2)
CACHE_ENV = "RECONCILER_GIT_CACHE"
DEFAULT_CACHE = ".reconciler/git"
FETCH_TIMEOUT = 120.0  # seconds for a fetch
LOCAL_TIMEOUT = 30.0  # seconds for a call that reads the local repository
TARGET_REF = "refs/reconciler/target"  # where a fetch puts the commit it resolved
HOOK_QUIET = 0.1  # seconds without a new hook that end a burst of them
HOOK_BURST = 0.5  # ... and a burst is cut there anyway: a push waits no longer to be read
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class GitError(ReconcilerError):
    """A git call failed: the repository cannot be read (network, auth, a bad ref)."""


# ---- URLs --------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The URL if git may use it: https, ssh and file; http and git:// only to loopback;
    never with credentials in it."""
    if re.match(r"^[\w.-]+@[\w.-]+:", url) and "://" not in url:
        return url  # scp-like ssh: git@github.com:org/repo.git (the user is not a secret)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.password is not None or (scheme in ("https", "http") and parts.username):
        raise ConfigError(
            "the git URL carries credentials; give it without them (https://host/org/repo.git) "
            f"and put the token in {TOKEN_ENV}: a URL is shown in logs and in `ps`"
        )
    if scheme == "https" or scheme == "file" or scheme == "ssh":
        return url
    if scheme in ("http", "git"):
        if _loopback(parts.hostname or ""):
            return url
        raise ConfigError(
            f"refusing {scheme}:// to {parts.hostname}: it is not encrypted; use https:// or "
            "ssh (plain http and git:// only to loopback)"
        )
    if not scheme and url and not url.startswith("-"):
        return url  # a local path, as git itself takes it
    raise ConfigError(f"unsupported git URL {url!r}: use https://, ssh or file://")


def _scrubbed(text: str) -> str:
    token = os.environ.get(TOKEN_ENV)
    if token:
        text = text.replace(token, "***")
    return text


# ---- running git ---------------------------------------------------------------------------

_askpass_lock = threading.Lock()
_askpass_path: str | None = None


def _askpass() -> str:
    """A helper git runs for a username and a password: it prints the username and the
    token from its own environment (git passes it on), so the token is on no command line."""
    global _askpass_path
    with _askpass_lock:
        if _askpass_path is None or not os.path.exists(_askpass_path):
            directory = tempfile.mkdtemp(prefix="reconciler-askpass-")
            path = os.path.join(directory, "askpass")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(
                    "#!/bin/sh\n"
                    'case "$1" in\n'
                    f"  Username*) printf '%s\\n' \"${{{USERNAME_ENV}:-x-access-token}}\" ;;\n"
                    f"  *) printf '%s\\n' \"${TOKEN_ENV}\" ;;\n"
                    "esac\n"
                )
            os.chmod(path, stat.S_IRWXU)
            _askpass_path = path
        return _askpass_path


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    if env.get(TOKEN_ENV):
        env["GIT_ASKPASS"] = _askpass()
    return env


def git(
    *args: str,
    cwd: str | None = None,
    timeout: float = LOCAL_TIMEOUT,
    data: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """One git call, bounded; a failure is a GitError with git's own first line."""
    command = ["git"]
    if os.environ.get(TOKEN_ENV):
        # Only our askpass answers: no credential helper of the machine is asked or told.
        command += ["-c", "credential.helper="]
    try:
        done = subprocess.run(
            [*command, *args],
            cwd=cwd,
            input=data,
            capture_output=True,
            timeout=timeout,
            env=_environment(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError("the `git` command is not installed (git 2.34 or newer)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:g} s") from None
    if check and done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        fatal = [line for line in lines if line.startswith("fatal:")]
        why = (fatal or lines or [""])[-1]
        raise GitError(_scrubbed(f"git {args[0]} failed: {why or f'exit {done.returncode}'}"))
    return done


# ---- a work tree's revision ----------------------------------------------------------------


class WorkTreeProbe:
    """The revision of the work tree `paths` lie in, asked of git in the background: both
    git calls start at once and run while the caller parses the manifests (another core),
    and `result()` collects them.  Two git calls, whatever the number of manifests."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._calls: list[subprocess.Popen[bytes]] = []
        roots = [os.path.abspath(p) for p in paths if p != manifests.STDIN]
        try:
            base = os.path.commonpath(roots) if roots else ""
        except ValueError:
            base = ""
        if not base:
            return
        if not os.path.isdir(base):
            base = os.path.dirname(base)
        relative = [os.path.relpath(r, base) for r in roots]
        for args in (
            ("log", "-1", "--format=%H%x00%s", "HEAD"),
            ("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *relative),
        ):
            try:
                self._calls.append(
                    subprocess.Popen(
                        ["git", *args],
                        cwd=base,
                        env=_environment(),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                    )
                )
            except OSError:  # no git, or no such directory: no revision
                break

    def result(self) -> Revision | None:
        """HEAD's commit, `dirty` when a manifest file under the paths differs from it
        (modified, added, untracked); None outside a work tree or without git."""
        answers = []
        for call in self._calls:
            try:
                out, _ = call.communicate(timeout=LOCAL_TIMEOUT)
            except subprocess.TimeoutExpired:
                call.kill()
                call.communicate()
                return None
            answers.append((call.returncode, out))
        if len(answers) != 2 or answers[0][0] != 0:
            return None
        sha, _, subject = answers[0][1].decode(errors="replace").strip().partition("\x00")
        if not _SHA.match(sha):
            return None
        code, listing = answers[1]
        entries = [e for e in listing.decode(errors="replace").split("\x00") if len(e) > 3]
        dirty = code != 0 or any(e[3:].endswith(manifests.MANIFEST_SUFFIXES) for e in entries)
        return Revision("files", sha, dirty, subject=subject)


def work_tree_revision(paths: Sequence[str]) -> Revision | None:
    return WorkTreeProbe(paths).result()


# ---- a repository, through its bare mirror -------------------------------------------------


def cache_directory() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


class Mirror:
    """A bare mirror of one repository URL, fetched on demand."""

    def __init__(self, url: str, cache: Path | None = None) -> None:
        self.url = check_url(url)
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.url.rstrip("/").rsplit("/", 1)[-1])[:40]
        self.path = (cache or cache_directory()) / f"{name}-{digest}.git"

    def _git(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return git(*args, cwd=str(self.path), **kwargs)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One fetch into this mirror at a time, across processes (a daemon and a CI plan
        on one machine): git refuses concurrent ref updates."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if not (self.path / "HEAD").exists():
                    git("init", "--quiet", "--bare", "--", str(self.path))
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def fetch(self, ref: str | None) -> str:
        """Fetch `ref` (None: the remote's default branch) and resolve it to one commit."""
        with self._locked():
            self._git(
                "fetch", "--quiet", "--no-tags", "--force", "--no-write-fetch-head",
                "--", self.url, f"+{ref or 'HEAD'}:{TARGET_REF}",
                timeout=FETCH_TIMEOUT,
            )  # fmt: skip
            return self.resolve(TARGET_REF)

    def fetch_commit(self, sha: str) -> str:
        """Make sure the commit `sha` is in the mirror (fetching it by id if need be)."""
        with self._locked():
            if self._git("cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode != 0:
                self._git(
                    "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", self.url,
                    sha, timeout=FETCH_TIMEOUT,
                )  # fmt: skip
            return self.resolve(sha)

    def resolve(self, name: str) -> str:
        done = self._git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        sha = done.stdout.decode().strip()
        if done.returncode != 0 or not _SHA.match(sha):
            raise GitError(f"{name} is not a commit of {self.url}")
        return sha

    def subject(self, sha: str) -> str:
        return self._git("log", "-1", "--format=%s", sha).stdout.decode(errors="replace").strip()

    def descends(self, old: str, new: str) -> bool:
        """Whether `new` descends from `old` (False after a force push, or `old` unknown)."""
        done = self._git("merge-base", "--is-ancestor", old, new, check=False)
        return done.returncode == 0

    def verify(self, sha: str, allowed_signers: str) -> str | None:
        """None when `sha` carries an SSH signature by a key `allowed_signers` lists; else
        why not."""
        done = self._git(
            "-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
            "verify-commit", "--raw", sha, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return None
        text = done.stderr.decode(errors="replace")
        if "no signature" in text.lower() or not text.strip():
            return f"commit {sha[:12]} is not signed"
        return f"commit {sha[:12]} is not signed by a key of {allowed_signers}"

    def read(self, sha: str, paths: Sequence[str]) -> list[tuple[str, bytes]]:
        """(path, content) of every manifest under `paths` in commit `sha`: files whose
        name ends in .yaml/.yml, found recursively (a path naming a file: that file)."""
        wanted = [p.strip("/") or "." for p in paths]
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", sha, "--", *wanted)
        blobs: list[tuple[str, str]] = []
        for entry in listing.stdout.split(b"\x00"):
            if not entry:
                continue
            meta, _, name = entry.partition(b"\t")
            _mode, kind, blob = meta.decode().split()
            path = name.decode(errors="surrogateescape")
            named = path in wanted
            if kind == "blob" and (named or path.endswith(manifests.MANIFEST_SUFFIXES)):
                blobs.append((path, blob))
        if not blobs:
            return []
        batch = self._git(
            "cat-file", "--batch", data="".join(f"{blob}\n" for _, blob in blobs).encode()
        ).stdout
        out, at = [], 0
        for path, _blob in blobs:
            header_end = batch.index(b"\n", at)
            size = int(batch[at:header_end].split()[2])
            start = header_end + 1
            out.append((path, batch[start : start + size]))
            at = start + size + 1
        return sorted(out)


# ---- reading one commit --------------------------------------------------------------------


def read_commit(
    mirror: Mirror,
    sha: str,
    paths: Sequence[str],
    *,
    ref: str | None = None,
    allowed_signers: str | None = None,
) -> DesiredSet:
    """The desired set of commit `sha`: verified first (with `allowed_signers`), then every
    manifest validated, problems named `PATH@SHORTSHA:line:col`; any problem refuses the
    whole revision (ManifestError), an unverified commit too (VerifyError)."""
    if allowed_signers is not None:
        why = mirror.verify(sha, allowed_signers)
        if why is not None:
            raise VerifyError(f"{why}: it is never applied")
    short = sha[:12]
    contents = mirror.read(sha, paths)
    report = validation.validate_sources([(f"{path}@{short}", data) for path, data in contents])
    revision = Revision("git", sha, False, mirror.url, ref, mirror.subject(sha))
    return judged(report, revision)


def read_once(
    url: str,
    paths: Sequence[str],
    *,
    ref: str | None = None,
    revision: str | None = None,
    allowed_signers: str | None = None,
) -> DesiredSet:
    """plan/apply --git: fetch, resolve one commit (`revision`, else `ref`'s), read it."""
    mirror = Mirror(url)
    sha = mirror.fetch_commit(revision) if revision else mirror.fetch(ref)
    return read_commit(mirror, sha, paths, ref=ref, allowed_signers=allowed_signers)


class VerifyError(ReconcilerError):
    """A revision whose commit is unsigned or signed by a key not allowed."""


# ---- the daemon's git source -----------------------------------------------------------------

EventSink = Callable[[str, dict[str, object]], None]  # (event, fields): logged, notified


class GitFollower:
    """The daemon's view of a repository: fetched every `interval` seconds and whenever a
    webhook asks (`wake`), the newest valid, verified revision kept in force.

    A failed fetch keeps the last good revision (`git_fetch_failed` once per episode, the
    next try backed off up to `interval`); an invalid revision acts on nothing (its
    problems are reported, the last good one stays); an unverified one never applies
    (`verify_failed`); one that does not descend from the last applied revision (a force
    push) is reported (`history_rewritten`) and then reconciled like any other.
    """

    def __init__(
        self,
        url: str,
        paths: Sequence[str],
        *,
        ref: str | None = None,
        interval: float = 60.0,
        allowed_signers: str | None = None,
        on_event: EventSink | None = None,
        on_fetch: Callable[[bool], None] | None = None,
    ) -> None:
        self.mirror = Mirror(url)
        self.on_fetch = on_fetch or (lambda ok: None)
        self.paths = list(paths)
        self.ref = ref
        self.interval = interval
        self.allowed_signers = allowed_signers
        self.on_event = on_event or (lambda event, fields: None)
        self.wake = threading.Event()  # a hook asks for a fetch: one waits, a burst is one
        self.fetches = 0
        self.fetch_failures = 0
        self.last_fetch_success: float | None = None
        self.applied: str | None = None  # the revision the daemon last reconciled whole
        self._lock = threading.Lock()
        self._current: DesiredSet | None = None  # the newest good revision
        self._seen: str | None = None  # the newest commit looked at, good or not
        self._invalid: dict[str, tuple[str, ...]] = {}
        self._failing: str | None = None
        self._backoff = Throttle(base=1.0, cap=interval, jitter=(0.8, 1.2))

    @property
    def description(self) -> str:
        return f"{self.mirror.url}" + (f" ({self.ref})" if self.ref else "")

    def poll(self) -> bool:
        """One fetch; True when a new good revision is in force."""
        self.fetches += 1
        try:
            sha = self.mirror.fetch(self.ref)
        except GitError as error:
            self.fetch_failures += 1
            self.on_fetch(False)
            if self._failing is None:
                self.on_event("git_fetch_failed", {"url": self.mirror.url, "error": str(error)})
            self._failing = str(error)
            return False
        self.last_fetch_success = time.time()
        self.on_fetch(True)
        if self._failing is not None:
            self.on_event("git_fetch_recovered", {"url": self.mirror.url})
            self._failing = None
        if sha == self._seen:
            return False
        self._seen = sha
        return self._take(sha)

    def _take(self, sha: str) -> bool:
        try:
            desired = read_commit(
                self.mirror, sha, self.paths, ref=self.ref, allowed_signers=self.allowed_signers
            )
        except VerifyError as error:
            self.on_event("verify_failed", {"revision": sha, "error": str(error)})
            return False
        except ManifestError as error:
            problems = tuple(str(p) for p in error.problems)
            with self._lock:
                self._invalid = {f"{self.mirror.url}@{sha[:12]}": problems}
            self.on_event("invalid_revision", {"revision": sha, "problems": len(problems)})
            return False
        except GitError as error:
            self.on_event("git_fetch_failed", {"url": self.mirror.url, "error": str(error)})
            self._seen = None  # read again next time
            return False
        if self.applied is not None and not self.mirror.descends(self.applied, sha):
            self.on_event("history_rewritten", {"revision": sha, "previous": self.applied})
        with self._lock:
            self._current, self._invalid = desired, {}
        return True

    def current(self) -> DesiredSet:
        """The revision in force, with the problems of a newer one that was refused."""
        with self._lock:
            current, invalid = self._current, dict(self._invalid)
        if current is None:
            why = f": {self._failing}" if self._failing else ""
            raise GitError(f"no revision of {self.mirror.url} could be read yet{why}")
        return dataclasses.replace(current, invalid=invalid) if invalid else current

    # -- as the daemon's source ------------------------------------------------------

    def refresh(self, reread_all: bool = False) -> Refresh:
        """The revision in force, read whole: never partial, so never suspect."""
        return Refresh(self.current(), [], [], False)

    def reconciled(self, desired: DesiredSet) -> None:
        if desired.revision is not None:
            self.applied = desired.revision.sha

    def watch(self, stop: threading.Event, on_change: Callable[[], None]) -> None:
        """Fetch every `interval` seconds, and at once when woken, until `stop`;
        `on_change` after a new good revision came in force.  A failing fetch backs off
        (capped at `interval`)."""
        failures = 0
        skip = self.fetches > 0  # the daemon fetched once before its first reconcile
        while not stop.is_set():
            if not skip and self.poll():
                on_change()
            skip = False
            failures = failures + 1 if self._failing else 0
            deadline = time.monotonic() + (
                self._backoff.delay(failures) if failures else self.interval
            )
            # Short waits, so that a stop is seen within half a second.
            while not stop.is_set() and not self.wake.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wake.wait(timeout=min(remaining, 0.5))
            self._quiet()

    def _quiet(self) -> None:
        """After a wake, let a burst of hooks end (no new one for HOOK_QUIET seconds, at
        most HOOK_BURST in all): a burst is one fetch, and one more woken during it."""
        started = time.monotonic()
        while self.wake.is_set() and time.monotonic() - started < HOOK_BURST:
            self.wake.clear()
            self.wake.wait(timeout=HOOK_QUIET)
        self.wake.clear()
