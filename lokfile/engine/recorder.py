"""What a run writes to its history, buffered and made durable a transaction at a time.

The coordinator calls `unit_done` when a job finishes, `step_rows` when a step
is settled, and `commit` after each finished job: a finished call's key is in
the action cache (`store.seams`), in the same transaction as its rows, before
the next step starts, so a kill -9 never loses an answer or an edit. A batch
of shell commands only is committed right after the jobs it made ready have
started, while they run (a chain of trivial steps waits on nothing): a kill -9
in that moment loses at most those commands' rows, and they run again. Rows of
steps that were merely reused wait for the next commit (they can be derived
again), which keeps a no-op run to a handful of transactions.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lokfile import hashing
from lokfile.engine.fingerprint import Fingerprinter
from lokfile.engine.units import Unit
from lokfile.outcome import Status, StepResult, Usage
from lokfile.store.leases import Leases
from lokfile.store.rundb import KeyEntry, LastAttempt, RunDB
from lokfile.store.seams import ActionCache
from lokfile.worker.jobs import JobResult


class Recorder:
    """Buffers one run's history rows; `enabled` False (status, dry run) writes nothing."""

    def __init__(
        self,
        db: RunDB | None,
        cache: ActionCache | None,
        fp: Fingerprinter,
        workflow: str,
        run_id: str,
        last: dict[tuple[str, str], LastAttempt],
        enabled: bool,
        leases: Leases | None = None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.fp = fp
        self.workflow = workflow
        self.run_id = run_id
        self.last = last
        self.enabled = enabled and db is not None
        self.seq = 0
        self.rows: list[dict[str, Any]] = []
        self.keys: list[tuple[KeyEntry, str]] = []
        self.attempts: list[tuple[str, str, str, dict[str, Any], str]] = []
        self.leases = leases  # the keys this run claims (lokfile/store/leases.py)
        self.done: list[str] = []  # keys whose call ended: their leases go with their rows
        # a buffered result cost a call or touched the tree: durable before the next job
        # starts (only shell commands buffered: one lost to a kill -9 merely runs again)
        self.urgent = False

    def unit_done(self, unit: Unit, result: JobResult) -> None:
        """A job finished: its key (when it succeeded) and its attempt, to name later reasons."""
        if result.success and unit.digest:
            meta: dict[str, Any] = {"model": result.model} if result.model else {}
            meta["ended"] = unit.ended  # with the duration: when this answer's work ran
            if result.truncated:  # a reused answer still says it was cut
                meta["truncated"] = True
            if result.edits is not None:  # the touched files' digests before and after
                meta["edits"] = result.edits
            if unit.usage.calls:
                meta["usage"] = unit.usage.record()  # what it cost, for every run that reuses it
                # what the backend read, so an estimate can move the measured input count
                meta["prompt_chars"] = len(unit.spec.system or "") + len(unit.spec.prompt or "")
            entry = KeyEntry(
                unit.key, unit.digest, time.time(), unit.duration, result.outputs, meta
            )
            self.keys.append((entry, unit.step))
        shell = unit.spec.backend is None and unit.spec.answer is None and not result.calls
        if not shell or result.edits is not None or result.snapshot is not None:
            self.urgent = True
        assert unit.status is not None
        self.attempts.append((unit.step, unit.name, unit.key, unit.components, unit.status.value))
        self.done.append(unit.key)

    def step_rows(self, result: StepResult) -> None:
        """The rows of a settled step: one for the step, one per named unit."""
        if not self.enabled:
            return
        self._step_row(result)
        for unit in result.units:
            if unit.name:
                self._unit_row(unit)

    def commit(self) -> None:
        """Make everything buffered durable, in one transaction (none when nothing is)."""
        if not self.enabled or not (self.keys or self.attempts or self.rows or self.fp.updates):
            return
        assert self.db is not None
        with self.db.transaction():
            self.write()

    def write(self, final: bool = False) -> None:
        """Write everything buffered (inside the caller's transaction); `final`: the run
        ends, so every lease it still holds goes too."""
        assert self.db is not None and self.cache is not None
        for entry, step in self.keys:
            self.cache.record(entry, step, self.workflow)
        for step, unit, key, comp, status in self.attempts:
            self.db.set_last_attempt(self.workflow, step, unit, key, comp, status)
        self.db.record_results(self.rows)
        self.fp.flush()
        if self.leases is not None:
            self.leases.release(self.done)  # a waiting process now finds the result, or a free key
            if final:
                self.leases.release_all()
        self.keys, self.attempts, self.rows, self.done = [], [], [], []
        self.urgent = False

    def _row(self, **fields: Any) -> None:
        self.seq += 1
        self.rows.append({"run_id": self.run_id, **fields, "seq": self.seq})

    def _unit_row(self, unit: Unit) -> None:
        assert unit.status is not None
        self._row(
            step=unit.step,
            unit=unit.name,
            key=unit.key,
            components=unit.canonical,
            status=unit.status.value,
            reason=unit.reason,
            attempts=unit.attempts,
            started=unit.started,
            ended=unit.ended,
            duration=unit.duration,
            backend=unit.backend,
            model=unit.model,
            truncated=int(unit.truncated),
            worker=unit.worker,
            digest=unit.digest,
            error=unit.error,
            usage=_usage_json(unit.usage),
        )

    def _step_row(self, result: StepResult) -> None:
        units = result.units
        single = units[0] if len(units) == 1 else None
        if single is not None:
            key, components = single.key, single.canonical
        elif units:
            key = hashing.digest_json(sorted(u.key for u in units))
            components = json.dumps({"units": [u.name for u in units]})
        else:
            key, components = "", "{}"
        self._row(
            step=result.name,
            unit="",
            key=key,
            components=components,
            status=result.status.value,
            reason=result.reason,
            attempts=sum(u.attempts for u in units),
            started=min((u.started for u in units if u.started), default=0.0),
            ended=max((u.ended for u in units if u.ended), default=0.0),
            duration=result.duration,
            backend=result.backend,
            model=single.model if single else None,
            truncated=int(any(u.truncated for u in units)),
            worker=single.worker if single else None,
            digest=result.digest,
            error=result.error,
            usage=_usage_json(result.usage),
        )
        prev = self.last.get((result.name, ""))
        if (
            single is not None
            and single.status is Status.REUSED
            and (prev is None or prev.key != single.key)
        ):
            reused = Status.REUSED.value
            self.attempts.append((result.name, "", single.key, single.components, reused))


def _usage_json(usage: Usage) -> str | None:
    """A row's `usage` column: None for work that called no backend."""
    return _SORTED(usage.record()) if usage.calls else None


_SORTED = json.JSONEncoder(sort_keys=True).encode  # json.dumps(…, sort_keys=True), made once
