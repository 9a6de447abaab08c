"""One call per key: within a run, and across `lok` processes on one project.

Real processes against the loopback server, counting the requests it received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lokrun import BUILTINS_OFF, db_rows, run_json, write
from tests.procs import MARK_VAR, lok_pids, wait_for
from tests.servers.llm import LLMServer

N = 4


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def project(root: Path, server: LLMServer, steps: str) -> Path:
    (root / ".lok").mkdir()
    write(
        root,
        "lok.toml",
        BUILTINS_OFF
        + f'[backends.oai]\ntype = "openai"\nurl = "{server.url}"\nmodel = "gpt-4o-mini"\n',
    )
    write(root, ".lok/workflows/w.toml", 'name = "w"\n' + steps)
    return root


def asks(n: int, directive: str = "") -> str:
    return "".join(
        f'[[steps]]\nname = "s{i}"\nbackend = "oai"\nprompt = "{directive} question {i}"\n'
        for i in range(n)
    )


def start(root: Path, mark: str, log: Path) -> subprocess.Popen[str]:
    """`lok run --json w` in the background, stderr to `log`, marked so the test can
    find its processes."""
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "lokfile", "run", "--json", "w"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, MARK_VAR: mark},
        )


def waits(*logs: Path) -> int:
    """How many calls these runs are waiting for (another lok is making them)."""
    return sum(log.read_text().count("waiting: another lok") for log in logs)


def test_two_units_with_the_same_key_in_one_run_make_one_call(
    server: LLMServer, tmp_path: Path
) -> None:
    same = '[[steps]]\nname = "again"\nbackend = "oai"\nprompt = "<<slow:0.5>> question 0"\n'
    root = project(tmp_path, server, asks(2, "<<slow:0.5>>") + same)
    doc = run_json(root, "w")
    assert doc["exit_code"] == 0
    assert len(server.model_calls()) == 2
    by_name = {s["name"]: s for s in doc["steps"]}
    assert by_name["again"]["output"] == by_name["s0"]["output"]
    assert {by_name["s0"]["status"], by_name["again"]["status"]} == {"ran", "reused"}
    assert doc["cost"]["calls"] == 2 and doc["cost"]["reused_calls"] == 1


def test_two_concurrent_runs_make_exactly_one_request_per_key(
    server: LLMServer, tmp_path: Path, mark: str
) -> None:
    root = project(tmp_path, server, asks(N))
    server.hold.clear()  # every answer waits until both runs are at work
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    runs = [start(root, mark, log) for log in logs]
    wait_for(
        lambda: waits(*logs) == N and len(server.model_calls()) == N,
        60,
        "each key to be asked by one run and awaited by the other",
    )
    server.hold.set()
    outs = [p.communicate(timeout=120)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], [log.read_text() for log in logs]
    assert len(server.model_calls()) == N
    docs = [json.loads(out) for out in outs]
    assert sum(d["cost"]["calls"] for d in docs) == N
    assert sum(d["cost"]["reused_calls"] for d in docs) == N  # each answer: made once, reused once
    outputs = [{s["name"]: s["output"] for s in d["steps"]} for d in docs]
    assert outputs[0] == outputs[1]
    assert db_rows(root, "SELECT count(*) FROM leases") == [(0,)]  # every lease let go


def test_a_dead_owners_lease_is_taken_over_by_the_run_that_waits_for_it(
    server: LLMServer, tmp_path: Path, mark: str
) -> None:
    root = project(tmp_path, server, asks(1))
    server.hold.clear()  # the first run's call does not come back
    owner = start(root, mark, tmp_path / "owner.err")
    wait_for(lambda: len(server.model_calls()) == 1, 30, "the first run's request")
    log = tmp_path / "waiter.err"
    waiter = start(root, mark + "-waiter", log)
    try:
        wait_for(lambda: waits(log) == 1, 30, "the second run to wait")
        for pid in lok_pids(mark):  # kill -9 the owner: no clean-up, its lease stays behind
            os.kill(pid, signal.SIGKILL)
        owner.wait(timeout=30)
        server.hold.set()
        out, _ = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, log.read_text()
    doc = json.loads(out)
    assert doc["steps"][0]["status"] == "ran"
    assert len(server.model_calls()) == 2  # the dead owner's, and the one that replaced it
    assert db_rows(root, "SELECT count(*) FROM leases") == [(0,)]
