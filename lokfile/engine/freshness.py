"""Keys and the fresh-or-stale decision for one unit.

`Freshness.judge()` computes a unit's key components, its key, and either
settles it from the store (fresh: the stored output, declared outputs restored
when they vanished) or says why it must run. It reads the action cache and the
artifact store (the store's two seams, `store.seams`); it writes only declared
outputs it restores.

An `apply_edits` unit's stored result names each file it touched with the digest
before and after (`KeyEntry.meta["edits"]`); it is fresh only while every such
file has its after-digest:

    every file at its after-digest    fresh (reused)
    every file at its before-digest   stale, and its job re-applies the stored edits
                                      (the after-bytes are artifacts) and verifies,
                                      asking the backend nothing
    anything else                     stale: `edited file changed: PATH`, asked again

A result recorded before edit records existed has none, and is judged as before.

With `--resume RUN`, a unit that succeeded in RUN with the same key is settled from
that run's output, whatever else would make it run (volatile, `cache = false`):
resuming never fires a finished side effect again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from lokfile import hashing
from lokfile.engine import reasons as plan
from lokfile.engine.fingerprint import MISSING, Fingerprinter
from lokfile.engine.units import StoredEdits, Unit, UnitSpec
from lokfile.model import Config, Step, Workflow
from lokfile.outcome import Status, StepResult, Usage
from lokfile.store.rundb import KeyEntry, LastAttempt
from lokfile.store.seams import ActionCache, ArtifactStore


class Resumed(NamedTuple):
    """A unit that succeeded in the run being resumed."""

    key: str
    digest: str
    started: float
    ended: float


def resumed_units(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Resumed]:
    """The units that succeeded in a run (its result rows), by (step, unit)."""
    return {
        (r["step"], r["unit"]): Resumed(r["key"], r["digest"], r["started"] or 0.0, r["ended"] or 0.0)
        for r in rows
        if r.get("key") and r.get("digest") and r["status"] in (Status.RAN, Status.REUSED)
    }


class Upstream(NamedTuple):
    """What a step's upstream steps hand it, for its key (`Freshness.upstream`)."""

    digests: dict[str, str | None]  # step -> its output's digest (joined with its files')
    files: dict[str, str]  # step -> the digest of its declared output files, when it has any


