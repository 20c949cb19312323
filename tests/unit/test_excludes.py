"""Excludes: the combined-regex matcher agrees with pathspec; .twofoldignore; defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec
from hypothesis import given, settings
from hypothesis import strategies as st

from twofold.fsinfo import excludes
from twofold.fsinfo.excludes import DEFAULT_EXCLUDES, Excluder, _compile
from twofold.fsinfo.scan import Scanner, Source

PATTERNS = ["*.tmp", ".cache/", "/build", "a/**/b", "docs/*.pdf", "x?", "[ab]c",
            "deep/dir/", "Thumbs.db", "**/logs", "*.ISO"]
segments = st.sampled_from(["a", "b", "ac", "x1", "build", "docs", "f.pdf", "t.tmp",
                            ".cache", "logs", "deep", "dir", "Thumbs.db", "z.ISO"])


@settings(max_examples=150)
@given(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=5),
       st.lists(segments, min_size=1, max_size=4), st.booleans())
def test_fast_matcher_agrees_with_pathspec(pats: list[str], parts: list[str],
                                           is_dir: bool) -> None:
    """As the walk uses it: each folder on the way is asked first, and a path is excluded
    when it or one of its folders is; pathspec answers for the whole path at once."""
    fast = _compile(pats, "test")
    walked = False
    for i in range(len(parts)):
        folder = i < len(parts) - 1 or is_dir
        tail = "/" if folder else ""
        path = "/".join(parts[:i + 1]) + tail
        if fast(path.encode(), (parts[i] + tail).encode()):
            walked = True
            break
    whole = "/".join(parts) + ("/" if is_dir else "")
    assert walked == pathspec.GitIgnoreSpec.from_lines(pats).match_file(whole)


def test_name_patterns_are_matched_against_the_name_only() -> None:
    m = _compile(["*.tmp", ".cache/", "docs/*.pdf"], "test")
    assert m(b"a/b/x.tmp", b"x.tmp") and m(b"a/.cache/", b".cache/")
    assert not m(b"a/.cache", b".cache")  # a folder pattern does not match a file
    assert m(b"docs/f.pdf", b"f.pdf") and not m(b"a/docs/f.pdf", b"f.pdf")


def test_non_ascii_patterns_match_raw_names() -> None:
    m = _compile(["été/", "*.bak"], "test")
    assert m("x/été/".encode(), "été/".encode()) and m(b"caf\xe9.bak", b"caf\xe9.bak")
    assert not m(b"ete/", b"ete/")


def test_negation_falls_back_to_pathspec() -> None:
    m = _compile(["*.tmp", "!keep.tmp"], "test")
    assert m(b"x.tmp", b"x.tmp") and not m(b"keep.tmp", b"keep.tmp")


def _scan(root: Path, excluder: Excluder) -> set[str]:
    return {os.fsdecode(e.path) for e in Scanner([Source(b"src", os.fsencode(root))],
                                                  excluder)}


def test_twofoldignore_and_defaults(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ["keep.txt", "skip.log", "sub/skip.log", ".cache/x", "build/out.o",
                "sub/build/kept.o", "Thumbs.db"]:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    (src / ".twofoldignore").write_text("*.log\n/build\n")
    got = _scan(src, Excluder([]))
    assert got == {"src", "src/.twofoldignore", "src/keep.txt", "src/sub",
                   "src/sub/build", "src/sub/build/kept.o"}
    everything = _scan(src, Excluder([], use_defaults=False))
    assert "src/.cache/x" in everything and "src/Thumbs.db" in everything
    assert "src/build" not in everything  # the .twofoldignore still applies


def test_defaults_are_gitignore_lines() -> None:
    m = _compile(list(DEFAULT_EXCLUDES), "defaults")
    assert m(b"a/.cache/", b".cache/") and m(b".local/share/Trash/", b"Trash/")
    assert m(b".Trash-1000/", b".Trash-1000/") and not m(b"x/.local/share/Trash/", b"Trash/")
    assert not m(b"cache.txt", b"cache.txt") and not m(b"Documents/", b"Documents/")


def test_known_translations_are_pathspecs() -> None:
    """excludes.KNOWN spares a run with only the default excludes the import of pathspec:
    it must hold exactly what pathspec makes of those lines."""
    assert set(excludes.KNOWN) == set(excludes.DEFAULT_EXCLUDES)
    for line, known in excludes.KNOWN.items():
        made = tuple((p.regex.pattern, p.include)
                     for p in pathspec.GitIgnoreSpec.from_lines([line]).patterns)
        assert made == known, line


@settings(max_examples=150)
@given(st.lists(st.sampled_from([*PATTERNS, *DEFAULT_EXCLUDES, "build/", "/docs/x",
                                 "été/", "a/**/b"]), min_size=1, max_size=5),
       st.lists(segments, min_size=1, max_size=4), st.booleans())
def test_first_bytes_lets_every_match_through(pats: list[str], parts: list[str],
                                              is_dir: bool) -> None:
    """The walk in C asks the matcher only when first_bytes' table flags the name's or
    the path's first byte: whatever the matcher excludes must be flagged."""
    table = excludes.first_bytes(pats)
    if table is None:
        return
    tail = "/" if is_dir else ""
    inner, name = ("/".join(parts) + tail).encode(), (parts[-1] + tail).encode()
    if _compile(pats, "test")(inner, name):
        assert table[name[0]] & excludes.NAME_FIRST or table[inner[0]] & excludes.PATH_FIRST


def test_first_bytes_of_patterns() -> None:
    t = excludes.first_bytes(["build/", "/docs/x", "a/**/b", "# note", "", "été/"])
    assert t is not None
    flagged = {i: t[i] for i in range(256) if t[i]}
    assert flagged == {ord("b"): excludes.NAME_FIRST, ord("d"): excludes.PATH_FIRST,
                       ord("a"): excludes.PATH_FIRST, "é".encode()[0]: excludes.NAME_FIRST}
    for wild in ("*.tmp", "?x", "[ab]", "!keep", "**/logs", " lead", "\\#x"):
        assert excludes.first_bytes(["build/", wild]) is None, wild
