"""What a backup knows about one file system entry, as scanned and as kept in the catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any


class Kind(StrEnum):
    """Entry types, stored in the catalog by their one-letter value."""

    FILE = "f"
    DIR = "d"
    SYMLINK = "l"
    FIFO = "p"
    SOCKET = "s"
    CHAR = "c"
    BLOCK = "b"

    @property
    def is_special(self) -> bool:
        """FIFOs, sockets and devices: recorded, not copied."""
        return self in (Kind.FIFO, Kind.SOCKET, Kind.CHAR, Kind.BLOCK)


_GETTERS: dict[type, Callable[[Any], tuple[object, ...]]] = {}


@dataclass(slots=True)
class Entry:
    """One scanned entry; `path` is relative to the set root, components joined by b"/"."""

    path: bytes
    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    ino: int = 0
    dev: int = 0
    nlink: int = 1
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    owner: str | None = None
    group: str | None = None
    xattrs: dict[str, bytes] | None = None  # None: not read (unchanged entries skip it)
    target: bytes | None = None  # symlink target
    rdev: int = 0
    link_to: bytes | None = None  # earlier path of the same hard-linked file in this set
    hash: bytes | None = None  # BLAKE3 of the content of a regular file


    def signature(self) -> tuple[object, ...]:
        """The fields whose equality means 'unchanged' (see Record.sig and the catalog).

        The kind is a str enum, equal to its one-letter value, so it is used as it is.
        """
        return (self.kind, self.size, self.mtime_ns, self.ctime_ns, self.ino, self.mode,
                self.uid, self.gid, self.target, self.rdev, self.link_to)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Positional fields pickle far faster than the default state dict (plan spool).
        cls = type(self)
        getter = _GETTERS.get(cls)
        if getter is None:
            getter = _GETTERS[cls] = attrgetter(*(f.name for f in fields(cls)))
        return cls, getter(self)


@dataclass(slots=True)
class Record(Entry):
    """An entry as the catalog holds it: valid from run `first_run` until `until_run`."""

    id: int = 0
    first_run: int = 0
    until_run: int | None = None
    vrun: int | None = None  # run whose versions/ folder holds this content, once moved there

    @property
    def sig(self) -> tuple[object, ...]:
        """Same as signature(); lets a Record stand where the merge expects a catalog row."""
        return self.signature()

    def record(self) -> Record:
        """Itself (catalog rows are turned into Records only when needed)."""
        return self


@dataclass(slots=True)
class Skipped:
    """A path the scan could not read; catalog records under it are carried forward."""

    path: bytes
    reason: str
    is_dir: bool = False


@dataclass(slots=True)
class Issue:
    """Something a run reports: a skipped, unstable or not-copied item."""

    path: bytes
    kind: str  # "skipped", "unstable", "special", "failed"
    message: str


@dataclass
class RunStats:
    """Counts of what a backup run found and did."""

    new: int = 0
    changed: int = 0
    metadata: int = 0
    deleted: int = 0
    moved: int = 0
    unchanged: int = 0
    skipped: int = 0
    special: int = 0
    healed: int = 0  # damaged or missing copies copied again (backup/heal.py)
    bytes_copied: int = 0
    bytes_total: int = 0
    files_total: int = 0
    seconds: float = 0.0
    issues: list[Issue] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The counts, for the catalog and for --json."""
        return {
            "new": self.new,
            "changed": self.changed,
            "metadata": self.metadata,
            "deleted": self.deleted,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "special": self.special,
            "healed": self.healed,
            "bytes_copied": self.bytes_copied,
            "bytes_total": self.bytes_total,
            "files_total": self.files_total,
            "seconds": round(self.seconds, 3),
        }
