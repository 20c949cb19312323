"""Relative paths inside a backup set: raw bytes joined by b"/", and how they are shown."""

from __future__ import annotations

SEP = b"/"


def join(parent: bytes, name: bytes) -> bytes:
    """Join a relative parent path (b"" for the root) and a name."""
    return parent + SEP + name if parent else name


def parent_of(path: bytes) -> bytes:
    """The parent of a relative path; b"" for a top-level name."""
    cut = path.rfind(SEP)
    return path[:cut] if cut >= 0 else b""


def is_within(path: bytes, prefix: bytes) -> bool:
    """True when `path` is `prefix` or lies below it."""
    return path == prefix or path.startswith(prefix + SEP)


def show(path: bytes) -> str:
    """A printable form of a path; undecodable bytes appear as \\xNN escapes."""
    return path.decode("utf-8", errors="backslashreplace")


def from_user(text: str) -> bytes:
    """A relative path typed by a user, normalised to the catalog form."""
    raw = text.encode("utf-8", errors="surrogateescape")
    parts = [p for p in raw.replace(b"\\", b"/").split(SEP) if p not in (b"", b".")]
    return SEP.join(parts)


NAME_MAX = 255
PATH_MAX = 4096


def unsafe(path: bytes) -> str | None:
    """Why a relative path read from a catalog or a drive must not be used, or None.

    A path is safe when it stays below the folder it is joined to: not empty, not
    absolute, no NUL, no empty, `.` or `..` component, each name at most NAME_MAX bytes
    and the whole below PATH_MAX.
    """
    if not path:
        return "an empty path"
    if path.startswith(SEP):
        return "an absolute path"
    if b"\0" in path:
        return "a NUL byte in the path"
    if len(path) >= PATH_MAX:
        return f"a path of {len(path)} bytes (the limit is {PATH_MAX - 1})"
    for part in path.split(SEP):
        if not part:
            return "an empty component in the path"
        if part in (b".", b".."):
            return f"a {show(part)!r} component in the path"
        if len(part) > NAME_MAX:
            return f"a name of {len(part)} bytes (the limit is {NAME_MAX})"
    return None
