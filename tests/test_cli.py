"""The CLI surface: help on every command, version, usage errors as argparse's."""

from __future__ import annotations

import subprocess

import pytest

from reconciler import cli
from tests.conftest import RECONCILER

COMMANDS = ["validate", "plan", "apply", "status", "watch", "emulator"]


def reconciler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RECONCILER, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = reconciler(command, "--help")
    assert result.returncode == 0
    assert f"usage: reconciler {command}" in result.stdout
    assert "--api-url" in result.stdout and "--state" in result.stdout


def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = reconciler("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "exit codes" in result.stdout and "QC_API_TOKEN" in result.stdout


def test_usage_errors_exit_2_like_argparse() -> None:
    result = reconciler("apply", "--concurrency", "0")
    assert result.returncode == 2 and "at least 1" in result.stderr
    result = reconciler("plan", "--format", "yaml")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert reconciler("frobnicate").returncode == 2


def test_global_options_before_or_after_the_command() -> None:
    before = reconciler("--api-url", "http://example.com/x", "status")
    after = reconciler("status", "--api-url", "http://example.com/x")
    for result in (before, after):
        assert result.returncode == 1
        assert "refusing plain http://" in result.stderr
        assert "Traceback" not in result.stderr


# ---- the parser of one command alone (start-up) -------------------------------------------

COMMAND_LINES = [
    ["validate"],
    ["validate", "deployments/", "-", "--format", "github", "--check-secrets"],
    ["--state", "plan", "plan", "--format", "markdown", "--detailed-exitcode"],
    ["--workspace=apply", "apply", "--yes", "--prune", "--replace", "a", "--replace", "b"],
    ["apply", "x/", "--wait", "0", "--format", "json", "--notify", "http://127.0.0.1:1/"],
    ["--api-url", "http://127.0.0.1:9/api/v2", "status", "--format", "json", "--sandbox"],
    ["watch", "--listen", "[::1]:9108", "--lease", "3", "--resync", "5", "--log-format", "json"],
    ["watch", "--metrics-port", "9000", "--state", "s.db"],
    ["state", "history", "n", "--limit", "3"],
    ["state", "copy", "--to", "postgresql://127.0.0.1/t", "--to-workspace", "w", "--force"],
    ["emulator", "--port", "5612", "--fault", "live/create:drop=1", "--startup-delay", "1"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_the_parser_of_one_command_parses_as_the_whole_parser(argv: list[str]) -> None:
    command = cli.named_command(argv)
    assert command is not None and command in argv
    alone = cli.build_parser(only=command).parse_args(argv)
    assert alone == cli.build_parser().parse_args(argv)
    assert alone.command == command


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-h", "validate"],
        ["--version", "plan"],
        ["--work", "plan", "apply"],  # an abbreviation: its value could be anything
        ["--", "validate"],
        ["frobnicate"],
        ["--state"],
    ],
    ids=" ".join,
)
def test_anything_less_plain_gets_the_whole_parser(argv: list[str]) -> None:
    assert cli.named_command(argv) is None


def test_the_global_options_that_take_a_value_are_the_ones_skipped() -> None:
    parser = cli.build_parser()
    takes_value = {
        option
        for action in parser._actions
        if action.nargs != 0 and action.option_strings
        for option in action.option_strings
    }
    assert takes_value == cli._GLOBAL_OPTIONS


@pytest.mark.parametrize("command", [*COMMANDS, "state"])
def test_help_of_one_command_is_the_same_alone(command: str) -> None:
    whole = cli.build_parser()._subparsers._group_actions[0].choices[command]
    alone = cli.build_parser(only=command)._subparsers._group_actions[0].choices
    assert list(alone) == [command]
    assert alone[command].format_help() == whole.format_help()
