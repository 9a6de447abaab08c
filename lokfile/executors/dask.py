"""Jobs on a Dask distributed cluster: the coordinator stays here, the work goes there.

    this process (coordinator)              scheduler              each worker
      submit(job) ── client.submit(_work) ──> places it ──────────> _work(job):
                                                                      the project is here?
                                                                      run_job (lokfile.worker)
      results() <── the future's result ──────────────────────────── JobResult, worker = its address
                <── topic "lok-<token>" ──────────────────────────── progress lines (JobEvent)
      cancel()  ── client.run(_cancel) on every worker ────────────> the job's command tree ended
      close(kill) ── client.run(_stop) ────────────────────────────> no new attempt; trees ended

The coordinator keeps what it keeps with the local pool: keys, the -j slots and
each backend's `concurrency` (it submits only what may run, so a limit holds
across all workers), retries inside a job, history and cancellation. Dask
runs what it is given: a worker that dies has its jobs run again on another
(the scheduler's own rescheduling); one that keeps dying ends the job as a
crash (Dask's KilledWorker).

Shell steps and lok's store need the project on a filesystem every worker
sees at the same path (as with Snakemake's shared-fs execution). When the
executor starts it writes a probe (`.lok/state/dask-<token>`); a worker that
cannot read it back fails the job with an error naming the worker and the
path, never a wrong result from some other copy of the project.

The only importer of `distributed` (the `lokfile[dask]` extra), in this
process and in the workers, which must have lok installed (the same version).
A worker process runs jobs of many runs over its life: what it must be able
to end (each job's live command, the runs being stopped) lives in `_Side`,
one per worker process.
"""

from __future__ import annotations

import functools
import queue
import threading
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lokfile.executors.base import Handle, JobCrashed, JobEvent, Message, drain
from lokfile.process.run import Running
from lokfile.worker.cancel import Cancel
from lokfile.worker.jobs import Job, JobResult

CONNECT_S = 10.0  # the longest wait for the scheduler


class DaskExecutor:
    """Run jobs on the workers of the Dask scheduler at `address` (an Executor)."""

    def __init__(self, slots: int, warm: tuple[str, ...] = (), *, address: str) -> None:
        self.slots = slots  # the coordinator keeps to them; the cluster has its own threads
        self.address = address
        self.token = uuid.uuid4().hex  # names this run's jobs on the workers
        self.client: Any = None
        self.broken: str | None = None  # why the scheduler cannot be used
        self.probe: Path | None = None
        self.futures: dict[Handle, Any] = {}
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.running: set[Handle] = set()

    # -- starting --------------------------------------------------------------

    def _connect(self, job: Job) -> None:
        """Reach the scheduler and leave the probe the workers must see."""
        try:
            from distributed import Client  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            self.broken = "the Dask executor needs distributed: pip install 'lokfile[dask]'"
            return
        try:
            self.client = Client(  # type: ignore[no-untyped-call,unused-ignore]
                self.address, timeout=CONNECT_S, set_as_default=False
            )
        except Exception as exc:  # OSError, TimeoutError, …: say what, never a traceback
            self.broken = f"cannot reach the Dask scheduler at {self.address}: {_one_line(exc)}"
            return
        probe = Path(job.runs_dir).parent / "state" / f"dask-{self.token}"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(self.token)
        self.probe = probe
        self.client.subscribe_topic(f"lok-{self.token}", self._event)

    def submit(self, job: Job) -> Handle:
        if self.client is None and self.broken is None:
            self._connect(job)
        self.running.add(job.id)
        if self.broken is not None:
            self.inbox.put(_failed(job, self.broken, ""))
            return job.id
        future = self.client.submit(
            _work, job, self.token, str(self.probe), key=f"lok-{self.token}-{job.id}", pure=False
        )
        self.futures[job.id] = future
        future.add_done_callback(functools.partial(self._done, job.id))
        return job.id

    # -- what comes back -----------------------------------------------------------

    def _event(self, event: Any) -> None:
        """A progress line a job logged on its worker (the client's thread)."""
        _, (handle, text) = event
        self.inbox.put(JobEvent(int(handle), str(text)))

    def _done(self, handle: Handle, future: Any) -> None:
        """A job's future ended (a thread of the client): its result, or a crash."""
        msg: Message
        try:
            if future.status == "finished":
                msg = future.result()
            elif future.status == "cancelled":
                msg = JobCrashed(handle, "cancelled on the Dask cluster")
            else:
                msg = JobCrashed(handle, f"on the Dask cluster: {_one_line(future.exception())}")
        except Exception as exc:
            msg = JobCrashed(handle, f"on the Dask cluster: {_one_line(exc)}")
        self.inbox.put(msg)

    def results(self, timeout: float | None) -> Iterator[Message]:
        if self.running:
            yield from drain(self.inbox, timeout, self._ended)

    def _ended(self, handle: Handle) -> None:
        self.running.discard(handle)
        self.futures.pop(handle, None)

    def resume(self, handle: Handle) -> None:
        """Never needed: a job on a Dask worker keeps its slot while it waits (no `Yielded`)."""

    # -- stopping ----------------------------------------------------------------

    def _on_workers(self, function: Any, *args: Any) -> None:
        if self.client is None:
            return
        try:
            self.client.run(function, *args, on_error="ignore")
        except Exception:  # the scheduler is gone: so is whatever it ran for us
            pass

    def cancel(self, handle: Handle) -> None:
        self._on_workers(_cancel, self.token, [handle])

    def cancel_all(self) -> None:
        if self.running:
            self._on_workers(_cancel, self.token, sorted(self.running))

    def close(self, kill: bool = False) -> None:
        if self.client is not None:
            if kill:
                self._on_workers(_stop, self.token)
                try:
                    self.client.cancel(list(self.futures.values()), force=True)
                except Exception:
                    pass
            else:
                self._on_workers(_forget, self.token)
            try:
                self.client.close(timeout=CONNECT_S)
            except Exception:
                pass
            self.client = None
        if self.probe is not None:
            self.probe.unlink(missing_ok=True)
            self.probe = None
        self.futures.clear()


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "no result"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failed(job: Job, error: str, where: str) -> JobResult:
    return JobResult.failure(job.id, error, "failed", worker=where or "dask")


