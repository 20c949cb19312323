"""A file system's own parameters (type, UUID, label, block and inode size, features,
reserved blocks), read from its device with the file system's tools, and the mkfs and
fsck that make and check it anew with them (e2fsprogs, dosfstools, xfsprogs)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from twofold.core.errors import TwofoldError
from twofold.fsinfo.btrfs import btrfs_params, check_btrfs, make_btrfs

EXT = ("ext2", "ext3", "ext4")
FAT = ("vfat",)
XFS = ("xfs",)
FILE_LEVEL = EXT + FAT + XFS
"""File systems a mounted partition can be imaged from at file level and made anew."""
SNAPSHOT = ("btrfs",)
"""File systems imaged (at file level) from read-only snapshots of their subvolumes."""
# Runtime state, not a choice made at mkfs: never passed back to mke2fs.
_EXT_STATE = {"needs_recovery", "orphan_present", "orphan_file", "mmp", "snapshot_bitmap"}


class FsToolError(TwofoldError):
    """A file system tool is missing or failed."""


def _run(args: list[str], what: str, ok: tuple[int, ...] = (0,)) -> str:
    if shutil.which(args[0]) is None:
        raise FsToolError(f"{args[0]} is not installed; it is needed to {what}",
                          "install e2fsprogs (ext2/3/4), dosfstools (FAT) or xfsprogs")
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode not in ok:
        raise FsToolError(f"{' '.join(args)} failed ({proc.returncode}) while trying to {what}: "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def fs_type(device: str) -> str | None:
    """The file system type blkid finds on `device` ("ext4", "vfat"...), or None."""
    out = _run(["blkid", "-p", "-o", "export", device], "read the file system type",
               ok=(0, 2))
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return fields.get("TYPE")


def read_params(device: str) -> dict[str, Any] | None:
    """The parameters of the file system on `device` (a JSON-able dict), or None when it
    is not one twofold can make anew (see FILE_LEVEL)."""
    kind = fs_type(device)
    if kind in EXT:
        return _ext_params(device, kind)
    if kind in FAT:
        return _fat_params(device)
    if kind in XFS:
        return _xfs_params(device)
    if kind in SNAPSHOT:
        return btrfs_params(device)
    return None


_XFS_FEATURES = ("crc", "finobt", "sparse", "rmapbt", "reflink", "bigtime", "inobtcount",
                 "nrext64")


def _xfs_params(device: str) -> dict[str, Any]:
    """xfs_info's sections (meta-data, data, naming, log...) as key=value pairs."""
    out = _run(["xfs_info", device], "read the XFS file system's parameters")
    sections: dict[str, dict[str, str]] = {}
    name = ""
    for line in out.splitlines():
        head, _sep, rest = line.partition("=")
        if head.strip():
            name = head.strip()
        else:
            rest = line.split("=", 1)[1]
        words = rest.replace(",", " ").split()
        for key, value in (w.split("=", 1) for w in words if "=" in w):
            sections.setdefault(name, {}).setdefault(key, value)
    meta, data = sections.get("meta-data", {}), sections.get("data", {})
    ids = _run(["blkid", "-p", "-o", "export", device], "read the XFS label", ok=(0, 2))
    fields = dict(line.split("=", 1) for line in ids.splitlines() if "=" in line)
    bsize = int(data["bsize"])
    return {"type": "xfs", "uuid": fields.get("UUID", ""), "label": fields.get("LABEL", ""),
            "block_size": bsize, "inode_size": int(meta["isize"]),
            "sector_size": int(meta.get("sectsz", "512")),
            "features": {k: int(meta[k]) for k in _XFS_FEATURES if k in meta},
            "ftype": int(sections.get("naming", {}).get("ftype", "1")),
            "size": int(data["blocks"]) * bsize}


def _ext_params(device: str, kind: str) -> dict[str, Any]:
    out = _run(["dumpe2fs", "-h", device], "read the ext file system's parameters")
    head = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            head[key.strip()] = value.strip()
    blocks = int(head["Block count"])
    block_size = int(head["Block size"])
    label = head.get("Filesystem volume name", "")
    return {
        "type": kind, "uuid": head["Filesystem UUID"],
        "label": "" if label == "<none>" else label,
        "block_size": block_size, "inode_size": int(head.get("Inode size", "256")),
        "features": [f for f in head.get("Filesystem features", "").split()
                     if f not in _EXT_STATE],
        "blocks": blocks, "inodes": int(head["Inode count"]),
        "reserved_blocks": int(head.get("Reserved block count", "0")),
        "size": blocks * block_size,
    }


