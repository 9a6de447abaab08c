"""A process pool for jobs: P worker processes, each running up to T jobs in threads,
and an HTTP lane, one more process, for backend queries over HTTP (executors/httplane.py).

The executor of `lok run` (lokfile/executors/__init__.py has the interface).
Why not concurrent.futures: lok must cancel running jobs (ending their
process trees), notice a dead coordinator from inside the workers, and keep
the per-job round trip small. Messages are tuples over one duplex pipe per
worker, turned into the interface's messages as they arrive:

    coordinator -> worker   ("job", Job) | ("cancel", job_id) | ("stop",)
    worker -> coordinator   ("event", job_id, text) | ("done", JobResult) |
                            ("crash", job_id, text)

Workers are forked lazily, on the first job, so a run where every step is
fresh never starts one; the lane likewise, on the first HTTP query.

A worker is what guarantees that no step process outlives lok:

    coordinator (lok's process group: the terminal's Ctrl-C, `kill -9 -PGID`)
      └── worker   own session · child subreaper · PDEATHSIG=SIGTERM
            ├── sh -c STEP ──── its children, grandchildren …   (lokfile/process/run.py)
            └── (orphans of those: double forks, setsid'd daemons, re-parented here)

It leaves lok's process group, so no signal meant for lok's group reaches
it, and it becomes a child subreaper, so every process its jobs start stays
its descendant however it detaches. When the coordinator stops it (SIGTERM or
"stop"), dies (the kernel's parent-death SIGTERM, or EOF on the pipe), or is
killed with its whole group, the worker ends every descendant within
STOP_GRACE_S, lets an edit that is being put back finish (lokfile/worker/cancel.py),
and exits. The PDEATHSIG every command gets from lokfile/process/run.py could
not do this alone: it is not inherited, so it misses grandchildren.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lokfile.executors.base import Handle, JobCrashed, JobEvent, Message
from lokfile.process.run import Running
from lokfile.process.tree import become_subreaper, kill_tree, set_parent_death_signal
from lokfile.worker.cancel import Cancel
from lokfile.worker.execute import Job, run_job
from lokfile.worker.jobs import QueryJob

if TYPE_CHECKING:
    from lokfile.executors.httplane import HTTPLane

Wire = tuple[Any, ...]  # a message on a worker's pipe
STOP_GRACE_S = 0.5  # SIGTERM to SIGKILL for step processes when the worker stops
RESTORE_WAIT_S = 30.0  # the longest a stopping worker waits for an edit to be put back
JOIN_S = RESTORE_WAIT_S + 5.0  # the coordinator's wait for a stopping worker


@dataclass
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    capacity: int
    running: set[int] = field(default_factory=set)


class WorkerPool:
    """Run jobs in worker processes (an Executor); `results()` yields what they report."""

    def __init__(self, slots: int, warm: tuple[str, ...] = ()) -> None:
        self.slots = max(1, slots)
        self.warm = (
            warm  # modules each worker imports as it starts (backends, before jobs need them)
        )
        self.procs = max(1, min(self.slots, os.cpu_count() or 1))
        self.workers: list[_Worker] = []
        self.where: dict[int, _Worker] = {}
        self.lane: HTTPLane | None = None  # HTTP queries, on the event loop of the lane process

    def _start(self) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx: Any = multiprocessing.get_context(method)
        per = -(-self.slots // self.procs)
        pipes = [ctx.Pipe(duplex=True) for _ in range(self.procs)]
        lane = [self.lane.conn] if self.lane is not None and self.lane.conn is not None else []
        for i, (mine, theirs) in enumerate(pipes):
            # the child keeps its own end and nothing else it inherited: a copy of any other
            # end hides a death from the side that waits on it (no end-of-file while a copy
            # is open): its own coordinator end, ours when we die; a later worker's end,
            # that worker's death from us
            others = [p[0] for p in pipes] + [p[1] for j, p in enumerate(pipes) if j != i] + lane
            proc = ctx.Process(
                target=_worker_main,
                args=(theirs, per, others, self.warm, os.getpid()),
                daemon=True,
            )
            proc.start()
            theirs.close()
            self.workers.append(_Worker(proc, mine, per))

    def submit(self, job: Job) -> Handle:
        """Start an HTTP query on the lane, send any other job to the least busy worker."""
        if isinstance(job.work, QueryJob):  # a run of shell steps never imports asyncio
            if self.lane is None:
                from lokfile.executors.httplane import HTTPLane

                self.lane = HTTPLane()
            backend = self.lane.takes(job)
            if backend is not None:
                if self.lane.conn is None:
                    self.lane.start([w.conn for w in self.workers])
                return self.lane.submit(job, backend)
        if not self.workers:
            self._start()
        worker = min(self.workers, key=lambda w: len(w.running) / w.capacity)
        worker.running.add(job.id)
        self.where[job.id] = worker
        worker.conn.send(("job", job))
        return job.id

    def results(self, timeout: float | None) -> Iterator[Message]:
        """Messages that arrive within `timeout` seconds (none if nothing runs)."""
        waitable: list[Any] = [w.conn for w in self.workers if w.running]
        lane = self.lane if self.lane is not None and self.lane.running else None
        if lane is not None:
            waitable.append(lane.wake_fd)
        if not waitable:
            return
        for conn in multiprocessing.connection.wait(waitable, timeout):
            if lane is not None and conn == lane.wake_fd:
                yield from lane.results()
                continue
            worker = next(w for w in self.workers if w.conn is conn)
            try:
                msg: Wire = conn.recv()  # type: ignore[union-attr,call-arg,assignment]
            except (EOFError, OSError):
                for job_id in list(worker.running):
                    self._forget(job_id)
                    yield JobCrashed(job_id, "the worker process died")
                continue
            if msg[0] == "done":
                self._forget(msg[1].id)
                yield msg[1]
            elif msg[0] == "crash":
                self._forget(msg[1])
                yield JobCrashed(msg[1], msg[2])
            else:
                yield JobEvent(msg[1], msg[2])

    def _forget(self, job_id: int) -> None:
        worker = self.where.pop(job_id, None)
        if worker is not None:
            worker.running.discard(job_id)

    def resume(self, handle: Handle) -> None:
        """Let a lane job that waits for its slot send again (workers never yield one)."""
        if self.lane is not None:
            self.lane.resume(handle)

    def cancel(self, handle: Handle) -> None:
        """Ask the worker running job `handle` to end its command (the lane: its task)."""
        if self.lane is not None and handle in self.lane.running:
            self.lane.cancel(handle)
            return
        worker = self.where.get(handle)
        if worker is not None:
            try:
                worker.conn.send(("cancel", handle))
            except OSError:
                pass

    def cancel_all(self) -> None:
        """Ask every worker (and the lane) to end its running jobs."""
        for job_id in [*self.where, *(self.lane.running if self.lane else ())]:
            self.cancel(job_id)

    def close(self, kill: bool = False) -> None:
        """Stop the workers: "stop" once their jobs are done, or with `kill` SIGTERM, which
        ends their jobs' processes and waits for an edit being put back; SIGKILL last.
        The lane's loop stops the same way: after its jobs, or with `kill` at once."""
        if self.lane is not None:
            self.lane.close(kill)
            self.lane = None
        for w in self.workers:
            try:
                if kill:
                    w.process.terminate()
                else:
                    w.conn.send(("stop",))
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=JOIN_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=1)
        self.workers.clear()
        self.where.clear()


