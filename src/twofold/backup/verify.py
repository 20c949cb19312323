"""Verify a set: re-read kept content and compare with its BLAKE3; optionally against the source."""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass, field

from twofold.core.diff import Action, merge
from twofold.core.models import Issue, Kind, Record
from twofold.core.progress import Progress
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source
from twofold.store.catalog import Catalog
from twofold.store.copy import SourceReadError, hash_file
from twofold.store.salvage import check
from twofold.store.target import SetDir


@dataclass
class VerifyResult:
    """What verify read and what it found wrong."""

    checked: int = 0
    bytes: int = 0
    problems: list[Issue] = field(default_factory=list)
    source_differences: list[Issue] = field(default_factory=list)


def verify(target: str, set_name: str, progress: Progress, *, sample: float | None = None,
           against_source: bool = False, seed: int | None = None) -> VerifyResult:
    """Check every kept copy (or a `sample` percent of them) of set `set_name`."""
    sd = SetDir(target, set_name)
    sd.require()
    result = VerifyResult()
    with sd.open_catalog() as catalog:
        progress.phase("checking the catalog")
        damage = check(catalog.db, quick=True)  # an index can be damaged, rows whole
        if damage:
            result.problems.append(Issue(
                sd.catalog, "damaged", f"the catalog is damaged ({'; '.join(damage[:3])}); "
                "`twofold repair` keeps what can be read and rebuilds the rest"))
        names = catalog.run_names()
        rng = random.Random(seed)
        chosen = [r for r in catalog.stored()
                  if sample is None or rng.random() * 100 < sample]
        progress.phase("verifying", len(chosen), sum(r.size for r in chosen))
        for rec in chosen:
            found: list[Issue] = []
            for where in sd.candidates(rec, names, catalog):
                problem = _check(rec, where, sd)
                if problem is None:
                    found = []
                    break
                found.append(problem)
            if found:  # report the main location's problem
                result.problems.append(found[0])
                progress.issue(found[0])
            result.checked += 1
            result.bytes += rec.size
            progress.advance(1, rec.size)
        if against_source:
            result.source_differences = _against_source(catalog, progress)
    progress.finish()
    return result


def _check(rec: Record, where: bytes, sd: SetDir) -> Issue | None:
    """None when the copy at `where` has the row's BLAKE3, else what is wrong."""
    label = os.fsdecode(os.path.relpath(where, sd.root))
    try:
        digest, size = hash_file(where)
    except SourceReadError as err:
        return Issue(rec.path, "missing" if err.errno == errno.ENOENT else "unreadable",
                     f"{label}: {err.strerror}")
    if digest == rec.hash:
        return None
    return Issue(rec.path, "damaged", f"{label} no longer matches its BLAKE3 ({size} bytes)")


_SOURCE_WORDS = {
    Action.NEW: "in the source but not in the backup",
    Action.DELETED: "in the backup but no longer in the source",
    Action.CHANGED: "changed in the source since the last run",
    Action.CHECK: "changed in the source since the last run",
    Action.META: "metadata changed in the source since the last run",
    Action.SKIPPED: "cannot be read in the source",
}


def _against_source(catalog: Catalog, progress: Progress) -> list[Issue]:
    """Differences between current/ (as catalogued) and the sources of the last run."""
    done = [r for r in catalog.runs() if r.state == "complete"]
    if not done:
        return []
    config = done[-1].config
    paths = [os.fsencode(p) for p in config.get("sources", [])]
    sources = [Source(os.path.basename(p) or b"root", p) for p in paths]
    out: list[Issue] = []
    progress.phase("comparing with the source")
    scanner = Scanner(sources, Excluder(list(config.get("excludes", [])),
                                        bool(config.get("default_excludes", True))))
    tops = {s.name: s.path for s in sources}
    for ch in merge(scanner, catalog.current(), keep_old=True):
        text = _SOURCE_WORDS.get(ch.action)
        if ch.action is Action.UNCHANGED and ch.entry is not None and \
                ch.entry.kind is Kind.FILE and ch.old is not None:
            top, _, inner = ch.path.partition(b"/")
            try:
                digest, _ = hash_file(os.path.join(tops[top], inner))
            except SourceReadError as err:
                text = f"cannot be read in the source: {err.strerror}"
            else:
                if digest != ch.old.hash:
                    text = "differs from the source although size and time are the same"
            progress.advance(1, ch.entry.size)
        if text is not None:
            issue = Issue(ch.path, "differs", text)
            out.append(issue)
            progress.issue(issue)
    return out
