"""Gitignore-style excludes: command line, config, a `.twofoldignore` in a source, defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

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


Matcher = Callable[[bytes], bool]


def _compile(lines: list[str], origin: str) -> Matcher:
    """A matcher for gitignore lines; one combined regex when no line negates."""
    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except Exception as err:  # pathspec raises several types for a bad pattern
        raise UsageError(f"bad exclude pattern in {origin}: {err}",
                         "patterns follow .gitignore rules") from err
    parts: list[str] = []
    for pat in spec.patterns:
        regex = getattr(pat, "regex", None)
        include = getattr(pat, "include", None)
        if include is None or regex is None:
            continue
        text = regex.pattern.replace("(?P<ps_d>/)", "/")
        if not include or "(?P<" in text:  # negations: pathspec decides, last match wins
            return lambda path: bool(spec.match_file(
                path.decode("utf-8", errors="surrogateescape")))
        parts.append(f"(?:{text})")
    if not parts:
        return lambda _path: False
    # Matched on the raw bytes of the path: no decoding per file.
    combined = re.compile("|".join(parts).encode("utf-8", errors="surrogateescape"))
    return lambda path: combined.match(path) is not None


class Excluder:
    """Decides whether a relative path (top name first) is excluded."""

    def __init__(self, patterns: list[str], use_defaults: bool = True) -> None:
        lines = [*(DEFAULT_EXCLUDES if use_defaults else ()), *patterns]
        self.patterns = lines
        self._global = _compile(lines, "the exclude options") if lines else None
        self._per_source: dict[bytes, Matcher] = {}

    def enter_source(self, top: bytes, abs_path: bytes) -> None:
        """Read the source's own `.twofoldignore`, if it has one."""
        path = os.path.join(abs_path, IGNORE_FILE)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        self._per_source[top] = _compile(lines, os.fsdecode(path))

    def excluded(self, rel: bytes, is_dir: bool) -> bool:
        """True when `rel` (b"top/inner/path") is excluded."""
        top, _, inner = rel.partition(b"/")
        if not inner:
            return False
        if is_dir:
            inner += b"/"
        if self._global is not None and self._global(inner):
            return True
        spec = self._per_source.get(top)
        return spec is not None and spec(inner)
