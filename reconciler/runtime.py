"""Wiring for the commands that talk to the API: client, state store, engine, sandbox."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from reconciler.client import Credentials, Observer, QuantConnectClient, resolve_api_url
from reconciler.engine import Engine, EngineOptions
from reconciler.model import Deployment
from reconciler.state import SqliteStateStore, open_store


@dataclass
class Runtime:
    client: QuantConnectClient
    store: SqliteStateStore
    engine: Engine
    sandbox: bool
    api_url: str
    reseed: Callable[[Sequence[Deployment]], None]

    def prepare(self, desired: Sequence[Deployment]) -> None:
        """Before planning `desired`: in the sandbox, make what it references exist."""
        self.reseed(desired)


def _nothing(_: Sequence[Deployment]) -> None:
    return None


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
        state_path = args.state
        reseed: Callable[[Sequence[Deployment]], None] = _nothing
        if getattr(args, "sandbox", False):
            from reconciler.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox(desired))
            api_url, credentials = sandbox.api_url, sandbox.credentials
            state_path = state_path or sandbox.state_path
            reseed = sandbox.seed
        else:
            api_url = resolve_api_url(args.api_url)
            credentials = Credentials.from_env()
        store = open_store(state_path)
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
