"""The executor interface: what the coordinator may ask of the place jobs run.

Six calls and four kinds of message; see the package docstring
(lokfile/executors/__init__.py) for the picture. A job is a plain, picklable
description (lokfile/worker/jobs.py) and so is everything that comes back,
so an executor may run it in a thread, a child process or on another host.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from lokfile.worker.jobs import Job, JobResult

Handle = int  # a submitted job's id: its events, its result or its crash name it


class JobEvent(NamedTuple):
    """A line of progress from a running job (a retry, a fix attempt)."""

    job: Handle
    text: str


class JobCrashed(NamedTuple):
    """A job that ended without a result: its worker died, or a bug in lok raised."""

    job: Handle
    error: str


class Yielded(NamedTuple):
    """A running job waiting out a server's Retry-After has handed its backend slot back
    (`ready` False); once its wait is over it asks for one again (`ready` True) and
    sends nothing until `resume`. Only an executor that can hold a job between two
    requests sends these (the HTTP lane); the others keep their slot while they wait."""

    job: Handle
    ready: bool


Message = JobEvent | JobResult | JobCrashed | Yielded


def drain(
    inbox: queue.SimpleQueue[Message], timeout: float | None, ended: Callable[[Handle], None]
) -> Iterator[Message]:
    """The messages waiting in `inbox` (waiting up to `timeout` for the first), calling
    `ended` with the handle of each job whose result or crash comes out, before it is
    yielded (the threaded executors' `results`)."""
    try:
        msg = inbox.get(timeout=timeout)
    except queue.Empty:
        return
    while True:
        if isinstance(msg, JobResult):
            ended(msg.id)
        elif isinstance(msg, JobCrashed):
            ended(msg.job)
        yield msg
        try:
            msg = inbox.get_nowait()
        except queue.Empty:
            return


class Executor(Protocol):
    """Runs jobs somewhere; the coordinator sees only these calls."""

    def submit(self, job: Job) -> Handle:
        """Start `job` (at once: the coordinator keeps the queue and the limits)."""
        ...

    def results(self, timeout: float | None) -> Iterator[Message]:
        """What the running jobs report within `timeout` seconds; nothing when none runs.
        Each job ends with exactly one JobResult or JobCrashed."""
        ...

    def resume(self, handle: Handle) -> None:
        """Let a job that asked for its slot again (`Yielded`, ready) send its request."""
        ...

    def cancel(self, handle: Handle) -> None:
        """End the job's command, and any it starts later (a retry); its result still
        arrives, as a failure."""
        ...

    def cancel_all(self) -> None:
        """Cancel every job not yet ended."""
        ...

    def close(self, kill: bool = False) -> None:
        """Release the executor: after the running jobs are done, or with `kill` at once
        (an edit being put back is still let finish)."""
        ...


class ExecutorFactory(Protocol):
    """Makes the executor of one run, on its first job (a run where every step is fresh
    makes none): `slots` jobs at most at once, `warm` the backend modules to import early."""

    def __call__(self, slots: int, warm: tuple[str, ...]) -> Executor: ...
