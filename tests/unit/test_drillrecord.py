"""Drill records: checksummed, the newest intact one counts; the firmware a layout needs."""

from __future__ import annotations

from pathlib import Path

from twofold.blobs.objects import LocalObjects
from twofold.image.drill import BIOS_BOOT, ESP, STAGES, firmware_for
from twofold.image.drillrecord import (
    DrillRecord,
    StageTime,
    last_drill,
    last_drills,
    parse_record,
    save_record,
)


def _rec(date_ns: int, passed: bool) -> DrillRecord:
    return DrillRecord("sys", date_ns, passed, None if passed else STAGES[1],
                       "" if passed else "kernel panic", "bios", "tcg",
                       [StageTime(n, 1.0 if passed else None) for n in STAGES])


def test_newest_intact_record_counts(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path)
    first = save_record(objects, _rec(1_800_000_000 * 10**9, True), b"\x89PNG fake")
    second = save_record(objects, _rec(1_800_000_100 * 10**9, False), None)
    got = last_drill(objects, "sys")
    assert got is not None and got.object == second and got.summary().startswith(
        "FAILED at kernel started, 2027-01-15")
    # a damaged newest record is ignored: the one before counts
    path = tmp_path / second
    path.write_bytes(path.read_bytes().replace(b"kernel panic", b"kernel p4nic"))
    assert parse_record(path.read_bytes(), second) is None
    got = last_drill(objects, "sys")
    assert got is not None and got.object == first and got.passed
    assert got.screenshot is not None and got.screenshot["size"] == 9
    assert last_drills(objects)["sys"].object == first
    assert last_drill(objects, "other") is None


def test_firmware_follows_the_layout() -> None:
    esp = {"type": ESP}
    assert firmware_for(None) == "bios"
    assert firmware_for({"kind": "mbr", "partitions": [esp]}) == "bios"
    assert firmware_for({"kind": "gpt", "partitions": [esp, {"type": "L"}]}) == "uefi"
    assert firmware_for({"kind": "gpt", "partitions": [esp, {"type": BIOS_BOOT}]}) == "bios"
    assert firmware_for({"kind": "gpt", "partitions": [{"type": "x"}]}) == "bios"
