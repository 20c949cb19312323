"""What a target drive can hold, and the names files get on it.

A drive formatted exFAT, FAT32 or NTFS (or a Windows share) cannot hold every name a Linux
folder can: some characters are forbidden, names may not end in a dot or a space, `CON`
and its kin are reserved, FAT32 through fusefat takes ASCII only, and two names that
differ only in case are one name. Such a name is stored under a readable encoded name; the
catalog keeps the original, and restore puts it back. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

WINDOWS_CHARS = '"*:<>?\\|'
"""Characters Windows (and its filesystems, as Windows uses them) refuse in names."""

_RESERVED = re.compile(r"(?i)(CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(\..*)?")
_DANGLING = re.compile(r"%[0-9A-F]?\Z")
_FULLWIDTH = 0xFEE0  # '!'..'~' + this = their fullwidth forms, which read the same
_CONTROL_PICTURES = 0x2400  # U+0000..U+001F + this = their visible symbols


@dataclass(frozen=True, slots=True)
class Holds:
    """Which metadata a place keeps (a drive that cannot hold some keeps it in the catalog)."""

    modes: bool = True
    owners: bool = True
    xattrs: bool = True


@dataclass(frozen=True)
class TargetProfile:
    """What the target's filesystem can hold, found by trying (see sets/probe.py)."""

    fs_type: str = "unknown"
    case_insensitive: bool = False
    symlinks: bool = True
    hardlinks: bool = True
    modes: bool = True
    owners: bool = True
    xattrs: bool = True
    mtime_granularity_ns: int = 1
    max_file_size: int | None = None
    name_max: int = 255
    name_units: str = "bytes"  # "bytes" (POSIX) or "utf16" (Windows filesystems)
    windows_names: bool = False  # apply Windows' naming rules
    unicode_names: bool = True  # takes non-ASCII (UTF-8) names
    bytes_names: bool = True  # takes names that are not valid UTF-8
    refused_chars: str = ""  # other ASCII characters the drive refused
    rewrites: bool = True  # files can be reopened and written in place (fusefat cannot)
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> Holds:
        """The metadata this target keeps on its files."""
        return Holds(self.modes, self.owners, self.xattrs)

    @property
    def plain(self) -> bool:
        """True when every name is stored as it is."""
        return not (self.case_insensitive or self.windows_names or self.refused_chars
                    or not self.unicode_names or not self.bytes_names)

    def to_json(self) -> str:
        """The profile as stored in the catalog."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TargetProfile:
        """The inverse of to_json; unknown keys (from a newer twofold) are ignored."""
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One line for people: what the drive cannot hold."""
        lacks = [what for what, has in (("symlinks", self.symlinks),
                                        ("hard links", self.hardlinks),
                                        ("permissions", self.modes), ("owners", self.owners),
                                        ("xattrs", self.xattrs)) if not has]
        parts = [self.fs_type, "case-insensitive" if self.case_insensitive
                 else "case-sensitive"]
        if lacks:
            parts.append("no " + ", ".join(lacks) + " (kept in the catalog)")
        parts.append(f"mtime to {_duration(self.mtime_granularity_ns)}")
        if self.max_file_size is not None:
            parts.append(f"files up to {self.max_file_size:,} bytes")
        if not self.plain:
            parts.append("some names encoded")
        return "; ".join(parts)


def _duration(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:g} s"
    if ns >= 1_000:
        return f"{ns / 1e3:g} µs"
    return f"{ns} ns"


def too_large(profile: TargetProfile, size: int) -> str | None:
    """Why a file of `size` bytes cannot go to this target, or None."""
    limit = profile.max_file_size
    if limit is None or size <= limit:
        return None
    return (f"too large for the target's {profile.fs_type} filesystem ({size:,} bytes; it "
            f"holds files up to {limit:,}); not copied. Back it up to an exFAT, NTFS or "
            "ext4 drive")


class Namer:
    """Maps a relative path of the set to the path its copy has on the target."""

    def __init__(self, profile: TargetProfile | None = None,
                 twins: dict[bytes, bytes] | None = None) -> None:
        self.profile = profile or TargetProfile()
        self.twins: dict[bytes, bytes] = dict(twins or {})  # path -> stored last component
        self._plain = self.profile.plain
        self._cache: dict[bytes, bytes] = {}
        self._needs = _needs_pattern(self.profile)

    @property
    def identity(self) -> bool:
        """True when every path is stored as it is."""
        return self._plain and not self.twins

    def rel(self, path: bytes) -> bytes:
        """The target-relative path of `path`."""
        if self._plain and not self.twins:
            return path
        out: list[bytes] = []
        end = -1
        while True:
            start = end + 1
            end = path.find(b"/", start)
            stop = len(path) if end < 0 else end
            twin = self.twins.get(path[:stop]) if self.twins else None
            out.append(twin if twin is not None else self.name(path[start:stop]))
            if end < 0:
                return b"/".join(out)

    def name(self, name: bytes) -> bytes:
        """The stored form of one name (cached: most names need nothing)."""
        if self._plain:
            return name
        if self._needs.search(name) is None and len(name) <= min(self.profile.name_max, 255):
            return name
        got = self._cache.get(name)
        if got is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            got = self._cache[name] = encode_name(name, self.profile)
        return got

    def fold(self, path: bytes) -> bytes:
        """A key equal for two target paths the target would take as one name."""
        rel = self.rel(path)
        if not self.profile.case_insensitive:
            return rel
        return rel.decode("utf-8", "surrogateescape").casefold().encode(
            "utf-8", "surrogateescape")

    def twin_name(self, path: bytes) -> bytes:
        """A stored last component for `path` that no case twin of it can have."""
        base = self.name(path[path.rfind(b"/") + 1:])
        tag = b"~" + hashlib.sha256(path).hexdigest()[:6].encode()
        return _fit(base, tag, self.profile)

    def add_twin(self, path: bytes, stored: bytes) -> None:
        """Remember that `path` is stored under the last component `stored`."""
        self.twins[path] = stored


