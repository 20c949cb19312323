"""Read-only views of a set: its runs, and the kept versions of one path."""

from __future__ import annotations

import os
from dataclasses import dataclass

from twofold.core.errors import UsageError
from twofold.core.models import Kind, Record
from twofold.core.names import TargetProfile
from twofold.core.paths import from_user, show, unsafe
from twofold.sets.catalog import Catalog, Run
from twofold.sets.target import SetDir


@dataclass
class Version:
    """One kept version of a path: which runs show it and where its content is."""

    record: Record
    first_run: int
    first_name: str
    until_run: int | None  # the run that replaced or deleted it; None while current
    location: str


def list_runs(target: str, set_name: str) -> list[Run]:
    """All runs of a set, oldest first."""
    return runs_and_target(target, set_name)[0]


def runs_and_target(target: str, set_name: str) -> tuple[list[Run], TargetProfile | None]:
    """All runs of a set, oldest first, and what its target drive can hold."""
    sd = SetDir(target, set_name)
    sd.require()
    with sd.open_catalog() as catalog:
        runs, profile = catalog.runs(), catalog.profile()
    if any(r.state == "running" for r in runs) and not sd.in_use():
        for r in runs:  # its process is gone: the next run will mark it so
            if r.state == "running":
                r.state = "interrupted"
    return runs, profile


def history(target: str, set_name: str, path: str) -> list[Version]:
    """Every kept version of `path`, oldest first."""
    sd = SetDir(target, set_name)
    sd.require()
    with sd.open_catalog() as catalog:
        rel = from_user(set_path(path, catalog.runs()) if os.path.isabs(path) else path)
        rows = catalog.history(rel)
        if not rows:
            raise UsageError(f"{show(rel)} was never backed up in set {set_name!r}",
                             "paths start with the source folder's name, e.g. "
                             "Documents/letter.odt, or give the file's own full path")
        names = catalog.run_names()
        return [Version(r, r.first_run, names.get(r.first_run, f"run {r.first_run}, not "
                                                   "in the catalog"), r.until_run,
                        _where(sd, r, names, catalog)) for r in rows]


def set_path(path: str, runs: list[Run]) -> str:
    """The set path ("Documents/cv.odt") of an absolute source path, from the sources of
    the latest run that had one holding it; `path` itself when none did."""
    real = os.path.realpath(os.path.expanduser(path))
    for run in reversed(runs):
        for src in run.config.get("sources", []):
            if real == src or real.startswith(src.rstrip("/") + "/"):
                name = os.path.basename(src) or "root"
                return name + real[len(src.rstrip("/")):] if real != src else name
    return path


def _where(sd: SetDir, rec: Record, names: dict[int, str], catalog: Catalog) -> str:
    """Where a version's content is on the drive (relative to the set's folder): the first
    place that holds it, or "(missing)"; folders and links have no content to point at."""
    if rec.kind is not Kind.FILE:
        return "-"
    if (rec.vrun is not None and rec.vrun not in names) or unsafe(rec.path):
        return "?"  # its run is lost from the catalog, or its path is crafted
    for place in sd.candidates(rec, names, catalog):
        if os.path.lexists(place):
            return os.fsdecode(os.path.relpath(place, sd.root))
    return "(missing)"
