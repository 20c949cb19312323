"""`image files`: copy single files or folders out of an image, metadata kept, through a
private temporary mount of it (mount.py): every path is checked before anything is
copied, and is walked inside the image without following a symlink out of it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field

from twofold.core.errors import TwofoldError, UsageError
from twofold.image.filerecords import check_path
from twofold.image.imagefs import shown
from twofold.image.mount import mount_image, unmount_all
from twofold.image.repo import load_manifest, open_keyed


class PathNotInImage(TwofoldError):
    """A path asked for is not in the image: nothing was copied (exit 1)."""


class FilesRefused(TwofoldError):
    """The files cannot be copied as asked (the destination exists, the partition's file
    system cannot be mounted here): nothing was copied (exit 1)."""


@dataclass
class FilesCopied:
    """What `image files` copied."""

    image: str
    copied: list[tuple[str, str]] = field(default_factory=list)  # (path in image, copy)
    entries: int = 0
    bytes: int = 0


def _split(path: str, folders: list[str]) -> tuple[str, list[bytes]]:
    """(partition folder, components) of a PATH: "part2/etc/hosts", or "etc/hosts" when
    the image has one partition."""
    try:
        parts = check_path(os.fsencode(path.strip("/")))
    except ValueError:
        raise UsageError(f"bad path {path!r}", "give a path inside the image, such as "
                         "part2/etc/hosts (no '..')") from None
    if parts and os.fsdecode(parts[0]) in folders:
        return os.fsdecode(parts[0]), parts[1:]
    if len(folders) == 1:
        return folders[0], parts
    raise UsageError(f"{path} names no partition of the image",
                     f"start it with the partition's folder: {', '.join(folders)}")


def _locate(root: str, parts: list[bytes]) -> str | None:
    """The path of `parts` beneath `root`, each folder on the way a real folder (never a
    symlink); None when it is not there."""
    where = os.fsencode(root)
    for i, name in enumerate(parts):
        where = os.path.join(where, name)
        try:
            st = os.lstat(where)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None
    return os.fsdecode(where)


def _size(path: str) -> tuple[int, int]:
    """(entries, bytes of regular files) of a copied tree."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return 1, st.st_size if stat.S_ISREG(st.st_mode) else 0
    entries, nbytes = 1, 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            entries += 1
            child = os.lstat(os.path.join(top, name))
            nbytes += child.st_size if stat.S_ISREG(child.st_mode) else 0
    return entries, nbytes


def copy_files(target: str, image: str, paths: list[str], to: str,
               endpoint: str | None = None, passphrase: bytes | None = None) -> FilesCopied:
    """Copy `paths` of `image` into the folder `to` (made if missing), each under its own
    name, with modes, owners, times, links and xattrs; PathNotInImage (nothing copied)
    when one is not in the image."""
    m = load_manifest(open_keyed(target, endpoint, passphrase), image)
    folders = [s.folder for s in shown(m)]
    wanted = [(p, *_split(p, folders)) for p in paths]
    to = os.path.abspath(to)
    os.makedirs(to, exist_ok=True)
    plans: list[tuple[str, str, list[bytes], str]] = []
    for path, folder, parts in wanted:
        dest = os.path.join(to, os.fsdecode(parts[-1]) if parts else folder)
        if os.path.lexists(dest):
            raise FilesRefused(f"{dest} exists: nothing was copied",
                               "choose another --to folder, or move it away")
        if any(dest == d for _p, _f, _s, d in plans):
            raise UsageError(f"two paths would both be copied to {dest}",
                             "copy them one at a time, to different --to folders")
        plans.append((path, folder, parts, dest))
    result = FilesCopied(m.name)
    point = tempfile.mkdtemp(prefix="twofold-files-")
    log = point + ".log"
    try:
        mounted = mount_image(target, image, point, log=log, endpoint=endpoint,
                              passphrase=passphrase)
        try:
            state = {p.folder: p for p in mounted.parts}
            missing = []
            sources = []
            for path, folder, parts, dest in plans:
                part = state[folder]
                if not part.mounted:
                    raise FilesRefused(f"the files of {part.label} cannot be read here: "
                                       f"{part.note}", "restore the partition whole "
                                       "(twofold image restore --partition) and open it "
                                       "where a driver for it exists")
                src = _locate(os.path.join(point, folder), parts)
                if src is None:
                    missing.append(path)
                sources.append((path, src, dest))
            if missing:
                raise PathNotInImage(f"not in image {m.name}: {', '.join(missing)}: "
                                     "nothing was copied",
                                     f"twofold image mount {target} {m.name} MOUNTPOINT "
                                     "shows what it holds")
            for path, src, dest in sources:
                assert src is not None
                _copy(src, dest, log)
                entries, nbytes = _size(dest)
                result.entries += entries
                result.bytes += nbytes
                result.copied.append((path, dest))
        finally:
            unmount_all(point)
    finally:
        with suppress(OSError):
            os.rmdir(point)
        with suppress(OSError):
            os.unlink(log)
    return result


def _copy(src: str, dest: str, log: str) -> None:
    """cp -a: the tree as it is (symlinks as symlinks, hard links, modes, owners, times,
    xattrs where the destination holds them); FilesRefused with what the image's file
    system logged (a damaged chunk, by id) when it fails."""
    try:
        proc = subprocess.run(["cp", "-a", "--no-target-directory", "--", src, dest],
                              capture_output=True, text=True, errors="replace",
                              check=False, stdin=subprocess.DEVNULL)
    except BaseException:  # Ctrl-C: no half copy left behind either
        _remove(dest)
        raise
    if proc.returncode != 0:
        _remove(dest)
        with open(log, "rb") as f:
            said = f.read().decode(errors="replace").strip()
        said = "; " + said.splitlines()[-1].removeprefix("twofold: ") if said else ""
        raise FilesRefused(f"copying {src} to {dest} failed: "
                           f"{proc.stderr.strip()[-400:]}{said}",
                           "is there room on the destination? Is the image damaged "
                           "(twofold image verify)?")


def _remove(dest: str) -> None:
    """Remove what an unfinished copy made at `dest` (it did not exist before)."""
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest, ignore_errors=True)
    elif os.path.lexists(dest):
        os.unlink(dest)
