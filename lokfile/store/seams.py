"""The store's two seams: artifacts by digest, and the action cache beside them.

    ArtifactStore   immutable bytes named by their digest (put, has, get, restore)
    ActionCache     a unit's key -> its successful result (`KeyEntry`: the artifact
                    digest, declared outputs, duration, metadata)

The engine reads and writes through these two interfaces only: `Freshness`
asks the action cache whether a key has a result and the artifact store for
its bytes; `Recorder` records a finished unit's key. Today's implementations
are local (`artifacts.Store` over `.lok/runs/objects/`, `LocalActionCache`
over the `keys` table of `.lok/lok.db`); a shared cache is another pair
behind the same two interfaces.

An action cache writes inside the caller's transaction of the run database
(`Recorder.commit`), so a key is durable exactly when the run's other rows are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lokfile.store.rundb import KeyEntry, RunDB

__all__ = ["ActionCache", "ArtifactStore", "KeyEntry", "LocalActionCache"]


class ArtifactStore(Protocol):
    """Bytes by digest. Writing bytes that are stored already is a no-op."""

    def has(self, digest: str) -> bool: ...

    def put(self, data: bytes) -> str: ...

    def put_text(self, text: str) -> str: ...

    def get(self, digest: str) -> bytes:
        """The bytes named `digest` (FileNotFoundError when missing)."""
        ...

    def get_text(self, digest: str) -> str: ...

    def restore(self, digest: str, dest: Path) -> None:
        """Write the artifact's bytes to `dest` atomically."""
        ...


class ActionCache(Protocol):
    """What a key produced when it last succeeded; failures are never recorded."""

    def lookup(self, key: str) -> KeyEntry | None: ...

    def record(self, entry: KeyEntry, step: str, workflow: str) -> None: ...

    def has_all(self, keys: Sequence[str]) -> bool:
        """Does every one of these keys still have a result?"""
        ...

    def forget(self, key: str) -> None: ...


class LocalActionCache:
    """The action cache in the project's run database (`keys` table)."""

    def __init__(self, db: RunDB) -> None:
        self.db = db

    def lookup(self, key: str) -> KeyEntry | None:
        return self.db.key_entry(key)

    def record(self, entry: KeyEntry, step: str, workflow: str) -> None:
        self.db.put_key(entry, step, workflow)

    def has_all(self, keys: Sequence[str]) -> bool:
        return self.db.has_keys(list(keys))

    def forget(self, key: str) -> None:
        self.db.drop_key(key)
