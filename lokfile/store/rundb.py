"""Run history in `.lok/lok.db` (SQLite, WAL).

Tables (schema version in PRAGMA user_version; migrations in schema.py, applied
when the file is new or older than this code):

    runs        one row per `lok run`: workflow, args, status, times, counts, resumed_from,
                and its coordinator (pid, and proc_start: boot id and start time, so
                a reused pid is not taken for the coordinator; schema 2), and its cost
                (JSON: spent, saved, calls, tokens; schema 4)
    results     one row per (run, step, unit): key, components, status, reason,
                attempts, timings, backend, model, artifact digest, error, and the
                worker it ran on ("local", a Dask worker's address; schema 3), and the
                usage of the calls behind it (JSON, lokfile.outcome.Usage; schema 4), and
                whether its answer was cut at the token limit (truncated; schema 6)
    keys        successful results by key: the artifact digest and declared outputs
                (this is what makes a step fresh; failures never land here); `meta`
                holds the answer's model and usage, so a reused answer knows its cost
    last        per (workflow, step, unit): the components of its latest attempt,
                to name why a step is stale
    stat_cache  path, size, mtime_ns, inode -> content digest (no re-hashing on no-op)
    ask_cache   `lok ask` answers by key
    leases      key -> the process making its call now (lokfile/store/leases.py; schema 5)

Only the coordinating process writes, with plain sqlite3 statements.

A run still marked `running` whose coordinator is gone (killed, crashed, a
zombie, its pid now someone else's) is read back as `interrupted` at once;
the next run writes that down (`mark_abandoned_runs`), readers never write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from lokfile.errors import DiskFullError, StoreError, disk_full
from lokfile.process.tree import identity, is_running
from lokfile.store.schema import MIGRATIONS, SCHEMA_VERSION

DIED = "the lok process died (killed or crashed); `lok run --resume` continues"


class KeyEntry(NamedTuple):
    key: str
    digest: str
    created: float
    duration: float
    outputs: dict[str, str]  # declared output path -> artifact digest
    meta: dict[str, Any]  # model, ended; an edit unit's "edits": {count, files: {path: [before, after]}}

    def artifacts(self) -> set[str]:
        """Every artifact this result needs: its output, its declared outputs, and the
        after-bytes of the files an edit unit touched (to write them again)."""
        out = {self.digest, *self.outputs.values()}
        record = self.meta.get("edits")
        if isinstance(record, dict):
            out |= {pair[1] for pair in record.get("files", {}).values() if pair and pair[1]}
        return out


class CacheEntry(NamedTuple):
    digest: str
    created_at: float


class LastAttempt(NamedTuple):
    key: str
    components: dict[str, Any]
    status: str


SQLITE_FULL = 13
SQLITE_IOERR = 10
SQLITE_READONLY = 8


class _Connection(sqlite3.Connection):
    """A connection whose statements say "the disk is full" plainly when that is the cause."""

    lok_path = Path()
    full: DiskFullError | None = None  # set when opened read-only because the disk is full

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._raise_if_full(exc)
            raise

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.DatabaseError as exc:
            self._raise_if_full(exc)
            raise

    def _raise_if_full(self, exc: sqlite3.DatabaseError) -> None:
        code = _code(exc)
        full = self.full if code == SQLITE_READONLY else None
        full = full or _full_disk(exc, self.lok_path)
        if full is not None:
            raise full from exc


def _code(exc: sqlite3.DatabaseError) -> int | None:
    """The primary SQLite result code of an error (Python 3.11+ carries it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _full_disk(exc: sqlite3.DatabaseError, path: Path) -> DiskFullError | None:
    """DiskFullError when SQLite failed because the disk holding `path` is full."""
    code = _code(exc)
    if code == SQLITE_FULL or "database or disk is full" in str(exc):
        pass
    elif code in (SQLITE_IOERR, None) and _no_space(path.parent):
        pass  # an I/O error (the -shm index cannot grow) on a file system with no room
    else:
        return None
    return DiskFullError(
        f"the disk is full: could not write the run history {path}", str(path.parent)
    )


def _no_space(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


_BUSY_S = 60.0  # how long a statement waits for another process's lock


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=_BUSY_S, isolation_level=None, factory=_Connection)
    conn.lok_path = path
    conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_S * 1000)}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        _wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    elif version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"{path}: run history is schema {version}, newer than this lok ({SCHEMA_VERSION})",
            "upgrade lok, or move .lok/lok.db aside",
        )
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _wal(conn: sqlite3.Connection) -> None:
    """Switch a new history to write-ahead logging. SQLite answers "database is locked"
    at once, without the busy wait, when another process is setting up the same new
    file (two runs started together in a fresh project): tried again meanwhile, for as
    long as the busy wait would have waited."""
    deadline = time.monotonic() + _BUSY_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _read_only(path: Path, full: DiskFullError) -> sqlite3.Connection:
    """The history opened immutable, for reading on a full disk; else `full` is raised."""
    from urllib.parse import quote

    wal = path.with_name(path.name + "-wal")
    if (wal.exists() and wal.stat().st_size > 0) or not path.exists():
        raise full  # commits may wait in the log: reading around them would show stale runs
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, factory=_Connection)
        conn.lok_path = path
        conn.full = full
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise full from exc
    return conn


