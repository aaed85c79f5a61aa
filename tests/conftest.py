"""Shared fixtures: a real emulator on loopback, and a client for it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.client import Credentials, QuantConnectClient
from reconciler.emulator import Emulator

LIVE_NODE = "LN-" + "a" * 32
OTHER_NODE = "LN-" + "b" * 32


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(compile_delay=0.0)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def client(emulator: Emulator) -> Iterator[QuantConnectClient]:
    with QuantConnectClient(
        emulator.url,
        Credentials(emulator.user_id, emulator.token),
        read_timeout=5.0,
        backoff=0.05,
    ) as c:
        yield c


def cli_env(emulator: Emulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a `reconciler` subprocess pointed at the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QC_", "RECONCILER_"))}
    env.update(
        QC_USER_ID=emulator.user_id,
        QC_API_TOKEN=emulator.token,
        QC_API_URL=emulator.url,
        RECONCILER_STATE=str(tmp_path / "state.db"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


RECONCILER = [sys.executable, "-m", "reconciler"]
