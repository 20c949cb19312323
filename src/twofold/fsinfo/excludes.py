"""Gitignore-style excludes: command line, config, a `.twofoldignore` in a source, defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

from twofold.core.errors import UsageError

IGNORE_FILE = b".twofoldignore"

# Caches and trash, which nobody wants restored; see docs/CONFIG.md.
DEFAULT_EXCLUDES = (
    ".cache/",
    "__pycache__/",
    ".thumbnails/",
    ".Trash/",
    ".Trash-*/",
    ".local/share/Trash/",
    "$RECYCLE.BIN/",
    "System Volume Information/",
    ".DS_Store",
    "Thumbs.db",
)


# DEFAULT_EXCLUDES as pathspec translates them, (regex, include) per pattern, so that a
# run with only the defaults does not import pathspec (0.1 s of every start); a test
# (tests/unit/test_excludes.py) checks the table against pathspec.
KNOWN: dict[str, tuple[tuple[str, bool], ...]] = {
    ".cache/": ((r"^(?:.+/)?\.cache(?P<ps_d>/)", True),),
    "__pycache__/": ((r"^(?:.+/)?__pycache__(?P<ps_d>/)", True),),
    ".thumbnails/": ((r"^(?:.+/)?\.thumbnails(?P<ps_d>/)", True),),
    ".Trash/": ((r"^(?:.+/)?\.Trash(?P<ps_d>/)", True),),
    ".Trash-*/": ((r"^(?:.+/)?\.Trash\-[^/]*(?P<ps_d>/)", True),),
    ".local/share/Trash/": ((r"^\.local/share/Trash(?P<ps_d>/)", True),),
    "$RECYCLE.BIN/": ((r"^(?:.+/)?\$RECYCLE\.BIN(?P<ps_d>/)", True),),
    "System Volume Information/": (
        (r"^(?:.+/)?System\ Volume\ Information(?P<ps_d>/)", True),),
    ".DS_Store": ((r"^(?:.+/)?\.DS_Store(?:(?P<ps_d>/)|$)", True),),
    "Thumbs.db": ((r"^(?:.+/)?Thumbs\.db(?:(?P<ps_d>/)|$)", True),),
}


def translate(line: str) -> tuple[tuple[str, bool], ...]:
    """(regex, include) of each pattern pathspec makes of a gitignore line (none for a
    blank line or a comment); pathspec's errors pass through."""
    known = KNOWN.get(line)
    if known is not None:
        return known
    import pathspec

    out = []
    for pat in pathspec.GitIgnoreSpec.from_lines([line]).patterns:
        regex = getattr(pat, "regex", None)
        include = getattr(pat, "include", None)
        if include is not None and regex is not None:
            out.append((str(regex.pattern), bool(include)))
    return tuple(out)


def _whole_spec(lines: list[str]) -> pathspec.GitIgnoreSpec:
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


Matcher = Callable[[bytes, bytes], bool]  # (path inside the source, its last name)
_ANY_LEVEL = "^(?:.+/)?"  # how pathspec starts the regex of a pattern that fits any level


def nothing(_inner: bytes, _name: bytes) -> bool:
    """The matcher when no pattern applies."""
    return False


def _encode(parts: list[str]) -> re.Pattern[bytes] | None:
    if not parts:
        return None
    return re.compile("|".join(parts).encode("utf-8", errors="surrogateescape"))


def _compile(lines: list[str], origin: str) -> Matcher:
    """A matcher for gitignore lines, called with a path and its last name (both ending
    in "/" for a folder) of an entry whose folders are not excluded.

    Without negations, a pattern with no "/" inside it (`*.tmp`, `.cache/`) can match only
    the last name, as the walk never enters an excluded folder: those are matched against
    the name alone, which is short, and the rest against the path. With a negation,
    pathspec decides on the whole path (last match wins).
    """
    try:
        per_line = [(line, translate(line)) for line in lines]
    except Exception as err:  # pathspec raises several types for a bad pattern
        raise UsageError(f"bad exclude pattern in {origin}: {err}",
                         "patterns follow .gitignore rules") from err
    names: list[str] = []
    paths: list[str] = []
    for line, one in per_line:
        for pattern, include in one:
            text = pattern.replace("(?P<ps_d>/)", "/")
            if not include or "(?P<" in text:  # negations: pathspec decides
                spec = _whole_spec(lines)
                return lambda path, _name: bool(spec.match_file(
                    path.decode("utf-8", errors="surrogateescape")))
            if "/" not in line.strip().rstrip("/") and text.startswith(_ANY_LEVEL):
                names.append(f"(?:^{text[len(_ANY_LEVEL):]})")
            else:
                paths.append(f"(?:{text})")
    # Matched on raw bytes: no decoding per file.
    by_name, by_path = _encode(names), _encode(paths)
    if by_path is None:
        if by_name is None:
            return nothing
        name_match = by_name.match
        return lambda _path, name: name_match(name) is not None
    path_match = by_path.match
    if by_name is None:
        return lambda path, _name: path_match(path) is not None
    name_match = by_name.match
    return lambda path, name: name_match(name) is not None or path_match(path) is not None


