"""Dispatch: a stale unit becomes a job, waits for a slot, runs on the executor.

    stale unit ──describe──> Job ──> queue ──start()──> gate ──> executor.submit
                                      │  held while -j slots are full, the unit's
                                      │  backend is at its `concurrency`, or (with
                                      │  `[defaults] parallel = false`) another
                                      │  backend of the same step is being asked
    finished(timeout) <── JobEvent (a StepNote) · JobResult · JobCrashed
                      <── Yielded: a job waiting out a Retry-After gave its slot
                          back (`paused`); ready again, it is handed the next
                          free one before any queued job (`resume`)

Shell steps of two `lok` processes of one project never run at the same time:
they read and write the same files, and one run hashing an output the other's
command has just truncated records bytes that were never the step's output
(the next run then reruns what was fresh). A run takes the project's tree lock
(`.lok/state/tree.lock`, flock, never waited for: its jobs are held while another
process has it) before its first shell job of a wave, and lets it go when its
last one has ended; LLM calls go on meanwhile.

The queue keeps its order: a job held for its backend keeps its place, and
the jobs behind it that can run, run. A unit whose key is already queued or
running makes no job: it takes that job's answer (`followers`). The gate may
hold a job back for another process's answer (`waiting`) or for the budget
(`refused`). The executor is made on the first job
(a run where every step is fresh makes none) from the factory api handed in;
this module never knows which kind it is.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from lokfile.engine.units import StoredEdits, Unit, UnitSpec
from lokfile.events import StepNote, UnitStarted
from lokfile.executors import Executor, ExecutorFactory, JobCrashed, JobEvent, Yielded
from lokfile.model import Config, Status, Step, StepKind, Workflow
from lokfile.worker.jobs import EditSettings, Job, JobResult, QueryJob, ShellJob

Say = Callable[[StepNote | UnitStarted], None]
GO, WAIT, REFUSE = "go", "wait", "refuse"
TREE_POLL_S = 0.02  # while another process holds the tree lock: how often to try again


class _Queued(NamedTuple):
    job: Job
    unit: Unit
    backend: str  # "" for a shell step
    lane: str  # "": none; else at most one job of the lane runs at a time (its step's name)


def describe(
    step: Step,
    spec: UnitSpec,
    *,
    job_id: int,
    config: Config,
    root: Path,
    runs_dir: Path,
    run_id: str,
    replay: StoredEdits | None = None,
) -> Job:
    """The job that runs one unit: plain data, so any executor can take it. With
    `replay`, the job writes a stored edit result again instead of asking the backend."""
    timeout = step.timeout_ms / 1000 if step.timeout_ms else None
    work: ShellJob | QueryJob
    if spec.command is not None:
        wrapper = config.defaults.command_wrapper
        work = ShellJob(command=spec.command, outputs=step.outputs, wrapper=wrapper)
    else:
        assert spec.backend is not None and spec.prompt is not None
        edits = _edit_settings(step, spec, config)
        if replay is not None and edits is not None:
            edits = replace(edits, replay=replay.files)
        work = QueryJob(
            backend=spec.backend,
            prompt=spec.prompt,
            system=spec.system,
            model=step.model,
            temperature=step.temperature,
            # each sample its own seed, so a seeded step's samples differ (and repeat)
            seed=step.seed + spec.sample if step.seed is not None and spec.sample else step.seed,
            max_tokens=step.max_tokens,
            edits=edits,
            answer=replay.answer if replay is not None and edits is not None else spec.answer,
        )
    return Job(
        id=job_id,
        step=step.name,
        unit=spec.unit,
        work=work,
        cwd=str(root),
        runs_dir=str(runs_dir),
        timeout_s=timeout,
        retries=step.retries,
        retry_delay_s=step.retry_delay_ms / 1000,
        run_id=run_id,
    )


def _edit_settings(step: Step, spec: UnitSpec, config: Config) -> EditSettings | None:
    """Edits/verify ride on one unit: the step's own, or the "apply" unit of a multi-backend step."""
    if not (step.apply_edits or step.verify):
        return None
    if spec.unit.startswith("backend:") or spec.unit == "synthesis":
        return None
    wrapper = config.defaults.command_wrapper
    return EditSettings(
        apply_edits=step.apply_edits,
        verify=spec.verify,
        fix_retries=step.fix_retries,
        command_wrapper=wrapper,
    )


