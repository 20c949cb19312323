"""The CLI in-process: commands, JSON output, config sets and documented exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "Docs"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    (src / ".cache").mkdir()
    (src / ".cache" / "junk").write_text("junk")
    target = tmp_path / "drive"
    target.mkdir()
    return src, target


def test_backup_json_runs_history_verify(tree: tuple[Path, Path]) -> None:
    src, target = tree
    code, text = run("backup", str(src), "--to", str(target), "--json")
    assert code == 0, text
    data = json.loads(text)
    assert data["stats"]["new"] == 4 and data["run_id"] == 1  # Docs, a.txt, sub, sub/b.txt
    assert not (target / "twofold/default/current/Docs/.cache").exists()
    (src / "a.txt").write_text("alpha, edited")
    code, text = run("backup", str(src), "--to", str(target), "--json")
    assert json.loads(text)["stats"]["changed"] == 1
    code, text = run("runs", "--from", str(target), "--json")
    listed = json.loads(text)
    assert [r["state"] for r in listed["runs"]] == ["complete", "complete"]
    assert listed["target"]["symlinks"] is True and listed["target"]["fs_type"] != "unknown"
    code, text = run("history", "--from", str(target), "Docs/a.txt", "--json")
    versions = json.loads(text)
    assert [v["size"] for v in versions] == [5, 13]
    assert versions[0]["stored_at"].startswith("versions/")
    code, text = run("verify", "--from", str(target), "--against-source")
    assert code == 0 and "all copies intact" in text


def test_restore_as_of_and_existing_files(tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = tree
    run("backup", str(src), "--to", str(target))
    (src / "a.txt").write_text("second")
    run("backup", str(src), "--to", str(target))
    code, text = run("restore", "--from", str(target), "--to", str(tmp_path / "r"),
                     "--as-of", "1")
    assert code == 0, text
    assert (tmp_path / "r/Docs/a.txt").read_text() == "alpha"
    code, text = run("restore", "--from", str(target), "--to", str(tmp_path / "r"))
    assert code == 3 and "already there" in text
    assert (tmp_path / "r/Docs/a.txt").read_text() == "alpha"
    code, _ = run("restore", "--from", str(target), "--to", str(tmp_path / "r"), "--overwrite")
    assert code == 0 and (tmp_path / "r/Docs/a.txt").read_text() == "second"
    code, text = run("restore", "--from", str(target), "--to", str(tmp_path / "s"),
                     "Docs/sub")
    assert code == 0 and sorted(os.listdir(tmp_path / "s/Docs")) == ["sub"]


def test_verify_names_a_damaged_copy(tree: tuple[Path, Path]) -> None:
    src, target = tree
    run("backup", str(src), "--to", str(target))
    copy = target / "twofold/default/current/Docs/sub/b.txt"
    copy.write_bytes(b"bexa")
    code, text = run("verify", "--from", str(target))
    assert code == 1 and "Docs/sub/b.txt" in text and "damaged" in text


@pytest.mark.parametrize("args", [
    ["backup", "/no/such/folder", "--to", "/tmp"],
    ["backup", "/tmp"],
    ["restore", "--from", "/no/such/drive", "--to", "/tmp/x"],
    ["runs", "--from", "/tmp", "--set", "nope"],
    ["backup", "--bogus"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    code, text = run(*args)
    assert code == 2, text


def test_target_inside_source_is_refused(tree: tuple[Path, Path]) -> None:
    src, _ = tree
    code, text = run("backup", str(src), "--to", str(src / "sub"))
    assert code == 2 and "inside the source" in text


def test_mass_delete_is_refused(tree: tuple[Path, Path]) -> None:
    src, target = tree
    run("backup", str(src), "--to", str(target))
    for p in [src / "a.txt", src / "sub" / "b.txt"]:
        p.unlink()
    code, text = run("backup", str(src), "--to", str(target))
    assert code == 1 and "--allow-mass-delete" in text
    assert (target / "twofold/default/current/Docs/a.txt").exists()
    code, _ = run("backup", str(src), "--to", str(target), "--allow-mass-delete")
    assert code == 0 and not (target / "twofold/default/current/Docs/a.txt").exists()


def test_config_sets_and_broken_lines(tree: tuple[Path, Path], tmp_path: Path) -> None:
    src, target = tree
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[sets.docs]\nsources = ["{src}"]\ntarget = "{target}"\n')
    code, text = run("--config", str(cfg), "backup", "docs", "--json")
    assert code == 0, text
    assert json.loads(text)["set"] == "docs"
    assert (target / "twofold/docs/current/Docs/a.txt").exists()
    cfg.write_text('[sets.docs]\nsources = ["x"]\ntarget = 5\n')
    code, text = run("--config", str(cfg), "backup", "docs")
    assert code == 2 and "line 3" in text


def test_config_from_the_environment_and_moves_in_the_summary(
        tree: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, target = tree
    cfg = tmp_path / "env.toml"
    cfg.write_text(f'[sets.default]\nsources = ["{src}"]\ntarget = "{target}"\n')
    monkeypatch.setenv("TWOFOLD_CONFIG", str(cfg))
    code, text = run("backup")
    assert code == 0 and "Run 1" in text, text
    os.rename(src / "a.txt", src / "renamed.txt")
    code, text = run("backup")
    assert code == 0 and "moved 1" in text, text
    code, text = run("runs", "--from", str(target))
    assert "moved" in text.splitlines()[0]


def test_init_writes_a_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    (tmp_path / "Pictures").mkdir()
    code, text = run("init", "--to", "/media/x")
    assert code == 0, text
    written = (tmp_path / ".config/twofold/config.toml").read_text()
    assert str(tmp_path / "Pictures") in written and 'target = "/media/x"' in written
    code, text = run("init")
    assert code == 2 and "already exists" in text


def test_dry_run_writes_nothing(tree: tuple[Path, Path]) -> None:
    src, target = tree
    code, text = run("backup", str(src), "--to", str(target), "--dry-run", "--json")
    assert code == 0 and json.loads(text)["stats"]["new"] == 4
    assert os.listdir(target) == []


def test_prune_drops_old_versions(tree: tuple[Path, Path]) -> None:
    src, target = tree
    for text in ("one", "two", "three"):
        (src / "a.txt").write_text(text)
        run("backup", str(src), "--to", str(target))
    code, text = run("prune", "--from", str(target), "--keep-daily", "1", "--json")
    assert code == 0, text
    data = json.loads(text)
    assert data["kept_runs"] == [3] and data["files_removed"] == 2
    versions = target / "twofold/default/versions"
    assert not any(p.is_file() for p in versions.rglob("*"))
    assert (target / "twofold/default/current/Docs/a.txt").read_text() == "three"


def test_start_up_leaves_typer_rich_help_unloaded_until_used() -> None:
    """typer's Rich help (with rich.markdown and markdown_it) and rich.traceback (with
    pygments) are loaded on first use only (cli/lazy_rich.py), and help, usage errors and
    tracebacks still come out formatted by them. In a
    fresh interpreter: here typer was imported before twofold, so the stand-in is off."""
    import subprocess
    import sys

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "100", "TERM": "dumb"}
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              env=env, check=False)

    probe = ("import sys; import twofold.cli.app, twofold.cli.backup_cmd; "
             "print(sorted(m for m in ('markdown_it', 'rich.markdown', 'pygments', "
             "'pathspec') if m in sys.modules))")  # pathspec: fsinfo/excludes.KNOWN
    got = python("-c", probe)
    assert got.stdout.strip() == "[]", got.stdout + got.stderr
    boom = ("import twofold.cli, typer; app = typer.Typer()\n"
            "@app.command()\ndef boom() -> None:\n    raise ValueError('kaboom')\napp()")
    got = python("-c", boom)  # rich.traceback, loaded when typer draws the exception
    assert "Traceback (most recent call last)" in got.stderr, got.stderr
    assert "ValueError: kaboom" in got.stderr, got.stderr
    got = python("-m", "twofold", "backup", "--help")
    assert got.returncode == 0 and "─ Options ─" in got.stdout, got.stdout + got.stderr
    assert "--allow-mass-delete" in got.stdout
    got = python("-m", "twofold", "backup", "--bogus")
    assert got.returncode == 2 and "─ Error ─" in got.stderr, got.stdout + got.stderr
    assert "No such option" in got.stderr


def test_commands_are_loaded_when_used() -> None:
    """Starting the CLI loads no command module; running one loads only its own, and
    every name in the list loads a command whose help names it."""
    import subprocess
    import sys

    from twofold.cli.app import COMMANDS

    probe = ("import sys; import twofold.cli.app as a; "
             "print(sorted(m for m in sys.modules if m.endswith('_cmd')))")
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert got.stdout.strip() == "[]", got.stdout
    for name in COMMANDS:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0 and f"twofold {name}" in result.output, result.output
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in COMMANDS)
    result = CliRunner().invoke(app, ["image", "list", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_sets_lists_and_deletes_a_set(tree: tuple[Path, Path]) -> None:
    src, target = tree
    for name in ("work", "photos"):
        code, text = run("backup", str(src), "--to", str(target), "--set", name)
        assert code == 0, text
    code, text = run("sets", "--from", str(target), "--json")
    assert code == 0, text
    listed = json.loads(text)
    assert [s["name"] for s in listed] == ["photos", "work"]
    assert listed[0]["runs"] == 1 and listed[0]["files"] == 2 and listed[0]["bytes"] == 9
    code, text = run("sets", "--from", str(target), "--delete", "work")
    assert code == 2 and "--yes" in text  # no terminal to ask at: nothing deleted
    assert (target / "twofold/work/catalog.sqlite").exists()
    code, text = run("sets", "--from", str(target), "--delete", "work", "--yes")
    assert code == 0, text
    assert not (target / "twofold/work").exists() and (target / "twofold/photos").is_dir()
    code, text = run("sets", "--from", str(target), "--delete", "nosuch", "--yes")
    assert code == 2 and "photos" in text, text


def test_unknown_set_and_nested_sources_are_usage_errors(tree: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    src, target = tree
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[sets.default]\nsources = ["{src}"]\ntarget = "{target}"\n')
    code, text = run("--config", str(cfg), "backup", "--set", "nosuch")
    assert code == 2 and "no set named 'nosuch'" in text, text
    assert not (target / "twofold").exists()
    code, text = run("backup", str(src), str(src / "sub"), "--to", str(target))
    assert code == 2 and "is inside the source" in text, text
