"""Prune old versions: keep the runs a retention policy names, drop what no kept run shows.

current/ is never touched; a versions/ file goes only when no kept run shows it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import tzinfo
from itertools import groupby

from twofold.core.errors import TargetError, UsageError
from twofold.core.models import Kind, Record
from twofold.core.paths import unsafe
from twofold.core.retention import Policy, needed, runs_to_keep
from twofold.sets.target import SetDir


@dataclass
class PruneResult:
    """What prune kept and removed."""

    kept_runs: list[int] = field(default_factory=list)
    pruned_runs: list[int] = field(default_factory=list)
    files_removed: int = 0
    bytes_freed: int = 0
    dry_run: bool = False


def _remove_empty_dirs(top: bytes) -> None:
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):  # not empty
            os.rmdir(dirpath)


def prune(target: str, set_name: str, policy: Policy, tz: tzinfo,
          dry_run: bool = False) -> PruneResult:
    """Apply `policy` to set `set_name`."""
    if policy.daily + policy.weekly + policy.monthly <= 0:
        raise UsageError("prune needs at least one of --keep-daily, --keep-weekly, "
                         "--keep-monthly", "e.g. --keep-daily 7 --keep-weekly 4")
    sd = SetDir(target, set_name)
    sd.require()
    result = PruneResult(dry_run=dry_run)
    with sd.lock(), sd.open_catalog() as catalog:
        runs = catalog.runs()
        names = {r.id: r.name for r in runs}
        done = [(r.id, r.finished_ns or r.started_ns) for r in runs if r.state == "complete"]
        kept = sorted(runs_to_keep(done, policy, tz))
        result.kept_runs = kept
        result.pruned_runs = [r.id for r in runs
                              if r.id not in kept and r.state in ("complete", "interrupted")]
        drop_rows: list[int] = []
        drop_files: list[Record] = []
        closed = sorted(catalog.closed(), key=lambda r: (r.path, r.vrun or 0))
        for (_path, vrun), group in groupby(closed, key=lambda r: (r.path, r.vrun)):
            rows = list(group)
            assert all(r.until_run is not None for r in rows)
            unneeded = [r for r in rows if not needed(r.first_run, r.until_run or 0, kept)]
            drop_rows.extend(r.id for r in unneeded)
            if vrun is not None and len(unneeded) == len(rows) and \
                    rows[0].kind is not Kind.DIR:
                drop_files.append(rows[0])
        result.files_removed = len(drop_files)
        result.bytes_freed = sum(r.size for r in drop_files if r.kind is Kind.FILE)
        if dry_run:
            return result

        def record() -> None:
            with catalog.transaction():
                catalog.delete_rows(drop_rows)
                for rid in result.pruned_runs:
                    catalog.set_run_state(rid, "pruned")

        def remove_files() -> None:
            for rec in drop_files:
                if unsafe(rec.path) or names.get(rec.vrun or 0) is None:
                    continue  # a crafted row's: its file is not removed (nor looked for)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sd.location(rec, names))

        try:
            record()  # first: a kill after it leaves only unlisted files
        except TargetError:
            # A full drive has no room for the catalog's journal (or, on a drive taking
            # whole files only, for its new copy): the files no kept run shows go first,
            # then the record; a kill between leaves rows of pruned runs whose files are
            # gone, which the next prune drops.
            remove_files()
            record()
        else:
            remove_files()
        for name in os.listdir(sd.versions):
            _remove_empty_dirs(os.path.join(sd.versions, name))
    return result
