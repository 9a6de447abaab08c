"""`lok runs revert RUN --step S`: put back the files a step's edits replaced.

The step's snapshot manifests are found through its run folder; a file changed
again since the edit is refused unless forced; a file already back to its
original is left alone. A step that was stopped mid-edit (its files put back
by journal recovery) reverts to nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lokfile.errors import LokError, StoreError, UsageError
from lokfile.store.artifacts import Store
from lokfile.worker.snapshots import (
    current_digest,
    link_digest,
    load_manifest,
    restore,
    restored_by_journal,
    snapshot_filename,
)

if TYPE_CHECKING:
    from lokfile.project import Project
    from lokfile.store.rundb import RunDB


def revert(
    project: Project, store: Store, db: RunDB, run_id: str, step: str, force: bool = False
) -> list[str]:
    """Restore the files a step's edits replaced in run `run_id`; the paths restored.

    The step's snapshots are read from the run folder (`snapshot_filename`); none
    means the step changed no files (an empty list). A file changed again since the
    edit is refused unless `force`; a file already back to its original is left alone.
    """
    every = db.results(run_id)
    rows = [r for r in every if r["step"] == step]
    if not rows and restored_by_journal(store, run_id, step):
        return []  # stopped mid-edit: its files were put back when lok next started
    if not rows:
        raise UsageError(
            f"run {run_id} has no step '{step}'", f"`lok runs show {run_id}` lists its steps"
        )
    folder = store.run_dir(run_id)
    units = dict.fromkeys(str(r.get("unit") or "") for r in reversed(rows))
    links = [_snapshot_link(folder, every, step, u) for u in units]
    try:
        manifests = [load_manifest(store, link_digest(store, p)) for p in links if p.is_symlink()]
        for manifest in manifests:  # every original must still be stored before anything changes
            for before in manifest["files"].values():
                if isinstance(before, str) and not store.has(before):
                    raise FileNotFoundError(before)
    except FileNotFoundError as exc:
        raise StoreError(
            f"run {run_id}, step '{step}': a snapshot of the edited files is missing from the store",
            "`lok runs verify` lists missing artifacts; they may have been collected by `lok gc`",
        ) from exc
    real_root = project.root.resolve()
    todo: list[dict[str, Any]] = []
    for manifest in manifests:
        files = {}
        for rel, before in manifest["files"].items():
            now = current_digest(real_root / rel)
            if now == before:
                continue
            if now != manifest["after"].get(rel) and not force:
                raise LokError(
                    f"{rel} changed after step '{step}' edited it in run {run_id}",
                    "reverting would lose those changes; pass --force to restore it anyway",
                )
            files[rel] = before
        todo.append({**manifest, "files": files})
    restored: list[str] = []
    for manifest in todo:
        restored += restore(manifest, project.root, store)
    return sorted(set(restored))


def _snapshot_link(folder: Path, rows: list[dict[str, Any]], step: str, unit: str) -> Path:
    """The unit's snapshot link; in a run recorded before names were made distinct, the
    old name, unless another unit of that run shared it, even by case alone (then the
    link may be the other's)."""
    from lokfile.store.artifacts import legacy_output_filename

    link = folder / snapshot_filename(step, unit)
    if link.is_symlink():
        return link

    def old(pair: tuple[str, str]) -> str:
        return legacy_output_filename(pair[0], ".snapshot.json", pair[1])

    pairs = {(str(r["step"]), str(r.get("unit") or "")) for r in rows}
    mine = old((step, unit))
    sharing = [p for p in pairs if old(p).casefold() == mine.casefold()]
    return folder / mine if sharing == [(step, unit)] else link
