"""Heal copies `verify` found damaged or missing: copy the source again where it still has
the content the catalog records (BLAKE3), so a flipped bit or a deleted copy does not stay.

The next backup heals the copies verify listed (store.healrows); `verify --heal` heals them
at once. A copy is only ever replaced by content whose hash is the row's, checked while it
is copied; a source that changed since is left alone (its next backup copies it as a
change). docs/DESIGN.md, "Copies heal", gives the reasons.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from twofold.backup.ops import no_symlink_above
from twofold.core.models import Issue, Kind, Record
from twofold.core.paths import unsafe
from twofold.fsinfo.meta import apply_metadata
from twofold.sets.catalog import Catalog
from twofold.sets.copy import SourceReadError, copy_file
from twofold.sets.healrows import to_heal, unmark
from twofold.sets.target import SetDir, target_failure


@dataclass
class HealResult:
    """How many copies were healed, and those that could not be, with why."""

    healed: int = 0
    left: list[Issue] = field(default_factory=list)


def last_sources(catalog: Catalog) -> dict[bytes, bytes]:
    """Top-level name in the set -> source folder, as the last complete run had them."""
    done = [r for r in catalog.runs() if r.state == "complete" and r.config.get("sources")]
    if not done:
        return {}
    paths = [os.fsencode(p) for p in done[-1].config["sources"]]
    return {os.path.basename(p) or b"root": p for p in paths}


def source_of(tops: dict[bytes, bytes], rel: bytes) -> bytes | None:
    """The source path of set path `rel`, None when no source holds its top folder."""
    top, _, inner = rel.partition(b"/")
    base = tops.get(top)
    if base is None:
        return None
    return os.path.join(base, inner) if inner else base


def heal_copies(sd: SetDir, catalog: Catalog, tops: dict[bytes, bytes], run_name: str,
                rows: list[Record] | None = None) -> HealResult:
    """Heal the copies of `rows` (default: those verify listed) from the sources `tops`."""
    rows = to_heal(catalog) if rows is None else rows
    result = HealResult()
    if not rows:
        return result
    names = catalog.run_names()
    done: list[int] = []
    for rec in rows:
        if rec.kind is not Kind.FILE or rec.hash is None or rec.link_to is not None or (
                rec.until_run is not None and rec.vrun is None):
            done.append(rec.id)  # no content of its own kept on the target
            continue
        why = unsafe(rec.path) or _heal_one(sd, rec, tops, sd.location(rec, names),
                                            run_name)
        if why is None:
            result.healed += 1
        else:
            result.left.append(Issue(rec.path, "not healed", f"its damaged or missing copy "
                                     f"could not be healed: {why}"))
        if why is None or rec.until_run is not None:  # an old version: tried once
            done.append(rec.id)
    if done:  # else the catalog stays as it was
        try:
            with catalog.transaction():
                unmark(catalog, done)
        except OSError as err:
            raise target_failure(err, sd.catalog) from err
    return result


def _heal_one(sd: SetDir, rec: Record, tops: dict[bytes, bytes], where: bytes,
              run_name: str) -> str | None:
    """Copy the source of `rec` over its copy at `where`; None when done, else why not."""
    why = unsafe(rec.path)
    if why is not None:
        return f"the catalog names {why}"
    src = source_of(tops, rec.path)
    if src is None:
        return "its source folder is not known"
    try:
        st = os.lstat(src)
    except OSError as err:
        return f"the source cannot be read: {err.strerror}"
    if st.st_size != rec.size:
        return "the source changed since its last backup"
    tmp = os.path.join(sd.tmp, b"heal-%d-%d" % (os.getpid(), rec.id))
    try:
        sd.makedirs(sd.tmp)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        copied = copy_file(src, tmp, fsync=True)
    except SourceReadError as err:
        return f"the source cannot be read: {err.strerror}"
    except OSError as err:
        raise target_failure(err, tmp) from err
    try:
        if copied.hash != rec.hash or copied.size != rec.size:
            os.unlink(tmp)
            return "the source changed since its last backup"
        apply_metadata(tmp, rec, holds=sd.namer.profile.holds)
        if rec.vrun is None:
            no_symlink_above(sd, run_name, rec.path)  # makes folders removed from the drive
        else:
            sd.makedirs(os.path.dirname(where))
        if os.path.isdir(where) and not os.path.islink(where):
            os.unlink(tmp)
            return "a folder is where its copy belongs"
        os.replace(tmp, where)  # the damaged copy is dropped: its content is not the row's
    except OSError as err:
        raise target_failure(err, where) from err
    return None
