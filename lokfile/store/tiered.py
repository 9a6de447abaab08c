"""The team cache: the local action cache first, then a remote one, behind one seam.

    Freshness ── lookup(key) ──> local `keys` table ── hit, artifacts here ──> result
                                    │ miss
                                    v
                                 remote actions/<key>.json ── checked ──> its artifacts
                                    │                                     fetched, each
                                    │ missing, tampered, unreachable      hashed to its name
                                    v                                     │ all good
                                 None: the unit runs               stored here, and the key
                                                                   recorded here: a result
    Recorder ── record(entry) ──> local table, then (read-write) uploaded on a thread:
                                  its artifacts first, the entry last

A remote entry is JSON holding the key it answers, the result (artifact digest,
declared outputs, duration, metadata) and a check digest over all of it, so a
truncated or edited entry, or one copied under another key, is never used.
Every artifact is hashed on arrival and must match its digest. What fails a
check is ignored with a warning, and the unit runs again; a read-write client
then overwrites the bad object. The check digests catch damage and casual
edits, not a determined writer: whoever may write the remote is trusted, which
is what `remote_mode = "read-only"` is for (developers reading CI's cache).

A remote that cannot be reached (no network, access denied, no bucket, a
missing extra) is said once and then left alone: the run goes on with the
local cache, and nothing about the remote ever fails it. Failures never enter
either cache (the recorder records successes only).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lokfile import hashing
from lokfile.store.artifacts import Store
from lokfile.store.remote import Remote, RemoteError
from lokfile.store.rundb import KeyEntry, RunDB
from lokfile.store.seams import LocalActionCache

ENTRY_FORMAT = 1
UPLOAD_THREADS = 8
WARN_AT_MOST = 3  # warnings about ignored remote objects; the rest are counted at the end

Say = Callable[[str], None]
Owned = tuple[KeyEntry, str, str]  # an entry with the step and workflow that made it


# -- the remote entry --------------------------------------------------------------


def encode_entry(entry: KeyEntry, step: str, workflow: str) -> bytes:
    """The JSON of a remote action-cache entry, with its check digest."""
    body = {
        "format": ENTRY_FORMAT,
        "key": entry.key,
        "status": "succeeded",
        "digest": entry.digest,
        "outputs": entry.outputs,
        "created": entry.created,
        "duration": entry.duration,
        "meta": entry.meta,
        "step": step,
        "workflow": workflow,
    }
    return hashing.canonical_json({**body, "check": hashing.digest_json(body)})


def decode_entry(key: str, data: bytes) -> Owned:
    """The entry for `key` in `data`; ValueError saying what is wrong with it."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("it is not JSON (truncated?)") from None
    if not isinstance(doc, dict):
        raise ValueError("it is not an entry")
    check = doc.pop("check", None)
    if check != hashing.digest_json(doc):
        raise ValueError("its check digest does not match (tampered or truncated)")
    if doc.get("format") != ENTRY_FORMAT or doc.get("key") != key:
        raise ValueError("it answers another key")
    outputs, meta = doc.get("outputs"), doc.get("meta")
    if not isinstance(outputs, dict) or not isinstance(meta, dict):
        raise ValueError("it is not an entry")
    for digest in (doc.get("digest"), *outputs.values()):
        if not isinstance(digest, str) or not digest.startswith(hashing.PREFIX):
            raise ValueError(f"it names a bad digest {digest!r}")
        hashing.split(digest)
    # declared outputs are restored under the project: only plain relative paths
    for rel in outputs:
        parts = str(rel).replace("\\", "/").split("/")
        if str(rel).startswith("/") or ".." in parts or "" in parts:
            raise ValueError(f"it names an output outside the project: {rel!r}")
    numbers = (doc.get("created"), doc.get("duration"), meta.get("ended", 0.0))
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        raise ValueError("it is not an entry")
    if not isinstance(meta.get("model", ""), str):
        raise ValueError("it is not an entry")
    entry = KeyEntry(
        key, doc["digest"], float(doc["created"]), float(doc["duration"]), dict(outputs), meta
    )
    return entry, str(doc.get("step") or ""), str(doc.get("workflow") or "")


def digests_of(entry: KeyEntry) -> list[str]:
    """The artifacts a result needs: its output, then its declared outputs."""
    return list(dict.fromkeys([entry.digest, *entry.outputs.values()]))


# -- the tiered cache --------------------------------------------------------------