# -- the worker side (runs inside a Dask worker process) ---------------------------------


class _Side:
    """What one worker process must be able to end: every job's live command, and the
    runs told to stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[tuple[str, int], Running] = {}  # (run token, job) -> its command
        self.cancelled: set[tuple[str, int]] = set()
        self.stops: dict[str, Cancel] = {}

    def stop_flag(self, token: str) -> Cancel:
        with self.lock:
            return self.stops.setdefault(token, Cancel())

    def register(self, token: str, job: int, command: Running | None) -> None:
        with self.lock:
            if command is None:
                self.live.pop((token, job), None)
                return
            self.live[(token, job)] = command
            stop = self.stops.get(token)
            ended = (token, job) in self.cancelled or (stop is not None and stop.is_set())
        if ended:
            _end(command)

    def cancel(self, token: str, jobs: list[int]) -> None:
        with self.lock:
            commands = []
            for job in jobs:
                self.cancelled.add((token, job))
                if (token, job) in self.live:
                    commands.append(self.live[(token, job)])
        for command in commands:
            _end(command)

    def stop(self, token: str) -> None:
        self.stop_flag(token).set()
        with self.lock:
            commands = [c for (t, _), c in self.live.items() if t == token]
        for command in commands:
            _end(command)

    def forget(self, token: str) -> None:
        with self.lock:
            self.stops.pop(token, None)
            self.cancelled = {c for c in self.cancelled if c[0] != token}


_SIDE: list[_Side] = []  # the one of this worker process, made by its first job
_SIDE_LOCK = threading.Lock()


def _side() -> _Side:
    with _SIDE_LOCK:
        if not _SIDE:
            _SIDE.append(_Side())
        return _SIDE[0]


def _end(command: Running) -> None:
    """End a live command and its tree (the runner's one kill policy), off this thread."""
    threading.Thread(target=command.stop, daemon=True).start()


def _cancel(token: str, jobs: list[int]) -> None:
    _side().cancel(token, jobs)


def _stop(token: str) -> None:
    _side().stop(token)


def _forget(token: str) -> None:
    _side().forget(token)


def _sees(probe: str, token: str) -> bool:
    try:
        with open(probe, encoding="utf-8") as fh:
            return fh.read() == token
    except OSError:
        return False


def _work(job: Job, token: str, probe: str) -> Message:
    """Run one job on this worker, as a local worker process would (lokfile.worker)."""
    from distributed import get_worker  # type: ignore[import-not-found,unused-ignore]

    worker = get_worker()
    where = str(worker.address)
    if not _sees(probe, token):
        return _failed(
            job,
            f"Dask worker {where} cannot see this project at {job.cwd} (no {probe} there): "
            "lok's store and shell steps need the project on a filesystem every worker "
            "shares, at the same path",
            where,
        )
    side = _side()
    cancel = side.stop_flag(token)
    if cancel.is_set() or (token, job.id) in side.cancelled:
        return _failed(job, "interrupted", where)

    def emit(text: str) -> None:
        worker.log_event(f"lok-{token}", [job.id, text])

    def register(command: Running | None) -> None:
        side.register(token, job.id, command)

    from lokfile.worker.execute import run_job

    try:
        result = run_job(job, emit, register, cancel)
    except BaseException:  # lok's own bug: the job crashed, the worker goes on
        return JobCrashed(job.id, traceback.format_exc(limit=5))
    return replace(result, worker=where)

