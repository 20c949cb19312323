"""Space before writing: `image create` refuses early, with both figures and what would
free space, when the image cannot fit, and leaves the store as it was (real small drives)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fulldrive import fill, small_drive
from twofold.blobs.objects import LocalObjects
from twofold.chunks.chunkstore import ChunkStore
from twofold.cli.app import app
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.manage import list_images
from twofold.image.space import Budget, NoSpace
from twofold.image.verify import verify

from .conftest import FixedClock, MiB, blank, root_only, run, store_files

pytestmark = root_only


def random_volume(folder: Path, data_mb: int, size_mb: int) -> Path:
    """An ext4 volume image holding `data_mb` MB of incompressible files."""
    tree = folder / "tree"
    tree.mkdir()
    for i in range(data_mb // 10):
        (tree / f"r{i}.bin").write_bytes(os.urandom(10 * MiB))
    (tree / "text.txt").write_bytes(b"hello\n" * 1000)
    vol = blank(folder / "vol.img", size_mb * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", tree, vol)
    return vol


def test_create_refused_early_when_it_cannot_fit(tmp_path: Path) -> None:
    src = random_volume(tmp_path, 100, 160)
    with small_drive(tmp_path / "d", 50) as drive:
        code = CliRunner().invoke(app, ["image", "create", str(src), "--to", str(drive),
                                        "--name", "big"])
        assert code.exit_code == 1, code.output
        text = " ".join(code.output.split())
        found = re.search(r"will not fit .* needs about (\d+\.\d) MB, the drive has "
                          r"(\d+\.\d) MB free", text)
        assert found, text
        assert 104 < float(found.group(1)) < 125 and 35 < float(found.group(2)) < 50
        assert "larger drive" in text
        assert store_files(drive, ".pack") == []
        assert store_files(drive, ".json") == [drive / "twofold-images" / "store.json"]


def test_refusal_names_what_deleting_frees(tmp_path: Path) -> None:
    small = tmp_path / "small.img"
    small.write_bytes(os.urandom(12 * MiB))
    src = random_volume(tmp_path, 60, 100)
    with small_drive(tmp_path / "d", 50) as drive:
        create(str(small), str(drive), "small", 3, None, False, NullProgress(), FixedClock())
        with pytest.raises(NoSpace) as got:
            create(str(src), str(drive), "big", 3, None, False, NullProgress(), FixedClock())
        assert "image prune" in got.value.hint and "small 12." in got.value.hint
        assert [i.name for i in list_images(str(drive))] == ["small"]
        assert len(store_files(drive, ".pack")) == 1


def test_a_run_that_outgrows_its_estimate_stops_and_removes_its_packs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample said it fits (zeros where the data is random): the projection during the
    run stops it, and the packs it wrote are removed."""
    monkeypatch.setattr("twofold.image.create.sample_need", lambda *a: 0)
    src = random_volume(tmp_path, 100, 160)
    with small_drive(tmp_path / "d", 50) as drive:
        with pytest.raises(NoSpace) as got:
            create(str(src), str(drive), "big", 3, None, False, NullProgress(), FixedClock())
        assert "stored so far, removed again" in got.value.message
        assert store_files(drive, ".pack") == []
        assert list_images(str(drive)) == []


def test_projection_waits_for_a_tenth(tmp_path: Path) -> None:
    store = ChunkStore(LocalObjects(tmp_path / "s"))
    store.init()
    budget = Budget(store, free=100 * MiB, total=1000 * MiB)
    budget.advance(50 * MiB, 50 * MiB)  # 5 %: too early to tell
    budget.advance(60 * MiB, 5 * MiB)  # 11 %, at a ratio that fits
    with pytest.raises(NoSpace) as got:
        budget.advance(60 * MiB, 110 * MiB)  # 17 %, all new: about 1000 MiB
    assert "682.7 MB" in got.value.message and "104.9 MB free" in got.value.message