class TieredCache:
    """An ActionCache: the local one first, then `remote`; writes through when `writable`."""

    def __init__(
        self,
        local: LocalActionCache,
        store: Store,
        remote: Remote | None,
        *,
        writable: bool,
        say: Say,
    ) -> None:
        self.local = local
        self.store = store
        self.remote = remote
        self.writable = writable
        self.say = say
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.owner = threading.get_ident()
        self.later: list[str] = []  # warnings from upload threads, said by close()
        self.bad: set[str] = set()  # remote objects that failed a check: overwrite them
        self.uploads: ThreadPoolExecutor | None = None
        self.summed = 0  # ignored objects counted in a summary line (past the first few)

    # -- the seam ------------------------------------------------------------------

    def lookup(self, key: str) -> KeyEntry | None:
        found = self.local.lookup(key)
        if found is not None and all(self.store.has(d) for d in digests_of(found)):
            return found
        fetched = self.fetch(key)
        if fetched is None:
            return found
        entry, step, workflow = fetched
        self.local.record(entry, step, workflow)
        return entry

    def record(self, entry: KeyEntry, step: str, workflow: str) -> None:
        self.local.record(entry, step, workflow)
        if not self.writable or self.remote is None:
            return
        if self.uploads is None:
            self.uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="lok-upload")
        self.uploads.submit(self._upload, entry, step, workflow)

    def has_all(self, keys: Sequence[str]) -> bool:
        return self.local.has_all(keys)

    def forget(self, key: str) -> None:
        self.local.forget(key)

    def close(self) -> None:
        """Wait for the uploads, then say what went wrong in them (once each kind)."""
        if self.uploads is not None:
            self.uploads.shutdown(wait=True)
            self.uploads = None
        with self.lock:
            later, self.later = self.later, []
        for text in later:
            self.say(text)
        extra = self.counts["ignored"] - WARN_AT_MOST - self.summed
        if extra > 0:
            self.say(f"lok: team cache: {extra} more remote results were ignored the same way")
            self.summed += extra

    # -- reading the remote ------------------------------------------------------

    def fetch(self, key: str) -> Owned | None:
        """The remote result of `key` with every artifact it needs stored here, checked;
        None when there is none or any part of it fails a check (said, then ignored).
        Safe on any thread: it writes the store, never the history."""
        remote = self.remote
        if remote is None:
            return None
        where = remote.action_path(key)
        try:
            try:
                data = remote.read(where)
            except FileNotFoundError:
                return None
            try:
                owned = decode_entry(key, data)
            except ValueError as why:
                self._ignored(where, f"the remote result of key {key[:22]}… ({why})")
                return None
            entry, step, _ = owned
            for digest in digests_of(entry):
                if self.store.has(digest):
                    continue
                path = remote.object_path(digest)
                try:
                    blob = remote.read(path)
                except FileNotFoundError:
                    what = f"artifact {digest[:22]}… is missing"
                    self._ignored(path, f"the result of step '{step}' ({what})", where)
                    return None
                if hashing.digest_bytes(blob) != digest:
                    what = f"artifact {digest[:22]}… does not match its digest: tampered or truncated"
                    self._ignored(path, f"the result of step '{step}' ({what})", where)
                    return None
                self.store.put(blob)
                self._count("fetched_artifacts")
        except RemoteError as exc:
            self._unreachable(exc)
            return None
        self._count("fetched_results")
        return owned

    # -- writing the remote ------------------------------------------------------

    def _upload(self, entry: KeyEntry, step: str, workflow: str) -> None:
        remote = self.remote
        if remote is None:
            return
        try:
            # an entry found damaged may name damaged artifacts too: those are rewritten
            damaged = remote.action_path(entry.key) in self.bad
            self.send_artifacts(digests_of(entry), remote, force=damaged)
            remote.write(remote.action_path(entry.key), encode_entry(entry, step, workflow))
            self._count("uploaded_results")
        except RemoteError as exc:
            self._unreachable(exc)
        except (OSError, ValueError) as exc:  # a local artifact gone or damaged: not this one
            self._later(f"lok: team cache: did not upload the result of step '{step}': {exc}")

    def send_artifacts(
        self,
        digests: Iterable[str],
        remote: Remote,
        known: set[str] | None = None,
        force: bool = False,
    ) -> int:
        """Upload the artifacts the remote lacks (`known`: what it is known to hold; `force`:
        all of them), each checked against its digest here first; how many were sent."""
        sent = 0
        for digest in digests:
            path = remote.object_path(digest)
            if not force and path not in self.bad and (
                digest in known if known is not None else remote.exists(path)
            ):
                continue
            data = self.store.get(digest)
            if hashing.digest_bytes(data) != digest:
                raise ValueError(f"the local artifact {digest[:22]}… does not match its digest")
            remote.write(path, data)
            self.bad.discard(path)
            sent += 1
        self._count("uploaded_artifacts", sent)
        return sent

    # -- saying what went wrong ----------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def _unreachable(self, exc: RemoteError) -> None:
        """The first remote error: said once, and the remote is left alone from now on."""
        with self.lock:
            if self.remote is None:
                return
            self.remote = None
        self._warn(f"lok: team cache: {exc}; going on with the local cache only")

    def _ignored(self, path: str, what: str, entry: str | None = None) -> None:
        """A remote object failed a check (`entry`: the entry that named it, whose
        every artifact a write-through then rewrites)."""
        with self.lock:
            self.bad.update(p for p in (path, entry) if p)
            self.counts["ignored"] += 1
            quiet = self.counts["ignored"] > WARN_AT_MOST
        if not quiet:
            self._warn(f"lok: team cache: ignored {what}; the step runs again")

    def _warn(self, text: str) -> None:
        if threading.get_ident() == self.owner:
            self.say(text)
        else:
            self._later(text)

    def _later(self, text: str) -> None:
        with self.lock:
            self.later.append(text)


