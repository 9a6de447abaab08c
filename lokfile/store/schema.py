"""The run database's schema, one migration per version (PRAGMA user_version).

`rundb._connect` applies, in one transaction, every migration above the file's
version; a new file gets them all. Plain SQL: a first run in a project pays no
import for making its database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 6


# Version 1, as sqlite-utils wrote it when it made these tables: the same statements, so a
# database made now is the same as one made then (sqlite_master holds the text).
_VERSION_1 = (
    '''CREATE TABLE IF NOT EXISTS "runs" (
   "id" TEXT PRIMARY KEY,
   "workflow" TEXT,
   "workflow_path" TEXT,
   "args" TEXT,
   "status" TEXT,
   "started" REAL,
   "ended" REAL,
   "resumed_from" TEXT,
   "pid" INTEGER,
   "ran" INTEGER,
   "reused" INTEGER,
   "failed" INTEGER,
   "skipped" INTEGER,
   "saved_s" REAL,
   "error" TEXT
)''',
    '''CREATE INDEX IF NOT EXISTS "idx_runs_workflow_started"
    ON "runs" ("workflow", "started")''',
    '''CREATE TABLE IF NOT EXISTS "results" (
   "run_id" TEXT,
   "step" TEXT,
   "unit" TEXT,
   "key" TEXT,
   "components" TEXT,
   "status" TEXT,
   "reason" TEXT,
   "attempts" INTEGER,
   "started" REAL,
   "ended" REAL,
   "duration" REAL,
   "backend" TEXT,
   "model" TEXT,
   "digest" TEXT,
   "error" TEXT,
   "seq" INTEGER,
   PRIMARY KEY ("run_id", "step", "unit")
)''',
    '''CREATE TABLE IF NOT EXISTS "keys" (
   "key" TEXT PRIMARY KEY,
   "digest" TEXT,
   "step" TEXT,
   "workflow" TEXT,
   "created" REAL,
   "duration" REAL,
   "outputs" TEXT,
   "meta" TEXT
)''',
    '''CREATE TABLE IF NOT EXISTS "last" (
   "workflow" TEXT,
   "step" TEXT,
   "unit" TEXT,
   "key" TEXT,
   "components" TEXT,
   "status" TEXT,
   PRIMARY KEY ("workflow", "step", "unit")
)''',
    '''CREATE TABLE IF NOT EXISTS "stat_cache" (
   "path" TEXT PRIMARY KEY,
   "size" INTEGER,
   "mtime_ns" INTEGER,
   "inode" INTEGER,
   "digest" TEXT
)''',
    '''CREATE TABLE IF NOT EXISTS "ask_cache" (
   "key" TEXT PRIMARY KEY,
   "digest" TEXT,
   "created" REAL
)''',
)


def migrate_1(conn: sqlite3.Connection) -> None:
    for statement in _VERSION_1:
        conn.execute(statement)


def migrate_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE runs ADD COLUMN proc_start TEXT")


def migrate_3(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE results ADD COLUMN worker TEXT")


def migrate_4(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE results ADD COLUMN usage TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN cost TEXT")


def migrate_5(conn: sqlite3.Connection) -> None:
    from lokfile.store.leases import migrate  # not on the no-op path

    migrate(conn)


def migrate_6(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE results ADD COLUMN truncated INTEGER")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: migrate_1,
    2: migrate_2,
    3: migrate_3,
    4: migrate_4,
    5: migrate_5,
    6: migrate_6,
}
