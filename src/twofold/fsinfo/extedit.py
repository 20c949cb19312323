"""Read and change files in an ext2/3/4 file system inside a disk file, at a byte offset,
through debugfs (e2fsprogs): nothing is mounted, no loop device or root is needed."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

EXT_MAGIC = 0xEF53


class ExtEditError(Exception):
    """debugfs is missing or refused a change."""


@dataclass(frozen=True)
class ExtMounts:
    """What the superblock says about mounts: their count and the last mount's time."""

    count: int
    last_mount: int  # seconds since the epoch


def ext_mounts(disk: str | Path, offset: int) -> ExtMounts | None:
    """The mount count and time of the ext2/3/4 file system at `offset`, None if none."""
    with open(disk, "rb") as f:
        f.seek(offset + 1024)
        sb = f.read(1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != EXT_MAGIC:
        return None
    last, = struct.unpack_from("<I", sb, 0x2C)
    count, = struct.unpack_from("<H", sb, 0x34)
    return ExtMounts(count, last)


def _debugfs(disk: str | Path, offset: int, commands: list[str],
             write: bool = False) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if exe is None:
        raise ExtEditError("debugfs is not installed (Debian package e2fsprogs)")
    where = f"{disk}?offset={offset}"
    if len(commands) == 1:  # -R: no echo of the command on stdout
        return subprocess.run([exe, *(["-w"] if write else []), "-R", commands[0], where],
                              capture_output=True, check=False)
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write("\n".join(commands) + "\n")
        script.flush()
        args = [exe, *(["-w"] if write else []), "-f", script.name, where]
        return subprocess.run(args, capture_output=True, check=False)


def ext_read(disk: str | Path, offset: int, path: str) -> bytes | None:
    """The content of the regular file `path`, or None when it is not there."""
    got = _debugfs(disk, offset, [f'stat "{path}"'])
    if got.returncode != 0 or b"Type: regular" not in got.stdout:
        return None
    return _debugfs(disk, offset, [f'cat "{path}"']).stdout


def ext_is_dir(disk: str | Path, offset: int, path: str) -> bool:
    """True when `path` is a directory (symlinks are not followed)."""
    got = _debugfs(disk, offset, [f'stat "{path}"'])
    return got.returncode == 0 and b"Type: directory" in got.stdout


def ext_exists(disk: str | Path, offset: int, path: str) -> bool:
    """True when anything is at `path`."""
    got = _debugfs(disk, offset, [f'stat "{path}"'])
    return got.returncode == 0 and b"Inode:" in got.stdout


def ext_write(disk: str | Path, offset: int, files: dict[str, tuple[bytes, int]],
              links: dict[str, str] | None = None, dirs: list[str] | None = None) -> None:
    """Make the folders `dirs` where missing, write `files` (path -> (content, mode)),
    replacing any file of that name, and make symlinks (path -> target); owned by root."""
    with tempfile.TemporaryDirectory(prefix="twofold-ext-") as tmp:
        cmds = [f'mkdir "{d}"' for d in dirs or [] if not ext_exists(disk, offset, d)]
        for i, (path, (data, mode)) in enumerate(files.items()):
            local = Path(tmp) / str(i)
            local.write_bytes(data)
            os.chmod(local, mode)
            cmds += [f'rm "{path}"', f'write "{local}" "{path}"',
                     f'sif "{path}" mode 0{0o100000 | mode:o}',
                     f'sif "{path}" uid 0', f'sif "{path}" gid 0']
        for path, target in (links or {}).items():
            cmds += [f'rm "{path}"', f'symlink "{path}" "{target}"']
        got = _debugfs(disk, offset, cmds, write=True)
        failed = [ln for ln in got.stderr.decode(errors="replace").splitlines()
                  if ln.strip() and not ln.startswith("debugfs ")
                  and "File not found by ext2_lookup" not in ln]
        if got.returncode != 0 or failed:
            raise ExtEditError("; ".join(failed) or f"debugfs exited {got.returncode}")