def _warm(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a broken backend module fails its own jobs, with their own error
            pass


class _Stopper:
    """Ends a worker: its jobs' processes first, an edit being put back finished, then exit."""

    def __init__(self, cancel: Cancel) -> None:
        self.cancel = cancel
        self.thread: threading.Thread | None = None

    def start(self, *_: Any) -> None:
        """Begin stopping (idempotent; safe in a signal handler: it only starts a thread)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="lok-stop")
            self.thread.start()

    def wait(self) -> None:
        """Block until the stopper exits the process."""
        assert self.thread is not None
        self.thread.join()
        os._exit(1)

    def _run(self) -> None:
        self.cancel.set()
        me = os.getpid()
        deadline = time.monotonic() + RESTORE_WAIT_S
        # processes started while an edit finishes (a verify that was about to start) go too
        while True:
            kill_tree(me, grace=STOP_GRACE_S, include_self=False)
            if not self.cancel.edits_in_progress or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        kill_tree(me, grace=STOP_GRACE_S, include_self=False)
        os._exit(1)


def _end(command: Running) -> None:
    """End a cancelled job's command tree (lokfile.process.run's kill policy), without
    holding up the caller."""
    threading.Thread(target=command.stop, daemon=True).start()


def _end_leftovers() -> None:
    """After the last job: end what steps left running (daemons re-parented to us)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return  # no child at all: the common case, one system call
    kill_tree(os.getpid(), grace=STOP_GRACE_S, include_self=False)


def _worker_main(
    conn: Any, threads: int, others: list[Any], warm: tuple[str, ...] = (), parent: int = 0
) -> None:
    for other in others:
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setsid()  # out of lok's process group: a signal to the group leaves us to clean up
    become_subreaper()
    cancel = Cancel()
    stopper = _Stopper(cancel)
    signal.signal(signal.SIGTERM, stopper.start)
    set_parent_death_signal(signal.SIGTERM)
    if parent and os.getppid() != parent:
        stopper.start()  # the coordinator died before the kernel could be told to warn us
    if warm:
        threading.Thread(target=_warm, args=(warm,), daemon=True).start()
    live: dict[int, Running] = {}  # job id -> its running command
    cancelled: set[int] = set()  # jobs whose every command is ended (even one not yet started)
    live_lock = threading.Lock()
    send_lock = threading.Lock()

    def send(msg: Wire) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except OSError:
                pass

    def work(job: Job) -> None:
        def register(command: Running | None) -> None:
            with live_lock:
                if command is None:
                    live.pop(job.id, None)
                    return
                live[job.id] = command
                if job.id not in cancelled:
                    return
            _end(command)

        try:
            result = run_job(job, lambda text: send(("event", job.id, text)), register, cancel)
            send(("done", result))
        except BaseException:
            send(("crash", job.id, traceback.format_exc(limit=5)))

    pool = ThreadPoolExecutor(max_workers=threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            stopper.start()  # the coordinator is gone
            stopper.wait()
            return
        if msg[0] == "job":
            if not cancel.is_set():
                pool.submit(work, msg[1])
        elif msg[0] == "cancel":
            with live_lock:
                cancelled.add(msg[1])
                command = live.get(msg[1])
            if command is not None:
                _end(command)
        elif msg[0] == "stop":
            pool.shutdown(wait=True)
            _end_leftovers()
            os._exit(0)