class Dispatch:
    """The jobs of one run between the coordinator and the executor."""

    def __init__(
        self,
        *,
        make_executor: ExecutorFactory,
        slots: int,
        workflow: Workflow,
        config: Config,
        root: Path,
        runs_dir: Path,
        run_id: str,
        say: Say,
    ) -> None:
        self.make_executor = make_executor
        self.slots = slots
        self.wf = workflow
        self.config = config
        self.root = root
        self.runs_dir = runs_dir
        self.run_id = run_id
        self.say = say
        self.executor: Executor | None = None
        self.queue: deque[_Queued] = deque()
        self.inflight: dict[int, _Queued] = {}
        self.per_backend: dict[str, int] = {}
        self.lanes: set[str] = set()  # lanes with a job running
        # jobs that wait out a server's Retry-After without their slot, and of those the
        # ones whose wait is over, in the order they asked for a slot again
        self.paused: dict[int, _Queued] = {}
        self.wanting: deque[int] = deque()
        self.shells = 0  # shell jobs in flight: while there are any, we hold the tree lock
        self.tree_busy = False  # a shell job was held back: another process has the lock
        self._tree_fd = -1
        # `parallel = false`: a step's backends are asked one after another, in list order
        self.one_backend_at_a_time = not config.defaults.parallel
        self.next_id = 1
        # asked before each submit (lokfile.engine.onecall): GO; WAIT, when another process
        # is making the same call (the job waits in `waiting`); REFUSE, when the budget
        # would be passed (it and every job behind it are held back, in `refused`)
        self.gate: Callable[[Job, Unit], str] | None = None
        self.refused: list[Unit] = []
        self.waiting: list[_Queued] = []
        # one call per key within the run: the unit whose job makes it, and the units
        # with the same key that take its answer
        self.leaders: dict[str, Unit] = {}
        self.followers: dict[str, list[Unit]] = {}

    @property
    def idle(self) -> bool:
        """Nothing queued, waiting or running."""
        return not self.inflight and not self.queue and not self.waiting and not self.paused

    def take_followers(self, unit: Unit) -> list[Unit]:
        """The units that wait for `unit`'s answer (it no longer leads its key)."""
        if self.leaders.get(unit.key) is unit:
            del self.leaders[unit.key]
            return self.followers.pop(unit.key, [])
        return []

    def add(self, step: Step, unit: Unit) -> None:
        """Queue the job of a stale `unit` of `step` (submitted by the next `start`)."""
        job = describe(
            step,
            unit.spec,
            job_id=self.next_id,
            config=self.config,
            root=self.root,
            runs_dir=self.runs_dir,
            run_id=self.run_id,
            replay=unit.replay,
        )
        self.next_id += 1
        if isinstance(job.work, QueryJob) and job.work.edits is None and job.work.answer is None:
            if unit.key in self.leaders:  # the same call is queued or running already
                self.followers.setdefault(unit.key, []).append(unit)
                return
            self.leaders[unit.key] = unit
        backend = unit.spec.backend.name if unit.spec.backend else ""
        lane = step.name if self.one_backend_at_a_time and unit.name.startswith("backend:") else ""
        self.queue.append(_Queued(job, unit, backend, lane))

    def start(self) -> None:
        """Submit queued jobs while slots are free and their backends below their limit
        (a paused job that wants its slot back first)."""
        if self.wanting:
            self._resume()
        self.tree_busy = False
        if not self.queue:
            return
        if self.executor is None:
            self.executor = self.make_executor(self.slots, self._backend_modules())
        held: deque[_Queued] = deque()
        while self.queue and len(self.inflight) < self.slots:
            queued = self.queue.popleft()
            job, unit, backend, lane = queued
            if self._at_limit(backend) or lane in self.lanes:
                held.append(queued)
                continue
            shell = isinstance(job.work, ShellJob)
            if shell and not self._tree_locked():
                self.tree_busy = True
                held.append(queued)
                continue
            verdict = self.gate(job, unit) if self.gate is not None else GO
            if verdict == WAIT:
                self.waiting.append(queued)
                continue
            if verdict == REFUSE:
                for q in (queued, *held, *self.queue):
                    self.refused += [q.unit, *self.take_followers(q.unit)]
                self.queue.clear()
                held.clear()
                break
            self._take_slot(queued)
            self.shells += shell
            if lane:
                self.lanes.add(lane)
            self.say(UnitStarted(unit.step, unit.name, unit.reason, backend or None))
            self.executor.submit(job)
        self.queue.extendleft(reversed(held))

    def _resume(self) -> None:
        """Hand free slots back to paused jobs that want one, in the order they asked."""
        assert self.executor is not None
        for job_id in list(self.wanting):
            if len(self.inflight) >= self.slots:
                return
            if self._at_limit(self.paused[job_id].backend):
                continue
            self.wanting.remove(job_id)
            self._take_slot(self.paused.pop(job_id))
            self.executor.resume(job_id)

    def _tree_locked(self) -> bool:
        """Do we hold the project's tree lock (taking it now if it is free)?"""
        if self.shells:
            return True
        import fcntl

        try:
            if self._tree_fd < 0:
                state = self.runs_dir.parent / "state"  # lok's own, out of git
                state.mkdir(exist_ok=True)
                self._tree_fd = os.open(
                    state / "tree.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            fcntl.flock(self._tree_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:  # no lock to be had here (a read-only .lok): run as before
            return True
        return True

    def _one_shell_less(self) -> None:
        """A shell job ended: with our last one, the tree lock goes to whoever waits."""
        self.shells -= 1
        if not self.shells and self._tree_fd >= 0:
            import fcntl

            fcntl.flock(self._tree_fd, fcntl.LOCK_UN)

    def _at_limit(self, backend: str) -> bool:
        """Is `backend` asked as many times at once as its `concurrency` allows?"""
        limit = self._backend_limit(backend)
        if not limit:
            return False
        return self.per_backend.get(backend, 0) >= limit

    def _take_slot(self, queued: _Queued) -> None:
        """`queued` runs (or sends again): a -j slot and one of its backend's."""
        self.per_backend[queued.backend] = self.per_backend.get(queued.backend, 0) + 1
        self.inflight[queued.job.id] = queued

    def _yielded(self, msg: Yielded) -> None:
        """A job gave its slot back for a wait, or asks for one again after it."""
        if not msg.ready:
            queued = self.inflight.pop(msg.job, None)
            if queued is not None:  # its lane (`parallel = false`) stays held meanwhile
                self.per_backend[queued.backend] -= 1
                self.paused[msg.job] = queued
        elif msg.job in self.paused and msg.job not in self.wanting:
            self.wanting.append(msg.job)

    def start_if_full(self) -> None:
        """Start jobs once the queue alone fills the free slots (a long loop starts working
        before all its items are keyed)."""
        if len(self.queue) >= self.slots - len(self.inflight) > 0:
            self.start()

    def finished(self, timeout: float) -> Iterator[tuple[Unit, JobResult]]:
        """Units whose jobs ended within `timeout` seconds, with their results (a crash
        becomes a failed result); progress lines go out as StepNotes meanwhile."""
        if self.executor is None or not self.inflight:
            if self.waiting:
                time.sleep(timeout)  # only waiting for other processes' answers
            elif self.tree_busy:
                time.sleep(min(timeout, TREE_POLL_S))  # for another process's shell steps
            if self.executor is None:
                return
        for msg in self.executor.results(timeout):
            if isinstance(msg, Yielded):
                self._yielded(msg)
                continue
            if isinstance(msg, JobEvent):
                running = self.inflight.get(msg.job) or self.paused.get(msg.job)
                if running:
                    self.say(StepNote(running.unit.step, running.unit.name, msg.text))
                continue
            job_id = msg.job if isinstance(msg, JobCrashed) else msg.id
            done = self.inflight.pop(job_id, None)
            if done is not None:
                self.per_backend[done.backend] -= 1
            else:  # it ended while paused (cancelled, or out of time): no slot to give back
                done = self.paused.pop(job_id, None)
                if done is None:
                    continue
                if job_id in self.wanting:
                    self.wanting.remove(job_id)
            self.lanes.discard(done.lane)
            if isinstance(done.job.work, ShellJob):
                self._one_shell_less()
            result = msg if isinstance(msg, JobResult) else _crashed(msg)
            yield done.unit, result
            for twin in self.take_followers(done.unit):  # their answer, but not their call
                twin.twin = done.unit
                yield twin, replace(result, calls=())

    def concurrency(self) -> int:
        """How many of the jobs in flight and queued can run at once: -j (and the
        workflow's `concurrency`) over all of them, each backend's `concurrency` over its own,
        one at a time per lane."""
        per: dict[str, int] = {}
        lanes: set[str] = set()
        for queued in (*self.inflight.values(), *self.paused.values(), *self.queue):
            if queued.lane:
                if queued.lane in lanes:
                    continue
                lanes.add(queued.lane)
            per[queued.backend] = per.get(queued.backend, 0) + 1
        possible = 0
        for backend, count in per.items():
            limit = self._backend_limit(backend)
            possible += min(count, limit) if limit else count
        return min(self.slots, possible)

    def interrupt(self, reason: str) -> None:
        """End every running job; the units in flight are interrupted, the queue dropped."""
        if self.executor is not None:
            self.executor.cancel_all()
        for queued in [*self.inflight.values(), *self.paused.values(), *self.waiting]:
            for unit in (queued.unit, *self.take_followers(queued.unit)):
                unit.status = Status.INTERRUPTED
                unit.reason = reason
        if self.shells:
            self.shells = 1
            self._one_shell_less()
        self.inflight.clear()
        self.paused.clear()
        self.wanting.clear()
        self.waiting.clear()
        self.lanes.clear()
        self.queue.clear()

    def close(self, kill: bool) -> bool:
        """Close the executor; False when no job ever ran (there was none)."""
        if self.executor is None:
            return False
        self.executor.close(kill=kill)
        return True

    def _backend_modules(self) -> tuple[str, ...]:
        """Modules of the backend types this run may query, for workers to import early."""
        from lokfile.backends import registry

        types = {b.type for b in self.config.backends.values() if b.enabled}
        used = {n for s in self.wf.steps if s.kind is StepKind.LLM for n in s.backends}
        if "auto" not in used:
            types = {self.config.backends[n].type for n in used if n in self.config.backends}
        found = (registry.get(t) for t in types)
        return tuple(sorted({t.module for t in found if t is not None}))

    def _backend_limit(self, name: str) -> int | None:
        if not name:
            return None
        cfg = self.config.backends.get(name)
        return cfg.concurrency if cfg else None


def _crashed(msg: JobCrashed) -> JobResult:
    return JobResult.failure(msg.job, f"internal error: {msg.error}", "failed")
