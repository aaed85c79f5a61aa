"""The CLI surface: help on every command, version, usage errors as argparse's."""

from __future__ import annotations

import subprocess

import pytest

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
