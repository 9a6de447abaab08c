"""The coordinator: a ready queue over the DAG, units, limits, history.

A step becomes ready the moment its dependencies are done (no waves). A
ready step is gated (dependency failures, quorum, condition), rendered, and
split into units — one for a plain step, one per item of a `for_each`, one
per backend of a multi-backend step (plus a synthesis unit). Each unit has a
key; a fresh unit is resolved here from the store, a stale one becomes a job
for the worker pool. Only this process writes the run history.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokfile.engine import reasons as plan
from lokfile.engine.fingerprint import Fingerprinter
from lokfile.engine.freshness import Freshness
from lokfile.engine.recorder import Recorder, status_value
from lokfile.engine.units import Unit, UnitEnv, UnitSpec, build_units, combine
from lokfile.errors import DiskFullError
from lokfile.events import (
    Event,
    ParallelStart,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    UnitStarted,
)
from lokfile.executors import Executor, ExecutorFactory, JobCrashed, JobEvent, Message
from lokfile.model import Config, RunStatus, Status, Step, StepKind, Workflow
from lokfile.outcome import RunOutcome, StepResult, covered, new_run_id
from lokfile.store.artifacts import Store, output_filename
from lokfile.store.rundb import RunDB
from lokfile.worker.jobs import EditSettings, Job, JobResult, QueryJob, ShellJob

Reporter = Callable[[Event], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

__all__ = ["Coordinator", "Reporter", "RunOptions", "RunOutcome", "StepResult", "new_run_id"]


@dataclass(frozen=True)
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


@dataclass
class _Live:
    """A step whose units are being resolved or executed."""

    step: Step
    units: list[Unit]
    pending: int
    started: float


class _InWorkflowOrder(Mapping[str, Any]):
    """Finished steps' views, iterated in the workflow's order (not completion order),
    so a template that loops over `steps` renders the same text on every run."""

    def __init__(self, views: dict[str, Any], order: tuple[str, ...]) -> None:
        self.views = views
        self.order = order

    def __getitem__(self, name: str) -> Any:
        return self.views[name]

    def __iter__(self) -> Iterator[str]:
        return (n for n in self.order if n in self.views)

    def __len__(self) -> int:
        return len(self.views)


def _part_reason(units: list[Unit], runs: Callable[[Unit], bool]) -> str:
    """Why a step runs, when only some of its items or backends do: `1 new item of 3`,
    `2 of 3 items: loop item changed`, `1 new backend of 3`. Otherwise the first running
    unit's own reason; '' when none runs."""
    running = [u for u in units if runs(u)]
    if not running:
        return ""
    parts = [u for u in units if u.name.partition(":")[0] in ("item", "backend")]
    moving = [u for u in parts if runs(u)]
    if not moving or len(moving) == len(parts):
        return running[0].reason
    noun = parts[0].name.partition(":")[0]
    k = len(moving)
    if all(u.reason == plan.NEVER_RUN for u in moving):
        return f"{k} new {noun}{'s' if k > 1 else ''} of {len(parts)}"
    return f"{k} of {len(parts)} {noun}s: {moving[0].reason}"


