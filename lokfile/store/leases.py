"""Leases on keys in `.lok/lok.db`: one call per key across the `lok` processes of a project.

    leases   key -> the process making its call now: pid, proc_start (boot id and start
             time, so a reused pid is not taken for the owner), run id, when it was
             taken, and a heartbeat the owner renews while it runs (schema 5)

Before a process calls a backend for a key it claims the key. The claim is one
`BEGIN IMMEDIATE` transaction, so two processes cannot both win it:

    DONE    the key already has a result (another process finished it): reuse that
    MINE    no one holds it, or its holder is gone (dead, a zombie, its pid reused) or
            has not renewed its heartbeat for STALE_S: it is ours now
    THEIRS  a live process is making the call: wait for its result

The owner drops its lease in the transaction that records the key's result
(`Recorder.write`), or when the call failed, so a waiter sees either the result or
a free key, never a gap. Processes on one machine share the database; a lease
never leaves the project.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import NamedTuple

from lokfile.process.tree import identity, is_running

STALE_S = 30.0  # a holder that has not renewed its lease for this long is taken over
DONE, MINE, THEIRS = "done", "mine", "theirs"


def migrate(conn: sqlite3.Connection) -> None:
    """Schema 5: the leases table."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, pid INTEGER, proc_start TEXT,"
        " run_id TEXT, taken REAL, heartbeat REAL)"
    )


class Holder(NamedTuple):
    pid: int
    proc_start: str | None
    run_id: str
    heartbeat: float


class Leases:
    """This process's leases in one run database connection."""

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.pid = os.getpid()
        self.me = identity()
        self.held: set[str] = set()
        self.beat = 0.0

    def claim(self, key: str, since: float = 0.0) -> tuple[str, Holder | None]:
        """DONE (a result recorded at `since` or later), MINE or THEIRS (with who holds
        it); see the module docstring."""
        return self.claim_many([(key, since)])[key]

    def claim_many(self, wanted: list[tuple[str, float]]) -> dict[str, tuple[str, Holder | None]]:
        """`claim` for each (key, since), all in one transaction (a fan-out about to
        start a hundred calls claims them at once)."""
        found: dict[str, tuple[str, Holder | None]] = {}
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for key, since in wanted:
                found[key] = self._claim(key, since)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        return found

    def _claim(self, key: str, since: float) -> tuple[str, Holder | None]:
        done = self.conn.execute(
            "SELECT 1 FROM keys WHERE key=? AND created >= ?", (key, since)
        ).fetchone()
        holder = self.holder(key)
        if done is not None:
            return DONE, holder
        if holder is None or self._mine(holder) or not self._alive(holder):
            now = time.time()
            self.conn.execute(
                "INSERT OR REPLACE INTO leases (key, pid, proc_start, run_id, taken, heartbeat)"
                " VALUES (?,?,?,?,?,?)",
                (key, self.pid, self.me, self.run_id, now, now),
            )
            self.held.add(key)
            return MINE, holder
        return THEIRS, holder

    def holder(self, key: str) -> Holder | None:
        """Who holds `key` now, if anyone."""
        row = self.conn.execute(
            "SELECT pid, proc_start, run_id, heartbeat FROM leases WHERE key=?", (key,)
        ).fetchone()
        return Holder(int(row[0]), row[1], str(row[2] or ""), float(row[3] or 0.0)) if row else None

    def release(self, keys: list[str]) -> None:
        """Drop our leases on `keys` (inside the caller's transaction)."""
        mine = [k for k in keys if k in self.held]
        if mine:
            self.conn.executemany(
                "DELETE FROM leases WHERE key=? AND pid=? AND proc_start IS ?",
                [(k, self.pid, self.me) for k in mine],
            )
            self.held.difference_update(mine)

    def release_all(self) -> None:
        """Drop every lease this process holds (at the end of its run)."""
        if self.held:
            self.release(sorted(self.held))

    def heartbeat(self, every_s: float = 2.0) -> None:
        """Renew our leases, at most every `every_s` seconds, so waiters know we live."""
        now = time.time()
        if not self.held or now - self.beat < every_s:
            return
        self.beat = now
        self.conn.execute(
            "UPDATE leases SET heartbeat=? WHERE pid=? AND proc_start IS ?", (now, self.pid, self.me)
        )

    def free(self, key: str) -> bool:
        """Could this process take `key` now (no live holder but us)?"""
        holder = self.holder(key)
        return holder is None or self._mine(holder) or not self._alive(holder)

    def _mine(self, holder: Holder) -> bool:
        return holder.pid == self.pid and holder.proc_start == self.me

    @staticmethod
    def _alive(holder: Holder) -> bool:
        fresh = time.time() - holder.heartbeat < STALE_S
        return fresh and is_running(holder.pid, holder.proc_start)
