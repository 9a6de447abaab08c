"""The run database's schema, one migration per version (PRAGMA user_version).

`rundb._connect` applies, in one transaction, every migration above the file's
version; a new file gets them all. sqlite-utils is imported only here, and only
when a migration runs (never on a no-op run).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_VERSION = 6


def migrate_1(conn: sqlite3.Connection) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(conn)

    def table(name: str) -> sqlite_utils.db.Table:
        return db.table(name)

    table("runs").create(
        {
            "id": str,
            "workflow": str,
            "workflow_path": str,
            "args": str,
            "status": str,
            "started": float,
            "ended": float,
            "resumed_from": str,
            "pid": int,
            "ran": int,
            "reused": int,
            "failed": int,
            "skipped": int,
            "saved_s": float,
            "error": str,
        },
        pk="id",
        if_not_exists=True,
    )
    table("runs").create_index(["workflow", "started"], if_not_exists=True)
    table("results").create(
        {
            "run_id": str,
            "step": str,
            "unit": str,
            "key": str,
            "components": str,
            "status": str,
            "reason": str,
            "attempts": int,
            "started": float,
            "ended": float,
            "duration": float,
            "backend": str,
            "model": str,
            "digest": str,
            "error": str,
            "seq": int,
        },
        pk=("run_id", "step", "unit"),
        if_not_exists=True,
    )
    table("keys").create(
        {
            "key": str,
            "digest": str,
            "step": str,
            "workflow": str,
            "created": float,
            "duration": float,
            "outputs": str,
            "meta": str,
        },
        pk="key",
        if_not_exists=True,
    )
    table("last").create(
        {"workflow": str, "step": str, "unit": str, "key": str, "components": str, "status": str},
        pk=("workflow", "step", "unit"),
        if_not_exists=True,
    )
    table("stat_cache").create(
        {"path": str, "size": int, "mtime_ns": int, "inode": int, "digest": str},
        pk="path",
        if_not_exists=True,
    )
    table("ask_cache").create(
        {"key": str, "digest": str, "created": float},
        pk="key",
        if_not_exists=True,
    )


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
