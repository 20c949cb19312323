"""Read a set's run history from its catalog for `advise`: the complete runs, and per
top-level folder the runs that added, changed or removed something in it."""

from __future__ import annotations

from twofold.core.advice import FolderAdvice, advise
from twofold.core.paths import show
from twofold.sets.target import SetDir


def folder_changes(target: str, set_name: str) -> tuple[list[int], dict[str, list[int]]]:
    """(start times of the complete runs, top-level folder -> start times of the later
    runs that changed it); the first run, which copies everything, counts for none."""
    sd = SetDir(target, set_name)
    sd.require()
    with sd.open_catalog() as catalog:
        runs = [r for r in catalog.runs() if r.state == "complete"]
        changes: dict[str, list[int]] = {}
        for i, run in enumerate(runs):
            folders = {show(p.split(b"/", 1)[0]) for p in catalog.changed_by(run.id)}
            for folder in folders:
                seen = changes.setdefault(folder, [])
                if i:
                    seen.append(run.started_ns)
        return [r.started_ns for r in runs], changes


def advise_set(target: str, set_name: str) -> list[FolderAdvice]:
    """The advice for every top-level folder of a set."""
    times, changes = folder_changes(target, set_name)
    return advise(times, changes) if times else []
