"""Fixtures for the validate tests: each test runs in its own directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own working directory, so problems show short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
