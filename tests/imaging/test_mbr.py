"""An MBR disk with a primary and two logical partitions (an EBR chain) imaged and
restored to a larger file: the table and every partition come back byte for byte."""

from __future__ import annotations

from pathlib import Path

from tests.image.conftest import run, sfdisk_json
from twofold.core.progress import NullProgress
from twofold.image.create import create
from twofold.image.restore import restore

from .conftest import FixedClock, MiB, blank, extract

SCRIPT = """label: dos
start=2048, size=40960, type=83
start=43008, size=102400, type=5
start=45056, size=40960, type=83
start=88064, size=40960, type=83
"""


def test_mbr_with_logical_partitions(tmp_path: Path) -> None:
    disk = blank(tmp_path / "mbr.img", 80 * MiB)
    run("sfdisk", "-q", disk, stdin=SCRIPT)
    parts = sfdisk_json(disk)["partitions"]
    with open(disk, "r+b") as f:
        for number, part in ((1, parts[0]), (5, parts[2]), (6, parts[3])):
            vol = blank(tmp_path / f"p{number}.img", part["size"] * 512)
            run("mkfs.ext4", "-q", "-F", "-L", f"part{number}", vol)
            f.seek(part["start"] * 512)
            f.write(vol.read_bytes())
    target = tmp_path / "drive"
    target.mkdir()
    clock = FixedClock()
    r = create(str(disk), str(target), "mbr", 3, None, False, NullProgress(), clock)
    assert r.kind == "disk"
    out = blank(tmp_path / "big.img", 120 * MiB)
    restore(str(target), "mbr", str(out), None, NullProgress(), clock)
    assert "No errors detected" in run("sfdisk", "--verify", out).stdout
    def layout(path: Path) -> list[tuple[int, int, str]]:
        return [(p["start"], p["size"], p["type"]) for p in sfdisk_json(path)["partitions"]]

    assert layout(out) == layout(disk) and len(parts) == 4
    for part in parts:
        if part["type"] == "83":
            start, size = part["start"] * 512, part["size"] * 512
            a = extract(disk, start, size, tmp_path / "a.img")
            b = extract(out, start, size, tmp_path / "b.img")
            run("e2fsck", "-fn", b)
            assert a.read_bytes() == b.read_bytes()
    one = tmp_path / "p5-back.img"
    restore(str(target), "mbr", str(one), 5, NullProgress(), clock)
    assert one.read_bytes() == (tmp_path / "p5.img").read_bytes()
