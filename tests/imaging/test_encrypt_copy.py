"""`image copy` of an encrypted store, through the CLI: a new destination takes the
source's key files (the same passphrase opens it), chunks cross sealed, a later copy sends
only what is new; a destination under another key, a plain one, or an encrypted one from a
plain source is refused with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_encrypt import PASS, cli, pack_ids, raw_bytes, restores_whole, seeded, tree_hash


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An encrypted store holding image one of a seeded disk file: (store, disk file)."""
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", PASS)
    src = seeded(tmp_path / "secret-source.img", 11)
    drive = tmp_path / "drive"
    drive.mkdir()
    code, text = cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")
    assert code == 0, text
    return drive, src


def test_an_encrypted_store_copies_into_a_new_one_that_opens_with_its_passphrase(
        sealed: tuple[Path, Path], tmp_path: Path) -> None:
    drive, src = sealed
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    code, text = cli("copy", str(drive), str(offsite))
    assert code == 0 and "Copied 1 image" in text, text
    assert sorted(p.name for p in (offsite / "twofold-images" / "keys").iterdir()) == \
        sorted(p.name for p in (drive / "twofold-images" / "keys").iterdir())
    assert pack_ids(offsite) == pack_ids(drive)  # the same keyed ids
    assert b"known plaintext" not in raw_bytes(offsite)
    restores_whole(offsite, "one", src, tmp_path / "out.img")
    seeded(src, 12)  # new data: the second copy sends its chunks only
    assert cli("create", str(src), "--to", str(drive), "--name", "two")[0] == 0
    code, text = cli("copy", str(drive), str(offsite), "--json")
    assert code == 0 and '"copied": [\n    "two"\n  ]' in text and \
        '"skipped": [\n    "one"\n  ]' in text, text
    code, text = cli("list", str(offsite))
    assert code == 0 and "one" in text and "two" in text, text


def test_a_copy_under_another_key_or_into_a_plain_store_is_refused(
        sealed: tuple[Path, Path], tmp_path: Path) -> None:
    drive, src = sealed
    other, plain = tmp_path / "other", tmp_path / "plain"
    for store, extra in ((other, ["--encrypt"]), (plain, [])):
        store.mkdir()
        code, text = cli("create", str(src), "--to", str(store), "--name", "x", *extra)
        assert code == 0, text
    for store, words in ((other, "encrypted under another master key"),
                         (plain, "is a plain store")):
        before = tree_hash(store)
        code, text = cli("copy", str(drive), str(store))
        assert code == 1 and words in text and "new store" in text, text
        assert tree_hash(store) == before
    before = tree_hash(drive)
    code, text = cli("copy", str(plain), str(drive))  # plain into encrypted: refused too
    assert code == 1 and "is an encrypted store" in text, text
    assert tree_hash(drive) == before


def test_a_wrong_passphrase_copies_nothing(sealed: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    drive, _src = sealed
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "not it")
    code, text = cli("copy", str(drive), str(offsite))
    assert code == 1 and "wrong passphrase" in text, text
    assert not any(offsite.iterdir())
