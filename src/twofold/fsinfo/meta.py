"""Read and apply file metadata: owners by name, modes, times in ns, extended attributes."""

from __future__ import annotations

import errno
import os
from functools import lru_cache

from twofold.core.models import Entry, Kind
from twofold.core.names import Holds

try:
    import grp
    import pwd
except ImportError:  # Windows
    pwd = None  # type: ignore[assignment]
    grp = None  # type: ignore[assignment]

HAS_XATTR = hasattr(os, "listxattr")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ALL = Holds()
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EPERM, errno.EACCES}


@lru_cache(maxsize=4096)
def owner_name(uid: int) -> str | None:
    """The user name of a uid, or None where it has none."""
    if pwd is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    """The group name of a gid, or None where it has none."""
    if grp is None:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def uid_for(name: str | None, uid: int) -> int:
    """The uid to give a restored file: by name when this machine knows it, else the number."""
    if name and pwd is not None:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            pass
    return uid


@lru_cache(maxsize=4096)
def gid_for(name: str | None, gid: int) -> int:
    """The gid to give a restored file: by name when this machine knows it, else the number."""
    if name and grp is not None:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
    return gid


def read_xattrs(path: bytes | int) -> dict[str, bytes]:
    """All extended attributes of a path (not following symlinks) or an open file."""
    if not HAS_XATTR:
        return {}
    nofollow = {} if isinstance(path, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(path, **nofollow)
    except OSError as err:
        if err.errno in _NO_XATTR:
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, **nofollow)
        except OSError as err:
            if err.errno not in _NO_XATTR and err.errno != errno.ENODATA:
                raise
    return out


def apply_metadata(path: bytes | int, entry: Entry, *, times: bool = True,
                   exact_xattrs: bool = False, holds: Holds = ALL) -> list[str]:
    """Give a path or open file the owner, mode, xattrs and mtime of `entry`.

    Returns what could not be set. Owners are set only when running as root, and only
    what the place `holds` (a drive without permissions, say) is tried at all. With
    `exact_xattrs` (updating an existing file), xattrs the entry lacks are removed. The
    mtime goes last, since the other changes may touch it.
    """
    problems: list[str] = []
    link = entry.kind is Kind.SYMLINK
    nofollow = {} if isinstance(path, int) else {"follow_symlinks": False}
    if IS_ROOT and holds.owners:
        try:
            os.chown(path, uid_for(entry.owner, entry.uid), gid_for(entry.group, entry.gid),
                     **nofollow)
        except OSError as err:
            problems.append(f"owner: {err.strerror}")
    if not link and holds.modes:
        try:
            os.chmod(path, entry.mode)
        except OSError as err:
            problems.append(f"mode: {err.strerror}")
    if exact_xattrs and HAS_XATTR and entry.xattrs is not None and holds.xattrs:
        for name in set(read_xattrs(path)) - set(entry.xattrs):
            try:
                os.removexattr(path, name, **nofollow)
            except OSError as err:
                problems.append(f"xattr {name}: {err.strerror}")
    if entry.xattrs and HAS_XATTR and holds.xattrs:
        for name, value in entry.xattrs.items():
            try:
                os.setxattr(path, name, value, **nofollow)
            except OSError as err:
                problems.append(f"xattr {name}: {err.strerror}")
    if times:
        set_mtime(path, entry.mtime_ns, follow=not link)
    return problems


def set_mtime(path: bytes | int, mtime_ns: int, follow: bool = True) -> None:
    """Set access and modification time to `mtime_ns` (symlinks themselves when not follow)."""
    if isinstance(path, int):
        os.utime(path, ns=(mtime_ns, mtime_ns))
        return
    try:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)
    except NotImplementedError:
        if follow:
            raise
