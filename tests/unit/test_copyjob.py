"""copy_one gives the copy the metadata the file has when it is read: a file whose mode,
owner or times changed since the scan gets the new ones (and its record says so), one
that did not keeps the scanned ones."""

from __future__ import annotations

import os
from pathlib import Path

from twofold.backup.copyjob import CopyTask, copy_one
from twofold.backup.records import refreshed, to_record
from twofold.fsinfo.scan import entry_from_stat
from twofold.sets.copy import ALL


def _task(tmp_path: Path, name: str = "f") -> tuple[CopyTask, Path]:
    src = tmp_path / name
    src.write_bytes(b"content")
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    entry = entry_from_stat(name.encode(), os.lstat(src))
    return CopyTask(os.fsencode(src), os.fsencode(tmp_path / f"{name}.tmp"), entry, None,
                    False, ALL), tmp_path / f"{name}.tmp"


def test_a_file_unchanged_since_the_scan_gets_the_scanned_metadata(tmp_path: Path) -> None:
    task, tmp = _task(tmp_path)
    assert not refreshed(task.entry, os.lstat(task.src))
    out = copy_one(task)
    st = os.lstat(tmp)
    assert out.kind == "copied" and tmp.read_bytes() == b"content"
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o640, task.entry.mtime_ns)


def test_a_file_changed_since_the_scan_gets_its_metadata_as_read(tmp_path: Path) -> None:
    task, tmp = _task(tmp_path)
    os.chmod(task.src, 0o600)  # after the scan, before the copy
    os.utime(task.src, ns=(1_800_000_000 * 10**9, 1_800_000_000 * 10**9))
    now = os.lstat(task.src)
    assert refreshed(task.entry, now)
    assert to_record(task.entry, 0, None, now).signature() != task.entry.signature()
    out = copy_one(task)
    st = os.lstat(tmp)
    assert out.kind == "copied" and out.before is not None
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o600, now.st_mtime_ns)
    assert (out.before.st_mode & 0o7777, out.before.st_mtime_ns) == (0o600, now.st_mtime_ns)


FIELDS = {"size": 6, "ino": 1, "uid": 4, "gid": 5, "mode": 0, "mtime_ns": None,
          "ctime_ns": None}  # index in the stat tuple (None: a named field only)


def test_refreshed_agrees_with_the_record_it_saves_making(tmp_path: Path) -> None:
    """For each field to_record takes from the stat, and for none, refreshed says what
    comparing the record's signature would."""
    task, _tmp = _task(tmp_path)
    st = os.lstat(task.src)
    for changed in [None, *FIELDS]:
        seq = list(st[:10])
        named = {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns,
                 "st_atime_ns": st.st_atime_ns}
        if changed in ("mtime_ns", "ctime_ns"):
            named[f"st_{changed}"] += 1
        elif changed == "mode":
            seq[0] ^= 0o111
        elif changed is not None:
            seq[FIELDS[changed]] += 1
        other = os.stat_result(seq, named)
        differs = to_record(task.entry, 0, None, other).signature() != task.entry.signature()
        assert differs == (changed is not None), changed
        assert refreshed(task.entry, other) == differs, changed
