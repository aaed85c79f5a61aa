"""`--sandbox`: the embedded emulator, persisted under `.reconciler/sandbox/`.

The emulator is seeded from the manifests being applied, so that the projects, nodes and
builds they reference exist and `reconciler apply --sandbox` deploys them end to end.
Credentials are generated once and kept (mode 0600) beside the emulator's data, so a
second run talks to the same account and reports no changes.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from reconciler.client import Credentials
from reconciler.emulator import Emulator
from reconciler.errors import ConfigError
from reconciler.model import Deployment

SANDBOX_DIR = Path(".reconciler/sandbox")


def sandbox_credentials(directory: Path = SANDBOX_DIR) -> Credentials:
    path = directory / "credentials.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(str(data["userId"]), str(data["token"]))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"sandbox credentials {path} are unreadable; delete {directory}"
        ) from None
    credentials = Credentials(str(secrets.randbelow(900_000) + 100_000), secrets.token_hex(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"userId": credentials.user_id, "token": credentials.token}, handle)
    return credentials


class Sandbox:
    """Context manager: a running emulator seeded for `desired`."""

    def __init__(self, desired: Sequence[Deployment] = (), directory: Path = SANDBOX_DIR) -> None:
        self.directory = directory
        self.desired = desired
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create sandbox directory {directory}: {error}") from None
        self.credentials = sandbox_credentials(directory)
        self._emulator = Emulator(
            user_id=self.credentials.user_id,
            token=self.credentials.token,
            data_dir=str(directory / "emulator"),
            compile_delay=0.2,
        )

    @property
    def api_url(self) -> str:
        return self._emulator.url

    def __enter__(self) -> Sandbox:
        self._emulator.start()
        try:
            self.seed(self.desired)
        except BaseException:
            self._emulator.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._emulator.stop()

    def seed(self, desired_set: Sequence[Deployment]) -> None:
        """Make the projects, nodes and builds the manifests reference exist."""
        emulator = self._emulator
        with emulator.batch():
            self._seed(emulator, desired_set)

    @staticmethod
    def _seed(emulator: Emulator, desired_set: Sequence[Deployment]) -> None:
        projects: set[int] = set()
        nodes: set[str] = set()
        for desired in desired_set:
            if desired.project_id not in projects and not emulator.has_project(desired.project_id):
                emulator.add_project(desired.project_id, name=desired.name)
            projects.add(desired.project_id)
            if desired.node_id not in nodes and not emulator.has_node(desired.node_id):
                emulator.add_node(desired.node_id, name=f"sandbox node for {desired.name}")
            nodes.add(desired.node_id)
            if desired.compile_id != "latest" and not emulator.has_compile(desired.compile_id):
                emulator.add_compile(desired.project_id, desired.compile_id, state="BuildSuccess")
