"""Snapshots of the files an edit changes, and putting them back exactly.

Before an edit writes anything, every file it will touch is stored (its bytes
before and after, its mode) with a manifest artifact:

    {"version": 1,
     "files": {path: digest of the original | null (a new file)},
     "after": {path: digest of the edited bytes (stored: `replay_plan` writes them back)},
     "modes": {path: permission bits | null},
     "dirs":  [folders the edit creates, outermost first]}

`restore()` puts every file back from a manifest, removes created files and
folders, and makes it durable; the worker's edit loop, journal recovery and
`lok runs revert` all restore through it. `replay_plan()` goes the other way:
the plan that writes a step's stored after-bytes again over a tree that lost
them (every touched file back at its before-digest). Files are replaced atomically (a
private temporary file renamed over the old one), so a reader never sees half
a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lokfile.errors import LokError
from lokfile.hashing import digest_bytes
from lokfile.store.artifacts import Store, output_filename

MANIFEST_VERSION = 1


class Blobs(Protocol):
    """Where a restore reads originals from: the store, or a journal."""

    def get(self, digest: str) -> bytes: ...


@dataclass
class Change:
    """One file's change: its bytes before (None: new file) and after, and its mode."""

    before: bytes | None
    after: str
    mode: int | None
    crlf: bool = False


@dataclass
class Plan:
    files: dict[str, Change] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)  # folders to create, outermost first


def snapshot(edit_plan: Plan, store: Store) -> tuple[dict[str, Any], str]:
    """Store every file's before and after bytes and the manifest; (manifest, its digest)."""
    files: dict[str, str | None] = {}
    after: dict[str, str] = {}
    modes: dict[str, int | None] = {}
    for rel, p in sorted(edit_plan.files.items()):
        files[rel] = store.put(p.before) if p.before is not None else None
        after[rel] = store.put(p.after.encode())
        modes[rel] = p.mode
    manifest = {
        "version": MANIFEST_VERSION,
        "files": files,
        "after": after,
        "modes": modes,
        "dirs": list(edit_plan.dirs),
    }
    return manifest, store.put(_manifest_bytes(manifest))


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


def load_manifest(store: Store, digest: str) -> dict[str, Any]:
    """The snapshot manifest stored under `digest`."""
    doc: dict[str, Any] = json.loads(store.get(digest))
    if doc.get("version") != MANIFEST_VERSION:
        raise LokError(f"edit snapshot {digest} has an unknown format", "upgrade lok")
    return doc


def manifest_digests(store: Store, digest: str) -> set[str]:
    """Every artifact a snapshot needs (the manifest and the originals), for gc."""
    out = {digest}
    try:
        files = load_manifest(store, digest)["files"]
    except (OSError, ValueError, LokError):
        return out
    out.update(d for d in files.values() if d)
    return out


def snapshot_filename(step: str, unit: str = "") -> str:
    """The run-folder name of a unit's snapshot link: `<step>.snapshot.json` (see
    store.output_filename for names that are not plain)."""
    return output_filename(step, ".snapshot.json", unit)


def restored_filename(step: str, unit: str = "") -> str:
    """The run-folder note left when a killed step's files were put back from its journal."""
    return output_filename(step, ".restored.json", unit)


def note_restored(runs_dir: Path, run_id: str, step: str, unit: str, files: list[str]) -> None:
    """Record in the run folder that `files` of an interrupted step were put back (for revert)."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"step": step, "unit": unit, "files": sorted(files)}
    (folder / restored_filename(step, unit)).write_text(json.dumps(doc, indent=1) + "\n")


TEMP_PREFIX = ".lok-edit-"


def _write(path: Path, data: bytes, mode: int | None, durable: bool = False) -> None:
    """Replace `path` atomically with `data`, keeping (or setting) its permission bits."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_plan(
    edit_plan: Plan, root: Path, stop: Callable[[], bool] = lambda: False
) -> bool:
    """Write the planned files (creating the planned folders); False when `stop()` said
    to stop before every file was written (the caller puts the snapshot back)."""
    real_root = root.resolve()
    for d in edit_plan.dirs:
        (real_root / d).mkdir(exist_ok=True)
    for rel, p in edit_plan.files.items():
        if stop():
            return False
        _write(real_root / rel, p.after.encode(), p.mode)
    return True