# -- push, pull, status --------------------------------------------------------------


def push(cache: TieredCache, db: RunDB) -> dict[str, Any]:
    """Upload every local result (and its artifacts) the remote lacks."""
    remote = _needed(cache)
    have_keys = remote.listing("actions")
    have_objects = remote.listing("objects")
    pushed = present = 0
    before = cache.counts["uploaded_artifacts"]
    for entry, step, workflow in db.owned_keys():
        if entry.key in have_keys:
            present += 1
            continue
        try:
            cache.send_artifacts(digests_of(entry), remote, have_objects)
        except (OSError, ValueError) as exc:
            cache.say(f"lok: team cache: did not push the result of step '{step}': {exc}")
            continue
        have_objects.update(digests_of(entry))
        remote.write(remote.action_path(entry.key), encode_entry(entry, step, workflow))
        pushed += 1
    return {
        "remote": remote.url,
        "results": {"pushed": pushed, "present": present},
        "artifacts": {"pushed": cache.counts["uploaded_artifacts"] - before},
    }


def pull_all(cache: TieredCache, db: RunDB) -> dict[str, Any]:
    """Fetch every remote result this project does not have (checked, as a lookup does)."""
    remote = _needed(cache)
    local = {e.key for e in db.all_keys()}
    wanted = sorted(remote.listing("actions") - local)
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="lok-pull") as pool:
        fetched = list(pool.map(cache.fetch, wanted))
    for owned in fetched:
        if owned is not None:
            cache.local.record(*owned)
    if cache.remote is None:  # it failed on the way
        raise RemoteError(f"pulling from {remote.url} stopped: the remote could not be read")
    return pulled(cache, remote)


def pulled(cache: TieredCache, remote: Remote) -> dict[str, Any]:
    return {
        "remote": remote.url,
        "results": {"pulled": cache.counts["fetched_results"]},
        "artifacts": {"pulled": cache.counts["fetched_artifacts"]},
        "ignored": cache.counts["ignored"],
    }


def status(cache: TieredCache, db: RunDB, store: Store) -> dict[str, Any]:
    """What is here only, there only, and in both: results (keys) and artifacts."""
    remote = _needed(cache)
    local_keys = {e.key for e in db.all_keys()}
    local_objects = {d for d, _ in store.iter_objects()}
    remote_keys = remote.listing("actions")
    remote_objects = remote.listing("objects")

    def compare(here: set[str], there: set[str]) -> dict[str, int]:
        return {
            "local_only": len(here - there),
            "remote_only": len(there - here),
            "both": len(here & there),
        }

    return {
        "remote": remote.url,
        "mode": "read-write" if cache.writable else "read-only",
        "results": compare(local_keys, remote_keys),
        "artifacts": compare(local_objects, remote_objects),
    }


def _needed(cache: TieredCache) -> Remote:
    if cache.remote is None:
        raise RemoteError("the team cache could not be opened")
    return cache.remote
