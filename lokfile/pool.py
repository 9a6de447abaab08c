"""A process pool for jobs: P worker processes, each running up to T jobs in threads.

Why not concurrent.futures: lok must cancel running jobs (ending their
process trees), notice a dead coordinator from inside the workers, and keep
the per-job round trip small. Messages are tuples over one duplex pipe per
worker:

    coordinator -> worker   ("job", Job) | ("cancel", job_id) | ("stop",)
    worker -> coordinator   ("event", job_id, text) | ("done", JobResult) |
                            ("crash", job_id, text)

Workers are forked lazily, on the first job, so a run where every step is
fresh never starts one. A worker ends every process it started when its
coordinator disappears (EOF on the pipe, or SIGTERM through PDEATHSIG).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lokfile.execute import Job, run_job
from lokfile.proctree import kill_tree

Message = tuple[Any, ...]


@dataclass
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    capacity: int
    running: set[int] = field(default_factory=set)


class WorkerPool:
    """Run jobs in worker processes; `poll()` yields what they report."""

    def __init__(self, slots: int, warm: tuple[str, ...] = ()) -> None:
        self.slots = max(1, slots)
        self.warm = (
            warm  # modules each worker imports as it starts (backends, before jobs need them)
        )
        self.procs = max(1, min(self.slots, os.cpu_count() or 1))
        self.workers: list[_Worker] = []
        self.where: dict[int, _Worker] = {}

    @property
    def busy(self) -> int:
        return len(self.where)

    def _start(self) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx: Any = multiprocessing.get_context(method)
        per = -(-self.slots // self.procs)
        pipes = [ctx.Pipe(duplex=True) for _ in range(self.procs)]
        for i, (mine, theirs) in enumerate(pipes):
            others = [p[0] for j, p in enumerate(pipes) if j != i]
            proc = ctx.Process(
                target=_worker_main, args=(theirs, per, others, self.warm), daemon=True
            )
            proc.start()
            theirs.close()
            self.workers.append(_Worker(proc, mine, per))

    def submit(self, job: Job) -> None:
        """Send `job` to the least busy worker."""
        if not self.workers:
            self._start()
        worker = min(self.workers, key=lambda w: len(w.running) / w.capacity)
        worker.running.add(job.id)
        self.where[job.id] = worker
        worker.conn.send(("job", job))

    def poll(self, timeout: float | None) -> Iterator[Message]:
        """Messages that arrive within `timeout` seconds (none if nothing runs)."""
        conns = [w.conn for w in self.workers if w.running]
        if not conns:
            return
        for conn in multiprocessing.connection.wait(conns, timeout):
            worker = next(w for w in self.workers if w.conn is conn)
            try:
                msg: Message = conn.recv()  # type: ignore[union-attr,call-arg,assignment]
            except (EOFError, OSError):
                for job_id in list(worker.running):
                    self._forget(job_id)
                    yield ("crash", job_id, "the worker process died")
                continue
            if msg[0] == "done":
                self._forget(msg[1].id)
            elif msg[0] == "crash":
                self._forget(msg[1])
            yield msg

    def _forget(self, job_id: int) -> None:
        worker = self.where.pop(job_id, None)
        if worker is not None:
            worker.running.discard(job_id)

    def cancel_all(self) -> None:
        """Ask every worker to end its running jobs."""
        for w in self.workers:
            for job_id in list(w.running):
                try:
                    w.conn.send(("cancel", job_id))
                except OSError:
                    pass

    def shutdown(self, kill: bool = False) -> None:
        """Stop the workers (SIGTERM: they end their children first; SIGKILL with kill)."""
        for w in self.workers:
            try:
                if kill:
                    w.process.terminate()
                else:
                    w.conn.send(("stop",))
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=1)
        self.workers.clear()
        self.where.clear()


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _warm(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a broken backend module fails its own jobs, with their own error
            pass


def _worker_main(conn: Any, threads: int, others: list[Any], warm: tuple[str, ...] = ()) -> None:
    for other in others:
        other.close()
    if warm:
        threading.Thread(target=_warm, args=(warm,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal()
    me = os.getpid()
    live: dict[int, int] = {}  # job id -> pid of its running command
    send_lock = threading.Lock()

    def end_everything(*_: Any) -> None:
        kill_tree(me, grace=1.0, include_self=False)
        os._exit(1)

    signal.signal(signal.SIGTERM, end_everything)

    def send(msg: Message) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except OSError:
                pass

    def work(job: Job) -> None:
        def register(pid: int | None) -> None:
            if pid is None:
                live.pop(job.id, None)
            else:
                live[job.id] = pid

        try:
            result = run_job(job, lambda text: send(("event", job.id, text)), register)
            send(("done", result))
        except BaseException:
            send(("crash", job.id, traceback.format_exc(limit=5)))

    pool = ThreadPoolExecutor(max_workers=threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            end_everything()
            return
        if msg[0] == "job":
            pool.submit(work, msg[1])
        elif msg[0] == "cancel":
            pid = live.get(msg[1])
            if pid is not None:
                threading.Thread(target=kill_tree, args=(pid, 2.0), daemon=True).start()
        elif msg[0] == "stop":
            pool.shutdown(wait=True)
            os._exit(0)