_STAND_INS = re.compile(
    r"[\uff01-\uff5e\u2400-\u2420]|%[0-9A-F]{2}|~[0-9a-f]{6}([0-9a-f]{2})?(\.|\Z)")
"""What encode_name and twin_name put into names: look-alikes, %XX, a ~hash tag."""


def may_stand_in(name: bytes, profile: TargetProfile) -> bool:
    """True when `name`, found on the target, may be the stand-in for another name (an
    encoded name or a case twin's), which only the catalog's row can tell."""
    if profile.plain:
        return False
    return _STAND_INS.search(name.decode("utf-8", "surrogateescape")) is not None


def _needs_pattern(p: TargetProfile) -> re.Pattern[bytes]:
    """Matches names that need encoding on this target (length is checked apart)."""
    chars = set(p.refused_chars)
    if p.windows_names:
        chars |= set(WINDOWS_CHARS)
    alts = []
    if chars:
        alts.append(b"[" + re.escape("".join(sorted(chars)).encode()) + b"]")
    if p.windows_names:
        alts += [rb"[\x00-\x1f]", rb"[. ]\Z", rb"\A(?i:CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(\.|\Z)"]
    if not p.unicode_names or not p.bytes_names:
        alts.append(rb"[\x80-\xff]")
    return re.compile(b"|".join(alts) if alts else rb"(?!)")


def _escape(ch: str, profile: TargetProfile) -> str:
    """A stand-in for one character: a look-alike where the drive takes Unicode, else %XX."""
    code = ord(ch)
    if profile.unicode_names and 0x21 <= code <= 0x7E:
        return chr(code + _FULLWIDTH)
    if profile.unicode_names and code < 0x20:
        return chr(code + _CONTROL_PICTURES)
    if profile.unicode_names and ch == " ":
        return "\u2420"  # SYMBOL FOR SPACE
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def encode_name(name: bytes, profile: TargetProfile) -> bytes:
    """The name a file called `name` gets on the target: forbidden characters, a trailing
    dot or space, reserved names, non-ASCII or non-UTF-8 bytes the drive refuses, and
    over-long names are replaced by readable stand-ins."""
    text = name.decode("utf-8", "surrogateescape")
    forbidden = set(profile.refused_chars) | (set(WINDOWS_CHARS) if profile.windows_names
                                              else set())
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(ch if profile.bytes_names and profile.unicode_names
                       else f"%{code - 0xDC00:02X}")
        elif ch in forbidden or (profile.windows_names and code < 0x20) or (
                code > 0x7F and not profile.unicode_names):
            out.append(_escape(ch, profile))
        else:
            out.append(ch)
    if profile.windows_names:
        if out and out[-1] in (".", " "):
            out[-1] = _escape(out[-1], profile)
        match = _RESERVED.fullmatch("".join(out))
        if match is not None:
            stem = match.end(1) - 1  # the stem's last character stands in
            out = [*"".join(out)]
            out[stem] = _escape(out[stem], profile)
    encoded = "".join(out).encode("utf-8", "surrogateescape")
    if _fits(encoded, profile):
        return encoded
    return _fit(encoded, b"~" + hashlib.sha256(name).hexdigest()[:8].encode(), profile)


def _fits(name: bytes, profile: TargetProfile) -> bool:
    if profile.name_units == "utf16":
        text = name.decode("utf-8", "surrogateescape")
        return len(text.encode("utf-16-le", "surrogatepass")) // 2 <= profile.name_max
    return len(name) <= profile.name_max


def _fit(name: bytes, tag: bytes, profile: TargetProfile) -> bytes:
    """`name` with `tag` before its extension, the stem cut short until it fits."""
    dot = name.rfind(b".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 and len(name) - dot <= 16 else (name, b"")
    text = stem.decode("utf-8", "surrogateescape")
    while text:
        candidate = text.encode("utf-8", "surrogateescape") + tag + ext
        if _fits(candidate, profile) and not candidate.endswith((b".", b" ")):
            return candidate
        text = _DANGLING.sub("", text[:-1])  # never cut an escape in half
    return tag.lstrip(b"~") + ext