class Freshness:
    """Decides, unit by unit, what can be reused."""

    def __init__(
        self,
        root: Path,
        config: Config,
        store: ArtifactStore,
        cache: ActionCache | None,
        fp: Fingerprinter,
        last: dict[tuple[str, str], LastAttempt],
        forced: tuple[bool, frozenset[str]],
        restore: bool,
        resumed: dict[tuple[str, str], Resumed] | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.cache = cache  # None: no history (nothing can be fresh)
        self.fp = fp
        self.last = last
        self.force_all, self.force_steps = forced
        self.restore = restore  # False in a dry run: look, touch nothing
        self.resumed = resumed or {}  # (step, unit) -> its success in the resumed run
        # The built-in 24 h TTL is for `lok ask`; step results expire only when a config says so.
        from_file = config.origins.get("cache.ttl_hours", "built-in") != "built-in"
        self.ttl = config.cache.ttl_hours if from_file else None

    def upstream(self, step: Step, wf: Workflow, results: dict[str, StepResult]) -> Upstream:
        """What each upstream step hands `step`: its output's digest, and for one that
        declares output files, that digest with theirs (a command below reads those
        files: one that changed must rerun it even when the upstream printed the same)."""
        digests: dict[str, str | None] = {}
        files: dict[str, str] = {}
        for name in sorted(set(step.depends_on)):
            digest, declared = results[name].digest, wf.step(name).outputs
            if declared and digest is not None:  # paths hold no NUL: the joint is unambiguous
                files[name] = hashing.digest_text(
                    "".join(f"\0{rel}\0{self.fp.digest(rel)}" for rel in declared)
                )
                digest = hashing.digest_text(digest + files[name])
            digests[name] = digest
        return Upstream(digests, files)

    def components(self, step: Step, spec: UnitSpec, upstream: Upstream) -> dict[str, Any]:
        """Everything that determines this unit's result: its key components."""
        comp: dict[str, Any] = {
            "schema": hashing.KEY_SCHEMA,
            "kind": step.kind.value,
            "unit": spec.unit,
        }
        if spec.command is not None:
            comp["command"] = hashing.digest_text(spec.command)
            comp["wrapper"] = self.config.defaults.command_wrapper
            comp["outputs"] = list(step.outputs)
        if spec.prompt is not None:
            comp["prompt"] = hashing.digest_text(spec.prompt)
            comp["system"] = spec.system
        if spec.backend is not None:
            comp["backend"] = spec.backend.identity()
            comp["options"] = step.generation_options
        # A loop item's key holds its item and its rendered text, not the whole upstream
        # output: growing a list of 500 by one runs one item. The files an upstream
        # declares it does hold: an item's command may read them.
        if spec.item is None:
            comp["upstream"] = upstream.digests
        elif upstream.files:
            comp["upstream_files"] = upstream.files
        if spec.inputs:
            comp["inputs"] = spec.inputs
        if spec.sample is not None:
            comp["sample"] = spec.sample  # samples of one prompt are different answers
        if step.sources:
            comp["sources"] = self.fp.digests(step.sources)
        if step.env:
            comp["env"] = {
                v: hashing.digest_text(os.environ[v]) if v in os.environ else None for v in step.env
            }
        if spec.item is not None:
            comp["item"] = spec.item
            if "index" in (step.prompt or step.shell or ""):
                comp["index"] = spec.index
        comp["format"] = step.output_format
        if step.apply_edits or step.verify:
            comp["edits"] = {
                "apply": step.apply_edits,
                "verify": spec.verify,
                "fix_retries": step.fix_retries,
            }
        if self.config.cache.salt:
            comp["salt"] = self.config.cache.salt
        return comp

    def judge(
        self, step: Step, spec: UnitSpec, upstream: Upstream
    ) -> tuple[Unit, str | None]:
        """(the unit, None) when it is fresh and settled; (the unit, why) when it must run."""
        comp = self.components(step, spec, upstream)
        key, canonical = plan.make_key(comp)
        unit = Unit(step=step.name, name=spec.unit, key=key, components=comp, spec=spec)
        unit.canonical = canonical
        unit.judged = time.time()
        if self.force_all or step.name in self.force_steps:
            return unit, plan.FORCED
        done = self.resumed.get((step.name, spec.unit))
        if done is not None and done.key == key and self._from_resumed(step, unit, done):
            return unit, None
        if step.cache is False:
            return unit, plan.CACHE_OFF
        if step.is_volatile and spec.command is not None:
            return unit, plan.VOLATILE
        entry = self.cache.lookup(key) if self.cache else None
        if entry is None:
            prev = self.last.get((step.name, spec.unit))
            return unit, plan.explain(
                comp, prev.components if prev else None, prev.status if prev else None
            )
        if self.ttl and time.time() - entry.created > self.ttl * 3600:
            return unit, plan.EXPIRED
        if entry.outputs and not self._outputs_ok(entry):
            return unit, plan.OUTPUT_MISSING
        return unit, self.reuse(unit, entry, step)

    def settle(self, unit: Unit, since: float | None = None) -> bool:
        """Settle a waiting unit from an answer another process recorded for its key since
        `since` (default: since the unit was found stale)."""
        entry = self.cache.lookup(unit.key) if self.cache else None
        fresh = entry is not None and entry.created >= (unit.judged if since is None else since)
        return fresh and entry is not None and self.reuse(unit, entry) is None

    def reuse(self, unit: Unit, entry: KeyEntry, step: Step | None = None) -> str | None:
        """Fill `unit` from the stored answer `entry`; None, or why it cannot be reused.
        With its `step`, an edit unit is reused only while its files hold its edits (an
        answer another process just recorded comes with that process's edits applied)."""
        spec = unit.spec
        try:
            text = self.store.get_text(entry.digest)
        except FileNotFoundError:
            return "artifact missing from the store"
        if step is not None:
            why = self._edits_hold(step, unit, entry, text)
            if why is not None:
                return why
        unit.status = Status.REUSED
        unit.reason = plan.FRESH
        unit.digest = entry.digest
        unit.output = text
        unit.saved = entry.duration
        ended = float(entry.meta.get("ended") or entry.created)
        unit.span = (ended - entry.duration, ended)
        unit.backend = spec.backend.name if spec.backend else None
        unit.model = entry.meta.get("model")
        unit.truncated = bool(entry.meta.get("truncated"))
        unit.usage = Usage.from_doc(entry.meta.get("usage"))
        return None

    def previous(self, step: str, unit: str) -> KeyEntry | None:
        """The stored answer of this unit's last attempt (None: none, or it failed)."""
        prev = self.last.get((step, unit))
        return self.cache.lookup(prev.key) if prev is not None and self.cache else None

    def _from_resumed(self, step: Step, unit: Unit, done: Resumed) -> bool:
        """Settle `unit` from the resumed run; False to judge it as usual (its output is
        gone, or it is an edit unit with a stored result: its files decide)."""
        entry = self.cache.lookup(unit.key) if self.cache and step.apply_edits else None
        if entry is not None and entry.meta.get("edits") is not None:
            return False
        try:
            text = self.store.get_text(done.digest)
        except FileNotFoundError:
            return False
        unit.status = Status.REUSED
        unit.reason = plan.RESUMED
        unit.digest = done.digest
        unit.output = text
        unit.saved = max(0.0, done.ended - done.started)
        unit.span = (done.started, done.ended) if done.ended else None
        unit.backend = unit.spec.backend.name if unit.spec.backend else None
        return True

    def _edits_hold(self, step: Step, unit: Unit, entry: KeyEntry, text: str) -> str | None:
        """None when the files an edit unit touched still hold its edits; else why it must
        run (and, when the tree has merely lost them, the stored edits to re-apply)."""
        record = entry.meta.get("edits") if step.apply_edits else None
        if not isinstance(record, dict) or not record.get("files"):
            return None  # no edits, or recorded before lok kept edit records
        files: dict[str, tuple[str | None, str]] = {
            rel: (before, after) for rel, (before, after) in record["files"].items()
        }
        now: dict[str, str | None] = {}
        for rel in sorted(files):
            digest = self.fp.digest(rel)
            now[rel] = None if digest == MISSING else digest
        if all(now[rel] == after for rel, (_before, after) in files.items()):
            return None
        if not all(now[rel] == before for rel, (before, _after) in files.items()):
            moved = [rel for rel, (b, a) in sorted(files.items()) if now[rel] not in (b, a)]
            off = moved or [rel for rel, (_b, a) in sorted(files.items()) if now[rel] != a]
            return plan.edited_file_changed(off[0])
        stored = tuple((rel, before, after) for rel, (before, after) in sorted(files.items()))
        if not all(after and self.store.has(after) for _rel, _before, after in stored):
            return "artifact missing from the store"
        count = int(record.get("count") or len(stored))
        unit.replay = StoredEdits(stored, text, count)
        return plan.reapply(count, done=False)

    def _outputs_ok(self, entry: KeyEntry) -> bool:
        """Declared outputs match, restoring any that changed or vanished from the store."""
        for rel, digest in entry.outputs.items():
            if self.fp.digest(rel) == digest:
                continue
            if not self.store.has(digest):
                return False
            if self.restore:
                self.store.restore(digest, self.root / rel)
                st = os.stat(self.root / rel)
                self.fp.remember([(rel, st.st_size, st.st_mtime_ns, st.st_ino, digest)])
        return True