def restore(manifest: dict[str, Any], root: Path, store: Blobs) -> list[str]:
    """Put every file of a snapshot back as it was before; remove created files and folders.

    Everything is on disk before this returns (the files are flushed after all the
    writes, not one by one between them: a stopping worker finishes a restore quickly),
    so a journal may then go.
    """
    real_root = root.resolve()
    restored = []
    modes = manifest.get("modes", {})
    touched: list[Path] = []
    for rel, before in sorted(manifest["files"].items()):
        path = real_root / rel
        if before is None:
            if path.is_file() or path.is_symlink():
                path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, store.get(before), modes.get(rel))
        touched.append(path)
        restored.append(rel)
    for d in reversed(manifest.get("dirs", [])):
        try:
            (real_root / d).rmdir()
        except OSError:
            continue  # not empty any more: something else lives there now
        touched.append(real_root / d)  # its parent folder's entry is flushed
    sync_files(touched)
    return restored


def remove_temporaries(manifest: dict[str, Any], root: Path) -> None:
    """Delete the half-written temporary files a killed edit may have left beside its files."""
    real_root = root.resolve()
    folders = {(real_root / rel).parent for rel in manifest["files"]}
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(folder / name)
                except OSError:
                    pass


def current_digest(path: Path) -> str | None:
    try:
        return digest_bytes(path.read_bytes())
    except FileNotFoundError:
        return None


def refresh_after(manifest: dict[str, Any], root: Path, store: Store) -> str | None:
    """A manifest whose `after` digests match the files once a formatter has run (the
    formatted bytes stored, as the edited ones were)."""
    changed = False
    real_root = root.resolve()
    for rel in manifest["files"]:
        try:
            data = (real_root / rel).read_bytes()
        except FileNotFoundError:
            continue
        if digest_bytes(data) != manifest["after"].get(rel):
            manifest["after"][rel], changed = store.put(data), True
    return store.put(_manifest_bytes(manifest)) if changed else None


class ReplayError(Exception):
    """Stored edits cannot be written again: a file is not as the step found it."""


def replay_plan(files: dict[str, tuple[str | None, str]], root: Path, store: Blobs) -> Plan:
    """The plan that writes a step's stored edits again: `files` maps each touched path
    to (its digest before the step, None for a file it created; the digest after).
    Every file must be at its before-digest now (ReplayError names the first that is
    not); the after-bytes come from the store, folders for new files are made again."""
    real_root = root.resolve()
    out = Plan()
    for rel, (before, after) in sorted(files.items()):
        path = real_root / rel
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise ReplayError(f"{rel}: {exc.strerror or exc}") from None
        if (digest_bytes(data) if data is not None else None) != before:
            raise ReplayError(f"edited file changed: {rel}")
        try:
            text = store.get(after).decode("utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            raise ReplayError(f"{rel}: its edited bytes are not in the store") from None
        mode = path.stat().st_mode & 0o7777 if data is not None else None
        out.files[rel] = Change(data, text, mode)
        if data is None:
            missing: list[str] = []
            folder = path.parent
            while not folder.exists() and folder != real_root:
                missing.append(folder.relative_to(real_root).as_posix())
                folder = folder.parent
            out.dirs += [d for d in reversed(missing) if d not in out.dirs]
    return out


def restored_by_journal(store: Store, run_id: str, step: str) -> list[str]:
    """The files of `step` in run `run_id` that journal recovery put back (lok was killed)."""
    out: set[str] = set()
    for path in store.run_dir(run_id).glob("*.restored.json"):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("step") == step:
            out.update(str(f) for f in doc.get("files", []))
    return sorted(out)


def link_digest(store: Store, link: Path) -> str:
    """The digest a run-folder link points at (its target is objects/<algo>/ab/cdef…)."""
    target = Path(os.readlink(link))
    return f"{target.parent.parent.name}:{target.parent.name}{target.name}"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(paths: list[Path]) -> None:
    """Make `paths` (and their folders' entries) durable: an fsync of each file, then of
    each folder once. Not syncfs(2): that one waits for every writer on the filesystem,
    so a stopping worker's restore on a busy disk would take as long as the disk's
    backlog; each fsync waits for lok's own bytes only."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # removed (the restore deleted a created file): nothing to flush
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in {p.parent for p in paths}:
        try:
            fsync_dir(folder)
        except OSError:
            pass  # a folder removed since
