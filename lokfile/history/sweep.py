"""Sweeping the store (`lok gc`): garbage collection, and verification of what is in it.

What a kept run reaches stays: the artifacts its results name, the keys it
recorded (their artifacts and declared outputs), and its edit snapshots; so do
`lok ask` answers still within the cache TTL, keys no run ever recorded (not
ours to judge), and unknown artifacts younger than GRACE_S (a writer may not
have recorded them yet). Everything else goes.

Per workflow the newest `keep` runs are kept, and always its newest run and
its newest successful run: that is what `lok run` reuses, so after any gc the
latest run of every workflow still reruns with zero steps executed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokfile.errors import StoreError, UsageError
from lokfile.model import Config
from lokfile.outcome import RunStatus
from lokfile.store.artifacts import Store
from lokfile.store.rundb import KeyEntry, RunDB

GRACE_S = 3600.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]+$")


@dataclass
class GcPlan:
    """What a gc removes (or would remove, in a dry run)."""

    kept_runs: list[str] = field(default_factory=list)
    dropped_runs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, Path, int]] = field(default_factory=list)  # digest, path, bytes
    keys: list[str] = field(default_factory=list)
    ask_keys: list[str] = field(default_factory=list)
    stray_folders: list[Path] = field(default_factory=list)
    store_bytes: int = 0
    max_size: int | None = None

    @property
    def freed(self) -> int:
        return sum(size for _, _, size in self.artifacts)

    @property
    def over_max_size(self) -> bool:
        return self.max_size is not None and self.store_bytes - self.freed > self.max_size


def parse_size(text: str) -> int:
    """Bytes in `500M`, `1.5G`, `200KiB`, `4096` (K, M, G, T count in 1024s)."""
    m = _SIZE.match(text)
    if m is None:
        raise UsageError(
            f"--max-size: '{text}' is not a size", "write it like 500M, 2G, 100KiB or 4096"
        )
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


@dataclass
class _Index:
    """Everything gc decides over, read once: runs, what each reaches, keys, ask answers."""

    runs: list[dict[str, Any]]  # newest first
    run_keys: dict[str, set[str]]
    run_digests: dict[str, set[str]]
    keys: list[KeyEntry]
    ask: list[tuple[str, str, float]]
    known: set[str]  # every digest any history row names
    objects: list[tuple[str, Path, int]]


def plan_gc(
    store: Store,
    db: RunDB,
    config: Config,
    keep: int | None = None,
    max_size: int | None = None,
    now: float | None = None,
) -> GcPlan:
    """Decide what to remove. Reads only; `apply_gc` does the removing."""
    now = time.time() if now is None else now
    _refuse_while_running(db)
    index = _read_index(store, db)
    kept, protected = _choose_runs(index.runs, keep, _latest_link(store))
    plan = _plan_for(store, index, config, kept, now)
    plan.store_bytes = sum(size for _, _, size in index.objects)
    plan.max_size = max_size
    if max_size is not None:
        # drop the oldest unprotected runs until the store fits (or nothing is left to drop)
        for row in reversed(index.runs):
            if not plan.over_max_size:
                break
            if row["id"] in kept and row["id"] not in protected:
                kept.discard(row["id"])
                sized = _plan_for(store, index, config, kept, now)
                sized.store_bytes, sized.max_size = plan.store_bytes, max_size
                plan = sized
    return plan


def _read_index(store: Store, db: RunDB) -> _Index:
    runs = db.runs()
    run_keys: dict[str, set[str]] = {}
    run_digests: dict[str, set[str]] = {}
    known: set[str] = set()
    for row in runs:
        results = db.results(row["id"])
        run_keys[row["id"]] = {r["key"] for r in results if r.get("key")}
        digests = {r["digest"] for r in results if r.get("digest")}
        run_digests[row["id"]] = digests | linked_digests(store, {row["id"]})
        known |= run_digests[row["id"]]
    keys = db.all_keys()
    for entry in keys:
        known |= entry.artifacts()
    ask = db.ask_cache_entries()
    known |= {digest for _, digest, _ in ask}
    objects = [(d, p, _size(p)) for d, p in store.iter_objects()]
    return _Index(runs, run_keys, run_digests, keys, ask, known, objects)


def _latest_link(store: Store) -> str | None:
    try:
        return os.readlink(store.runs_dir / "latest")
    except OSError:
        return None


def _refuse_while_running(db: RunDB) -> None:
    for row in db.runs():  # a run whose coordinator is gone reads as interrupted
        if row["status"] == RunStatus.RUNNING:
            raise StoreError(
                f"run {row['id']} of '{row['workflow']}' is in progress (pid {row['pid']})",
                "let it finish, then run lok gc",
            )


def _choose_runs(
    runs: list[dict[str, Any]], keep: int | None, latest: str | None
) -> tuple[set[str], set[str]]:
    """(kept, protected): protected runs are kept whatever --keep or --max-size say."""
    kept: set[str] = set()
    protected: set[str] = {latest} if latest else set()
    seen: dict[str, int] = {}
    succeeded: set[str] = set()
    for row in runs:
        wf = row["workflow"]
        n = seen.get(wf, 0)
        seen[wf] = n + 1
        if n == 0:
            protected.add(row["id"])
        if row["status"] == RunStatus.SUCCEEDED and wf not in succeeded:
            succeeded.add(wf)
            protected.add(row["id"])
        if keep is None or n < keep:
            kept.add(row["id"])
    recorded = {r["id"] for r in runs}
    return kept | (protected & recorded), protected


def _plan_for(store: Store, index: _Index, config: Config, kept: set[str], now: float) -> GcPlan:
    dropped = [r for r in index.runs if r["id"] not in kept]
    reached_by_kept: set[str] = set().union(*(index.run_keys[r] for r in kept))
    reached_by_dropped: set[str] = set().union(*(index.run_keys[r["id"]] for r in dropped))
    plan = GcPlan(kept_runs=[r["id"] for r in index.runs if r["id"] in kept], dropped_runs=dropped)
    live: set[str] = set().union(*(index.run_digests[r] for r in kept))
    for entry in index.keys:
        # a key no run recorded is not ours to judge; one only dropped runs reached goes
        if entry.key in reached_by_dropped and entry.key not in reached_by_kept:
            plan.keys.append(entry.key)
        else:
            live |= entry.artifacts()
    ttl = config.cache.ttl_hours
    for key, digest, created in index.ask:
        if ttl and now - (created or 0) > ttl * 3600:
            plan.ask_keys.append(key)
        else:
            live.add(digest)
    for digest, path, size in index.objects:
        if digest in live:
            continue
        if digest not in index.known and now - _mtime(path) < GRACE_S:
            continue
        plan.artifacts.append((digest, path, size))
    recorded = {r["id"] for r in index.runs}
    folders = _run_folders(store)
    # a kept replayed no-op's folder is a link to an earlier run's: that folder stays too
    aliased = {_alias_target(p) for p in folders if p.name in kept and p.is_symlink()}
    plan.stray_folders = [
        p
        for p in folders
        if p.name not in kept
        and p.name not in aliased
        and (p.name in recorded or now - _mtime(p) >= GRACE_S)
    ]
    return plan


def _alias_target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def linked_digests(store: Store, run_ids: set[str]) -> set[str]:
    """Artifacts the given runs' folders link to: step outputs, and edit snapshots
    (`<step>.snapshot.json`, see lokfile.worker.edits) with the originals they name."""
    out: set[str] = set()
    for run_id in run_ids:
        folder = store.run_dir(run_id)
        if not folder.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                link = Path(dirpath) / name
                digest = _link_digest(store, link) if link.is_symlink() else None
                if digest is None:
                    continue
                out.add(digest)
                if name.endswith(".snapshot.json"):
                    out |= _snapshot_needs(store, digest)
    return out


def _snapshot_needs(store: Store, digest: str) -> set[str]:
    """The originals an edit snapshot manifest names (so `lok runs revert` keeps working)."""
    from lokfile.worker.snapshots import manifest_digests

    return manifest_digests(store, digest)


def _link_digest(store: Store, link: Path) -> str | None:
    try:
        target = (link.parent / os.readlink(link)).resolve()
        rel = target.relative_to(store.objects_dir.resolve())
    except (OSError, ValueError):
        return None
    parts = rel.parts
    return f"{parts[0]}:{parts[1]}{parts[2]}" if len(parts) == 3 else None


def _run_folders(store: Store) -> list[Path]:
    """Run folders, and the links that stand for a replayed no-op's folder (Store.alias_run)."""
    if not store.runs_dir.is_dir():
        return []
    return sorted(
        p
        for p in store.runs_dir.iterdir()
        if _RUN_ID.match(p.name) and (p.is_symlink() or p.is_dir())
    )


