"""The backup sets on a drive: list them with their last run, delete one whole."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from twofold.core.errors import UsageError
from twofold.sets.target import SetDir, target_failure


@dataclass
class SetInfo:
    """One set on the drive, as its catalog tells."""

    name: str
    runs: int
    last_ok_ns: int | None  # when its last complete run finished
    files: int  # in the backup after that run
    bytes: int


def list_sets(target: str) -> list[SetInfo]:
    """Every set on the drive at `target`, by name."""
    probe = SetDir(target, "default")
    if not os.path.isdir(probe.target):
        raise UsageError(f"target {target} does not exist or is not a folder",
                         "is the backup drive plugged in and mounted?")
    found = []
    for name in probe.sets_on_target():
        sd = SetDir(target, name)
        with sd.open_catalog() as catalog:
            runs = catalog.runs()
        done = [r for r in runs if r.state == "complete"]
        last = done[-1] if done else None
        stats = last.stats if last else {}
        found.append(SetInfo(name, len(runs), last.finished_ns if last else None,
                             int(stats.get("files_total", 0)), int(stats.get("bytes_total", 0))))
    return found


def delete_set(target: str, name: str) -> None:
    """Remove set `name` from the drive: its copies, versions and catalog (under its lock,
    so never while it runs)."""
    sd = SetDir(target, name)
    sd.require()
    with sd.lock():
        try:  # the catalog first: a kill halfway leaves no set that looks whole
            os.unlink(sd.catalog)
        except OSError as err:
            raise target_failure(err, sd.catalog) from err
    try:
        shutil.rmtree(sd.root)
    except OSError as err:
        raise target_failure(err, sd.root) from err
