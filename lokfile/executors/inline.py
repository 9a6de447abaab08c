"""An executor on threads of this process: the same jobs, the same messages, no fork.

    coordinator ── submit(job) ──> thread pool (up to `slots` threads)
         ^                            └── lokfile.worker.execute.run_job(job)
         └──── results(timeout) <── one queue: JobEvent · JobResult · JobCrashed

For tests that drive the coordinator directly and for tools that embed lok:
each job runs exactly as it would in a worker process (run_job: retries,
timeouts, the store), its result says `worker = "inline"`. What it does not
give is the worker process's guarantees (lokfile/executors/local.py): no
session and no subreaper of its own, so a daemon a step leaves behind is not
ended, and a backend query in flight runs to its own end when the executor
is closed with `kill`.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from lokfile.executors.base import Handle, JobCrashed, JobEvent, Message, drain
from lokfile.process.run import Running, stop_all
from lokfile.worker.cancel import Cancel
from lokfile.worker.jobs import Job


class InlineExecutor:
    """Run jobs on up to `slots` threads (an Executor); `warm` is accepted and ignored:
    a backend module is imported by the first job that needs it, in this process."""

    def __init__(self, slots: int, warm: tuple[str, ...] = ()) -> None:
        self.slots = max(1, slots)
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.stop = Cancel()  # set by close(kill=True): no job starts another attempt
        self.running: set[Handle] = set()  # submitted, result not yet handed out
        self.live: dict[Handle, Running] = {}  # job -> the command it is running
        self.cancelled: set[Handle] = set()  # jobs whose every command is ended at once
        self.lock = threading.Lock()
        self.threads: ThreadPoolExecutor | None = None

    def submit(self, job: Job) -> Handle:
        if self.threads is None:
            self.threads = ThreadPoolExecutor(self.slots, thread_name_prefix="lok-job")
        self.running.add(job.id)
        self.threads.submit(self._work, job)
        return job.id

    def _work(self, job: Job) -> None:
        def register(command: Running | None) -> None:
            with self.lock:
                if command is None:
                    self.live.pop(job.id, None)
                    return
                self.live[job.id] = command
                if job.id not in self.cancelled:
                    return
            self._end(command)  # cancelled before its command had started

        def emit(text: str) -> None:
            self.inbox.put(JobEvent(job.id, text))

        from lokfile.worker.execute import run_job

        msg: Message
        try:
            msg = replace(run_job(job, emit, register, self.stop), worker="inline")
        except BaseException:  # lok's own bug: the job crashed, the executor goes on
            msg = JobCrashed(job.id, traceback.format_exc(limit=5))
        self.inbox.put(msg)

    def results(self, timeout: float | None) -> Iterator[Message]:
        if self.running:
            yield from drain(self.inbox, timeout, self.running.discard)

    def resume(self, handle: Handle) -> None:
        """Never needed: a job on a thread keeps its slot while it waits (no `Yielded`)."""

    def cancel(self, handle: Handle) -> None:
        with self.lock:
            self.cancelled.add(handle)
            command = self.live.get(handle)
        if command is not None:
            self._end(command)

    @staticmethod
    def _end(command: Running) -> None:
        """Stop a command (lokfile.process.run's kill policy) without holding up the caller."""
        threading.Thread(target=command.stop, daemon=True).start()

    def cancel_all(self) -> None:
        for handle in list(self.running):
            self.cancel(handle)

    def close(self, kill: bool = False) -> None:
        if self.threads is None:
            return
        if kill:
            self.stop.set()
            with self.lock:
                commands = list(self.live.values())
            stop_all(commands)
        self.threads.shutdown(wait=True, cancel_futures=kill)
        self.threads = None
