"""Content digests of declared source files, through the stat cache.

Globs are relative to the project root, and so are the recorded paths (never
absolute, never mtimes: a key must mean the same on another machine). A file
whose (size, mtime_ns, inode) matches the stat cache is not read again, so a
no-op rerun of a big tree hashes nothing.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from lokfile import hashing
from lokfile.store.rundb import RunDB

MISSING = "missing"
_MAGIC = set("*?[")


class Fingerprinter:
    """Digests files under a root, remembering them in the run history's stat cache."""

    def __init__(self, root: Path, db: RunDB | None) -> None:
        self.root = root
        self.db = db
        self.memo: dict[str, tuple[tuple[int, int, int], str]] = {}
        self.updates: list[tuple[str, int, int, int, str]] = []
        self.cache: dict[str, tuple[int, int, int, str]] | None = None

    def expand(self, patterns: tuple[str, ...]) -> list[str]:
        """Relative paths matched by the globs (literal paths kept even when missing)."""
        found: set[str] = set()
        for pattern in patterns:
            if not (_MAGIC & set(pattern)):
                found.add(os.path.normpath(pattern))
                continue
            for match in glob.glob(pattern, root_dir=self.root, recursive=True):
                if os.path.isfile(self.root / match):
                    found.add(os.path.normpath(match))
        return sorted(found)

    def digests(self, patterns: tuple[str, ...]) -> dict[str, str]:
        """path -> digest (or "missing") for every file the globs match."""
        return {p: self.digest(p) for p in self.expand(patterns)}

    def digest(self, rel: str) -> str:
        """The content digest of one file (MISSING when it does not exist)."""
        try:
            st = os.stat(os.path.join(self.root, rel))
        except OSError:
            return MISSING
        stat = (st.st_size, st.st_mtime_ns, st.st_ino)
        known = self.memo.get(rel)
        if known and known[0] == stat:
            return known[1]
        if self.cache is None:
            self.cache = self.db.all_stat_entries() if self.db else {}
        cached = self.cache.get(rel)
        if cached and cached[:3] == stat:
            digest = cached[3]
        else:
            digest = hashing.digest_file(os.path.join(self.root, rel))
            self.updates.append((rel, *stat, digest))
        self.memo[rel] = (stat, digest)
        return digest

    def remember(self, rows: list[tuple[str, int, int, int, str]]) -> None:
        """Stats of files a step just wrote (so the next run does not hash them)."""
        for rel, size, mtime_ns, inode, digest in rows:
            self.memo[rel] = ((size, mtime_ns, inode), digest)
        self.updates.extend(rows)

    def flush(self) -> None:
        """Write pending stat-cache rows (inside the caller's transaction)."""
        if self.db and self.updates:
            self.db.put_stat_entries(self.updates)
        self.updates = []