NAME_FIRST, PATH_FIRST = 1, 2
_NOT_LITERAL = frozenset("*?[\\!")


def first_bytes(lines: list[str]) -> bytes | None:
    """A table of 256 flags for the walk in C, or None: NAME_FIRST at a byte that some
    name pattern among `lines` may start with, PATH_FIRST at one that a path pattern (one
    anchored to the source: a "/" at its start or middle) may start with. An entry whose
    name and path start with unflagged bytes matches no pattern, so the matcher is not
    asked. None when a pattern may start with anything (a wildcard first, `**/`, an escape,
    a negation, a space)."""
    table = bytearray(256)
    for raw in lines:
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        body = line.rstrip("/")
        anchored = "/" in body
        body = body.lstrip("/")
        if not body or body[0] in _NOT_LITERAL or body[0].isspace() or body.startswith("**"):
            return None
        first = body.encode("utf-8", errors="surrogateescape")[0]
        table[first] |= PATH_FIRST if anchored else NAME_FIRST
    return bytes(table)


class Excluder:
    """Decides whether a relative path (top name first) is excluded."""

    def __init__(self, patterns: list[str], use_defaults: bool = True) -> None:
        lines = [*(DEFAULT_EXCLUDES if use_defaults else ()), *patterns]
        self.patterns = lines
        self._global = _compile(lines, "the exclude options") if lines else None
        self._per_source: dict[bytes, Matcher] = {}
        self._joined: dict[bytes, Matcher] = {}  # for_source's answers, made once per source
        self._own_lines: dict[bytes, list[str]] = {}

    def enter_source(self, top: bytes, abs_path: bytes) -> None:
        """Read the source's own `.twofoldignore`, if it has one."""
        path = os.path.join(abs_path, IGNORE_FILE)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        self._per_source[top] = _compile(lines, os.fsdecode(path))
        self._own_lines[top] = lines
        self._joined.pop(top, None)

    def first_bytes(self, top: bytes) -> bytes | None:
        """first_bytes() of every pattern that applies in source `top` (after
        `enter_source`): a prefilter for for_source(top)'s matcher."""
        return first_bytes([*self.patterns, *self._own_lines.get(top, [])])

    def for_source(self, top: bytes) -> Matcher:
        """The matcher for entries of source `top` (after `enter_source`), called with the
        path inside the source and the last name, each ending in "/" for a folder.

        The walks ask once per folder, so the answer is kept per source; `nothing` when
        no pattern applies, which a caller may test for to skip matching altogether."""
        found = self._joined.get(top)
        if found is None:
            found = self._joined[top] = self._join(top)
        return found

    def _join(self, top: bytes) -> Matcher:
        glob, own = self._global, self._per_source.get(top)
        if own is None:
            return glob if glob is not None else nothing
        if glob is None:
            return own
        return lambda inner, name: glob(inner, name) or own(inner, name)

    def excluded(self, rel: bytes, is_dir: bool, name: bytes) -> bool:
        """True when `rel` (b"top/inner/path"), whose last name is `name`, is excluded.

        Only for an entry whose folders are not excluded themselves (see _compile)."""
        top, _, inner = rel.partition(b"/")
        if not inner:
            return False
        if is_dir:
            inner += b"/"
            name += b"/"
        if self._global is not None and self._global(inner, name):
            return True
        spec = self._per_source.get(top)
        return spec is not None and spec(inner, name)
