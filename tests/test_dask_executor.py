"""The Dask executor against a real cluster: `dask scheduler` and `dask worker` processes
on 127.0.0.1 started by the test, `lok run --executor dask://…` (or `[executor]`) as a
subprocess, and the loopback LLM server counting the calls in flight.

Calls that hold (`<<hold>>`) stay in flight until the test releases them, so "both
workers busy" or "two calls in flight" is waited for, never timed. These tests skip
without the `lokfile[dask]` extra, unless LOK_REQUIRE_DASK=1 (CI installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lokrun import REPO, lok, skip_unless_required, write
from tests.procs import Lok, wait_for
from tests.servers.llm import LLMServer

START_S = 60.0  # the longest wait for a scheduler or worker to come up
RUN_S = 120.0


def _need_dask() -> str:
    if importlib.util.find_spec("distributed") is None:
        skip_unless_required("LOK_REQUIRE_DASK", "the Dask tests need the lokfile[dask] extra")
    dask = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
    if not os.path.exists(dask):
        skip_unless_required("LOK_REQUIRE_DASK", "the Dask tests need the `dask` command")
    return dask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """A scheduler and its workers, each a process of its own on 127.0.0.1."""

    def __init__(self, workers: int, threads: int, wrap: tuple[str, ...] = ()) -> None:
        self.dask = _need_dask()
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        # PYTHONPATH: the workers import this checkout's lok, as the coordinator does;
        # saturation 1.0: a worker is given no more jobs than it has threads
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._start(
            [self.dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port)],
            "--no-dashboard",
        )
        for _ in range(workers):
            port = _free_port()
            self.workers[f"tcp://127.0.0.1:{port}"] = self._start(
                [*wrap, self.dask, "worker", self.address, "--host", "127.0.0.1"],
                "--worker-port",
                str(port),
                "--nthreads",
                str(threads),
                "--no-nanny",
                "--no-dashboard",
            )
        wait_for(lambda: self.registered() == set(self.workers), START_S, "the workers to join")

    def _start(self, argv: list[str], *more: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*argv, *more], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc

    def registered(self) -> set[str]:
        """The workers the scheduler knows now (asked with a client of the test's own)."""
        from distributed import Client  # type: ignore[import-not-found,unused-ignore]

        try:
            client = Client(self.address, timeout=2, set_as_default=False)  # type: ignore[no-untyped-call,unused-ignore]
        except OSError:
            return set()
        try:
            return set(client.scheduler_info()["workers"])
        finally:
            client.close()  # type: ignore[no-untyped-call,unused-ignore]

    def kill(self, worker: str) -> None:
        proc = self.workers.pop(worker)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Two workers of two threads each, shared by the tests that leave them standing."""
    c = Cluster(workers=2, threads=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def project(root: Path, llm: LLMServer, items: int, extra: str = "") -> Path:
    """A project whose workflow `fan` asks the loopback server once per item; every call
    holds until released."""
    (root / ".lok").mkdir(parents=True)
    backend = f'[backends.llm]\ntype = "openai"\nurl = "{llm.url}"\nmodel = "m"\n'
    (root / "lok.toml").write_text(backend + extra)
    write(
        root,
        ".lok/workflows/fan.toml",
        f"""
        name = "fan"
        [[steps]]
        name = "each"
        backend = "llm"
        for_each = "{{{{ range({items}) | list }}}}"
        prompt = "<<reply:answer {{{{ item }}}}>> <<hold>>"
        """,
    )
    return root


def units(root: Path) -> list[dict[str, Any]]:
    """The units of the last run's `each`, as `lok runs show --json` reports them."""
    proc = lok(root, "runs", "show", "--json", check=True)
    (step,) = json.loads(proc.stdout)["steps"]
    found: list[dict[str, Any]] = step["units"]
    return found


def start(root: Path, mark: str, *args: str) -> Lok:
    return Lok(root, mark, "run", *args, "fan")


def test_a_workflow_runs_on_both_workers_and_each_unit_says_which(
    tmp_path: Path, llm: LLMServer, cluster: Cluster, mark: str
) -> None:
    root = project(tmp_path, llm, items=4)
    run = start(root, mark, "--executor", cluster.address.replace("tcp://", "dask://"))
    # four calls in flight at once: both workers' two threads are busy
    wait_for(lambda: llm.inflight == 4 or run.proc.poll() is not None, RUN_S, "4 calls")
    llm.release.set()
    assert run.wait(RUN_S) == 0, run.err
    done = units(root)
    assert [u["output"] for u in done] == [f"answer {n}" for n in range(4)]
    assert {u["worker"] for u in done} == set(cluster.workers)
    assert len(llm.model_calls()) == 4


def test_a_backend_limit_of_two_holds_across_all_workers(
    tmp_path: Path, llm: LLMServer, cluster: Cluster, mark: str
) -> None:
    # four threads on the cluster, six items, concurrency = 2; the executor from [executor]
    config = f'concurrency = 2\n\n[executor]\ntype = "dask"\naddress = "{cluster.address}"\n'
    root = project(tmp_path, llm, items=6, extra=config)
    run = start(root, mark, "-j", "8")
    wait_for(lambda: llm.inflight == 2 or run.proc.poll() is not None, RUN_S, "2 calls")
    llm.release.set()
    assert run.wait(RUN_S) == 0, run.err
    assert llm.max_inflight == 2
    done = units(root)
    assert [u["output"] for u in done] == [f"answer {n}" for n in range(6)]
    assert {u["worker"] for u in done} <= set(cluster.workers)


def test_the_jobs_of_a_killed_worker_run_again_on_another(
    tmp_path: Path, llm: LLMServer, mark: str
) -> None:
    cluster = Cluster(workers=2, threads=2)
    try:
        root = project(tmp_path, llm, items=4)
        run = start(root, mark, "--executor", cluster.address)
        wait_for(lambda: llm.inflight == 4 or run.proc.poll() is not None, RUN_S, "4 calls")
        lost, kept = sorted(cluster.workers)
        cluster.kill(lost)  # two of the four calls were its own
        llm.release.set()
        assert run.wait(RUN_S) == 0, run.err
        done = units(root)
        assert [u["output"] for u in done] == [f"answer {n}" for n in range(4)]
        assert {u["status"] for u in done} == {"ran"}
        assert {u["worker"] for u in done} == {kept}  # nothing finished on the lost one
        assert len(llm.model_calls()) == 4 + 2  # its two calls were asked again
    finally:
        cluster.stop()


def test_ctrl_c_ends_the_commands_running_on_the_workers(
    tmp_path: Path, cluster: Cluster, mark: str
) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/fan.toml",
        """
        name = "fan"
        [[steps]]
        name = "each"
        for_each = "{{ range(2) | list }}"
        shell = "echo $$ > pid-{{ item }}; exec sleep 600"
        """,
    )
    run = start(tmp_path, mark, "--executor", cluster.address)
    pidfiles = [tmp_path / f"pid-{n}" for n in range(2)]
    wait_for(lambda: all(p.is_file() and p.read_text().strip() for p in pidfiles), RUN_S, "both steps")
    pids = [int(p.read_text()) for p in pidfiles]
    os.kill(run.pid, signal.SIGINT)
    assert run.wait(RUN_S) == 130, run.err
    wait_for(lambda: not any(_alive(pid) for pid in pids), 15, "the sleeps to end")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _blinding() -> tuple[str, ...]:
    """A prefix that starts a process in a mount namespace of its own (root, or a user
    namespace), or skips the test where the system allows neither."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare(1) to give a worker a view without the project")
    for prefix in ((unshare, "-m"), (unshare, "-r", "-m")):
        probe = subprocess.run([*prefix, "true"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("this system allows no mount namespace, so no worker can be kept from the project")


def test_a_worker_that_cannot_see_the_project_fails_the_job_saying_so(
    tmp_path: Path, llm: LLMServer, mark: str
) -> None:
    _need_dask()
    hidden = tmp_path / "hidden"
    root = project(hidden / "proj", llm, items=1)
    llm.release.set()
    # the worker's own view of the world has an empty folder where the project is
    prefix = (*_blinding(), "sh", "-c", f'mount -t tmpfs none "{hidden}" && exec "$0" "$@"')
    cluster = Cluster(workers=1, threads=1, wrap=prefix)
    try:
        run = lok(root, "run", "--json", "--executor", cluster.address, "fan", timeout=RUN_S)
        assert run.returncode == 1
        (step,) = json.loads(run.stdout)["steps"]
        assert step["status"] == "failed"
        (item,) = json.loads(step["output"])
        assert f"cannot see this project at {root}" in item["output"]
        assert "filesystem every worker shares" in item["output"]
        assert llm.model_calls() == []
    finally:
        cluster.stop()


def test_an_unreachable_scheduler_fails_the_run_with_a_clear_error(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_dask()
    root = project(tmp_path, llm, items=1)
    closed = f"dask://127.0.0.1:{_free_port()}"
    run = lok(root, "run", "--executor", closed, "fan", timeout=RUN_S)
    assert run.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_a_bad_executor_is_refused_before_anything_runs(tmp_path: Path, llm: LLMServer) -> None:
    root = project(tmp_path, llm, items=1)
    run = lok(root, "run", "--executor", "dask://nowhere", "fan")
    assert run.returncode == 2
    assert "--executor dask://nowhere" in run.stderr and "Hint:" in run.stderr
    write(root, "lok.toml", (root / "lok.toml").read_text() + '\n[executor]\ntype = "dsak"\n')
    run = lok(root, "run", "fan")
    assert run.returncode == 2 and "lok.toml:" in run.stderr and "executor" in run.stderr
