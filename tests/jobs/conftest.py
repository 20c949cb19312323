"""Shared fixtures for the jobs tests: a config file, a private state folder, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app

Cli = Callable[..., tuple[int, str]]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state folder (TWOFOLD_STATE_DIR) and no desktop to notify."""
    path = tmp_path / "state"
    monkeypatch.setenv("TWOFOLD_STATE_DIR", str(path))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return path


@pytest.fixture
def cli(state: Path) -> Cli:
    """Run twofold in-process with a config text: cli(config_text, *args)."""
    runner = CliRunner()

    def run(config: str, *args: str) -> tuple[int, str]:
        cfg = state.parent / "config.toml"
        cfg.write_text(config)
        result = runner.invoke(app, ["--config", str(cfg), *args])
        return result.exit_code, result.output

    return run


def json_of(text: str) -> Any:
    """The JSON document in a command's output."""
    return json.loads(text[text.index("{"):] if text.lstrip()[:1] != "[" else text)
