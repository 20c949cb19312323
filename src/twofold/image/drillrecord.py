"""Drill records in the store: drills/<image>/<time>.json (+ .png, the last screen), each
checksummed (docs/FORMAT.md, "Drill records"); the newest says "last drill: passed"."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import blake3

from twofold.blobs.objects import ObjectMissing, ObjectStore
from twofold.image.manifest import check_image_name

FORMAT = "twofold-drill"
VERSION = 1
DRILLS_DIR = "drills/"


@dataclass
class StageTime:
    """One stage of a boot: when it was seen (seconds after QEMU started) and how."""

    name: str
    seconds: float | None = None  # None: not reached
    evidence: str = ""


@dataclass
class DrillRecord:
    """What one drill saw."""

    image: str
    date_ns: int
    passed: bool
    failed_stage: str | None
    reason: str
    firmware: str
    accel: str
    stages: list[StageTime]
    seconds: float = 0.0  # the whole drill
    restore_seconds: float = 0.0
    boot_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    console_tail: str = ""
    screenshot: dict[str, Any] | None = None  # object, blake3, size
    object: str = ""  # where this record is stored (not part of the stored JSON)

    @property
    def date(self) -> str:
        """The drill's date, UTC, to the minute."""
        return datetime.fromtimestamp(self.date_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def summary(self) -> str:
        """"passed, 2026-12-04 16:40 UTC" or "FAILED at kernel started, ..."."""
        state = "passed" if self.passed else f"FAILED at {self.failed_stage}"
        return f"{state}, {self.date}"


def _checksum(body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "blake3:" + blake3.blake3(canon).hexdigest()


def _stamp(date_ns: int) -> str:
    return datetime.fromtimestamp(date_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S") + \
        f".{date_ns % 1_000_000_000:09d}Z"


def save_record(objects: ObjectStore, rec: DrillRecord, png: bytes | None) -> str:
    """Store the record (and its screenshot first); returns the record's object name."""
    base = f"{DRILLS_DIR}{check_image_name(rec.image)}/{_stamp(rec.date_ns)}"
    if png:
        objects.put_once(base + ".png", png)
        rec.screenshot = {"object": base + ".png", "blake3": blake3.blake3(png).hexdigest(),
                          "size": len(png)}
    body = {k: v for k, v in asdict(rec).items() if k != "object"}
    body.update(format=FORMAT, version=VERSION)
    body["checksum"] = _checksum(body)
    objects.put_once(base + ".json", json.dumps(body, indent=1, sort_keys=True).encode())
    rec.object = base + ".json"
    return rec.object


def parse_record(data: bytes, where: str) -> DrillRecord | None:
    """A stored record, or None when it is damaged or of an unknown version."""
    try:
        body = json.loads(data)
        want = body.pop("checksum")
        if body.get("format") != FORMAT or body.get("version") != VERSION or \
                _checksum(body) != want:
            return None
        body.pop("format")
        body.pop("version")
        body["stages"] = [StageTime(**s) for s in body["stages"]]
        return DrillRecord(**body, object=where)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def last_drill(objects: ObjectStore, image: str) -> DrillRecord | None:
    """The newest intact drill record of `image`, or None."""
    names = sorted(o.name for o in objects.list(f"{DRILLS_DIR}{image}/")
                   if o.name.endswith(".json"))
    for name in reversed(names):
        try:
            rec = parse_record(objects.get(name), name)
        except ObjectMissing:
            continue
        if rec is not None:
            return rec
    return None


def last_drills(objects: ObjectStore) -> dict[str, DrillRecord]:
    """The newest intact drill record of every image that has one (one listing)."""
    newest: dict[str, list[str]] = {}
    for o in objects.list(DRILLS_DIR):
        parts = o.name[len(DRILLS_DIR):].split("/")
        if len(parts) == 2 and parts[1].endswith(".json"):
            newest.setdefault(parts[0], []).append(o.name)
    found: dict[str, DrillRecord] = {}
    for image, names in newest.items():
        for name in sorted(names, reverse=True):
            try:
                rec = parse_record(objects.get(name), name)
            except ObjectMissing:
                continue
            if rec is not None:
                found[image] = rec
                break
    return found
