"""btrfs through btrfs-progs: a file system's parameters, its subvolumes, read-only
snapshots and their removal, and making it anew (same UUID, label, node size, profiles,
subvolumes) and checking it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

from twofold.core.errors import TwofoldError

TOP_ID = 5  # the top-level subvolume (FS_TREE)
# superblock flags mkfs.btrfs can set again (-O), by the name dump-super prints
_FEATURES = {"MIXED_GROUPS": "mixed-bg", "EXTENDED_IREF": "extref", "RAID56": "raid56",
             "SKINNY_METADATA": "skinny-metadata", "NO_HOLES": "no-holes",
             "RAID1C34": "raid1c34", "BLOCK_GROUP_TREE": "block-group-tree"}
_RUNTIME = {"FREE_SPACE_TREE": "free-space-tree"}


class BtrfsError(TwofoldError):
    """btrfs-progs is missing or one of its commands failed."""


def btrfs_run(args: list[str], what: str) -> str:
    """Run a btrfs-progs command; BtrfsError saying what failed."""
    if shutil.which(args[0]) is None:
        raise BtrfsError(f"{args[0]} is not installed; it is needed to {what}",
                         "install btrfs-progs")
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise BtrfsError(f"{' '.join(args)} failed ({proc.returncode}) while trying to "
                         f"{what}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def _flags(dump: str, key: str) -> list[str]:
    """The flag names dump-super lists under `key` ("( A |\n B )")."""
    m = re.search(rf"^{key}\s+\S+\n\s*\(([^)]*)\)", dump, re.M)
    return [w.strip() for w in m.group(1).split("|")] if m else []


def btrfs_params(device: str) -> dict[str, Any]:
    """The parameters of the btrfs on `device` that mkfs.btrfs can set again."""
    dump = btrfs_run(["btrfs", "inspect-internal", "dump-super", "-f", device],
                     "read the btrfs file system's parameters")
    head = {}
    for line in dump.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] not in head:
            head[parts[0]] = parts[1].strip()
    if int(head.get("num_devices", "1")) != 1:
        raise BtrfsError(f"the btrfs on {device} spans {head['num_devices']} devices",
                         "twofold images a btrfs of one device; image it from rescue media")
    label = head.get("label", "")
    return {"type": "btrfs", "uuid": head["fsid"], "label": label,
            "node_size": int(head["nodesize"]), "sector_size": int(head["sectorsize"]),
            "csum": head.get("csum_type", "0 (crc32c)").split("(")[-1].rstrip(")"),
            "features": sorted(_FEATURES[f] for f in _flags(dump, "incompat_flags")
                               if f in _FEATURES),
            "runtime": sorted(_RUNTIME[f] for f in _flags(dump, "compat_ro_flags")
                              if f in _RUNTIME),
            "size": int(head["dev_item.total_bytes"])}


def profiles(point: str) -> dict[str, str]:
    """The data and metadata profiles ("single", "dup"...) of the btrfs mounted at `point`."""
    out = btrfs_run(["btrfs", "filesystem", "df", point], "read the btrfs profiles")
    found = {}
    for line in out.splitlines():
        kind, _sep, rest = line.partition(",")
        if kind.strip() in ("Data", "Metadata"):
            found[kind.strip().lower()] = rest.split(":")[0].strip().lower()
    return found


def subvolumes(top: str) -> list[dict[str, Any]]:
    """The subvolumes of the btrfs whose top level is mounted at `top`: id, path (from the
    top) and whether read-only, parents before children."""
    out = btrfs_run(["btrfs", "subvolume", "list", top], "list the btrfs subvolumes")
    ro = {int(m.group(1)) for m in re.finditer(
        r"^ID (\d+) ", btrfs_run(["btrfs", "subvolume", "list", "-r", top],
                                 "list the read-only btrfs subvolumes"), re.M)}
    found = []
    for line in out.splitlines():
        m = re.match(r"ID (\d+) gen \d+ top level \d+ path (.*)$", line)
        if m:
            ident = int(m.group(1))
            found.append({"id": ident, "path": m.group(2), "ro": ident in ro})
    return sorted(found, key=lambda s: s["path"].count("/"))


def default_subvolume(top: str) -> int:
    """The id of the subvolume mounted when no subvol= option is given."""
    out = btrfs_run(["btrfs", "subvolume", "get-default", top], "read the default subvolume")
    m = re.match(r"ID (\d+)", out.strip())
    return int(m.group(1)) if m else TOP_ID


def snapshot_ro(source: str, dest: str) -> None:
    """A read-only snapshot of the subvolume at `source`, made at `dest`."""
    btrfs_run(["btrfs", "subvolume", "snapshot", "-r", source, dest],
              f"make a read-only snapshot of {source}")


def delete_subvolume(path: str) -> None:
    """Remove the subvolume (a snapshot) at `path`."""
    btrfs_run(["btrfs", "subvolume", "delete", path], f"remove the snapshot {path}")


def devices_with_uuid(uuid: str) -> list[str]:
    """The block devices (/dev/...) blkid finds holding a file system with this UUID."""
    if shutil.which("blkid") is None:
        return []
    proc = subprocess.run(["blkid", "-t", f"UUID={uuid}", "-o", "device"],
                          capture_output=True, text=True, check=False)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def make_btrfs(params: dict[str, Any], device: str, size: int) -> None:
    """Make the btrfs `params` describe on `device` (`size` bytes): same UUID, label, node
    and sector size, checksum, features and profiles."""
    args = ["mkfs.btrfs", "-f", "-q", "-K", "-U", str(params["uuid"]),
            "-n", str(params["node_size"]), "-s", str(params["sector_size"]),
            "--csum", str(params.get("csum", "crc32c")), "-b", str(size)]
    if params.get("features"):
        args += ["-O", ",".join(params["features"])]
    if params.get("runtime"):
        args += ["-R", ",".join(params["runtime"])]
    prof = params.get("profiles", {})
    if prof.get("data"):
        args += ["-d", prof["data"]]
    if prof.get("metadata"):
        args += ["-m", prof["metadata"]]
    if params.get("label"):
        args += ["-L", str(params["label"])]
    try:
        btrfs_run([*args, device], f"make btrfs on {device}")
    except BtrfsError as err:
        if "non-unique UUID" not in err.message:
            raise
        raise BtrfsError(f"cannot make the btrfs anew with its UUID {params['uuid']}: a file "
                         "system with that UUID is attached to this machine (the original?)",
                         "restore from rescue media, or detach the disk that holds the "
                         "original first; btrfs cannot hold two file systems of one UUID"
                         ) from None


def make_subvolumes(point: str, params: dict[str, Any]) -> None:
    """Make the recorded subvolumes in the new btrfs mounted (top level) at `point`."""
    for sub in params.get("subvolumes", []):
        btrfs_run(["btrfs", "subvolume", "create", os.path.join(point, sub["path"])],
                  f"make the subvolume {sub['path']}")


def finish_subvolumes(point: str, params: dict[str, Any]) -> None:
    """After the files are written: the default subvolume and read-only flags again."""
    default = params.get("default_subvolume")
    for sub in params.get("subvolumes", []):
        path = os.path.join(point, sub["path"])
        if sub["path"] == default:
            btrfs_run(["btrfs", "subvolume", "set-default", path], "set the default subvolume")
    for sub in reversed(params.get("subvolumes", [])):
        if sub.get("ro"):
            btrfs_run(["btrfs", "property", "set", "-ts", os.path.join(point, sub["path"]),
                       "ro", "true"], f"make the subvolume {sub['path']} read-only")


def check_btrfs(device: str) -> str | None:
    """`btrfs check --readonly`: None when clean, else its complaint."""
    if shutil.which("btrfs") is None:
        return "btrfs is not installed"
    proc = subprocess.run(["btrfs", "check", "--readonly", device], capture_output=True,
                          text=True, errors="replace", check=False)
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()[-600:]
