"""Wiring for the commands that talk to the API: client, state store, engine, sandbox."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from reconciler.client import Credentials, Observer, QuantConnectClient, resolve_api_url
from reconciler.config import Connection, GitSource
from reconciler.engine import Engine, EngineOptions
from reconciler.model import Deployment, LiveDeployment
from reconciler.sources import DesiredSet, files
from reconciler.state import StateStore, manifest_cache_path, open_store

# Seconds an API call's answer is awaited (`--api-timeout`), and at most to connect.
API_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0


@dataclass
class Runtime:
    client: QuantConnectClient
    store: StateStore
    engine: Engine
    sandbox: bool
    api_url: str
    reseed: Callable[[Sequence[Deployment]], None]

    def prepare(self, desired: Sequence[Deployment]) -> None:
        """Before planning `desired`: in the sandbox, make what it references exist."""
        self.reseed(desired)


def _nothing(_: Sequence[Deployment]) -> None:
    return None


class LivePrefetch:
    """`/live/list` read in a thread, with a client of its own, while the caller parses.

    For read-only commands: apply reads live state under the state lock instead. Any
    error (missing credentials included) is raised by `result()`, so the manifests'
    problems are still reported first.
    """

    def __init__(self, api_url: str | None) -> None:
        self._live: list[LiveDeployment] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._fetch, args=(api_url,), name="live-prefetch", daemon=True
        )
        self._thread.start()

    def _fetch(self, api_url: str | None) -> None:
        try:
            credentials = Credentials.from_env()
            with QuantConnectClient(resolve_api_url(api_url), credentials) as client:
                self._live = client.list_live()
        except BaseException as error:  # handed to the caller's thread
            self._error = error

    def result(self) -> list[LiveDeployment]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._live


def read_desired(connection: Connection, source: GitSource, paths: Sequence[str]) -> DesiredSet:
    """The validated manifests with their revision: from the git source at one commit, or
    from the local disk (unchanged files answered from the cache beside the state; the
    revision is the work tree's HEAD, when the paths lie in one)."""
    if source.git:
        from reconciler.sources import git

        return git.read_once(
            source.git,
            paths,
            ref=source.ref,
            revision=source.revision,
            allowed_signers=source.verify_signatures,
        )
    from reconciler.sources.git import WorkTreeProbe

    probe = WorkTreeProbe(paths)  # git answers while the manifests are parsed
    cache = manifest_cache_path(connection.state_location, connection.workspace_name)
    desired = files.read(paths, cache_path=cache)
    return dataclasses.replace(desired, revision=probe.result())


@contextlib.contextmanager
def connect(
    connection: Connection,
    desired: Sequence[Deployment] = (),
    *,
    concurrency: int = 8,
    observer: Observer | None = None,
) -> Iterator[Runtime]:
    """Client + store (+ the embedded emulator with --sandbox), closed on exit."""
    with contextlib.ExitStack() as stack:
        reseed: Callable[[Sequence[Deployment]], None] = _nothing
        if connection.sandbox:
            from reconciler.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox(desired))
            api_url, credentials = sandbox.api_url, sandbox.credentials
            reseed = sandbox.seed
        else:
            api_url = resolve_api_url(connection.api_url)
            credentials = Credentials.from_env()
        store = open_store(connection.state_location, connection.workspace_name)
        stack.callback(store.close)
        read_timeout = connection.api_timeout or API_TIMEOUT
        client = stack.enter_context(
            QuantConnectClient(
                api_url,
                credentials,
                read_timeout=read_timeout,
                connect_timeout=min(CONNECT_TIMEOUT, read_timeout),
                max_connections=max(concurrency, 4),
                observer=observer,
            )
        )
        options = EngineOptions(concurrency=concurrency, secret_fallback=connection.sandbox)
        engine = Engine(client, store, options)
        yield Runtime(client, store, engine, connection.sandbox, api_url, reseed)
