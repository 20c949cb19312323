"""The SQL schema of a backup set's catalog.sqlite and its format version (docs/FORMAT.md,
"The catalog")."""

FORMAT_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    started_ns INTEGER NOT NULL,
    finished_ns INTEGER,
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    host TEXT NOT NULL,
    stats TEXT
);
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    owner TEXT,
    grp TEXT,
    xattrs TEXT,
    target BLOB,
    rdev INTEGER NOT NULL,
    link_to BLOB,
    hash BLOB,
    first_run INTEGER NOT NULL,
    until_run INTEGER,
    vrun INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_open ON entries(path) WHERE until_run IS NULL;
CREATE INDEX IF NOT EXISTS entries_path ON entries(path, first_run);
CREATE TABLE IF NOT EXISTS names(
    path BLOB PRIMARY KEY,
    stored BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS moves(
    run INTEGER NOT NULL,
    old BLOB NOT NULL,
    new BLOB NOT NULL,
    PRIMARY KEY(run, old)
);
CREATE TABLE IF NOT EXISTS pending(
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    path BLOB NOT NULL,
    tmp TEXT,
    link_to BLOB,
    PRIMARY KEY(run, seq)
);
"""
