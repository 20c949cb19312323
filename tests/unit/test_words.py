"""What the CLI prints for people: counts with the right noun, progress that never shows
more done than its total, and --help without "[default: None]" anywhere."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from rich.console import Console
from typer.testing import CliRunner

from twofold.cli.app import COMMANDS, app, load_command
from twofold.cli.render import RichProgress
from twofold.core.text import human_bytes, plural

runner = CliRunner()


def test_plural() -> None:
    assert plural(1, "file") == "1 file"
    assert plural(0, "file") == "0 files"
    assert plural(2, "copy", "copies") == "2 copies"
    assert plural(1, "copy", "copies") == "1 copy"
    assert plural(12_345, "entry", "entries") == "12,345 entries"
    assert plural(1000, "run", sep="") == "1000 runs"
    assert human_bytes(999) == "999 B" and human_bytes(1_500_000) == "1.5 MB"


def test_progress_never_shows_more_done_than_total() -> None:
    sink = RichProgress(Console(file=io.StringIO(), force_terminal=False))
    sink.phase("copying", total_files=5, total_bytes=100)
    for _ in range(12):
        sink.advance(files=1, nbytes=20)
    assert sink._files_text() == "12/12 files"
    task = sink.bar.tasks[0]
    assert task.total is not None and task.completed <= task.total == 240
    sink.phase("checking", total_files=1)
    sink.advance(files=1)
    assert sink._files_text() == "1/1 file"
    sink.phase("scanning")
    sink.advance(files=1)
    assert sink._files_text() == "1 entry"
    sink.finish()


def test_live_progress_never_shows_more_done_than_total(tmp_path: Path) -> None:
    from twofold.jobs.live import LiveProgress

    live = LiveProgress(tmp_path, "docs", "backup", "Backup docs")
    live.phase("copying", total_files=5, total_bytes=100)
    for _ in range(12):
        live.advance(files=1, nbytes=20)
    assert (live.item.files, live.item.total_files) == (12, 12)
    assert (live.item.bytes, live.item.total_bytes) == (240, 240)


def _all_commands() -> list[list[str]]:
    found: list[list[str]] = []
    for name in COMMANDS:
        command = load_command(name)
        found.append([name])
        if isinstance(command, click.Group):
            found += [[name, sub] for sub in command.commands]
    return found


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_help_has_no_default_none(path: list[str]) -> None:
    got = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert got.exit_code == 0, got.output
    text = " ".join(got.output.replace("│", " ").split())
    assert "default: None" not in text, text


def test_real_defaults_are_still_shown() -> None:
    got = runner.invoke(app, ["image", "create", "--help"], env={"COLUMNS": "200"})
    assert "[default: balanced]" in " ".join(got.output.replace("│", " ").split())


def test_summaries_say_1_file(tmp_path: Path) -> None:
    src = tmp_path / "Docs"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    target = tmp_path / "drive"
    target.mkdir()
    got = runner.invoke(app, ["backup", str(src), "--to", str(target)])
    assert got.exit_code == 0 and "1 file," in got.output, got.output
    got = runner.invoke(app, ["verify", "--from", str(target)])
    assert got.exit_code == 0 and "Verified 1 copy," in got.output, got.output

