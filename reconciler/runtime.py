"""Wiring for the commands that talk to the API: client, state store, engine, sandbox."""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from reconciler.client import Credentials, Observer, QuantConnectClient, resolve_api_url
from reconciler.engine import Engine, EngineOptions, load_desired
from reconciler.model import Deployment, LiveDeployment
from reconciler.state import (
    StateStore,
    manifest_cache_path,
    open_store,
    state_path,
    workspace_name,
)


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


def state_location(args: argparse.Namespace) -> str:
    """The state database a command uses: `--state`/RECONCILER_STATE, the sandbox's, or the
    default."""
    if args.state:
        return str(args.state)
    if getattr(args, "sandbox", False):
        from reconciler.sandbox import SANDBOX_DIR

        return str(SANDBOX_DIR / "state.db")
    return state_path(None)


def workspace_of(args: argparse.Namespace) -> str:
    """`--workspace`, else RECONCILER_WORKSPACE, else `default` (a SQLite file holds one)."""
    return workspace_name(getattr(args, "workspace", None))


class LivePrefetch:
    """`/live/list` read in a thread, with a client of its own, while the caller parses.

    For read-only commands: apply reads live state under the state lock instead. Any
    error (missing credentials included) is raised by `result()`, so the manifests'
    problems are still reported first.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self._live: list[LiveDeployment] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._fetch, args=(args.api_url,), name="live-prefetch", daemon=True
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


def load_desired_for(args: argparse.Namespace, paths: Sequence[str]) -> list[Deployment]:
    """The validated manifests, unchanged files answered from the cache beside the state."""
    cache = manifest_cache_path(state_location(args), workspace_of(args))
    return load_desired(paths, cache_path=cache)


@contextlib.contextmanager
def connect(
    args: argparse.Namespace,
    desired: Sequence[Deployment] = (),
    *,
    concurrency: int = 8,
    observer: Observer | None = None,
) -> Iterator[Runtime]:
    """Client + store (+ the embedded emulator with --sandbox), closed on exit."""
    with contextlib.ExitStack() as stack:
        reseed: Callable[[Sequence[Deployment]], None] = _nothing
        if getattr(args, "sandbox", False):
            from reconciler.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox(desired))
            api_url, credentials = sandbox.api_url, sandbox.credentials
            reseed = sandbox.seed
        else:
            api_url = resolve_api_url(args.api_url)
            credentials = Credentials.from_env()
        store = open_store(state_location(args), workspace_of(args))
        stack.callback(store.close)
        client = stack.enter_context(
            QuantConnectClient(
                api_url, credentials, max_connections=max(concurrency, 4), observer=observer
            )
        )
        options = EngineOptions(
            concurrency=concurrency, secret_fallback=bool(getattr(args, "sandbox", False))
        )
        engine = Engine(client, store, options)
        yield Runtime(client, store, engine, bool(args.sandbox), api_url, reseed)
