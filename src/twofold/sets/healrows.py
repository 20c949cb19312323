"""The catalog's list of copies to heal: rows whose copy `verify` found damaged or missing.

A table of its own (`heal`, docs/FORMAT.md), made when first needed; catalogs without it
read as having nothing to heal, and older twofold versions ignore it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from twofold.core.models import Record
from twofold.sets.catalog import Catalog
from twofold.sets.rows import SELECT, row_record

_TABLE = "CREATE TABLE IF NOT EXISTS heal(row INTEGER PRIMARY KEY, found TEXT NOT NULL)"


def mark(catalog: Catalog, found: Iterable[tuple[int, str]]) -> None:
    """Record (row id, what was found) for copies to heal (inside a transaction)."""
    catalog.db.execute(_TABLE)
    catalog.db.executemany("INSERT OR REPLACE INTO heal(row, found) VALUES(?, ?)",
                           list(found))


def listed(catalog: Catalog) -> set[int]:
    """Ids of the rows listed for healing."""
    try:
        return {int(r[0]) for r in catalog.db.execute("SELECT row FROM heal")}
    except sqlite3.OperationalError:  # no heal table
        return set()


def to_heal(catalog: Catalog) -> list[Record]:
    """The rows whose copies are to be healed; rows no longer in the catalog are left out."""
    try:
        rows = catalog.db.execute(
            f"{SELECT} WHERE id IN (SELECT row FROM heal) ORDER BY path").fetchall()
    except sqlite3.OperationalError:  # no heal table: nothing was ever found
        return []
    return [row_record(r) for r in rows]


def unmark(catalog: Catalog, ids: Iterable[int]) -> None:
    """Forget rows whose copies were healed, or that need no healing (in a transaction)."""
    ids = list(ids)
    if ids:
        catalog.db.execute(_TABLE)
        catalog.db.executemany("DELETE FROM heal WHERE row=?", [(i,) for i in ids])


def clear(catalog: Catalog) -> None:
    """Forget every row listed (inside a transaction; a full verify lists anew)."""
    catalog.db.execute(_TABLE)
    catalog.db.execute("DELETE FROM heal")


def set_hash(catalog: Catalog, row_id: int, digest: bytes) -> None:
    """Put right a row's BLAKE3 that disagreed with both its copy and the source, which
    agree (inside a transaction)."""
    catalog.db.execute("UPDATE entries SET hash=? WHERE id=?", (digest, row_id))
