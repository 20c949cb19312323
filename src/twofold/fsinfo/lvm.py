"""LVM through lvm2's commands: the volume group on a physical volume, its logical
volumes' segments on it, and temporary snapshots (made, listed, removed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from twofold.core.errors import TwofoldError


class LvmError(TwofoldError):
    """lvm2 is missing, one of its commands failed, or a layout twofold does not take."""


def lvm_run(args: list[str], what: str) -> str:
    """Run an lvm2 command; LvmError saying what failed."""
    if shutil.which(args[0]) is None:
        raise LvmError(f"{args[0]} is not installed; it is needed to {what}", "install lvm2")
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise LvmError(f"{' '.join(args)} failed ({proc.returncode}) while trying to {what}: "
                       f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def report(command: str, fields: str, *more: str) -> list[dict[str, Any]]:
    """The rows of an lvm2 report (pvs, vgs, lvs) as dicts, sizes in bytes."""
    out = lvm_run([command, "--reportformat", "json", "--units", "b", "--nosuffix",
                   "-o", fields, *more], f"list LVM {command[:2]}")
    rows: list[dict[str, Any]] = []
    for part in json.loads(out).get("report", []):
        for values in part.values():
            rows.extend(values)
    return rows


@dataclass
class LogicalVolume:
    """A logical volume: where its bytes lie on the physical volume (LV offset, PV offset,
    length), in bytes."""

    vg: str
    name: str
    path: str
    size: int
    pieces: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass
class VolumeGroup:
    """A volume group that lies whole on one physical volume."""

    name: str
    pv: str
    pe_start: int  # bytes of the PV before its first extent: label and metadata
    extent_size: int
    free_extents: int
    volumes: list[LogicalVolume] = field(default_factory=list)


def volume_group(pv: str) -> VolumeGroup | None:
    """The volume group on the physical volume `pv` (None when it is not one); LvmError
    when the group spans other physical volumes or has segments other than linear."""
    rows = [r for r in report("pvs", "pv_name,vg_name,pe_start,vg_extent_size,vg_free_count,"
                              "pv_count") if r["pv_name"] == pv]
    if not rows or not rows[0]["vg_name"]:
        return None
    row = rows[0]
    vg = VolumeGroup(row["vg_name"], pv, int(row["pe_start"]), int(row["vg_extent_size"]),
                     int(row["vg_free_count"]))
    if int(row["pv_count"]) != 1:
        raise LvmError(f"the volume group {vg.name} spans {row['pv_count']} physical volumes",
                       "twofold images a volume group that lies on one disk; image it "
                       "from rescue media, disk by disk")
    by_name: dict[str, LogicalVolume] = {}
    for seg in report("lvs", "lv_name,lv_path,lv_size,segtype,seg_start,seg_size,"
                      "seg_pe_ranges", "--segments", vg.name):
        lv = by_name.setdefault(seg["lv_name"], LogicalVolume(
            vg.name, seg["lv_name"], seg["lv_path"], int(seg["lv_size"])))
        m = re.fullmatch(r"(\S+):(\d+)-(\d+)", seg["seg_pe_ranges"].strip())
        if seg["segtype"] != "linear" or m is None:
            raise LvmError(f"the logical volume {vg.name}/{lv.name} has a {seg['segtype']} "
                           "segment", "twofold snapshots linear logical volumes only; "
                           "image the disk from rescue media")
        first = int(m.group(2))
        lv.pieces.append((int(seg["seg_start"]), vg.pe_start + first * vg.extent_size,
                          int(seg["seg_size"])))
    vg.volumes = list(by_name.values())
    return vg


def make_snapshot(lv: LogicalVolume, name: str, extents: int, tag: str) -> str:
    """A snapshot of `lv` of `extents` extents, named and tagged; its device path."""
    lvm_run(["lvcreate", "-q", "-s", "-n", name, "-l", str(extents), "--addtag", tag,
             f"{lv.vg}/{lv.name}"], f"make a snapshot of {lv.vg}/{lv.name}")
    return f"/dev/{lv.vg}/{name}"


def snapshot_broken(vg: str, name: str) -> bool:
    """True when the snapshot filled up and was dropped by the kernel (its data is gone)."""
    rows = report("lvs", "lv_name,lv_attr", vg)
    attr = next((r["lv_attr"] for r in rows if r["lv_name"] == name), "")
    return len(attr) > 4 and attr[4] == "I"


def remove_volume(vg: str, name: str) -> None:
    """Remove the logical volume (a snapshot) `vg/name`."""
    lvm_run(["lvremove", "-q", "-f", f"{vg}/{name}"], f"remove the snapshot {vg}/{name}")


def tagged_volumes(prefix: str) -> list[tuple[str, str, list[str]]]:
    """(volume group, name, tags) of logical volumes with a tag starting with `prefix`."""
    if shutil.which("lvs") is None:
        return []
    found = []
    for row in report("lvs", "vg_name,lv_name,lv_tags"):
        tags = [t for t in row["lv_tags"].split(",") if t]
        if any(t.startswith(prefix) for t in tags):
            found.append((row["vg_name"], row["lv_name"], tags))
    return found
