"""Encrypted image stores on a drive, through the CLI: a real GPT disk (FAT32, ext4, NTFS
made by mkfs) round trip, no plaintext in the store's raw bytes, keyed chunk ids, wrong or
missing passphrase (exit 1, nothing written), passwd, damage found and never restored."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twofold.blobs.remote import open_target
from twofold.chunks.chunkstore import ChunkStore
from twofold.chunks.packs import FOOTER, PackDamaged, parse_footer, parse_index
from twofold.cli.app import app
from twofold.image.manage import list_store
from twofold.vault.objects import StoreLocked, unlock

from .conftest import MiB, root_only

runner = CliRunner()
PASS = "correct horse battery staple"


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["image", *args], input=input)
    return result.exit_code, result.output


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """TWOFOLD_PASSPHRASE set, as a timer's environment sets it."""
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", PASS)
    return PASS


def tree_hash(folder: Path, skip: str = "\0") -> dict[str, str]:
    """Every file under `folder` (but .tmp, .reserve and names holding `skip`) -> sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".tmp" not in p.parts
            and p.name != ".reserve" and skip not in str(p)}


def raw_bytes(folder: Path) -> bytes:
    """Every byte of every file under `folder`, names included."""
    return b"".join(str(p).encode() + (p.read_bytes() if p.is_file() else b"")
                    for p in sorted(folder.rglob("*")))


def pack_ids(store: Path) -> set[bytes]:
    """The chunk ids the packs' own indexes name: read as plain packs, else (an encrypted
    store: their indexes are sealed) opened with PASS."""
    ids: set[bytes] = set()
    try:
        for p in store.rglob("*.pack"):
            data = p.read_bytes()
            offset, count, crc = parse_footer(data[-FOOTER.size:], len(data), p.name)
            ids |= {e.chunk_id
                    for e in parse_index(data[offset:-FOOTER.size], count, crc, p.name)}
        return ids
    except PackDamaged:
        opened = ChunkStore(unlock(open_target(str(store)), PASS.encode()))
        return {e.chunk_id for p in opened.objects.list("packs/")
                for e in opened.read_pack_index(p.name, p.size)}


def restores_whole(store: Path, image: str, original: Path, out: Path) -> None:
    """`image` of `store` restores to `out` equal to `original`, and the store verifies."""
    code, text = cli("restore", str(store), image, "--to", str(out))
    assert code == 0, text
    assert hashlib.sha256(out.read_bytes()).digest() == \
        hashlib.sha256(original.read_bytes()).digest()
    code, text = cli("verify", str(store))
    assert code == 0 and "OK: 1 image" in text, text


def seeded(path: Path, seed: int) -> Path:
    """6 MiB of seeded data (random, text and zeros) named secret-source.img."""
    rnd = random.Random(seed)
    path.write_bytes(rnd.randbytes(3 * MiB) + b"known plaintext of the source\n" * 40_000
                     + bytes(2 * MiB))
    return path


@root_only[0]
@root_only[1]
def test_real_disk_round_trip_shows_no_plaintext(gpt_disk: Path, seeded_tree: Path,
                                                 tmp_path: Path, secret: str) -> None:
    names = [b"file01.bin", b"file11.bin", b"readme.txt", b"empty_dir", b"disk.img"]
    random_file = next(seeded_tree.rglob("file11.bin")).read_bytes()
    other = next(seeded_tree.rglob("file09.bin")).read_bytes()
    needles = [random_file[1000:1064], random_file[2_000_000:2_000_064], other[5000:5064]]
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    plain.mkdir()
    sealed.mkdir()
    code, text = cli("create", str(gpt_disk), "--to", str(plain), "--name", "p")
    assert code == 0, text
    code, text = cli("create", str(gpt_disk), "--to", str(sealed), "--name", "s", "--encrypt")
    assert code == 0, text
    shown = raw_bytes(plain / "twofold-images")
    assert b"disk.img" in shown and all(n in shown for n in needles)  # the control
    raw = raw_bytes(sealed / "twofold-images")
    assert [n for n in names + needles if n in raw] == []
    restores_whole(sealed, "s", gpt_disk, tmp_path / "out.img")
    assert not pack_ids(plain) & pack_ids(sealed)


def test_same_data_gets_other_ids_in_each_store(tmp_path: Path, secret: str) -> None:
    src = seeded(tmp_path / "secret-source.img", 1)
    stores = [tmp_path / n for n in ("a", "b", "plain")]
    for s in stores:
        s.mkdir()
        code, text = cli("create", str(src), "--to", str(s), "--name", "one",
                         *(["--encrypt"] if s.name != "plain" else []))
        assert code == 0, text
    sealed_pack = next(stores[0].rglob("*.pack")).read_bytes()
    with pytest.raises(PackDamaged):  # its own index is sealed too: no plain ids, sizes
        parse_footer(sealed_pack[-FOOTER.size:], len(sealed_pack), "p")
    a, b, plain = (pack_ids(s) for s in stores)
    assert len(a) == len(b) == len(plain) == 5
    assert not a & b and not a & plain and not b & plain
    raw = raw_bytes(stores[0])
    assert b"known plaintext" not in raw and b"secret-source" not in raw
    assert b"known plaintext" in raw_bytes(stores[2])  # the control


def test_wrong_or_missing_passphrase_writes_nothing(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = seeded(tmp_path / "src.img", 2)
    drive = tmp_path / "drive"
    drive.mkdir()
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", PASS)
    assert cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")[0] == 0
    before = tree_hash(drive)
    out = tmp_path / "out.img"
    commands = [("create", str(src), "--to", str(drive), "--name", "two"),
                ("list", str(drive)), ("verify", str(drive)), ("repair", str(drive)),
                ("restore", str(drive), "one", "--to", str(out)),
                ("delete", str(drive), "one"), ("prune", str(drive), "--keep", "1")]
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "not it")
    for args in commands:
        code, text = cli(*args)
        assert code == 1 and "wrong passphrase for the encrypted store" in text, (args, text)
    monkeypatch.delenv("TWOFOLD_PASSPHRASE")
    for args in commands:
        code, text = cli(*args)
        assert code == 1 and "is encrypted" in text, (args, text)
        assert "TWOFOLD_PASSPHRASE" in text and "--key-file" in text
    assert tree_hash(drive) == before and not out.exists()
    with pytest.raises(StoreLocked, match="encrypted"):
        list_store(str(drive))  # an engine given the path alone refuses too


def test_timers_unlock_with_the_environment(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from twofold.image.manage import list_images
    from twofold.jobs.rundue import env_unlocked

    src = seeded(tmp_path / "src.img", 7)
    drive = tmp_path / "drive"
    drive.mkdir()
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", PASS)
    assert cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")[0] == 0
    assert [i.name for i in list_images(env_unlocked(str(drive)))] == ["one"]
    monkeypatch.delenv("TWOFOLD_PASSPHRASE")
    with pytest.raises(StoreLocked, match="TWOFOLD_PASSPHRASE"):
        list_images(env_unlocked(str(drive)))


def test_passphrase_typed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWOFOLD_PASSPHRASE", raising=False)
    monkeypatch.setattr("twofold.cli.image_key.interactive", lambda: True)
    src = seeded(tmp_path / "src.img", 3)
    drive = tmp_path / "drive"
    drive.mkdir()
    code, text = cli("create", str(src), "--to", str(drive), "--encrypt", input="abc\nabd\n")
    assert code == 1 and "the two passphrases differ; nothing was written" in text
    assert list(drive.rglob("*")) == []
    code, text = cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt",
                     input="abc\nabc\n")
    assert code == 0, text
    code, text = cli("list", str(drive), input="abc\n")
    assert code == 0 and "one" in text
    code, text = cli("list", str(drive), input="abd\n")
    assert code == 1 and "wrong passphrase" in text


def test_key_file_and_plain_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWOFOLD_PASSPHRASE", raising=False)
    src = seeded(tmp_path / "src.img", 4)
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32) + b"\n")
    drive, plain = tmp_path / "drive", tmp_path / "plain"
    drive.mkdir()
    plain.mkdir()
    code, text = cli("create", str(src), "--to", str(drive), "--name", "k", "--encrypt",
                     "--key-file", str(key))
    assert code == 0, text
    code, text = cli("restore", str(drive), "k", "--to", str(tmp_path / "o"), "--key-file",
                     str(key))
    assert code == 0 and (tmp_path / "o").read_bytes() == src.read_bytes(), text
    (tmp_path / "empty").write_bytes(b"")
    code, text = cli("list", str(drive), "--key-file", str(tmp_path / "empty"))
    assert code == 2 and "is empty" in text
    assert cli("create", str(src), "--to", str(plain), "--name", "p")[0] == 0
    before = tree_hash(plain)
    code, text = cli("create", str(src), "--to", str(plain), "--name", "q", "--encrypt",
                     "--key-file", str(key))
    assert code == 2 and "is not encrypted" in text
    code, text = cli("passwd", str(plain), "--key-file", str(key))
    assert code == 1 and "not encrypted" in text
    assert tree_hash(plain) == before


def test_passwd_rewraps_the_key_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = seeded(tmp_path / "src.img", 5)
    drive = tmp_path / "drive"
    drive.mkdir()
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "old one")
    assert cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")[0] == 0
    data = tree_hash(drive, skip="/keys/")
    monkeypatch.setenv("TWOFOLD_NEW_PASSPHRASE", "new one")
    code, text = cli("passwd", str(drive))
    assert code == 0 and "passphrase changed" in text, text
    assert tree_hash(drive, skip="/keys/") == data
    assert len(list((drive / "twofold-images" / "keys").iterdir())) == 1
    code, text = cli("list", str(drive))
    assert code == 1 and "wrong passphrase" in text
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "new one")
    code, text = cli("restore", str(drive), "one", "--to", str(tmp_path / "o"))
    assert code == 0 and (tmp_path / "o").read_bytes() == src.read_bytes(), text
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "wrong")
    code, text = cli("passwd", str(drive))
    assert code == 1 and "wrong passphrase" in text
    assert tree_hash(drive, skip="/keys/") == data
    key = tmp_path / "new.key"
    key.write_text("third one\n")
    code, text = cli("passwd", str(drive), "--new-key-file", str(key))
    assert code == 1 and "wrong passphrase" in text  # the old one is still wrong
    monkeypatch.setenv("TWOFOLD_PASSPHRASE", "new one")
    assert cli("passwd", str(drive), "--new-key-file", str(key))[0] == 0
    assert cli("list", str(drive), "--key-file", str(key))[0] == 0


def test_index_rebuilt_from_sealed_packs(tmp_path: Path, secret: str) -> None:
    src = seeded(tmp_path / "src.img", 8)
    drive = tmp_path / "drive"
    drive.mkdir()
    assert cli("create", str(src), "--to", str(drive), "--name", "one", "--encrypt")[0] == 0
    root = drive / "twofold-images"
    for f in (root / "index").iterdir():
        f.unlink()  # the index files are a cache: the packs' own (sealed) indexes rebuild it
    code, text = cli("repair", str(drive))
    assert code == 0 and "index rebuilt from the packs" in text, text
    code, text = cli("restore", str(drive), "one", "--to", str(tmp_path / "o"))
    assert code == 0 and (tmp_path / "o").read_bytes() == src.read_bytes(), text


def test_damage_is_found_never_restored(tmp_path: Path, secret: str) -> None:
    src = seeded(tmp_path / "src.img", 6)
    drive = tmp_path / "drive"
    drive.mkdir()
    for name in ("one", "two"):
        assert cli("create", str(src), "--to", str(drive), "--name", name, "--encrypt")[0] == 0
    root = drive / "twofold-images"
    pack = next(root.rglob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[100] ^= 0x40  # inside the first sealed chunk
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    code, text = cli("verify", str(drive))
    assert code == 1 and "damaged" in text, text
    out = tmp_path / "out.img"
    code, text = cli("restore", str(drive), "one", "--to", str(out))
    assert code == 1 and "damaged" in text, text
    assert not out.exists() or out.read_bytes() != src.read_bytes()
    one, two = root / "images" / "one.json", root / "images" / "two.json"
    two.chmod(0o644)
    two.write_bytes(one.read_bytes())  # a sealed manifest moved to another name
    code, text = cli("list", str(drive))
    assert code == 3 and "image two" in text and "authentication" in text, text
    code, text = cli("restore", str(drive), "two", "--to", str(out))
    assert code == 1 and "authentication" in text, text


@pytest.mark.root
@pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                    reason="needs root and /dev/fuse (image files mounts the image)")
def test_files_come_out_of_an_encrypted_image(gpt_disk: Path, seeded_tree: Path,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.image.conftest import tree_digest

    store = tmp_path / "store"
    store.mkdir()
    key = tmp_path / "key"
    key.write_text(PASS)
    monkeypatch.delenv("TWOFOLD_PASSPHRASE", raising=False)
    code, text = cli("create", str(gpt_disk), "--to", str(store), "--name", "disk",
                     "--encrypt", "--key-file", str(key))
    assert code == 0, text
    code, text = cli("files", str(store), "disk", "part2/d1", "--to", str(tmp_path / "o"))
    assert code == 1 and "is encrypted" in text and not (tmp_path / "o").exists(), text
    code, text = cli("files", str(store), "disk", "part2/d1", "--to", str(tmp_path / "o"),
                     "--key-file", str(key))
    assert code == 0, text
    assert tree_digest(tmp_path / "o" / "d1") == tree_digest(seeded_tree / "d1")
