"""The coordinator: one run of a workflow, from its ready queue to its history.

A step becomes ready the moment its dependencies are done (no waves). A
ready step is gated (dependency failures, quorum, condition), rendered, and
split into units — one for a plain step, one per item of a `for_each`, one
per backend of a multi-backend step (plus a synthesis unit). Each unit has a
key; a fresh unit is settled here from the store, a stale one becomes a job
for the executor. Only this process writes the run history.

    ready.py ──> gate ──> units.py (render, split) ──> freshness.py (key: fresh?)
       ^                                                  │ fresh      │ stale
       │                                                  v            v
       │                                        settled from store   dispatch.py ──> executor
       │                                                  │            │ results
       └── done <── record (recorder.py, rundoc.py) <── combine (units.py) <┘

context.py keeps the template context the renderings read.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokfile.engine import reasons as plan
from lokfile.engine.context import TemplateContext
from lokfile.engine.dispatch import Dispatch
from lokfile.engine.fingerprint import Fingerprinter
from lokfile.engine.freshness import Freshness, Upstream, resumed_units
from lokfile.engine.onecall import for_run
from lokfile.engine.ready import ReadyQueue
from lokfile.engine.recorder import Recorder
from lokfile.engine.rundoc import run_document
from lokfile.engine.spending import Ledger
from lokfile.engine.units import (
    Unit,
    UnitEnv,
    UnitSpec,
    aggregate,
    backend_times,
    build_units,
    combine,
)
from lokfile.errors import DiskFullError
from lokfile.events import (
    ParallelStart,
    Reporter,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
)
from lokfile.executors import ExecutorFactory
from lokfile.model import Config, RunStatus, Status, Step, Workflow
from lokfile.outcome import RunOutcome, StepResult, covered, new_run_id, run_cost, total
from lokfile.store.artifacts import Store, output_filename
from lokfile.store.leases import Leases
from lokfile.store.rundb import RunDB
from lokfile.store.seams import ActionCache, LocalActionCache
from lokfile.worker.jobs import JobResult

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

__all__ = ["Coordinator", "Reporter", "RunOptions", "RunOutcome", "StepResult", "new_run_id"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    args: tuple[str, ...] = ()
    named: dict[str, str] = field(default_factory=dict)
    force_all: bool = False
    force_steps: frozenset[str] = frozenset()
    dry_run: bool = False
    jobs: int = 8
    keep_going: bool = False
    resumed_from: str | None = None
    record: bool = True  # False for `lok status`
    max_cost_usd: float | None = None  # --max-cost: over [budget] max_cost_usd


@dataclass(kw_only=True)
class _Live:
    """A step whose units are being resolved or executed."""

    step: Step
    units: list[Unit]
    pending: int
    started: float
    upstream: Upstream  # what its upstream steps handed it, once for all its units


class Coordinator:
    """Runs one workflow once. Collaborators are passed in; nothing global."""

    def __init__(
        self,
        workflow: Workflow,
        config: Config,
        root: Path,
        store: Store,
        db: RunDB | None,
        options: RunOptions,
        report: Reporter,
        executor: ExecutorFactory,
        cache: ActionCache | None = None,
    ) -> None:
        self.wf = workflow
        self.config = config
        self.root = root
        self.store = store
        self.db = db
        self.opts = options
        self.unit_env = UnitEnv(config=config, store=store, dry_run=options.dry_run)
        self.report = report
        self.run_id = new_run_id()
        self.results: dict[str, StepResult] = {}
        self.live: dict[str, _Live] = {}
        self.ready = ReadyQueue(workflow)
        self.stopping = False
        self.interrupted = 0
        self.stopped_by: str | None = None  # the signal that interrupted the run
        self.disk_full: DiskFullError | None = None  # set once a write failed for lack of space
        self.failed_hard: list[str] = []
        self.fp = Fingerprinter(root, db)
        self.last = db.last_attempts(workflow.name) if db else {}
        self.slots = max(1, min(options.jobs, workflow.concurrency or options.jobs))
        self.dispatch = Dispatch(
            make_executor=executor,
            slots=self.slots,
            workflow=workflow,
            config=config,
            root=root,
            runs_dir=store.runs_dir,
            run_id=self.run_id,
            say=report,
        )
        if cache is None and db is not None:
            cache = LocalActionCache(db)  # the action cache is the history's `keys` table
        self.freshness = Freshness(
            root,
            config,
            store,
            cache,
            self.fp,
            self.last,
            (options.force_all, options.force_steps),
            restore=not options.dry_run,
            resumed=resumed_units(db.results(options.resumed_from))
            if db is not None and options.resumed_from
            else None,
        )
        cap = config.budget.max_cost_usd if options.max_cost_usd is None else options.max_cost_usd
        cap = None if options.dry_run else cap
        plan = options.dry_run and options.record  # `lok status` estimates nothing
        self.ledger = Ledger(workflow, config, cap, self.freshness.previous, plan)
        self.context = TemplateContext(workflow, options.args, options.named, self.results)
        record = options.record and not options.dry_run
        leases = Leases(db.conn, self.run_id) if record and db is not None else None
        self.onecall = for_run(self.ledger, leases, self.freshness, self.dispatch, report)
        self.recorder = Recorder(
            db, cache, self.fp, workflow.name, self.run_id, self.last, record, leases
        )

    # -- the loop ------------------------------------------------------------

    def run(self) -> RunOutcome:
        self.ledger.check_priced(self.unit_env.backend_config)  # under a cap: before any call
        t0 = time.time()
        record = self.opts.record and not self.opts.dry_run and self.db is not None
        if record:
            assert self.db is not None
            self.db.mark_abandoned_runs()
            args = {"positional": list(self.opts.args), "named": self.opts.named}
            self.db.start_run(self.run_id, self.wf.name, self.wf.path, args, self.opts.resumed_from)
            self.store.write_run_json(self.run_id, self._document(RunStatus.RUNNING, t0))
        wf, opts = self.wf, self.opts
        self.report(RunStarted(self.run_id, wf.name, wf.description, len(wf.steps), opts.dry_run,
                               self.slots))
        # Ctrl-C and SIGTERM reach Python's main thread only: a run on another thread (the
        # MCP server's background runs) is stopped through cancel() instead
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS if main}
        finished = False
        try:
            self._loop()
            finished = True
        except DiskFullError as exc:  # lok itself could not write: stop, keep what is stored
            self.disk_full = self.disk_full or exc
            self._interrupt("not finished: the disk is full")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.dispatch.close(kill=bool(self.interrupted) or not finished):
                self._recover_edits()
        try:
            self.store.link_pending()  # the last steps' run-folder links
        except DiskFullError as exc:
            self.disk_full = self.disk_full or exc
        status = self._final_status()
        wall = time.time() - t0
        saved = covered(
            u.span
            for r in self.results.values()
            for u in r.units
            if u.status is Status.REUSED and getattr(u, "span", None)
        )
        if record:
            assert self.db is not None
            error = self.disk_full.message if self.disk_full else None
            try:
                with self.db.transaction():
                    self.recorder.write(final=True)
                    self.db.finish_run(
                        self.run_id, status.value, self._counts(), saved, error, run_cost(self.results.values())
                    )
                self.store.write_run_json(self.run_id, self._document(status, t0))
                self.store.set_latest(self.run_id)
            except DiskFullError as exc:  # the history stays as it was before this write
                self.disk_full = self.disk_full or exc
        if self.disk_full is not None:
            raise self.disk_full
        outcome = RunOutcome(
            run_id=self.run_id,
            workflow=self.wf,
            status=status,
            results=self.results,
            wall=wall,
            saved=saved,
            dry_run=self.opts.dry_run,
            stopped_by=self.stopped_by,
            budget=self.ledger.summary(),
        )
        extra: dict[str, Any] = {"signal": self.stopped_by} if self.stopped_by else {}
        if outcome.budget is not None:
            extra["budget"] = outcome.budget
        self.report(
            RunFinished(
                self.run_id,
                status,
                outcome.counts,
                wall,
                saved,
                extra or None,
                dry_run=self.opts.dry_run,
                cost=outcome.cost,
            )
        )
        return outcome

    def _loop(self) -> None:
        ready, dispatch = self.ready, self.dispatch
        while True:
            if self.interrupted:
                self._interrupt()
                return
            batch = 0
            while ready and not self.stopping:
                if self._prepare(self.wf.step(ready.pop())):
                    batch += 1
            if batch > 1:
                self.report(ParallelStart(batch, dispatch.concurrency()))
            dispatch.start()
            self.recorder.commit()  # shell results held back below, while the new jobs run
            self.store.link_pending()  # while the jobs just started run
            if dispatch.refused:
                self._over_budget()
            for unit in self.onecall.poll(dispatch):  # answered by another lok process
                self._one_less(unit)
            if dispatch.idle:
                if ready and not self.stopping:
                    continue
                break
            for unit, result in dispatch.finished(0.1):
                self._unit_done(unit, result)
            # an answer or an edit is durable before anything starts (shell results: above)
            if self.recorder.urgent:
                self.recorder.commit()
            self.onecall.heartbeat()
            self.report.tick()
        for s in self.wf.steps:
            if s.name not in self.results:
                why = (
                    f"not started: {', '.join(self.failed_hard)} failed"
                    if self.failed_hard
                    else "not started: the budget stopped the run"
                    if self.ledger.stopped
                    else "not started"
                )
                self._finish_step_now(s, Status.SKIPPED, why, release=False)

    def _over_budget(self) -> None:
        """The budget refused a call: start nothing more; the units it held back are
        skipped (their steps too), and what is in flight finishes."""
        self.stopping = True
        for unit in self.dispatch.refused:
            unit.status = Status.SKIPPED
            unit.reason = "not run: the budget stopped the run"
            self.ledger.not_made += 1
            self._one_less(unit)
        self.dispatch.refused = []

    def cancel(self) -> bool:
        """Stop this run as one Ctrl-C would (safe from another thread); False if already stopping."""
        if self.interrupted:
            return False
        self.interrupted = 1
        return True

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Ctrl-C or SIGTERM: the first stops the run cleanly, the second kills it."""
        self.interrupted += 1
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(signum).name
        if self.interrupted >= 2:
            self.dispatch.close(kill=True)
            os._exit(130)

    def _recover_edits(self) -> None:
        """Put back the files of an edit whose worker had to be killed before it could."""
        from lokfile.worker import journal

        def say(text: str) -> None:
            self.report(StepNote("lok", "", text))

        journal.recover(self.root, say)

    def _interrupt(self, reason: str = "interrupted") -> None:
        self.dispatch.interrupt(reason)
        for s in self.wf.steps:
            if s.name not in self.results:
                self._finish_step_now(
                    s,
                    Status.INTERRUPTED if s.name in self.live else Status.SKIPPED,
                    reason,
                    release=False,
                )

    def _final_status(self) -> RunStatus:
        if self.disk_full is not None:
            return RunStatus.FAILED
        if self.interrupted:
            return RunStatus.INTERRUPTED
        if self.ledger.stopped:
            return RunStatus.FAILED
        sinks = [s.name for s in self.wf.steps if self.ready.sink(s.name)]
        if self.failed_hard or any(
            self.results[n].status is Status.FAILED for n in sinks if n in self.results
        ):
            return RunStatus.FAILED
        return RunStatus.SUCCEEDED

    def _counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results.values():
            out[r.status.value] = out.get(r.status.value, 0) + 1
        return out

    def _document(self, status: RunStatus, started: float) -> dict[str, Any]:
        return run_document(
            run_id=self.run_id,
            workflow=self.wf.name,
            path=self.wf.path,
            args={"positional": list(self.opts.args), "named": self.opts.named},
            status=status,
            started=started,
            ended=None if status is RunStatus.RUNNING else time.time(),
            resumed_from=self.opts.resumed_from,
            steps=self.results.values(),
            cost=run_cost(self.results.values()),
        )

    # -- preparing a ready step ---------------------------------------------

    def _prepare(self, step: Step) -> bool:
        """Gate, render and split a ready step; True when it started work."""
        from lokfile.errors import LokError, TemplateError

        deps = [self.results[d] for d in dict.fromkeys(step.depends_on)]
        waiting_on = [d.name for d in deps if d.status is Status.STALE]
        if waiting_on:  # dry run: nothing to render against yet
            why = f"upstream {waiting_on[0]} will run"
            self._record_step(StepResult(name=step.name, status=Status.STALE, reason=why))
            return False
        hard = [d.name for d in deps if self._blocks(d)]
        if step.min_deps_success is not None:
            ok = sum(1 for d in deps if d.success)
            if ok < step.min_deps_success:
                why = f"quorum not reached: {ok}/{len(deps)} dependencies succeeded (need {step.min_deps_success})"
                status = Status.SKIPPED if step.continue_on_error else Status.FAILED
                self._finish_step_now(step, status, why, error=why)
                return False
        elif hard:
            self._finish_step_now(step, Status.SKIPPED, f"dependency failed: {', '.join(hard)}")
            return False
        try:
            if step.when is not None:
                from lokfile.templates.render import eval_condition

                if not eval_condition(step.when, self.context()):
                    self._finish_step_now(step, Status.SKIPPED, "condition not met")
                    return False
            specs = build_units(step, self.context, self.unit_env)
        except LokError as exc:
            why = "template error" if isinstance(exc, TemplateError) else "cannot start"
            self._finish_step_now(step, Status.FAILED, why, error=exc.message)
            return False
        units, upstream = [], self.freshness.upstream(step, self.wf, self.results)
        for spec in specs:
            units.append(self._resolve(step, spec, upstream))
            self.dispatch.start_if_full()
        live = _Live(step=step, units=units, pending=0, started=time.time(), upstream=upstream)
        self.live[step.name] = live
        for unit in units:
            if unit.status is None:
                live.pending += 1
        if live.pending == 0:
            self._complete_step(live)
            return False
        return True

    def _blocks(self, dep: StepResult) -> bool:
        """Does this dependency's outcome stop its dependents? A hard failure does, and so
        does a skip caused by one further up; a soft failure (continue_on_error, which
        hands its error text downstream) or an unmet condition does not."""
        if self.wf.step(dep.name).continue_on_error:
            return False
        if dep.status in (Status.FAILED, Status.INTERRUPTED):
            return True
        return dep.status is Status.SKIPPED and dep.reason.startswith(("dependency", "not started"))

    # -- keys and freshness -------------------------------------------------

    def _resolve(self, step: Step, spec: UnitSpec, upstream: Upstream) -> Unit:
        """A unit with its key: settled from the store when fresh, else queued to run."""
        unit, why = self.freshness.judge(step, spec, upstream)
        if why is None:
            return unit
        unit.reason = why
        self.ledger.plan(step, unit)
        if self.opts.dry_run:
            unit.status = Status.STALE
        else:
            self.dispatch.add(step, unit)
        return unit

    # -- completion -----------------------------------------------------------

    def _unit_done(self, unit: Unit, result: JobResult) -> None:
        if result.error_kind == "disk_full" and self.disk_full is None:
            # every later write would fail the same way: start nothing more
            where = str(self.store.runs_dir.parent)
            self.disk_full = DiskFullError(result.error or "the disk is full", where)
            self.stopping = True
        unit.status = Status.RAN if result.success else Status.FAILED
        unit.output = result.output
        unit.digest = result.digest
        unit.error = result.error
        unit.duration = result.ended - result.started
        unit.attempts = result.attempts
        unit.backend = unit.spec.backend.name if unit.spec.backend else None
        unit.model = result.model
        unit.truncated = result.truncated
        unit.worker = result.worker
        unit.started, unit.ended = result.started, result.ended
        unit.span = (result.started, result.ended)
        self.ledger.settle(unit, result)
        if unit.twin is not None and result.success:  # it took the answer of a same-key unit
            unit.status, unit.usage = Status.REUSED, unit.twin.usage
            unit.reason = f"fresh: the same call as {unit.twin.step} in this run"
        self.fp.remember(result.output_stats)
        if result.snapshot and self.opts.record and not self.opts.dry_run:
            from lokfile.worker.snapshots import snapshot_filename

            name = snapshot_filename(unit.step, unit.name)
            self.store.link_output(self.run_id, name, result.snapshot)
        if unit.replay is not None and result.success and result.output == unit.replay.answer:
            unit.reason = plan.reapply(unit.replay.edits, done=True)  # no backend was asked
            self.report(StepNote(unit.step, unit.name, unit.reason))
        self.recorder.unit_done(unit, result)
        self._one_less(unit)

    def _one_less(self, unit: Unit) -> None:
        """One unit of a live step is settled: the step completes with its last."""
        live = self.live[unit.step]
        live.pending -= 1
        if live.pending == 0:
            self._complete_step(live)

    def _complete_step(self, live: _Live) -> None:
        """All units resolved: combine them (maybe adding a synthesis unit), then finish."""
        extra = combine(live.step, live.units, self.unit_env)
        if extra is not None:
            unit = self._resolve(live.step, extra, live.upstream)
            live.units.append(unit)
            if unit.status is None:
                live.pending = 1
                self.dispatch.start()
                return
        step = live.step
        output, digest, success, backend, error = aggregate(step, live.units, self.unit_env)
        status, reason = plan.step_verdict(live.units, success)
        if status is Status.FAILED:
            self._failed(step)
        # wall time, not the sum: a step's backends (or items) answer side by side
        duration = covered(u.span for u in live.units if u.span and u.status is not Status.REUSED)
        saved = covered(u.span for u in live.units if u.span and u.status is Status.REUSED)
        spent = total(u.usage for u in live.units if u.status in (Status.RAN, Status.FAILED))
        reused = total(u.usage for u in live.units if u.status is Status.REUSED)
        parsed = None
        if success and step.output_format != "text":
            from lokfile.templates.render import parse_output

            parsed = parse_output(output, step.output_format)
        result = StepResult(
            name=step.name,
            status=status,
            reason=reason,
            output=output,
            digest=digest,
            error=error,
            backend=backend,
            duration=duration,
            saved=saved,
            parsed=parsed,
            units=live.units,
            spent=spent,
            reused=reused,
        )
        self._record_step(result)

    def _failed(self, step: Step) -> None:
        """A failure is hard unless soft (continue_on_error) or left to a quorum downstream."""
        if step.continue_on_error:
            return
        below = self.ready.dependents[step.name]
        if below and all(self.wf.step(d).min_deps_success is not None for d in below):
            return
        self.failed_hard.append(step.name)
        if not self.opts.keep_going:
            self.stopping = True

    def _finish_step_now(
        self,
        step: Step,
        status: Status,
        reason: str,
        error: str | None = None,
        release: bool = True,
    ) -> None:
        """Settle a step that runs nothing (skipped, failed before it could start)."""
        output = (
            f"Skipped: {reason}"
            if status is Status.SKIPPED
            else (f"Error: {error}" if error else "")
        )
        write = output and not self.opts.dry_run and self.disk_full is None
        digest = self.store.put_text(output) if write else None
        if status is Status.FAILED:
            self._failed(step)
        result = StepResult(
            name=step.name, status=status, reason=reason, output=output, digest=digest, error=error
        )
        self._record_step(result, release)

    def _record_step(self, result: StepResult, release: bool = True) -> None:
        """A step is settled: stored, recorded, reported, and (with `release`) the steps
        that waited only for it are ready."""
        self.results[result.name] = result
        self.context.add(result)
        self.live.pop(result.name, None)
        step = self.wf.step(result.name)
        if result.digest and not self.opts.dry_run and self.opts.record and not self.disk_full:
            suffix = (
                ".json"
                if step.for_each or step.samples > 1 or step.output_format in ("json", "json_array", "jsonl")
                else ".txt"
            )
            result.filename = output_filename(step.name, suffix)
            self.store.link_later(self.run_id, result.filename, result.digest)  # after the commit
        self.recorder.step_rows(result)
        self.report(
            StepFinished(
                result.name,
                result.status,
                result.reason,
                result.duration,
                result.backend,
                result.error,
                max(1, len(result.units)),
                backend_times(result.units),
                result.truncated,
            )
        )
        if release:
            self.ready.done(result.name)
