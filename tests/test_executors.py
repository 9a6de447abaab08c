"""Both executors speak the interface the coordinator talks to (lokfile/executors):
the same job gives the same messages, each result says where it ran, and cancel ends
one job's command while the others go on."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokfile.executors import Executor, JobCrashed, JobEvent, Message, Yielded
from lokfile.executors.inline import InlineExecutor
from lokfile.executors.local import WorkerPool
from lokfile.worker.jobs import Job, JobResult, ShellJob

DEADLINE_S = 20.0


@pytest.fixture(params=["local", "inline"])
def where(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def executor(where: str) -> Iterator[Executor]:
    made: Executor = WorkerPool(2) if where == "local" else InlineExecutor(2)
    try:
        yield made
    finally:
        made.close(kill=True)


def job(root: Path, job_id: int, command: str, retries: int = 0) -> Job:
    (root / "runs").mkdir(exist_ok=True)
    return Job(
        id=job_id,
        step=f"s{job_id}",
        unit="",
        work=ShellJob(command=command),
        cwd=str(root),
        runs_dir=str(root / "runs"),
        timeout_s=20.0,
        retries=retries,
        retry_delay_s=0.01,
    )


def until_done(executor: Executor, count: int) -> list[Message]:
    """Every message until `count` jobs have ended (a result or a crash each). A job that
    asks for its slot back after a wait (`Yielded`, ready) gets it at once, as from a
    coordinator with every slot free."""
    seen: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while sum(isinstance(m, JobResult | JobCrashed) for m in seen) < count:
        assert time.monotonic() < deadline, f"jobs did not end: {seen}"
        for msg in executor.results(0.05):
            if isinstance(msg, Yielded) and msg.ready:
                executor.resume(msg.job)
            seen.append(msg)
    return seen


def results(messages: list[Message]) -> dict[int, JobResult]:
    return {m.id: m for m in messages if isinstance(m, JobResult)}


def test_a_job_runs_and_its_result_says_where_it_ran(
    executor: Executor, where: str, tmp_path: Path
) -> None:
    assert executor.submit(job(tmp_path, 7, "echo hello")) == 7
    done = results(until_done(executor, 1))
    assert done[7].success and done[7].output == "hello"
    assert done[7].worker == where
    assert list(executor.results(0.01)) == []  # nothing runs: nothing to wait for


def test_a_retry_is_reported_as_an_event_before_the_result(
    executor: Executor, tmp_path: Path
) -> None:
    executor.submit(job(tmp_path, 1, "echo no >&2; exit 3", retries=1))
    messages = until_done(executor, 1)
    events = [m for m in messages if isinstance(m, JobEvent)]
    assert [e.job for e in events] == [1]
    assert events[0].text.startswith("attempt 1/2 failed")
    assert isinstance(messages[-1], JobResult) and not messages[-1].success
    assert messages[-1].attempts == 2
    assert not any(isinstance(m, JobCrashed) for m in messages)


def test_cancel_ends_one_jobs_command_and_leaves_the_other_running(
    executor: Executor, tmp_path: Path
) -> None:
    wait = "i=0; while [ ! -e {f} ] && [ $i -lt 1500 ]; do sleep 0.01; i=$((i+1)); done; cat {f}"
    first = executor.submit(job(tmp_path, 1, "echo started > one.up; " + wait.format(f="one")))
    executor.submit(job(tmp_path, 2, wait.format(f="two")))
    deadline = time.monotonic() + DEADLINE_S
    while not (tmp_path / "one.up").exists():  # its command runs: there is something to end
        assert time.monotonic() < deadline
        time.sleep(0.01)
    executor.cancel(first)
    done = results(until_done(executor, 1))
    assert not done[1].success and "killed by signal" in (done[1].error or "")
    (tmp_path / "two").write_text("second\n")
    done = results(until_done(executor, 1))
    assert done[2].success and done[2].output == "second"


def test_a_command_gets_no_descriptor_that_lok_inherited(
    executor: Executor, tmp_path: Path
) -> None:
    # a descriptor lok was given (here an inheritable pipe) must not reach a step's command,
    # whichever folder it runs in (here the worker's own)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        check = f"test -e /proc/$$/fd/{write_end} && echo open || echo closed"
        made = job(tmp_path, 1, check)
        made = dataclasses.replace(made, cwd=os.getcwd())  # the worker's own folder
        executor.submit(made)
        done = results(until_done(executor, 1))[1]
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.success, done.error
    assert done.output == "closed"


def _sockets(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` holds open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found.add(int(target[len("socket:[") : -1]))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_each_worker_holds_no_end_of_the_coordinators_pipes(tmp_path: Path) -> None:
    # a worker holding a copy of the coordinator's end of its own pipe never sees that end
    # close when lok dies (it waits on it for its next job)
    pool = WorkerPool(2)
    try:
        for i in (1, 2):
            pool.submit(job(tmp_path, i, f"touch up{i}; sleep 20"))
        assert len(pool.workers) == 2
        deadline = time.monotonic() + DEADLINE_S
        while not all((tmp_path / f"up{i}").exists() for i in (1, 2)):  # both workers run
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ours = {os.fstat(w.conn.fileno()).st_ino for w in pool.workers}
        for w in pool.workers:
            assert not _sockets(w.process.pid) & ours
    finally:
        pool.close(kill=True)


def test_a_worker_killed_while_another_lives_fails_its_job_as_crashed(tmp_path: Path) -> None:
    # the first worker was forked while the second one's end was still open in lok: had it
    # kept that copy, lok would never see the second one's death, and would wait for ever
    pool = WorkerPool(2)
    try:
        for i in (1, 2):
            pool.submit(job(tmp_path, i, "sleep 20"))
        last = pool.workers[-1]
        [doomed] = last.running
        os.kill(last.process.pid, signal.SIGKILL)
        messages = until_done(pool, 1)
        assert messages == [JobCrashed(doomed, "the worker process died")]
        assert pool.workers[0].process.is_alive()
    finally:
        pool.close(kill=True)
