"""`twofold image repair`, `verify --heal` and damaged manifests in list, prune and delete,
in-process: messages and exit codes (0 sound, 1 damaged, 2 usage, 3 damage named and
skipped)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from twofold.cli.app import app

from .conftest import MiB, store_files
from .test_damage import _volume
from .test_integrity import _flip_packs

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["image", *args])
    return result.exit_code, result.output


def _store(tmp_path: Path) -> tuple[Path, Path]:
    src = _volume(tmp_path / "vol.img", size=8 * MiB)
    drive = tmp_path / "drive"
    drive.mkdir()
    code, text = run("create", str(src), "--to", str(drive), "--name", "one")
    assert code == 0, text
    return src, drive


def test_damaged_manifest_in_list_verify_prune_delete(tmp_path: Path) -> None:
    src, drive = _store(tmp_path)
    manifest = drive / "twofold-images/images/one.json"
    manifest.write_bytes(manifest.read_bytes()[:-40])
    code, text = run("create", str(src), "--to", str(drive), "--name", "two")
    assert code == 0 and "image one" not in text and "one.json is damaged" in text
    code, text = run("list", str(drive))
    assert code == 3 and "damaged: image one" in text and "two " in text
    code, text = run("verify", str(drive))
    assert code == 1 and "damaged: image one" in text and "DAMAGED: 1 image," in text
    code, text = run("prune", str(drive), "--keep", "1")
    assert code == 3 and "deleted: nothing" in text and "1 damaged image skipped" in text
    code, text = run("repair", str(drive))
    assert code == 3 and "damaged images cannot be restored" in text
    code, text = run("delete", str(drive), "one")
    assert code == 0 and "deleted: one" in text
    code, text = run("list", str(drive))
    assert code == 0 and "damaged" not in text
    code, text = run("repair", str(drive), "--json")
    assert code == 0 and json.loads(text)["manifests_damaged"] == {}


def test_repair_messages_and_codes(tmp_path: Path) -> None:
    _src, drive = _store(tmp_path)
    code, text = run("repair", str(drive))
    assert code == 0 and "Nothing to repair" in text and "1 pack" in text
    index = next(p for p in store_files(drive, ".json") if p.parent.name == "index")
    index.write_bytes(index.read_bytes()[:-2])
    code, text = run("verify", str(drive))
    assert code == 1 and "not used; twofold image repair rebuilds the index" in text
    code, text = run("repair", str(drive))
    assert code == 0 and "Repaired" in text and "index rebuilt from the packs" in text
    assert "(removed)" in text
    code, text = run("verify", str(drive))
    assert code == 0 and text.strip().startswith("OK")
    (tmp_path / "empty").mkdir()
    code, text = run("repair", str(tmp_path / "empty"))
    assert code == 1 and "no image store" in text
    assert not list((tmp_path / "empty").rglob("*"))


def test_verify_heal_options_and_source(tmp_path: Path) -> None:
    src, drive = _store(tmp_path)
    code, text = run("verify", str(drive), "--heal")
    assert code == 2 and "--from OTHER_STORE or --source DISK" in text
    code, text = run("verify", str(drive), "--source", str(src))
    assert code == 2 and "go with --heal" in text
    _flip_packs(drive)
    code, text = run("verify", str(drive), "--heal", "--source", str(src))
    assert code == 0, text
    assert "recorded in the store's bad/ list" in text and "healed " in text
    assert "no good copy" not in text
    code, text = run("restore", str(drive), "one", "--to", str(tmp_path / "o.img"))
    assert code == 0 and (tmp_path / "o.img").read_bytes() == src.read_bytes()
    code, text = run("verify", str(drive), "--heal", "--from", str(tmp_path / "none"))
    assert code == 0 and text.strip().startswith("OK")  # nothing to heal: the other is not opened


def test_verify_heal_leaves_a_damaged_index_to_repair(tmp_path: Path) -> None:
    src, drive = _store(tmp_path)
    index = next(p for p in store_files(drive, ".json") if p.parent.name == "index")
    index.write_bytes(index.read_bytes()[:-2])
    code, text = run("verify", str(drive), "--heal", "--source", str(src))
    assert code == 1 and "twofold image repair mends them" in text
    code, text = run("repair", str(drive))
    assert code == 0
    code, text = run("verify", str(drive), "--heal", "--source", str(src))
    assert code == 0 and text.strip().startswith("OK")
