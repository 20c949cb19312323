"""Backup `prune` on a drive filled to the last cluster: it frees what it reports, and
the catalog records it (real ext4, FAT32 and exFAT drives; root only)."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import pytest

from tests.fulldrive import fill, small_drive
from twofold.backup.prune import prune
from twofold.core.retention import Policy

from .conftest import IS_ROOT, SET, catalog_rows, run_backup, run_verify

MiB = 1 << 20
pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root "
                                                   "(loop devices and FUSE mounts)")]


@pytest.mark.parametrize("kind", ["ext4", "fat32", "exfat"])
def test_prune_frees_space_on_a_full_drive(tmp_path: Path, clock: object, kind: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):  # a catalog of some pages, so that its journal needs room
        (src / f"note{i:03d}.txt").write_text(f"note {i}\n" * 50)
    with small_drive(tmp_path / "d", 80, kind) as drive:
        for _run in range(3):
            for i in range(3):
                (src / f"big{i}.bin").write_bytes(os.urandom(3 * MiB))
            for i in range(0, 40, 3):
                (src / f"note{i:03d}.txt").write_text(f"changed {_run}\n")
            assert run_backup(src, drive, clock).run_id  # type: ignore[arg-type]
        journal = drive / "twofold" / SET / "catalog.sqlite-journal"
        journal.unlink(missing_ok=True)  # kept by SQLite (PERSIST): its room is gone too
        fill(drive)
        result = prune(str(drive), SET, Policy(1, 0, 0), UTC)
        assert result.pruned_runs == [1, 2] and result.files_removed >= 6
        assert result.bytes_freed >= 18 * MiB
        assert fill(drive, "filler2") >= result.bytes_freed - MiB
        states = catalog_rows(drive, "SELECT id, state FROM runs ORDER BY id")
        assert states == [(1, "pruned"), (2, "pruned"), (3, "complete")]
        versions = drive / "twofold" / SET / "versions"
        assert not any(p.is_file() for p in versions.rglob("*"))
        assert not run_verify(drive).problems
