"""File-level records: unsafe paths refused when read, groups cut by path, and a restore
that never follows a link it wrote (nothing lands outside the new file system)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from twofold.core.progress import NullProgress
from twofold.image.filerecords import check_path, groups, parse_records, path_mark, put_bytes
from twofold.image.filerestore import FilesRestored, _write_all
from twofold.image.manifest import ManifestError


def _rec(kind: str, path: bytes, **more: object) -> dict[str, object]:
    rec: dict[str, object] = {"k": kind, "m": 0o755, "u": os.getuid(), "g": os.getgid(),
                              "a": 1_000_000_000, "t": 2_000_000_000, **more}
    put_bytes(rec, "p", path)
    return rec


@pytest.mark.parametrize("path", [b"/etc/passwd", b"a/../../x", b"..", b"a//b", b"./a",
                                  b"a/\0b", b"a/", b"a/..", b"a/./b", b"."])
def test_unsafe_paths_are_refused(path: bytes) -> None:
    with pytest.raises(ValueError):
        check_path(path)
    line = json.dumps(_rec("f", path, d=[], s=0)).encode()
    with pytest.raises(ManifestError, match="record 1 is damaged"):
        list(parse_records(line, "test"))


@pytest.mark.parametrize("path", [b"", b".config/a", b"a/.b", b"a/..b", b"...", b"a.b/c."])
def test_names_with_dots_are_kept(path: bytes) -> None:
    assert check_path(path) == (path.split(b"/") if path else [])
    line = json.dumps(_rec("f", path, d=[], s=0)).encode()
    assert len(parse_records(line, "test")) == 1


def test_names_that_are_not_utf8_round_trip_as_hex() -> None:
    rec = _rec("f", b"caf\xe9", d=[], s=0)
    assert "px" in rec
    (back,) = parse_records(json.dumps(rec).encode(), "test")
    assert back["px"] == "caf\xe9".encode("latin-1").hex()


def test_groups_end_at_the_same_paths_whatever_came_before() -> None:
    paths = [f"dir/f{i}".encode() for i in range(3000)]
    recs = [_rec("f", p, d=[], s=0) for p in paths]
    marks = [path_mark(p) for p in paths]
    first = list(groups(recs, marks, 1 << 20))
    changed = [dict(r) for r in recs]
    changed[5]["s"] = 99  # one record changes: only its group differs
    second = list(groups(changed, marks, 1 << 20))
    assert len(first) > 10 and len(first) == len(second)
    assert sum(a != b for a, b in zip(first, second, strict=True)) == 1


def test_restore_never_follows_a_link_it_wrote(tmp_path: Path) -> None:
    root, outside = tmp_path / "fs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    records = [_rec("d", b""), _rec("l", b"esc", l=str(outside)),
               _rec("f", b"esc/planted", d=[], s=0)]
    with pytest.raises(OSError):
        _write_all(records, str(root), None, False, FilesRestored("t"),  # type: ignore[arg-type]
                   NullProgress())
    assert list(outside.iterdir()) == []
    hard = [_rec("d", b""), _rec("l", b"esc", l=str(outside)), _rec("f", b"x", h="esc/y")]
    (outside / "y").write_bytes(b"secret")
    (tmp_path / "fs2").mkdir()
    with pytest.raises(OSError):  # a hard link's source is found without following links
        _write_all(hard, str(tmp_path / "fs2"), None, False, FilesRestored("t"),  # type: ignore[arg-type]
                   NullProgress())
    assert not (tmp_path / "fs2" / "x").exists()
