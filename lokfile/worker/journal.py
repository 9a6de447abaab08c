"""The edit journal: what an edit step is about to change, durable before the first write.

    edit step (worker, holding .lok/runs/edits.lock)      any later `lok` command
    ─────────────────────────────────────────────         ─────────────────────────
    plan, snapshot originals into the store
    write .lok/runs/edits.journal, fsync it + its folder
    apply the edits ─┐
    verify           ├─ killed here? the journal stays ─▶  stat: journal present
    restore on fail ─┘                                    lock free? (its writer is dead)
    delete the journal, fsync the folder                  put every file back, fsync
                                                          delete the journal, say so

The journal holds the original bytes itself (base64), not store digests, so
it needs nothing else to have reached the disk and survives `lok gc`. Edit
steps are serialised per project by the lock, so one journal path is enough;
a journal whose lock is held belongs to a live edit and is left alone.

`recover()` is called first by every command that opens a project. With no
journal it costs one stat (lokfile.worker.snapshots is imported only when a
journal is written or put back: the no-op fast path does not pay for it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = 1
NAME = "edits.journal"
LOCK = "edits.lock"
MAX_NAMES = 4  # files named in the one line `recover` prints


def _fsync_dir(folder: Path) -> None:
    from lokfile.worker.snapshots import fsync_dir

    fsync_dir(folder)


def path_in(runs_dir: Path) -> Path:
    return runs_dir / NAME


def write(
    runs_dir: Path,
    manifest: dict[str, Any],
    originals: dict[str, bytes],
    who: tuple[str, str, str],
) -> None:
    """Make the journal of one edit attempt durable (the caller holds the edit lock).

    `manifest` is the snapshot manifest (paths, digests, modes, created folders);
    `originals` maps each digest it names to the bytes; `who` is (run, step, unit).
    """
    import base64
    import json

    run, step, unit = who
    doc = {
        "version": VERSION,
        "pid": os.getpid(),
        "run": run,
        "step": step,
        "unit": unit,
        "manifest": manifest,
        "blobs": {d: base64.b64encode(b).decode() for d, b in originals.items()},
    }
    data = json.dumps(doc, sort_keys=True).encode()
    target = path_in(runs_dir)
    tmp = runs_dir / f".{NAME}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(runs_dir)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def clear(runs_dir: Path) -> None:
    """The edit is over (kept or put back): delete the journal, durably."""
    try:
        os.unlink(path_in(runs_dir))
    except FileNotFoundError:
        return
    _fsync_dir(runs_dir)


class _Blobs:
    """The originals of a journal, read like a store (`get(digest)`)."""

    def __init__(self, blobs: dict[str, str]) -> None:
        self.blobs = blobs

    def get(self, digest: str) -> bytes:
        import base64

        return base64.b64decode(self.blobs[digest])


def recover(root: Path, say: Callable[[str], None] | None = None) -> list[str]:
    """Put back the files of an edit step that lok died in; the paths restored.

    Says one line when it restored something, or a warning when it could not
    (`say`; by default a line on stderr, never stdout: --json keeps it clean).
    """
    runs_dir = root / ".lok" / "runs"
    try:
        os.stat(path_in(runs_dir))
    except OSError:
        return []  # the common case: no journal, one stat
    return _recover(root, runs_dir, say or _to_stderr)


def _to_stderr(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _recover(root: Path, runs_dir: Path, say: Callable[[str], None]) -> list[str]:
    import fcntl
    import json
    import signal

    journal = path_in(runs_dir)
    try:
        lock = open(runs_dir / LOCK, "a")  # noqa: SIM115 (held across the whole recovery)
    except OSError as exc:
        say(f"Warning: cannot restore the files of an interrupted edit step: {exc}")
        return []
    blocked = {signal.SIGINT, signal.SIGTERM}
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a live edit step holds the lock: its journal is its own
        # a Ctrl-C now would leave the files half put back: it waits for the end
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            try:
                doc = json.loads(journal.read_bytes())
            except FileNotFoundError:
                return []  # its writer finished while we took the lock
            restored = _put_back(root, runs_dir, doc)
            clear(runs_dir)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        say(
            f"Warning: cannot restore the files of an interrupted edit step ({exc}); "
            f"the journal stays in {journal}"
        )
        return []
    finally:
        lock.close()
    say(_line(doc, restored))
    return restored


def _put_back(root: Path, runs_dir: Path, doc: dict[str, Any]) -> list[str]:


    if doc.get("version") != VERSION:
        raise ValueError(f"journal version {doc.get('version')!r} is unknown to this lok")
    manifest = doc["manifest"]
    from lokfile.worker import snapshots

    snapshots.remove_temporaries(manifest, root)  # first: a created folder must be empty to go
    restored = snapshots.restore(manifest, root, _Blobs(doc["blobs"]))
    if doc.get("run") and doc.get("step"):
        snapshots.note_restored(Path(runs_dir), doc["run"], doc["step"], doc.get("unit", ""), restored)
    return restored


def _line(doc: dict[str, Any], restored: list[str]) -> str:
    shown = ", ".join(restored[:MAX_NAMES])
    if len(restored) > MAX_NAMES:
        shown += f" and {len(restored) - MAX_NAMES} more"
    run = f" of run {doc['run']}" if doc.get("run") else ""
    return (
        f"Restored {shown}: lok stopped while step '{doc.get('step') or '?'}'{run} was editing them"
    )
