"""The HTTP lane: backend queries over HTTP, all on one event loop in a process of its own.

    WorkerPool.submit(job) ── an HTTP query? ──> HTTPLane ── pipe ──> the lane process:
         │                                      (this process)        asyncio loop, one task
         │                                                            a job (aiowire.py)
         └── anything else ──> worker processes (a shell step, a CLI, an edit)

    coordinator -> lane   ("job", Job) | ("resume", job_id) | ("cancel", job_id)
                          | ("stop", kill)
    lane -> coordinator   [Message, ...]: what its loop produced in one turn

A fan-out of a thousand prompts to an Ollama, OpenAI-compatible or Anthropic
server is a thousand sockets waiting: on threads of worker processes it costs
a pickled job, a thread, and an httpx exchange each, and the two cores this
was measured on were busy with that, not with the calls (bench/RESULTS.md).
In the lane a job is a task on one loop. It does what lokfile.worker.execute
does for a query job: the same tries and backoff between them, the same
transport retries, one deadline per try, the answer stored as an artifact,
the same JobResult. One thing it does better: a call told to wait (a 429's
Retry-After, a backoff between tries) hands its backend slot back for the wait
(`Yielded`), so the other prompts use it, and asks for it again before it
sends (`resume`): under a rate limit the calls in flight stay at the backend's
`concurrency`, never above it. The loop has a process to itself because on a thread of
the coordinator the two took turns at one interpreter lock: the coordinator's
bookkeeping of every answer and the loop's sockets and files, each waiting for
the other (bench/RESULTS.md, issue 12). Jobs the lane does not take: queries
that edit files or verify (their edits run in a worker process, which guards
the processes a verify starts), backends that are not HTTP, and URLs the
environment sends through a proxy (`aiowire.direct`).

The lane process is forked on the first query, from the coordinator's one
thread. A query has no process to end: `cancel` ends the job's task (its
request is dropped), and closing with `kill` ends them all. A coordinator that
dies takes the lane with it (the parent-death signal, or the end of its pipe);
what was answered and recorded stays recorded.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Iterator
from typing import Any

from lokfile.errors import DiskFullError
from lokfile.executors.base import Handle, JobCrashed, JobEvent, Message, Yielded
from lokfile.process.tree import set_parent_death_signal
from lokfile.worker import execute
from lokfile.worker.jobs import Job, JobResult, QueryJob

STOP_WAIT_S = 5.0  # closing: how long the lane process may take to finish


class HTTPLane:
    """Runs the HTTP query jobs it `takes` on an event loop in a process of its own."""

    def __init__(self) -> None:
        self.running: set[Handle] = set()  # submitted, result not yet handed out
        self.wake_fd = -1  # readable when the lane has sent messages (its pipe's end)
        self._conn: multiprocessing.connection.Connection | None = None
        self._process: Any = None
        self._refused: set[str] = set()  # backend configs (by name) the lane cannot send
        self._taken: dict[str, Any] = {}  # and those it can: name -> the backend

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

    def start(self, close_in_child: list[Any]) -> None:
        """Fork the lane process now (`close_in_child`: pipes of ours it must not hold)."""
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx: Any = multiprocessing.get_context(method)
        mine, theirs = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=_lane_main, args=(theirs, [mine, *close_in_child], os.getpid()), daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn = mine
        self.wake_fd = mine.fileno()

    @property
    def conn(self) -> Any:
        """Our end of the lane's pipe (None before `start`)."""
        return self._conn

    def submit(self, job: Job, backend: Any) -> Handle:
        """Start `job` in the lane (`backend`: what `takes` returned; the lane process
        makes its own, once per backend)."""
        assert self._conn is not None, "start the lane first"
        self.running.add(job.id)
        try:
            self._conn.send(("job", job))
        except OSError:  # the lane is gone: `results` reports the job as crashed
            pass
        return job.id

    def results(self) -> Iterator[Message]:
        """The messages waiting now (the caller waited on `wake_fd`)."""
        conn = self._conn
        if conn is None:
            return
        while True:
            try:
                if not conn.poll():
                    return
                batch: list[Message] = conn.recv()
            except (EOFError, OSError):
                conn.close()
                self._conn = None
                gone, self.running = sorted(self.running), set()
                for job_id in gone:
                    yield JobCrashed(job_id, "the HTTP lane's process died")
                return
            for msg in batch:
                if isinstance(msg, JobResult):
                    self.running.discard(msg.id)
                elif isinstance(msg, JobCrashed):
                    self.running.discard(msg.job)
                yield msg

    def resume(self, handle: Handle) -> None:
        """Let a job that waits for its slot (it sent `Yielded`, ready) send again."""
        self._about(handle, "resume")

    def cancel(self, handle: Handle) -> None:
        """End the job's task (its request is dropped; it reports as interrupted)."""
        self._about(handle, "cancel")

    def _about(self, handle: Handle, verb: str) -> None:
        """Tell the lane `verb` about a job of ours it still runs (a lane that is gone
        reports its jobs itself, through `results`)."""
        if self._conn is not None and handle in self.running:
            try:
                self._conn.send((verb, handle))
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        """Stop the lane: once its jobs are done, or with `kill` at once.

        Without `kill` this returns once the lane has closed its end of the pipe, the last
        thing it does before it exits (`_lane_main`), and leaves the exit itself to finish
        beside the run's last writes: tearing down a process that holds 128 kept-alive
        sockets took 8-13 ms (bench/RESULTS.md). multiprocessing reaps it, when the next
        process starts or as lok exits."""
        conn, process = self._conn, self._process
        if process is None:
            return
        wait = STOP_WAIT_S
        if conn is not None:
            try:
                conn.send(("stop", kill))
            except OSError:
                pass
            if not kill:
                if _until_closed(conn, STOP_WAIT_S):
                    conn.close()
                    self._conn = self._process = None
                    return
                wait = 0.0  # it had its time to stop: end it now
        process.join(wait)
        if process.is_alive():
            process.kill()
            process.join(1)
        if conn is not None:
            conn.close()
        self._conn = self._process = None


