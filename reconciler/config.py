"""Typed configuration of each command: what the CLI parsed, as values the rest speaks.

argparse stops at `cli.py`: it turns the command line into one of these (`for_command`),
and each `commands/<name>.run(config)` passes typed values down.  NamedTuples rather
than dataclasses: `reconciler validate` in a pre-commit hook loads this module, and a
dataclass would import `dataclasses` and `inspect` on that path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

Options = Mapping[str, Any]  # vars() of the parsed command line


class Connection(NamedTuple):
    """The global options: where the API and the state are."""

    api_url: str | None = None
    state: str | None = None
    workspace: str | None = None
    sandbox: bool = False
    api_timeout: float | None = None  # seconds an API answer is awaited (None: the default)

    @property
    def state_location(self) -> str:
        """`--state`/RECONCILER_STATE, the sandbox's, or the default."""
        if self.state:
            return self.state
        if self.sandbox:
            from reconciler.sandbox import SANDBOX_DIR

            return str(SANDBOX_DIR / "state.db")
        from reconciler.state import state_path

        return state_path(None)

    @property
    def workspace_name(self) -> str:
        """`--workspace`, else RECONCILER_WORKSPACE, else `default`."""
        from reconciler.state import workspace_name

        return workspace_name(self.workspace)


class ValidateConfig(NamedTuple):
    paths: Sequence[str]
    format: str = "text"
    check_secrets: bool = False


class GitSource(NamedTuple):
    """`--git URL` and its options (DESIGN §15); `url` None: the local disk."""

    git: str | None = None
    ref: str | None = None
    revision: str | None = None
    verify_signatures: str | None = None
    interval: float = 60.0
    hooks_listen: tuple[str, int] | None = None
    hook_secret_file: str | None = None


class PlanConfig(NamedTuple):
    connection: Connection
    source: GitSource
    paths: Sequence[str]
    format: str = "text"
    out: str | None = None
    detailed_exitcode: bool = False


class ApplyConfig(NamedTuple):
    connection: Connection
    source: GitSource
    paths: Sequence[str]
    plan: str | None = None
    yes: bool = False
    concurrency: int = 8
    prune: bool = False
    max_prunes: int = 5
    replace: Sequence[str] = ()
    restart: Sequence[str] = ()
    wait: float = 120.0
    format: str = "text"
    notify: Sequence[str] | None = None
    ignore_window: Sequence[str] = ()


class StatusConfig(NamedTuple):
    connection: Connection
    format: str = "text"


class WatchConfig(NamedTuple):
    connection: Connection
    source: GitSource
    paths: Sequence[str]
    resync: float = 60.0
    prune: bool = False
    prune_grace: float = 10.0
    listen: tuple[str, int] | None = None
    notify: Sequence[str] | None = None
    lease: float = 10.0
    log_format: str = "text"


class StateConfig(NamedTuple):
    connection: Connection
    state_command: str
    format: str = "text"
    name: str | None = None
    limit: int = 50
    force: bool = False
    to: str | None = None
    to_workspace: str | None = None


class WindowsConfig(NamedTuple):
    connection: Connection
    source: GitSource
    paths: Sequence[str]
    format: str = "text"


class PromotionConfig(NamedTuple):
    connection: Connection
    promotion_command: str
    name: str | None = None
    format: str = "text"


class EmulatorConfig(NamedTuple):
    host: str = "127.0.0.1"
    port: int = 0
    seed: str | None = None
    data: str | None = None
    compile_delay: float = 1.0
    startup_delay: float = 0.0
    fault: Sequence[str] = ()
    admin: Sequence[str] = ()
    sandbox: bool = False


_CONFIGS: dict[str, Any] = {
    "validate": ValidateConfig,
    "plan": PlanConfig,
    "apply": ApplyConfig,
    "status": StatusConfig,
    "watch": WatchConfig,
    "state": StateConfig,
    "windows": WindowsConfig,
    "promotion": PromotionConfig,
    "emulator": EmulatorConfig,
}


def _build(kind: Any, options: Options) -> Any:
    """`kind` (a NamedTuple class) from the options of the same names; a missing one
    takes the field's default."""
    values = {}
    for name in kind._fields:
        if name == "connection":
            values[name] = _build(Connection, options)
        elif name == "source":
            values[name] = _build(GitSource, options)
        elif name in options:
            values[name] = options[name]
    return kind(**values)


def for_command(command: str, options: Options) -> Any:
    """The typed configuration of `command` from the parsed command line."""
    return _build(_CONFIGS[command], options)
