"""Browsing a backup set as of a run, and restoring one file or folder to its place
(what is there now is kept aside) or into another folder: what the panel's Browse page
does, with the same engine calls the CLI's restore makes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import tzinfo

from twofold.backup.inspect import Version, history
from twofold.backup.restore import RestoreResult, restore
from twofold.core.errors import RestoreError, UsageError
from twofold.core.paths import SEP, show
from twofold.core.progress import Progress
from twofold.sets.catalog import Run
from twofold.sets.target import SetDir


@dataclass(frozen=True)
class Item:
    """One entry of a folder as of a run."""

    name: str
    path: str  # relative to the set, '/'-separated
    kind: str  # the catalog's one letter: f, d, l...
    size: int
    mtime_ns: int


def clean_relative(text: str) -> str:
    """A path inside a set or folder as typed: refused when absolute or when it climbs out
    with '..' (it would escape the chosen folder)."""
    if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        raise UsageError(f"{text!r} is not a path inside the backup",
                         "paths start with the source folder's name, e.g. Documents/cv.odt")
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"{text!r} leads out of the chosen folder ('..' is refused)",
                         "give the path inside the folder, without '..'")
    return "/".join(parts)


def list_folder(target: str, set_name: str, folder: str, run_id: int) -> list[Item]:
    """The entries directly in `folder` (\"\" for the top) as run `run_id` left them,
    folders first, then by name."""
    rel = clean_relative(folder).encode("utf-8", errors="surrogateescape")
    sd = SetDir(target, set_name)
    sd.require()
    lo = rel + SEP if rel else b""
    start = len(lo) + 1
    args: list[object] = [lo]
    upper = ""
    if rel:
        upper, args = "AND path < ? ", [lo, rel + b"0"]  # '0' follows '/'
    args += [run_id, run_id, start]
    with sd.open_catalog() as catalog:
        rows = catalog.db.execute(
            "SELECT path, kind, size, mtime_ns FROM entries WHERE path >= ? " + upper +
            "AND first_run <= ? AND (until_run IS NULL OR until_run > ?) "
            "AND instr(substr(path, ?), x'2f') = 0 AND length(path) > 0", args).fetchall()
    items = []
    for path, kind, size, mtime in rows:
        raw = bytes(path)
        if raw == rel:
            continue
        text = show(raw)
        items.append(Item(text.rsplit("/", 1)[-1], text, kind, size, mtime))
    items.sort(key=lambda i: (i.kind != "d", i.name.lower(), i.name))
    return items


def versions(target: str, set_name: str, path: str) -> list[Version]:
    """Every kept version of one path (the CLI's `history`)."""
    return history(target, set_name, clean_relative(path))


def version_file(target: str, set_name: str, path: str, run_id: int) -> str:
    """The copy on the target of the version of file `path` that run `run_id` saw."""
    for v in versions(target, set_name, path):
        seen = v.first_run <= run_id and (v.until_run is None or v.until_run > run_id)
        if seen and v.record.kind == "f":
            root = os.fsdecode(SetDir(target, set_name).root)
            return os.path.join(root, v.location)
    raise UsageError(f"run {run_id} saw no file {path}",
                     "the Browse page lists the versions kept")


def place_of(run: Run, path: str) -> str:
    """The folder a set path came from: the parent of the source folder it lies in,
    as that run's config recorded the sources."""
    top = path.split("/", 1)[0]
    for source in run.config.get("sources", []):
        real = os.path.abspath(os.path.expanduser(str(source)))
        if (os.path.basename(real) or "root") == top:
            return os.path.dirname(real)
    raise UsageError(f"the run does not say where {top} came from",
                     "restore it to another folder instead")


def aside_name(existing: str, now: float | None = None) -> str:
    """A free name beside `existing` to keep it under while a restore takes its place."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    candidate, n = f"{existing}.before-restore-{stamp}", 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{existing}.before-restore-{stamp}-{n}"
    return candidate


def restore_item(target: str, set_name: str, run: Run, path: str, folder: str | None,
                 progress: Progress, tz: tzinfo) -> tuple[RestoreResult, str, str | None]:
    """Restore `path` as of `run` into `folder`, or to its place when `folder` is None.
    Returns the result, where it went, and where what was in the way was kept."""
    rel = clean_relative(path)
    if not rel:
        raise UsageError("choose a file or folder to restore")
    if folder is None:
        dest = place_of(run, rel)
    else:
        if not os.path.isabs(os.path.expanduser(folder)):
            raise UsageError(f"{folder!r} is not a full path", "e.g. /home/you/restored")
        dest = os.path.expanduser(folder)
    out = os.path.join(dest, rel)
    kept = None
    if os.path.lexists(out):
        kept = aside_name(out)
        try:
            os.rename(out, kept)
        except OSError as err:
            raise RestoreError(f"cannot keep {out} aside: {err.strerror}",
                               "restore to another folder instead") from err
    try:
        result = restore(target, set_name, dest, [rel], str(run.id), False, progress, tz)
    except BaseException:
        if kept is not None and not os.path.lexists(out):
            os.rename(kept, out)  # nothing restored: what was there goes back
            kept = None
        raise
    return result, out, kept