def _backend_times(units: list[Any]) -> tuple[tuple[str, float], ...]:
    """Each backend's time in a multi-backend step (the units that ran now), for the
    progress line; () for other steps."""
    if not any(u.name.startswith("backend:") for u in units):
        return ()
    return tuple(
        (u.name.removeprefix("backend:"), u.duration)
        for u in units
        if u.status is Status.RAN or u.status is Status.FAILED
    )


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
    ) -> None:
        self.wf = workflow
        self.config = config
        self.root = root
        self.store = store
        self.db = db
        self.opts = options
        self.unit_env = UnitEnv(config, store, options.dry_run)
        self.report = report
        self.make_executor = executor
        self.executor: Executor | None = None  # made on the first job
        self.run_id = new_run_id()
        self.results: dict[str, StepResult] = {}
        self.live: dict[str, _Live] = {}
        self.queue: deque[tuple[Job, Unit, str]] = deque()
        self.inflight: dict[int, tuple[Unit, str]] = {}
        self.per_backend: dict[str, int] = {}
        self.next_job = 1
        self.stopping = False
        self.interrupted = 0
        self.stopped_by: str | None = None  # the signal that interrupted the run
        self.disk_full: DiskFullError | None = None  # set once a write failed for lack of space
        self.failed_hard: list[str] = []
        self.fp = Fingerprinter(root, db)
        self.last = db.last_attempts(workflow.name) if db else {}
        self.dependents: dict[str, list[str]] = {s.name: [] for s in workflow.steps}
        for s in workflow.steps:
            for d in s.depends_on:
                self.dependents[d].append(s.name)
        self.waiting: dict[str, int] = {s.name: len(set(s.depends_on)) for s in workflow.steps}
        self.slots = max(1, min(options.jobs, workflow.concurrency or options.jobs))
        self.env_snapshot = dict(os.environ)
        self.freshness = Freshness(
            root,
            config,
            store,
            db,
            self.fp,
            self.last,
            (options.force_all, options.force_steps),
            restore=not options.dry_run,
        )
        self.views: dict[str, Any] | None = None  # built on first use: literal steps never need it
        self.backends_seen: set[str] = set()
        record = options.record and not options.dry_run
        self.recorder = Recorder(db, self.fp, workflow.name, self.run_id, self.last, record)

    # -- the loop ------------------------------------------------------------

    def run(self) -> RunOutcome:
        t0 = time.time()
        record = self.opts.record and not self.opts.dry_run and self.db is not None
        if record:
            assert self.db is not None
            self.db.mark_abandoned_runs()
            args = {"positional": list(self.opts.args), "named": self.opts.named}
            self.db.start_run(self.run_id, self.wf.name, self.wf.path, args, self.opts.resumed_from)
            self.store.write_run_json(self.run_id, self._run_doc("running", t0))
        self.report(
            RunStarted(
                self.run_id,
                self.wf.name,
                self.wf.description,
                len(self.wf.steps),
                self.opts.dry_run,
                self.slots,
            )
        )
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        finished = False
        try:
            ready = deque(s.name for s in self.wf.steps if self.waiting[s.name] == 0)
            self._loop(ready)
            finished = True
        except DiskFullError as exc:  # lok itself could not write: stop, keep what is stored
            self.disk_full = self.disk_full or exc
            self._interrupt("not finished: the disk is full")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.executor is not None:
                self.executor.close(kill=bool(self.interrupted) or not finished)
                self._recover_edits()
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
                    self.recorder.write()
                    self.db.finish_run(self.run_id, status.value, self._counts(), saved, error)
                self.store.write_run_json(self.run_id, self._run_doc(status.value, t0))
                self.store.set_latest(self.run_id)
            except DiskFullError as exc:  # the history stays as it was before this write
                self.disk_full = self.disk_full or exc
        if self.disk_full is not None:
            raise self.disk_full
        outcome = RunOutcome(
            self.run_id, self.wf, status, self.results, wall, saved, self.opts.dry_run,
            self.stopped_by,
        )
        extra = {"signal": self.stopped_by} if self.stopped_by else None
        self.report(
            RunFinished(
                self.run_id,
                status.value,
                outcome.counts,
                wall,
                saved,
                extra,
                dry_run=self.opts.dry_run,
            )
        )
        return outcome

    def _loop(self, ready: deque[str]) -> None:
        while True:
            if self.interrupted:
                self._interrupt()
                return
            batch = 0
            while ready and not self.stopping:
                name = ready.popleft()
                if self._prepare(self.wf.step(name), ready):
                    batch += 1
            if batch > 1:
                self.report(ParallelStart(batch, self._concurrency()))
            self._dispatch()
            if not self.inflight and not self.queue:
                if ready and not self.stopping:
                    continue
                break
            for msg in self.executor.results(0.1) if self.executor is not None else ():
                self._on_message(msg, ready)
            tick = getattr(self.report, "tick", None)
            if tick is not None:
                tick()
        for s in self.wf.steps:
            if s.name not in self.results:
                why = (
                    f"not started: {', '.join(self.failed_hard)} failed"
                    if self.failed_hard
                    else "not started"
                )
                self._finish_step_now(s, Status.SKIPPED, why, ready=None)

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
            if self.executor is not None:
                self.executor.close(kill=True)
            os._exit(130)

    def _recover_edits(self) -> None:
        """Put back the files of an edit whose worker had to be killed before it could."""
        from lokfile.worker import journal

        def say(text: str) -> None:
            self.report(StepNote("lok", "", text))

        journal.recover(self.root, say)

    def _interrupt(self, reason: str = "interrupted") -> None:
        if self.executor is not None:
            self.executor.cancel_all()
        for unit, _backend in list(self.inflight.values()):
            unit.status = Status.INTERRUPTED
            unit.reason = reason
        self.inflight.clear()
        self.queue.clear()
        for s in self.wf.steps:
            if s.name not in self.results:
                self._finish_step_now(
                    s,
                    Status.INTERRUPTED if s.name in self.live else Status.SKIPPED,
                    reason,
                    ready=None,
                )

    def _final_status(self) -> RunStatus:
        if self.disk_full is not None:
            return RunStatus.FAILED
        if self.interrupted:
            return RunStatus.INTERRUPTED
        sinks = [s.name for s in self.wf.steps if not self.dependents[s.name]]
        if self.failed_hard or any(
            self.results[n].status is Status.FAILED for n in sinks if n in self.results
        ):
            return RunStatus.FAILED
        return RunStatus.SUCCEEDED

    def _counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results.values():
            key = r.status.value if isinstance(r.status, Status) else str(r.status)
            out[key] = out.get(key, 0) + 1
        return out

    # -- preparing a ready step ---------------------------------------------

    def _prepare(self, step: Step, ready: deque[str]) -> bool:
        """Gate, render and split a ready step; True when it started work."""
        from lokfile.errors import LokError, TemplateError

        deps = [self.results[d] for d in dict.fromkeys(step.depends_on)]
        waiting_on = [d.name for d in deps if d.status == "stale"]
        if waiting_on:  # dry run: nothing to render against yet
            self._record_step(
                StepResult(step.name, "stale", f"upstream {waiting_on[0]} will run"), ready
            )
            return False
        hard = [d.name for d in deps if self._blocks(d)]
        if step.min_deps_success is not None:
            ok = sum(1 for d in deps if d.success)
            if ok < step.min_deps_success:
                why = f"quorum not reached: {ok}/{len(deps)} dependencies succeeded (need {step.min_deps_success})"
                self._finish_step_now(
                    step,
                    Status.SKIPPED if step.continue_on_error else Status.FAILED,
                    why,
                    ready,
                    error=why,
                )
                return False
        elif hard:
            self._finish_step_now(
                step, Status.SKIPPED, f"dependency failed: {', '.join(hard)}", ready
            )
            return False
        try:
            if step.when is not None:
                from lokfile.templates.render import eval_condition

                if not eval_condition(step.when, self._context()):
                    self._finish_step_now(step, Status.SKIPPED, "condition not met", ready)
                    return False
            specs = build_units(step, self._context, self.unit_env)
        except LokError as exc:
            why = "template error" if isinstance(exc, TemplateError) else "cannot start"
            self._finish_step_now(step, Status.FAILED, why, ready, error=exc.message)
            return False
        units = []
        for spec in specs:
            units.append(self._resolve(step, spec))
            if len(self.queue) >= self.slots - len(self.inflight) > 0:
                self._dispatch()  # a long loop starts working before all its items are keyed
        live = _Live(step, units, 0, time.time())
        self.live[step.name] = live
        for unit in units:
            if unit.status is None:
                live.pending += 1
        if live.pending == 0:
            self._complete_step(live, ready)
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

    def _context(self) -> Any:
        """The template context: every finished step so far (kept up to date, not rebuilt)."""
        from lokfile.templates.render import Context

        names = sorted(self.backends_seen)
        backends = " + ".join(n[:1].upper() + n[1:] for n in names) or "lok"
        named = {a.name: a.default for a in self.wf.args if a.default is not None}
        named.update(self.opts.named)
        if self.views is None:
            self.views = {}
            for r in self.results.values():
                self._add_view(r)
        return Context(
            steps=_InWorkflowOrder(self.views, self.wf.step_names),
            args=self.opts.args,
            named_args=named,
            env=self.env_snapshot,
            workflow_name=self.wf.name,
            workflow_backends=backends,
        )

    def _add_view(self, r: StepResult) -> None:
        if r.backend:
            self.backends_seen.add(r.backend)
        if self.views is None:
            return
        from lokfile.templates.render import StepView

        skipped = r.status is Status.SKIPPED
        self.views[r.name] = StepView(
            output="" if skipped else r.output,
            success=r.success,
            error=r.error,
            backend=r.backend,
            parsed=r.parsed,
            skipped=skipped,
        )

    # -- keys and freshness -------------------------------------------------

    def _resolve(self, step: Step, spec: UnitSpec) -> Unit:
        upstream = {d: self.results[d].digest for d in sorted(set(step.depends_on))}
        unit, why = self.freshness.judge(step, spec, upstream)
        return unit if why is None else self._stale(unit, why)

    def _stale(self, unit: Unit, reason: str) -> Unit:
        unit.reason = reason
        if self.opts.dry_run:
            unit.status = "stale"
            return unit
        step = self.wf.step(unit.step)
        spec = unit.spec
        timeout = step.timeout_ms / 1000 if step.timeout_ms else None
        work: ShellJob | QueryJob
        if spec.command is not None:
            wrapper = self.config.defaults.command_wrapper
            work = ShellJob(spec.command, step.outputs, wrapper)
        else:
            assert spec.backend is not None and spec.prompt is not None
            work = QueryJob(
                spec.backend,
                spec.prompt,
                spec.system,
                step.model,
                step.temperature,
                step.seed,
                step.max_tokens,
                self._edit_settings(step, spec),
                spec.answer,
            )
        job = Job(
            self.next_job,
            step.name,
            spec.unit,
            work,
            str(self.root),
            str(self.store.runs_dir),
            timeout,
            step.retries,
            step.retry_delay_ms / 1000,
            run_id=self.run_id,
        )
        self.next_job += 1
        self.queue.append((job, unit, spec.backend.name if spec.backend else ""))
        return unit

    def _edit_settings(self, step: Step, spec: UnitSpec) -> EditSettings | None:
        """Edits/verify ride on one unit: the step's own, or the "apply" unit of a multi-backend step."""
        if not (step.apply_edits or step.verify):
            return None
        if spec.unit.startswith("backend:") or spec.unit == "synthesis":
            return None
        wrapper = self.config.defaults.command_wrapper
        return EditSettings(step.apply_edits, spec.verify, step.fix_retries, wrapper)

    # -- dispatching and completion -----------------------------------------

    def _dispatch(self) -> None:
        if not self.queue:
            return
        if self.executor is None:
            self.executor = self.make_executor(self.slots, self._backend_modules())
        held: deque[tuple[Job, Unit, str]] = deque()
        while self.queue and len(self.inflight) < self.slots:
            job, unit, backend = self.queue.popleft()
            limit = self._backend_limit(backend)
            if limit and self.per_backend.get(backend, 0) >= limit:
                held.append((job, unit, backend))
                continue
            self.per_backend[backend] = self.per_backend.get(backend, 0) + 1
            self.inflight[job.id] = (unit, backend)
            self.report(UnitStarted(unit.step, unit.name, unit.reason, backend or None))
            self.executor.submit(job)
        self.queue.extendleft(reversed(held))

    def _concurrency(self) -> int:
        """How many of the jobs in flight and queued can run at once: -j (and the
        workflow's `concurrency`) over all of them, each backend's `concurrency` over its own."""
        per: dict[str, int] = {}
        for _unit, backend in self.inflight.values():
            per[backend] = per.get(backend, 0) + 1
        for _job, _unit, backend in self.queue:
            per[backend] = per.get(backend, 0) + 1
        possible = 0
        for backend, count in per.items():
            limit = self._backend_limit(backend)
            possible += min(count, limit) if limit else count
        return min(self.slots, possible)

    def _backend_modules(self) -> tuple[str, ...]:
        """Modules of the backend types this run may query, for workers to import early."""
        from lokfile.backends import BUILTIN_TYPES

        types = {b.type for b in self.config.backends.values() if b.enabled}
        used = {n for s in self.wf.steps if s.kind is StepKind.LLM for n in s.backends}
        if "auto" not in used:
            types = {self.config.backends[n].type for n in used if n in self.config.backends}
        return tuple(
            sorted({BUILTIN_TYPES[t].partition(":")[0] for t in types if t in BUILTIN_TYPES})
        )

    def _backend_limit(self, name: str) -> int | None:
        if not name:
            return None
        cfg = self.config.backends.get(name)
        return cfg.concurrency if cfg else None

    def _on_message(self, msg: Message, ready: deque[str]) -> None:
        if isinstance(msg, JobEvent):
            entry = self.inflight.get(msg.job)
            if entry:
                self.report(StepNote(entry[0].step, entry[0].name, msg.text))
            return
        if isinstance(msg, JobCrashed):
            entry = self.inflight.pop(msg.job, None)
            if entry is None:
                return
            unit, backend = entry
            self.per_backend[backend] -= 1
            now = time.time()
            crashed = JobResult(
                msg.job,
                False,
                f"Error: internal error: {msg.error}",
                None,
                f"internal error: {msg.error}",
                "failed",
                1,
                now,
                now,
            )
            self._unit_done(unit, crashed, ready)
            return
        result = msg
        entry = self.inflight.pop(result.id, None)
        if entry is None:
            return
        unit, backend = entry
        self.per_backend[backend] -= 1
        self._unit_done(unit, result, ready)

    def _unit_done(self, unit: Unit, result: JobResult, ready: deque[str]) -> None:
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
        unit.started, unit.ended = result.started, result.ended
        unit.span = (result.started, result.ended)
        self.fp.remember(result.output_stats)
        if result.snapshot and self.opts.record and not self.opts.dry_run:
            from lokfile.worker.snapshots import snapshot_filename

            name = snapshot_filename(unit.step, unit.name)
            self.store.link_output(self.run_id, name, result.snapshot)
        self.recorder.unit_done(unit, result)
        live = self.live[unit.step]
        live.pending -= 1
        if live.pending == 0:
            self._complete_step(live, ready)
        self.recorder.commit()

    def _complete_step(self, live: _Live, ready: deque[str]) -> None:
        """All units resolved: combine them (maybe adding a synthesis unit), then finish."""
        extra = combine(live.step, live.units, self.unit_env)
        if extra is not None:
            unit = self._resolve(live.step, extra)
            live.units.append(unit)
            if unit.status is None:
                live.pending = 1
                self._dispatch()
                return
        step = live.step
        output, digest, success, backend, error = self._combined(step, live.units)
        ran = any(u.status is Status.RAN or u.status is Status.FAILED for u in live.units)
        stale = any(u.status == "stale" for u in live.units)
        if stale:
            status: Status | str = "stale"
            reason = _part_reason(live.units, lambda u: u.status == "stale")
        elif not success:
            status = Status.FAILED
            reason = next((u.reason for u in live.units if u.status is Status.FAILED), "failed")
        else:
            status = Status.RAN if ran else Status.REUSED
            reason = _part_reason(live.units, lambda u: u.status is Status.RAN) or plan.FRESH
        if not success and not stale:
            self._failed(step)
        # wall time, not the sum: a step's backends (or items) answer side by side
        duration = covered(u.span for u in live.units if u.span and u.status is not Status.REUSED)
        saved = covered(u.span for u in live.units if u.span and u.status is Status.REUSED)
        parsed = None
        if success and step.output_format != "text":
            from lokfile.templates.render import parse_output

            parsed = parse_output(output, step.output_format)
        result = StepResult(
            step.name,
            status,
            reason,
            output,
            digest,
            error,
            backend,
            duration,
            saved,
            parsed,
            live.units,
        )
        self._record_step(result, ready)

    def _combined(
        self, step: Step, units: list[Unit]
    ) -> tuple[str, str | None, bool, str | None, str | None]:
        from lokfile.engine.units import aggregate

        return aggregate(step, units, self.unit_env)

    def _failed(self, step: Step) -> None:
        """A failure is hard unless soft (continue_on_error) or left to a quorum downstream."""
        if step.continue_on_error:
            return
        below = self.dependents[step.name]
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
        ready: deque[str] | None,
        error: str | None = None,
    ) -> None:
        output = (
            f"Skipped: {reason}"
            if status is Status.SKIPPED
            else (f"Error: {error}" if error else "")
        )
        write = output and not self.opts.dry_run and self.disk_full is None
        digest = self.store.put_text(output) if write else None
        if status is Status.FAILED:
            self._failed(step)
        self._record_step(StepResult(step.name, status, reason, output, digest, error), ready)

    def _record_step(self, result: StepResult, ready: deque[str] | None) -> None:
        self.results[result.name] = result
        self._add_view(result)
        self.live.pop(result.name, None)
        step = self.wf.step(result.name)
        if result.digest and not self.opts.dry_run and self.opts.record and not self.disk_full:
            suffix = (
                ".json"
                if step.for_each or step.output_format in ("json", "json_array", "jsonl")
                else ".txt"
            )
            result.filename = output_filename(step.name, suffix)
            self.store.link_output(self.run_id, result.filename, result.digest)
        self.recorder.step_rows(result)
        self.report(
            StepFinished(
                result.name,
                status_value(result.status),
                result.reason,
                result.duration,
                result.backend,
                result.error,
                max(1, len(result.units)),
                _backend_times(result.units),
            )
        )
        if ready is None:
            return
        for child in self.dependents[result.name]:
            self.waiting[child] -= 1
            if self.waiting[child] == 0:
                ready.append(child)

    def _run_doc(self, status: str, started: float) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "workflow": self.wf.name,
            "path": self.wf.path,
            "args": {"positional": list(self.opts.args), "named": self.opts.named},
            "status": status,
            "started": started,
            "ended": time.time() if status != "running" else None,
            "resumed_from": self.opts.resumed_from,
            "steps": [
                {
                    "name": r.name,
                    "status": status_value(r.status),
                    "reason": r.reason,
                    "digest": r.digest,
                    "file": r.filename or None,
                    "duration": round(r.duration, 4),
                    "backend": r.backend,
                    "error": r.error,
                }
                for r in self.results.values()
            ],
        }

