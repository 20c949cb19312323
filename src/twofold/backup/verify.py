"""Verify a set: re-read kept content and compare with its BLAKE3; optionally against the source."""

from __future__ import annotations

import errno
import os
import random
import time
from contextlib import suppress
from dataclasses import dataclass, field

from twofold.backup.heal import heal_copies, last_sources, source_of
from twofold.core.diff import Action, merge
from twofold.core.errors import TwofoldError
from twofold.core.models import Issue, Kind, Record
from twofold.core.paths import unsafe
from twofold.core.progress import Progress
from twofold.fsinfo.disk import syncfs
from twofold.fsinfo.excludes import Excluder
from twofold.fsinfo.scan import Scanner, Source
from twofold.sets.catalog import Catalog
from twofold.sets.copy import SourceReadError, hash_file
from twofold.sets.healrows import clear, listed, mark, set_hash
from twofold.sets.salvage import check
from twofold.sets.target import SetDir


@dataclass
class VerifyResult:
    """What verify read and what it found wrong (and, with heal, put right)."""

    checked: int = 0
    bytes: int = 0
    problems: list[Issue] = field(default_factory=list)
    source_differences: list[Issue] = field(default_factory=list)
    healed: int = 0  # copies copied again from the source (--heal)
    fixed_hashes: int = 0  # catalog rows whose BLAKE3 was put right (--heal)
    not_healed: list[Issue] = field(default_factory=list)


def verify(target: str, set_name: str, progress: Progress, *, sample: float | None = None,
           against_source: bool = False, seed: int | None = None,
           heal: bool = False) -> VerifyResult:
    """Check every kept copy (or a `sample` percent of them) of set `set_name`.

    The set's lock is held (shared; exclusive with `heal`), so a running backup's half-done
    work is never taken for damage. Damaged and missing copies are listed in the catalog
    for the next backup to heal; with `heal` they are healed at once.
    """
    sd = SetDir(target, set_name)
    sd.require()
    result = VerifyResult()
    with sd.lock(shared=not heal), sd.open_catalog() as catalog:
        progress.phase("checking the catalog")
        damage = check(catalog.db, quick=True)  # an index can be damaged, rows whole
        if damage:
            result.problems.append(Issue(
                sd.catalog, "damaged", f"the catalog is damaged ({'; '.join(damage[:3])}); "
                "`twofold repair` keeps what can be read and rebuilds the rest"))
        names = catalog.run_names()
        tops = last_sources(catalog)
        rng = random.Random(seed)
        chosen = [r for r in catalog.stored()
                  if sample is None or rng.random() * 100 < sample]
        progress.phase("verifying", len(chosen), sum(r.size for r in chosen))
        bad: list[Record] = []
        wrong_hash: list[tuple[Record, bytes]] = []
        for rec in chosen:
            if unsafe(rec.path) is not None:
                named = Issue(rec.path, "unsafe", f"the catalog names {unsafe(rec.path)}; "
                              "not read (a crafted or damaged catalog? `twofold repair`)")
                result.problems.append(named)
                progress.issue(named)
                continue
            found: list[tuple[Issue, bytes | None]] = []
            for where in sd.candidates(rec, names, catalog):
                problem, digest = _check(rec, where, sd)
                if problem is None:
                    found = []
                    break
                found.append((problem, digest))
            if found:  # report the main location's problem
                problem, digest = found[0]
                if digest is not None and _source_agrees(tops, rec, digest):
                    problem = Issue(rec.path, "catalog", "the catalog's BLAKE3 disagrees with "
                                    "both the copy and the source, which agree: the catalog "
                                    "row is wrong, not the copy (`verify --heal` puts it "
                                    "right)")
                    wrong_hash.append((rec, digest))
                else:
                    bad.append(rec)
                result.problems.append(problem)
                progress.issue(problem)
            result.checked += 1
            result.bytes += rec.size
            progress.advance(1, rec.size)
        _settle(sd, catalog, result, bad, wrong_hash, tops, heal, sample is None)
        if against_source:
            result.source_differences = _against_source(catalog, progress)
    progress.finish()
    return result


def _settle(sd: SetDir, catalog: Catalog, result: VerifyResult, bad: list[Record],
            wrong_hash: list[tuple[Record, bytes]], tops: dict[bytes, bytes],
            heal: bool, full: bool) -> None:
    """List the damaged copies for the next backup, or (heal) heal them now."""
    if not heal:
        before, want = listed(catalog), {r.id for r in bad}
        if want - before or (full and before - want):  # else the catalog stays untouched
            with suppress(TwofoldError), catalog.transaction():  # a read-only drive
                if full:  # copies found whole need no healing (any more)
                    clear(catalog)
                mark(catalog, ((r.id, "damaged") for r in bad))
        return
    with catalog.transaction():
        for rec, digest in wrong_hash:
            set_hash(catalog, rec.id, digest)
        result.fixed_hashes = len(wrong_hash)
    if bad:
        healed = heal_copies(sd, catalog, tops, run_name_for_heal(), bad)
        result.healed = healed.healed
        result.not_healed = healed.left
        if healed.healed:
            syncfs(sd.root)
        if healed.left:
            with catalog.transaction():  # the next backup tries again
                mark(catalog, ((r.id, "damaged") for r in bad
                               if r.path in {i.path for i in healed.left}))


def run_name_for_heal() -> str:
    """The versions/ folder that keeps a symlink found where a folder belongs."""
    return "healed-" + time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())


def _source_agrees(tops: dict[bytes, bytes], rec: Record, digest: bytes) -> bool:
    """True when the source of `rec` has the content `digest` (a copy's)."""
    src = source_of(tops, rec.path)
    if src is None:
        return False
    try:
        return hash_file(src)[0] == digest
    except SourceReadError:
        return False


def _check(rec: Record, where: bytes, sd: SetDir) -> tuple[Issue | None, bytes | None]:
    """(None, hash) when the copy at `where` has the row's BLAKE3, else (what is wrong, the
    copy's BLAKE3 when it could be read)."""
    label = os.fsdecode(os.path.relpath(where, sd.root))
    try:
        digest, size = hash_file(where)
    except SourceReadError as err:
        return Issue(rec.path, "missing" if err.errno == errno.ENOENT else "unreadable",
                     f"{label}: {err.strerror}"), None
    if digest == rec.hash:
        return None, digest
    return Issue(rec.path, "damaged",
                 f"{label} no longer matches its BLAKE3 ({size} bytes)"), digest


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
    sources = [Source(name, path) for name, path in last_sources(catalog).items()]
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
