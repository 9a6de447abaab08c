"""The HTTP lane of the local executor (lokfile/executors/httplane.py): HTTP queries run
on one event loop in lok's process, everything else in worker processes, all through
one `results` — against a real loopback server speaking each vendor's wire protocol.
(Every answer and error of the asyncio transport itself is checked word for word
against the threaded one in tests/test_backend_http.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokfile.executors import JobEvent, Yielded
from lokfile.executors.local import WorkerPool
from lokfile.model import BackendConfig
from lokfile.store.artifacts import Store
from lokfile.worker.jobs import EditSettings, Job, JobResult, QueryJob, ShellJob
from tests.servers.llm import LLMServer
from tests.test_executors import results, until_done

DEADLINE_S = 30.0  # waiting for the server to see every call


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    made = WorkerPool(64)
    try:
        yield made
    finally:
        made.close(kill=True)


def query(root: Path, job_id: int, url: str, prompt: str, kind: str = "openai", **kw: object) -> Job:
    (root / "runs").mkdir(exist_ok=True)
    config = BackendConfig(
        name=f"my-{kind}", type=kind, url=url, model="m", extra={"max_retries": 0}
    )
    return Job(
        id=job_id,
        step="ask",
        unit=f"item:{job_id}",
        work=QueryJob(backend=config, prompt=prompt, **kw),  # type: ignore[arg-type]
        cwd=str(root),
        runs_dir=str(root / "runs"),
        timeout_s=20.0,
        retry_delay_s=0.01,
    )


@pytest.mark.parametrize("kind", ["openai", "ollama", "anthropic"])
def test_queries_run_at_once_on_the_lane_and_fork_no_worker(
    pool: WorkerPool, server: LLMServer, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback")
    server.hold.clear()  # every answer waits until all 40 calls are in flight together
    for i in range(40):
        pool.submit(query(tmp_path, i, server.url, f"prompt {i}", kind))
    deadline = time.monotonic() + DEADLINE_S
    while server.inflight < 40:
        assert time.monotonic() < deadline, f"only {server.inflight} calls in flight"
        time.sleep(0.01)
    server.hold.set()
    done = results(until_done(pool, 40))
    assert pool.workers == []  # no worker process was started for them
    assert all(r.success for r in done.values()), [r.error for r in done.values()]
    store = Store(tmp_path / "runs")
    for i, r in done.items():
        assert r.output == f"echo: prompt {i}"
        assert r.digest is not None and store.get_text(r.digest) == r.output
        assert r.calls and r.calls[0]["model"]  # the usage each call reported
    assert server.max_inflight == 40


def test_a_shell_step_and_an_edit_go_to_workers_while_queries_stay_on_the_lane(
    pool: WorkerPool, server: LLMServer, tmp_path: Path
) -> None:
    pool.submit(query(tmp_path, 1, server.url, "<<slow:0.3>>plain"))
    shell = Job(
        id=2,
        step="sh",
        unit="",
        work=ShellJob(command="echo from a worker"),
        cwd=str(tmp_path),
        runs_dir=str(tmp_path / "runs"),
        timeout_s=20.0,
    )
    pool.submit(shell)
    pool.submit(query(tmp_path, 3, server.url, "<<reply:no edits>>", edits=EditSettings()))
    assert len(pool.workers) > 0  # the shell step and the editing query needed workers
    assert pool.lane is not None and pool.lane.running >= {1}
    assert 3 not in pool.lane.running and 2 not in pool.lane.running
    done = results(until_done(pool, 3))
    assert done[1].output == "echo: plain"
    assert done[2].output == "from a worker"
    assert done[3].success and done[3].output == "no edits"


def test_a_url_sent_through_a_proxy_is_left_to_the_workers(
    pool: WorkerPool, server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    pool.submit(query(tmp_path, 1, server.url, "hello"))
    assert pool.lane is not None and not pool.lane.running
    done = results(until_done(pool, 1))
    assert not done[1].success and "cannot connect" in (done[1].error or "")
    assert server.requests == []  # httpx in the worker went to the proxy, as configured


def test_a_url_the_proxy_bypasses_stays_on_the_lane(
    pool: WorkerPool, server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    pool.submit(query(tmp_path, 1, server.url, "hello"))
    assert pool.lane is not None and pool.lane.running == {1}
    assert results(until_done(pool, 1))[1].output == "echo: hello"


def test_job_retries_on_the_lane_announce_each_wait(
    pool: WorkerPool, server: LLMServer, tmp_path: Path
) -> None:
    job = query(tmp_path, 1, server.url, "<<fail:500x2>>third time")
    from dataclasses import replace

    pool.submit(replace(job, retries=2))
    messages = until_done(pool, 1)
    notes = [m.text for m in messages if isinstance(m, JobEvent)]
    assert len(notes) == 2 and all("will retry in" in n for n in notes), notes
    done = results(messages)[1]
    assert done.success and done.attempts == 3 and done.output == "echo: third time"


def test_a_call_waiting_out_a_retry_after_gives_its_slot_back_and_sends_only_once_resumed(
    pool: WorkerPool, tmp_path: Path
) -> None:
    from dataclasses import replace

    with LLMServer(retry_after="0.2") as server:
        job = query(tmp_path, 1, server.url, "<<fail:429x1>>later")
        assert isinstance(job.work, QueryJob)
        backend = replace(job.work.backend, extra={"max_retries": 1})
        pool.submit(replace(job, work=replace(job.work, backend=backend)))
        seen: list[object] = []
        deadline = time.monotonic() + DEADLINE_S
        while Yielded(1, True) not in seen:
            assert time.monotonic() < deadline, f"no request for the slot: {seen}"
            seen.extend(pool.results(0.05))
        assert [m for m in seen if isinstance(m, Yielded)] == [Yielded(1, False), Yielded(1, True)]
        assert not any(isinstance(m, JobResult) for m in seen)
        time.sleep(0.3)  # the wait is over: a lane that did not wait for its slot sends now
        assert len(server.model_calls()) == 1
        pool.resume(1)
        done = results(until_done(pool, 1))[1]
        assert done.success and done.output == "echo: later"
        assert len(server.model_calls()) == 2


def test_cancel_ends_a_held_query_and_close_kill_ends_the_rest(
    pool: WorkerPool, server: LLMServer, tmp_path: Path
) -> None:
    for i in (1, 2):
        pool.submit(query(tmp_path, i, server.url, "<<hang>>"))
    deadline = time.monotonic() + DEADLINE_S
    while server.inflight < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pool.cancel(1)
    [one] = [m for m in until_done(pool, 1) if isinstance(m, JobResult)]
    assert one.id == 1 and not one.success and one.error_kind == "interrupted"
    closer = threading.Thread(target=pool.close, kwargs={"kill": True})
    closer.start()
    closer.join(DEADLINE_S)
    assert not closer.is_alive()  # the hung call did not hold up the stop


def test_the_lane_is_a_process_of_its_own_whose_death_ends_its_jobs_as_crashed(
    pool: WorkerPool, server: LLMServer, tmp_path: Path
) -> None:
    import os
    import signal

    from lokfile.executors import JobCrashed

    pool.submit(query(tmp_path, 1, server.url, "<<hang>>"))
    deadline = time.monotonic() + DEADLINE_S
    while server.inflight < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name.startswith("lok")]  # no loop here
    assert pool.lane is not None
    lane_pid = pool.lane._process.pid  # the lane's process: not ours, not a worker's
    assert lane_pid != os.getpid() and pool.workers == []
    os.kill(lane_pid, signal.SIGKILL)
    [crash] = until_done(pool, 1)
    assert isinstance(crash, JobCrashed) and crash.job == 1 and "lane" in crash.error
    assert not pool.lane.running
    pool.submit(query(tmp_path, 2, server.url, "after"))  # a new lane takes the next query
    assert results(until_done(pool, 1))[2].output == "echo: after"


def test_a_lane_closed_after_its_jobs_exits_by_itself_and_is_reaped(
    server: LLMServer, tmp_path: Path
) -> None:
    import multiprocessing
    import os

    pool = WorkerPool(4)
    try:
        pool.submit(query(tmp_path, 1, server.url, "hello"))
        assert results(until_done(pool, 1))[1].output == "echo: hello"
        assert pool.lane is not None
        lane = pool.lane._process
        pid = lane.pid
        pool.close()  # returns once the lane closed its pipe, not after its exit
        assert pool.lane is None
    finally:
        pool.close(kill=True)
    deadline = time.monotonic() + DEADLINE_S
    while os.path.exists(f"/proc/{pid}"):  # neither running nor left a zombie
        assert time.monotonic() < deadline, "the stopped lane did not exit or was not reaped"
        multiprocessing.active_children()  # what lok's exit (or its next process) does
        time.sleep(0.01)
    assert lane.exitcode == 0  # it stopped on "stop", not on a signal