class RunDB:
    """The run history. Open with `RunDB.open(path)`; one instance per process."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> RunDB:
        """Open (creating and migrating as needed) the database at `path`.

        On a full disk SQLite cannot even set up its shared-memory index, so a
        history with nothing pending in its write-ahead log is opened read-only
        (`immutable`): reading works, and any write says the disk is full.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            full = disk_full(exc, "the run history", path.parent)
            if full is None:
                raise
            raise full from exc
        try:
            conn = _connect(path)
        except DiskFullError as no_room:
            conn = _read_only(path, no_room)
        except sqlite3.DatabaseError as exc:
            full = _full_disk(exc, path)
            if full is None:
                raise StoreError(
                    f"{path}: cannot open run history: {exc}", "is .lok/lok.db corrupt?"
                ) from exc
            conn = _read_only(path, full)
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass
            raise

    # -- runs ----------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        workflow: str,
        workflow_path: str | None,
        args: dict[str, Any],
        resumed_from: str | None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO runs (id, workflow, workflow_path, args, status, started, resumed_from, pid,"
            " proc_start, ran, reused, failed, skipped) VALUES (?,?,?,?,?,?,?,?,?,0,0,0,0)",
            (
                run_id,
                workflow,
                workflow_path,
                json.dumps(args),
                "running",
                time.time(),
                resumed_from,
                os.getpid(),
                identity(),
            ),
        )

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: dict[str, int],
        saved_s: float,
        error: str | None = None,
        cost: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "UPDATE runs SET status=?, ended=?, ran=?, reused=?, failed=?, skipped=?, saved_s=?,"
            " error=?, cost=? WHERE id=?",
            (
                status,
                time.time(),
                counts.get("ran", 0),
                counts.get("reused", 0),
                counts.get("failed", 0),
                counts.get("skipped", 0),
                saved_s,
                error,
                json.dumps(cost, sort_keys=True) if cost is not None else None,
                run_id,
            ),
        )

    def mark_abandoned_runs(self) -> None:
        """Runs left `running` by a process that no longer exists become `interrupted`."""
        rows = self.conn.execute("SELECT * FROM runs WHERE status='running'").fetchall()
        cur = self.conn.execute("SELECT * FROM runs LIMIT 0")
        dead = [(DIED, r["id"]) for r in (_row_dict(cur, row) for row in rows) if _abandoned(r)]
        if dead:
            self.conn.executemany(
                "UPDATE runs SET status='interrupted', error=? WHERE id=? AND status='running'",
                dead,
            )

    def fail_run(self, run_id: str, error: str) -> None:
        """Record a finished run as failed after all: the command that ran it could not
        use its result (a mode with no verdict), so history says what the exit code says."""
        self.conn.execute(
            "UPDATE runs SET status='failed', error=? WHERE id=? AND status='succeeded'",
            (error, run_id),
        )

    def run(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,))
        row = cur.fetchone()
        return _settled(_row_dict(cur, row)) if row else None

    def runs(self, workflow: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs newest first (one whose coordinator is gone shows as interrupted)."""
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if workflow:
            sql += " WHERE workflow=?"
            params.append(workflow)
        sql += " ORDER BY started DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        cur = self.conn.execute(sql, params)
        return [_settled(_row_dict(cur, r)) for r in cur.fetchall()]

    def results(self, run_id: str) -> list[dict[str, Any]]:
        """Every result row of a run, in the order they were recorded."""
        cur = self.conn.execute("SELECT * FROM results WHERE run_id=? ORDER BY seq", (run_id,))
        return [_row_dict(cur, r) for r in cur.fetchall()]

    def record_results(self, rows: list[dict[str, Any]]) -> None:
        """Insert many result rows that share the same columns."""
        if not rows:
            return
        cols = list(rows[0])
        sql = f"INSERT OR REPLACE INTO results ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
        self.conn.executemany(sql, [tuple(r[c] for c in cols) for r in rows])

    def count_results(self, run_id: str) -> int:
        """How many result rows run `run_id` has."""
        found: int = self.conn.execute(
            "SELECT count(*) FROM results WHERE run_id=?", (run_id,)
        ).fetchone()[0]
        return found

    def replay_results(self, source: str, run_id: str) -> int:
        """Copy run `source`'s result rows into run `run_id` as a no-op records them: each
        success reused ("fresh", no attempts, no time, no worker), anything else as it
        was, numbered from 1 in their order (lokfile.engine.snapshot). How many it copied."""
        cols = [row[1] for row in self.conn.execute("PRAGMA table_info(results)")]
        ok = "status IN ('ran', 'reused')"
        pick = {
            "run_id": "?",
            "seq": "ROW_NUMBER() OVER (ORDER BY seq)",
            "status": f"CASE WHEN {ok} THEN 'reused' ELSE status END",
            "reason": f"CASE WHEN {ok} THEN 'fresh' ELSE reason END",
            "attempts": "0",
            "started": "0.0",
            "ended": "0.0",
            "duration": "0.0",
            "worker": f"CASE WHEN {ok} THEN NULL ELSE worker END",
        }
        values = ",".join(pick.get(c, c) for c in cols)
        copied: int = self.conn.execute(
            f"INSERT OR REPLACE INTO results ({','.join(cols)}) "
            f"SELECT {values} FROM results WHERE run_id=?",
            (run_id, source),
        ).rowcount
        return copied

    def has_keys(self, keys: list[str]) -> bool:
        """Do successful results still exist for every one of these keys?"""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" for _ in chunk)
            found = self.conn.execute(f"SELECT count(*) FROM keys WHERE key IN ({marks})", chunk)
            if found.fetchone()[0] != len(chunk):
                return False
        return True

    # -- keys (what makes a step fresh) -------------------------------------

    def key_entry(self, key: str) -> KeyEntry | None:
        row = self.conn.execute(
            "SELECT key, digest, created, duration, outputs, meta FROM keys WHERE key=?", (key,)
        ).fetchone()
        if row is None:
            return None
        return KeyEntry(row[0], row[1], row[2], row[3] or 0.0, _obj(row[4]), _obj(row[5]))

    def put_key(self, entry: KeyEntry, step: str, workflow: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO keys (key, digest, step, workflow, created, duration, outputs, meta)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                entry.key,
                entry.digest,
                step,
                workflow,
                entry.created,
                entry.duration,
                json.dumps(entry.outputs, sort_keys=True),
                json.dumps(entry.meta, sort_keys=True),
            ),
        )

    def drop_key(self, key: str) -> None:
        self.conn.execute("DELETE FROM keys WHERE key=?", (key,))

    def all_keys(self) -> list[KeyEntry]:
        return [entry for entry, _, _ in self.owned_keys()]

    def owned_keys(self) -> list[tuple[KeyEntry, str, str]]:
        """Every key's entry with the step and workflow that recorded it."""
        rows = self.conn.execute(
            "SELECT key, digest, created, duration, outputs, meta, step, workflow FROM keys"
        )
        return [
            (
                KeyEntry(r[0], r[1], r[2], r[3] or 0.0, _obj(r[4]), _obj(r[5])),
                r[6] or "",
                r[7] or "",
            )
            for r in rows
        ]

    # -- last attempt per step (reasons) --------------------------------------

    def last_attempts(self, workflow: str) -> dict[tuple[str, str], LastAttempt]:
        rows = self.conn.execute(
            "SELECT step, unit, key, components, status FROM last WHERE workflow=?", (workflow,)
        )
        return {(s, u): LastAttempt(k, json.loads(c), st) for s, u, k, c, st in rows}

    def set_last_attempt(
        self, workflow: str, step: str, unit: str, key: str, components: dict[str, Any], status: str
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO last (workflow, step, unit, key, components, status)"
            " VALUES (?,?,?,?,?,?)",
            (workflow, step, unit, key, json.dumps(components, sort_keys=True), status),
        )

    # -- stat cache ---------------------------------------------------------

    def stat_entries(self, paths: Iterable[str]) -> dict[str, tuple[int, int, int, str]]:
        """Cached (size, mtime_ns, inode, digest) for each known path."""
        out: dict[str, tuple[int, int, int, str]] = {}
        q = "SELECT size, mtime_ns, inode, digest FROM stat_cache WHERE path=?"
        for p in paths:
            row = self.conn.execute(q, (p,)).fetchone()
            if row:
                out[p] = (row[0], row[1], row[2], row[3])
        return out

    def all_stat_entries(self) -> dict[str, tuple[int, int, int, str]]:
        """The whole stat cache: path -> (size, mtime_ns, inode, digest)."""
        rows = self.conn.execute("SELECT path, size, mtime_ns, inode, digest FROM stat_cache")
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def put_stat_entries(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO stat_cache (path, size, mtime_ns, inode, digest) VALUES (?,?,?,?,?)",
            list(rows),
        )

    # -- ask cache ----------------------------------------------------------

    def cache_get(self, key: str) -> CacheEntry | None:
        row = self.conn.execute(
            "SELECT digest, created FROM ask_cache WHERE key=?", (key,)
        ).fetchone()
        return CacheEntry(row[0], row[1]) if row else None

    def cache_put(self, key: str, digest: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO ask_cache (key, digest, created) VALUES (?,?,?)",
            (key, digest, time.time()),
        )

    # -- everything the store must keep --------------------------------------

    def referenced_digests(self, run_ids: Iterable[str] | None = None) -> set[str]:
        """Digests reachable from the given runs' results (all runs when None)."""
        out: set[str] = set()
        if run_ids is None:
            rows: Iterable[tuple[Any, ...]] = self.conn.execute("SELECT digest FROM results")
        else:
            ids = list(run_ids)
            rows = []
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" for _ in chunk)
                rows = [
                    *rows,
                    *self.conn.execute(
                        f"SELECT digest FROM results WHERE run_id IN ({marks})", chunk
                    ),
                ]
        for (d,) in rows:
            if d:
                out.add(d)
        return out

    # -- for `lok gc` and `lok runs verify` (lokfile/history/sweep.py) ---------------------

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """Delete runs and their result rows (the caller holds a transaction)."""
        ids = [(r,) for r in run_ids]
        self.conn.executemany("DELETE FROM results WHERE run_id=?", ids)
        self.conn.executemany("DELETE FROM runs WHERE id=?", ids)

    def ask_cache_entries(self) -> list[tuple[str, str, float]]:
        """Every `lok ask` cache row as (key, digest, created)."""
        return list(self.conn.execute("SELECT key, digest, created FROM ask_cache"))

    def drop_ask_cache(self, keys: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM ask_cache WHERE key=?", [(k,) for k in keys])


def _obj(text: str | None) -> dict[str, Any]:
    """A JSON object column; the common empty case skips the parser."""
    if not text or text == "{}":
        return {}
    value: dict[str, Any] = json.loads(text)
    return value


def _row_dict(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cur.description, row, strict=False)}


def _abandoned(row: dict[str, Any]) -> bool:
    """Is this `running` row's coordinator gone (dead, a zombie, or its pid reused)?"""
    return row.get("status") == "running" and not is_running(row.get("pid"), row.get("proc_start"))


def _settled(row: dict[str, Any]) -> dict[str, Any]:
    """A run row as it really stands: `interrupted` once its coordinator is gone."""
    if _abandoned(row):
        return {**row, "status": "interrupted", "error": row.get("error") or DIED}
    return row