def _fat_params(device: str) -> dict[str, Any]:
    with open(device, "rb") as f:
        boot = f.read(512)
    sector = int.from_bytes(boot[11:13], "little")
    per_cluster = boot[13]
    sectors = int.from_bytes(boot[19:21], "little") or int.from_bytes(boot[32:36], "little")
    fat32 = int.from_bytes(boot[22:24], "little") == 0
    vol_at, label_at = (67, 71) if fat32 else (39, 43)
    out = _run(["blkid", "-p", "-o", "export", device], "read the FAT label", ok=(0, 2))
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    bits = {"FAT12": 12, "FAT16": 16, "FAT32": 32}.get(fields.get("VERSION", ""),
                                                       32 if fat32 else 16)
    label = fields.get("LABEL", boot[label_at:label_at + 11].decode("ascii", "replace")
                       .strip())
    return {"type": "vfat", "uuid": fields.get("UUID", ""), "label": label,
            "fat_bits": bits, "sector_size": sector, "cluster_sectors": per_cluster,
            "volume_id": boot[vol_at:vol_at + 4][::-1].hex(), "size": sectors * sector}


def make_fs(params: dict[str, Any], device: str, size: int) -> None:
    """Make the file system `params` describe on `device` (`size` bytes), with the same
    UUID, label and choices; the inode ratio is kept when the size differs."""
    kind = params["type"]
    if kind in EXT:
        bs = int(params["block_size"])
        ratio = max(bs, int(params["size"]) // max(1, int(params["inodes"])))
        reserved = 100.0 * int(params["reserved_blocks"]) / max(1, int(params["blocks"]))
        args = ["mke2fs", "-F", "-q", "-t", kind, "-U", str(params["uuid"]),
                "-b", str(bs), "-I", str(params["inode_size"]), "-i", str(ratio),
                "-m", f"{reserved:.3f}", "-O", ",".join(["none", *params["features"]]),
                "-E", "nodiscard"]
        if params.get("label"):
            args += ["-L", str(params["label"])]
        _run([*args, device, str(size // bs)], f"make {kind} on {device}")
    elif kind in FAT:
        args = ["mkfs.fat", "-F", str(params["fat_bits"]), "-i", str(params["volume_id"]),
                "-S", str(params["sector_size"])]
        if size == int(params["size"]):
            args += ["-s", str(params["cluster_sectors"])]
        if params.get("label") and params["label"] != "NO NAME":
            args += ["-n", str(params["label"])]
        _run([*args, device, str(size // 1024)], f"make FAT on {device}")
    elif kind in XFS:
        feats = dict(params["features"])
        inode = [f"size={params['inode_size']}"]
        if "sparse" in feats:
            inode.append(f"sparse={feats.pop('sparse')}")
        if feats.get("nrext64", 0) == 0:
            feats.pop("nrext64", None)  # older mkfs.xfs does not know it
        else:
            inode.append(f"nrext64={feats.pop('nrext64')}")
        meta = [f"uuid={params['uuid']}", *(f"{k}={v}" for k, v in feats.items())]
        args = ["mkfs.xfs", "-f", "-q", "-m", ",".join(meta), "-i", ",".join(inode),
                "-b", f"size={params['block_size']}", "-s", f"size={params['sector_size']}",
                "-n", f"ftype={params['ftype']}", "-K"]
        if params.get("label"):
            args += ["-L", str(params["label"])]
        _run([*args, device], f"make XFS on {device}")
    elif kind in SNAPSHOT:
        make_btrfs(params, device, size)
    else:
        raise FsToolError(f"twofold cannot make a {kind} file system",
                          "restore this image with a newer twofold")


def check_fs(kind: str, device: str) -> str | None:
    """Check the file system on `device` without changing it: None when clean, else the
    checker's complaint."""
    if kind in SNAPSHOT:
        return check_btrfs(device)
    args = ["e2fsck", "-f", "-n", device] if kind in EXT else \
        ["xfs_repair", "-n", device] if kind in XFS else ["fsck.fat", "-n", device]
    if shutil.which(args[0]) is None:
        return f"{args[0]} is not installed"
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode == 0:
        return None
    return (proc.stdout + proc.stderr).strip()[-600:]


def grow_fs(kind: str, device: str) -> bool:
    """Grow the file system on `device` to fill it (ext2/3/4: e2fsck -f -p, resize2fs);
    False when twofold cannot grow this type (it keeps its size)."""
    if kind not in EXT:
        return False
    _run(["e2fsck", "-f", "-p", device], "check the file system before growing it",
         ok=(0, 1))
    _run(["resize2fs", device], "grow the file system")
    return True
