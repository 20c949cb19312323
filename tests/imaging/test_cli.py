"""`twofold image ...` in-process: JSON output, summaries, exit codes, option parsing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.cli.app import app
from twofold.cli.image_cmd import parse_level, parse_size
from twofold.core.errors import UsageError

from .conftest import MiB, blank, store_files

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["image", *args])
    return result.exit_code, result.output


def test_cli_cycle(tmp_path: Path) -> None:
    src = blank(tmp_path / "vol.img", 10 * MiB)
    with open(src, "r+b") as f:
        f.write(os.urandom(MiB) + b"abc" * MiB)
    drive = tmp_path / "drive"
    drive.mkdir()
    code, text = run("create", str(src), "--to", str(drive), "--name", "one", "--json")
    assert code == 0, text
    data = json.loads(text)
    assert data["image"] == "one" and data["kind"] == "partition"
    assert data["used_bytes"] == 10 * MiB and data["new_chunks"] == 4
    assert data["zero_chunks"] == 6 and data["ratio"] > 1
    code, text = run("create", str(src), "--to", str(drive), "--name", "two")
    assert code == 0 and "stored new 0 B" in text and "used 10.5 MB" in text
    code, text = run("create", str(src), "--to", str(drive), "--name", "two")
    assert code == 2 and "already exists" in text
    code, text = run("list", str(drive), "--json")
    assert [i["name"] for i in json.loads(text)] == ["one", "two"]
    code, text = run("verify", str(drive))
    assert code == 0 and "OK: 2 images, 4 chunks" in text
    code, text = run("restore", str(drive), "one", "--to", str(tmp_path / "out.img"))
    assert code == 0 and (tmp_path / "out.img").read_bytes() == src.read_bytes()
    blank(tmp_path / "small.img", MiB)
    code, text = run("restore", str(drive), "one", "--to", str(tmp_path / "small.img"))
    assert code == 1 and "too small" in text and "more" in text
    code, text = run("restore", str(drive), "one", "--to", str(tmp_path / "p.img"),
                     "--partition", "1")
    assert code == 2 and "no partition 1" in text
    code, text = run("verify", str(drive), "nope")
    assert code == 2 and "no image 'nope'" in text and "one, two" in text
    code, text = run("prune", str(drive), "--keep", "1", "--dry-run")
    assert code == 0 and "would delete: one" in text
    code, text = run("delete", str(drive), "one", "--json")
    assert code == 0 and json.loads(text)["deleted"] == ["one"]
    pack = store_files(drive, ".pack")[0]
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 1
    pack.write_bytes(bytes(raw))
    code, text = run("verify", str(drive), "--json")
    assert code == 1 and json.loads(text)["damages"][0]["image"] == "two"
    code, text = run("restore", str(drive), "two", "--to", str(tmp_path / "x.img"))
    assert code == 1 and "damaged" in text


def test_missing_store_and_source(tmp_path: Path) -> None:
    code, text = run("list", str(tmp_path))
    assert code == 1 and "no image store" in text
    code, text = run("create", str(tmp_path / "nope.img"), "--to", str(tmp_path))
    assert code == 2 and "does not exist" in text  # a missing path is a usage error
    code, text = run("list", str(tmp_path / "no-such-drive"))
    assert code == 2 and "does not exist" in text, text
    code, text = run("create", str(tmp_path), "--to", str(tmp_path))
    assert code == 1 and "neither a block device nor an image file" in text


def test_option_parsing() -> None:
    assert [parse_level(x) for x in ("fast", "balanced", "max", "7")] == [1, 3, 19, 7]
    assert parse_size("dvd") == 4_700_000_000 and parse_size("fat32") == (4 << 30) - 1
    assert parse_size("700M") == 700_000_000 and parse_size("4GiB") == 4 << 30
    for bad in ("0", "23", "zip"):
        with pytest.raises(UsageError):
            parse_level(bad)
    with pytest.raises(UsageError):
        parse_size("lots")