def _lane_main(conn: Any, inherited: list[Any], parent: int) -> None:
    """The lane process: its loop until "stop", or until the coordinator is gone."""
    for other in inherited:
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides what Ctrl-C ends
    set_parent_death_signal(signal.SIGTERM)
    if parent and os.getppid() != parent:
        os._exit(1)  # the coordinator died before the kernel could be told to end us
    try:
        _Loop(conn).serve()
        conn.close()  # the coordinator stops waiting here (HTTPLane.close), not at our exit
    finally:
        os._exit(0)  # nothing inherited from the coordinator is finalized here


class _Loop:
    """The lane's event loop: a task per job; what they produce goes back a turn at a time."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.loop = asyncio.new_event_loop()
        self.tasks: dict[Handle, asyncio.Task[None]] = {}
        self.gates: dict[Handle, asyncio.Future[None]] = {}  # jobs waiting for their slot
        self.outbox: list[Message] = []
        self.pool: Any = None  # aiowire.Pool, made on the loop

    def serve(self) -> None:
        from lokfile.backends import aiowire

        asyncio.set_event_loop(self.loop)
        self.pool = aiowire.Pool()
        self.loop.add_reader(self.conn.fileno(), self._incoming)
        try:
            self.loop.run_forever()
        finally:
            # the last answers go out; the kept-alive sockets close as the process exits
            # (_lane_main): closing 128 of them on the loop first took 8 ms of every run
            self._flush()

    def _incoming(self) -> None:
        """Read what the coordinator sent: jobs, cancels, the stop."""
        while True:
            try:
                if not self.conn.poll():
                    return
                msg = self.conn.recv()
            except (EOFError, OSError):  # the coordinator is gone: nobody wants the answers
                self.loop.remove_reader(self.conn.fileno())
                self._cancel_all()
                self.loop.stop()
                return
            if msg[0] == "job":
                self._begin(msg[1])
            elif msg[0] == "resume":
                gate = self.gates.pop(msg[1], None)
                if gate is not None and not gate.done():
                    gate.set_result(None)
            elif msg[0] == "cancel":
                task = self.tasks.get(msg[1])
                if task is not None:
                    task.cancel()
            elif msg[0] == "stop":
                if msg[1]:
                    self._cancel_all()
                self._stop_when_idle()

    def _put(self, msg: Message) -> None:
        """Queue `msg` for the coordinator; the queue goes in one message at the turn's end."""
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(msg)

    def _flush(self) -> None:
        batch, self.outbox = self.outbox, []
        if batch:
            try:
                self.conn.send(batch)
            except OSError:  # closed: nobody waits any more
                pass

    def _begin(self, job: Job) -> None:
        task = self.loop.create_task(self._run(job))
        self.tasks[job.id] = task
        task.add_done_callback(lambda t, job=job: self._ended(t, job))  # type: ignore[misc]

    def _ended(self, task: asyncio.Task[None], job: Job) -> None:
        """A task is over: one cancelled before its first step never ran `_run`, so its
        interrupted result is reported here."""
        self.tasks.pop(job.id, None)
        if task.cancelled():
            self._put(_interrupted(job, time.time()))

    def _cancel_all(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()

    def _stop_when_idle(self) -> None:
        if self.tasks:
            self.loop.call_later(0.01, self._stop_when_idle)
        else:
            self.loop.stop()

    async def _run(self, job: Job) -> None:
        started = time.time()
        msg: Message
        try:
            msg = await self._tries(job, started)
        except asyncio.CancelledError:
            msg = _interrupted(job, started)
        except (DiskFullError, OSError) as exc:
            failed = execute.disk_full_result(job, exc, started)
            msg = failed or JobCrashed(job.id, traceback.format_exc(limit=5))
        except Exception:  # lok's own bug: the job crashed, the lane goes on
            msg = JobCrashed(job.id, traceback.format_exc(limit=5))
        self._put(msg)

    async def _tries(self, job: Job, started: float) -> JobResult:
        """The job's tries, as lokfile.worker.execute makes them for a query."""
        from lokfile.backends import aiowire

        work = job.work
        assert isinstance(work, QueryJob)
        backend = execute.backend_for(work.backend)

        def emit(text: str) -> None:
            self._put(JobEvent(job.id, text))

        async def wait(seconds: float) -> None:
            """Wait without the backend slot: give it back, sleep, ask for it again and
            send nothing before the coordinator hands it back (`resume`)."""
            self._put(Yielded(job.id, False))
            await asyncio.sleep(seconds)
            gate = self.loop.create_future()
            self.gates[job.id] = gate
            self._put(Yielded(job.id, True))
            try:
                await gate
            finally:
                self.gates.pop(job.id, None)

        attempts = 0
        calls: list[dict[str, Any]] = []
        for attempt in range(job.retries + 1):
            attempts += 1
            try:
                request = execute.query_request(work, job.cwd, job.timeout_s, emit)
                answer = await aiowire.post(backend.prepare(request), self.pool, emit, wait)
                last = execute.query_answered(answer)
            except Exception as exc:  # a BackendError, or a backend's own bug
                last = execute.query_failed(work, exc)
            calls += last.calls
            if last.ok or not last.retryable or attempt == job.retries:
                break
            delay = execute.backoff_delay(job.retry_delay_s, attempt + 1, last.retry_after)
            emit(execute.retry_note(job, attempt, last, delay))
            await wait(delay)
        return execute.result_of(job, last, attempts, calls, started)


def _until_closed(conn: Any, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the other end of `conn` to close, dropping what it
    still sends (nothing: the lane is stopped only once its results are in); False when
    it stayed open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                return False
            conn.recv()
        except (EOFError, OSError):
            return True


def _interrupted(job: Job, started: float) -> Message:
    last = execute.Attempt(False, "", "interrupted", "interrupted", retryable=False)
    return execute.result_of(job, last, 1, [], started)