def _cli(*args: str) -> tuple[int, str]:
    got = CliRunner().invoke(app, ["image", *args, "--json"])
    return got.exit_code, got.output


@pytest.mark.parametrize("kind", ["ext4", "fat32", "exfat"])
def test_delete_and_prune_work_on_a_full_drive(tmp_path: Path, kind: str) -> None:
    """Image a's pack holds a chunk b reuses (rewritten on delete); c shares nothing."""
    first = os.urandom(10 * MiB)
    sources = {"a": first, "b": first[:MiB] + os.urandom(9 * MiB), "c": os.urandom(8 * MiB)}
    with small_drive(tmp_path / "d", 100, kind) as drive:
        for name, data in sources.items():
            (tmp_path / f"{name}.img").write_bytes(data)
            create(str(tmp_path / f"{name}.img"), str(drive), name, 3, None, False,
                   NullProgress(), FixedClock())
        fill(drive)
        with pytest.raises(OSError):
            (drive / "one-more").write_bytes(os.urandom(64 << 10))
        code, text = _cli("delete", str(drive), "a")
        assert code == 0, text
        freed = json.loads(text)["bytes_freed"]
        assert 8 * MiB < freed <= 11 * MiB
        assert fill(drive, "filler2") >= freed - MiB  # what it reports, the drive gained
        code, text = _cli("prune", str(drive), "--keep", "1")
        assert code == 0, text
        assert json.loads(text)["deleted"] == ["b"]
        freed = json.loads(text)["bytes_freed"]
        assert 8 * MiB < freed <= 11 * MiB
        assert fill(drive, "filler3") >= freed - MiB
        assert not verify(str(drive), None, NullProgress(), FixedClock()).damages
        code, text = _cli("list", str(drive))
        assert [i["name"] for i in json.loads(text)] == ["c"]


def test_a_full_drive_without_a_reserve_says_what_to_do(tmp_path: Path) -> None:
    """A store an older twofold made has no reserve: the delete is refused with nothing
    deleted and a way out; once a little room is made, it works and keeps a reserve."""
    (tmp_path / "a.img").write_bytes(os.urandom(8 * MiB))
    with small_drive(tmp_path / "d", 60) as drive:
        create(str(tmp_path / "a.img"), str(drive), "a", 3, None, False, NullProgress(),
               FixedClock())
        reserve = drive / "twofold-images" / ".reserve"
        reserve.unlink()
        fill(drive)
        code, text = _cli("delete", str(drive), "a")
        text = " ".join(text.split())
        assert code == 1 and "nothing was deleted" in text and "a few MB" in text, text
        assert [i.name for i in list_images(str(drive))] == ["a"]
        for f in drive.glob("filler-0"):
            f.unlink()
        code, text = _cli("delete", str(drive), "a")
        assert code == 0, text
        assert reserve.stat().st_size >= MiB


def test_prune_dry_run_tells_what_it_would_free(tmp_path: Path) -> None:
    first = os.urandom(6 * MiB)
    sources = {"a": first, "b": first[:2 * MiB] + os.urandom(4 * MiB), "c": first[:MiB]}
    drive = tmp_path / "drive"
    drive.mkdir()
    for name, data in sources.items():
        (tmp_path / f"{name}.img").write_bytes(data)
        create(str(tmp_path / f"{name}.img"), str(drive), name, 3, None, False,
               NullProgress(), FixedClock())
    code, text = _cli("prune", str(drive), "--keep", "1", "--dry-run")
    guess = json.loads(text)["bytes_freed"]
    assert code == 0 and 9 * MiB <= guess < 9 * MiB + (4 << 10)  # 9 chunks c does not need
    assert len(list_images(str(drive))) == 3
    code, text = _cli("prune", str(drive), "--keep", "1")
    freed = json.loads(text)["bytes_freed"]
    assert code == 0 and guess <= freed < guess + (64 << 10)  # + pack headers and indexes