def apply_gc(store: Store, db: RunDB, plan: GcPlan) -> None:
    """Remove what `plan` names: history rows in one transaction, then the files."""
    with db.transaction():
        _refuse_while_running(db)  # a run may have started since the plan was made
        db.forget_runs(r["id"] for r in plan.dropped_runs)
        for key in plan.keys:
            db.drop_key(key)
        db.drop_ask_cache(plan.ask_keys)
        # files go while the write lock is held, so no new run can start and reuse them meanwhile
        for folder in plan.stray_folders:
            if folder.is_symlink():
                folder.unlink(missing_ok=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        fans: set[Path] = set()
        for _digest, path, _size in plan.artifacts:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            fans.add(path.parent)
        for fan in fans:
            try:
                fan.rmdir()
            except OSError:
                pass  # not empty


def gc_json(plan: GcPlan, dry_run: bool) -> dict[str, Any]:
    """The `--json` document of `lok gc`."""
    return {
        "dry_run": dry_run,
        "kept_runs": plan.kept_runs,
        "removed_runs": [
            {"id": r["id"], "workflow": r["workflow"], "status": r["status"]}
            for r in plan.dropped_runs
        ],
        "removed_artifacts": len(plan.artifacts),
        "removed_bytes": plan.freed,
        "removed_keys": len(plan.keys),
        "removed_ask_cache": len(plan.ask_keys),
        "store_bytes_before": plan.store_bytes,
        "store_bytes_after": plan.store_bytes - plan.freed,
        "max_size": plan.max_size,
        "over_max_size": plan.over_max_size,
    }


def render_gc(plan: GcPlan, dry_run: bool) -> str:
    """The text of `lok gc`."""
    from lokfile.history.runs import when

    verb = "Would remove" if dry_run else "Removed"
    lines = []
    for r in plan.dropped_runs:
        lines.append(f"  - run {r['id']}  {r['workflow']}  {r['status']}  {when(r['started'])}")
    lines.append(
        f"{verb} {len(plan.dropped_runs)} run(s), {len(plan.artifacts)} artifact(s), "
        f"{human_bytes(plan.freed)}; kept {len(plan.kept_runs)} run(s)."
    )
    lines.append(
        f"Store: {human_bytes(plan.store_bytes)} → {human_bytes(plan.store_bytes - plan.freed)}"
    )
    if plan.over_max_size:
        assert plan.max_size is not None
        lines.append(
            f"Still over --max-size {human_bytes(plan.max_size)}: the rest belongs to the latest "
            "run of each workflow, which gc never removes."
        )
    return "\n".join(lines) + "\n"


def human_bytes(n: int) -> str:
    """`812 B`, `4.0 KiB`, `12.3 MiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# -- lok runs verify ------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What re-hashing the store found."""

    checked: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)  # digests whose bytes no longer match
    missing: list[dict[str, str]] = field(default_factory=list)  # {digest, where}
    repaired: list[str] = field(default_factory=list)  # what --repair did

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


