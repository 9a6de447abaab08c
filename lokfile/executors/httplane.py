"""The HTTP lane: backend queries over HTTP, all on one event loop in this process.

    WorkerPool.submit(job) ── an HTTP query? ──> HTTPLane ── thread "lok-http":
         │                                         asyncio loop, one task a job,
         │                                         lokfile/backends/aiowire.py
         └── anything else ──> worker processes    (a shell step, a CLI, an edit)

    results: the lane's messages wait in one queue; a byte on `wake_fd` per
    message lets the pool wait for them and for its workers' pipes at once

A fan-out of a thousand prompts to an Ollama, OpenAI-compatible or Anthropic
server is a thousand sockets waiting: on threads of worker processes it costs
a pickled job, a thread, and an httpx exchange each, and the two cores this
was measured on were busy with that, not with the calls (bench/RESULTS.md).
Here a job is a task on one loop. It does what lokfile.worker.execute does
for a query job: the same tries and backoff between them, the same transport
retries, one deadline per try, the answer stored as an artifact, the same
JobResult. Jobs the lane does not take: queries that edit files or verify
(their edits run in a worker process, which guards the processes a verify
starts), backends that are not HTTP, and URLs the environment sends through a
proxy (`aiowire.direct`).

A query has no process to end: `cancel` ends the job's task (its request is
dropped), and closing with `kill` ends them all. A coordinator that dies takes
the lane with it; what was answered and recorded stays recorded.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from lokfile.errors import DiskFullError
from lokfile.executors.base import Handle, JobCrashed, JobEvent, Message
from lokfile.worker import execute
from lokfile.worker.jobs import Job, JobResult, QueryJob

STOP_WAIT_S = 5.0  # closing: how long the loop's thread may take to finish


class HTTPLane:
    """Runs the HTTP query jobs it `takes` on an event loop in a thread of its own."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.running: set[Handle] = set()  # submitted, result not yet handed out
        self.wake_fd, self._wake_w = os.pipe()  # a byte per message in the inbox
        os.set_blocking(self.wake_fd, False)
        self._tasks: dict[Handle, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Any = None  # aiowire.Pool, made on the loop
        self._refused: set[str] = set()  # backend configs (by name) the lane cannot send
        self._taken: dict[str, Any] = {}  # and those it can: name -> the backend
        self._pending: list[tuple[Job, Any]] = []  # submitted, not yet taken by the loop
        self._pending_lock = threading.Lock()
        self._cancelled: set[Handle] = set()  # on the loop: jobs to end as they start

    def takes(self, job: Job) -> Any:
        """The HTTP backend that will answer `job` when the lane can run it, else None."""
        work = job.work
        if not isinstance(work, QueryJob) or work.edits is not None or work.answer is not None:
            return None
        name = work.backend.name  # one config per name within a run: decided once
        if name in self._refused:
            return None
        backend = self._taken.get(name)
        if backend is not None:
            return backend
        from lokfile.backends import aiowire

        try:
            backend = execute.backend_for(work.backend)
        except Exception:  # a config the backend rejects: a worker reports it, as before
            backend = None
        url = aiowire.url_of(backend)
        if url is None or not aiowire.direct(url):
            self._refused.add(name)
            return None
        self._taken[name] = backend
        return backend

    def submit(self, job: Job, backend: Any) -> Handle:
        """Start `job` on the loop (`backend`: what `takes` returned)."""
        if self._loop is None:
            self._start()
        assert self._loop is not None
        self.running.add(job.id)
        with self._pending_lock:
            self._pending.append((job, backend))
            wake = len(self._pending) == 1  # else the loop is already told to take them
        if wake:
            self._loop.call_soon_threadsafe(self._begin)
        return job.id

    def results(self) -> Iterator[Message]:
        """The messages waiting now (the caller waited on `wake_fd`)."""
        try:
            os.read(self.wake_fd, 1 << 16)
        except BlockingIOError:
            pass
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(msg, JobResult):
                self.running.discard(msg.id)
            elif isinstance(msg, JobCrashed):
                self.running.discard(msg.job)
            yield msg

    def cancel(self, handle: Handle) -> None:
        """End the job's task (its request is dropped; it reports as interrupted)."""
        if self._loop is not None and handle in self.running:
            self._loop.call_soon_threadsafe(self._cancel, handle)

    def close(self, kill: bool = False) -> None:
        """Stop the loop: once its jobs are done, or with `kill` at once."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if kill:
            loop.call_soon_threadsafe(self._cancel_all)
        loop.call_soon_threadsafe(self._stop_when_idle)
        thread.join(STOP_WAIT_S)
        self._loop = self._thread = None
        for fd in (self.wake_fd, self._wake_w):
            os.close(fd)

    # -- on the loop's thread ---------------------------------------------------

    def _start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="lok-http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from lokfile.backends import aiowire

        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        self._pool = aiowire.Pool()
        try:
            loop.run_forever()
        finally:
            self._pool.close()
            loop.run_until_complete(asyncio.sleep(0))  # let the closed sockets go
            loop.close()

    def _put(self, msg: Message) -> None:
        self.inbox.put(msg)
        try:
            os.write(self._wake_w, b".")
        except OSError:  # closed: nobody waits any more
            pass

    def _begin(self) -> None:
        """Start a task for every job submitted since the last call."""
        assert self._loop is not None
        with self._pending_lock:
            jobs, self._pending = self._pending, []
        for job, backend in jobs:
            task = self._loop.create_task(self._run(job, backend))
            self._tasks[job.id] = task
            task.add_done_callback(lambda t, job=job: self._ended(t, job))  # type: ignore[misc]
            if job.id in self._cancelled:
                task.cancel()  # cancelled before it had started

    def _ended(self, task: asyncio.Task[None], job: Job) -> None:
        """A task is over: one cancelled before its first step never ran `_run`, so its
        interrupted result is reported here."""
        self._tasks.pop(job.id, None)
        self._cancelled.discard(job.id)
        if task.cancelled():
            self._put(self._interrupted(job, time.time()))

    @staticmethod
    def _interrupted(job: Job, started: float) -> Message:
        last = execute.Attempt(False, "", "interrupted", "interrupted", retryable=False)
        return execute.result_of(job, last, 1, [], started)

    def _cancel(self, handle: Handle) -> None:
        self._cancelled.add(handle)
        task = self._tasks.get(handle)
        if task is not None:
            task.cancel()

    def _cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def _stop_when_idle(self) -> None:
        assert self._loop is not None
        if self._tasks:
            self._loop.call_later(0.01, self._stop_when_idle)
        else:
            self._loop.stop()

    async def _run(self, job: Job, backend: Any) -> None:
        started = time.time()
        msg: Message
        try:
            msg = await self._tries(job, backend, started)
        except asyncio.CancelledError:
            msg = self._interrupted(job, started)
        except (DiskFullError, OSError) as exc:
            failed = execute.disk_full_result(job, exc, started)
            msg = failed or JobCrashed(job.id, traceback.format_exc(limit=5))
        except Exception:  # lok's own bug: the job crashed, the lane goes on
            msg = JobCrashed(job.id, traceback.format_exc(limit=5))
        self._put(msg)

    async def _tries(self, job: Job, backend: Any, started: float) -> JobResult:
        """The job's tries, as lokfile.worker.execute makes them for a query."""
        from lokfile.backends import aiowire

        work = job.work
        assert isinstance(work, QueryJob)

        def emit(text: str) -> None:
            self._put(JobEvent(job.id, text))

        attempts = 0
        calls: list[dict[str, Any]] = []
        for attempt in range(job.retries + 1):
            attempts += 1
            try:
                request = execute.query_request(work, job.cwd, job.timeout_s, emit)
                answer = await aiowire.post(backend.prepare(request), self._pool, emit)
                last = execute.query_answered(answer)
            except Exception as exc:  # a BackendError, or a backend's own bug
                last = execute.query_failed(work, exc)
            calls += last.calls
            if last.ok or not last.retryable or attempt == job.retries:
                break
            delay = execute.backoff_delay(job.retry_delay_s, attempt + 1, last.retry_after)
            emit(execute.retry_note(job, attempt, last, delay))
            await asyncio.sleep(delay)
        return execute.result_of(job, last, attempts, calls, started)
