"""Wiring for the commands that talk to the API: client, state store, engine, sandbox."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from reconciler.client import Credentials, QuantConnectClient, resolve_api_url
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


@contextlib.contextmanager
def connect(
    args: argparse.Namespace,
    desired: Sequence[Deployment] = (),
    *,
    concurrency: int = 8,
) -> Iterator[Runtime]:
    """Client + store (+ the embedded emulator with --sandbox), closed on exit."""
    with contextlib.ExitStack() as stack:
        state_path = args.state
        if getattr(args, "sandbox", False):
            from reconciler.sandbox import Sandbox

            sandbox = stack.enter_context(Sandbox(desired))
            api_url, credentials = sandbox.api_url, sandbox.credentials
            state_path = state_path or sandbox.state_path
        else:
            api_url = resolve_api_url(args.api_url)
            credentials = Credentials.from_env()
        store = open_store(state_path)
        stack.callback(store.close)
        client = stack.enter_context(
            QuantConnectClient(api_url, credentials, max_connections=max(concurrency, 4))
        )
        options = EngineOptions(
            concurrency=concurrency, secret_fallback=bool(getattr(args, "sandbox", False))
        )
        yield Runtime(client, store, Engine(client, store, options), args.sandbox, api_url)