def verify_store(store: Store, db: RunDB | None) -> VerifyReport:
    """Re-hash every artifact, and check that every artifact the history names exists."""
    report = VerifyReport()
    present: set[str] = set()
    for digest, path in store.iter_objects():
        present.add(digest)
        report.checked += 1
        report.bytes += _size(path)
        if not store.verify(digest):
            report.corrupt.append(digest)
    if db is None:
        return report
    seen: set[str] = set()

    def need(digest: str | None, where: str) -> None:
        if digest and digest not in present and digest not in seen:
            seen.add(digest)
            report.missing.append({"digest": digest, "where": where})

    for run in db.runs():
        for r in db.results(run["id"]):
            unit = f" [{r['unit']}]" if r["unit"] else ""
            need(r.get("digest"), f"run {run['id']} step {r['step']}{unit}")
    for entry in db.all_keys():
        need(entry.digest, f"cached result {entry.key}")
        for rel, digest in entry.outputs.items():
            need(digest, f"declared output {rel} of cached result {entry.key}")
        for digest in entry.artifacts() - {entry.digest, *entry.outputs.values()}:
            need(digest, f"edited file of cached result {entry.key}")
    for key, digest, _created in db.ask_cache_entries():
        need(digest, f"lok ask answer {key}")
    return report


def repair_store(store: Store, db: RunDB | None, report: VerifyReport) -> None:
    """Delete corrupt artifacts and forget cached results that need a bad or missing one,
    so the next run rebuilds them instead of reusing wrong bytes."""
    bad = set(report.corrupt) | {m["digest"] for m in report.missing}
    for digest in report.corrupt:
        try:
            store.path(digest).unlink()
            report.repaired.append(f"deleted corrupt artifact {digest}")
        except FileNotFoundError:
            pass
    if db is None:
        return
    with db.transaction():
        for entry in db.all_keys():
            if bad & entry.artifacts():
                db.drop_key(entry.key)
                report.repaired.append(f"forgot cached result {entry.key} (it reruns)")
        stale = [k for k, d, _ in db.ask_cache_entries() if d in bad]
        db.drop_ask_cache(stale)
        report.repaired += [f"forgot lok ask answer {k}" for k in stale]


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """The `--json` document of `lok runs verify`."""
    return {
        "ok": report.ok,
        "checked": report.checked,
        "bytes": report.bytes,
        "corrupt": report.corrupt,
        "missing": report.missing,
        "repaired": report.repaired,
    }


def render_verify(report: VerifyReport, store: Store) -> str:
    """The text of `lok runs verify`."""
    lines = [f"Checked {report.checked} artifact(s), {human_bytes(report.bytes)}."]
    for digest in report.corrupt:
        lines.append(f"  corrupt  {digest}  ({store.path(digest)})")
    for m in report.missing:
        lines.append(f"  missing  {m['digest']}  needed by {m['where']}")
    lines += [f"  repaired: {text}" for text in report.repaired]
    if report.ok:
        lines.append("Every artifact matches its digest.")
    else:
        lines.append(f"{len(report.corrupt)} corrupt, {len(report.missing)} missing.")
    return "\n".join(lines) + "\n"
