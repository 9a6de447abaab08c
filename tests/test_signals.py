"""SIGTERM is Ctrl-C, and no step process outlives lok, however lok ends.

Real signals to a real `lok` started in its own session (as a shell job is);
every process it starts carries a marker in its environment (tests/procs.py),
so the tests see exactly which of them survive.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.editworld import edit_project, tree
from tests.lokrun import db_rows, lok, write
from tests.procs import Lok, steps_of, wait_for, wait_gone

# -- SIGTERM is handled like the first Ctrl-C ---------------------------------------


def test_sigterm_during_verify_restores_the_tree_records_the_run_interrupted_and_exits_130(
    tmp_path: Path, mark: str
) -> None:
    root = edit_project(tmp_path, "sleep 300; exit 1", files=4)
    before = tree(root)
    run = Lok(root, mark, "run", "fixit")
    run.wait_line("verify: sleep 300")
    assert tree(root) != before, "the edits are applied while verify runs"
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait() == 130, run.err
    assert tree(root) == before
    assert "SIGTERM" in run.err and "interrupted" in run.err, run.err
    assert "Traceback" not in run.err
    assert db_rows(root, "SELECT status FROM runs") == [("interrupted",)]
    wait_gone(mark)


def test_sigterm_during_a_shell_step_stops_it_records_what_finished_and_exits_130(
    tmp_path: Path, mark: str
) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/long.toml",
        """
        name = "long"
        [[steps]]
        name = "quick"
        shell = "echo quick"
        cache = true
        [[steps]]
        name = "slow"
        shell = "sleep 300"
        cache = true
        depends_on = ["quick"]
        """,
    )
    run = Lok(tmp_path, mark, "run", "long")
    wait_for(lambda: steps_of(mark), 60, "the slow step to start")
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait() == 130, run.err
    lines = [ln for ln in run.err.splitlines() if "SIGTERM" in ln]
    assert len(lines) == 1, run.err
    assert db_rows(tmp_path, "SELECT status FROM runs") == [("interrupted",)]
    assert db_rows(tmp_path, "SELECT status FROM results WHERE step='quick'") == [("ran",)]
    wait_gone(mark)


def test_sigterm_to_a_watch_that_waits_for_changes_exits_130(tmp_path: Path, mark: str) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "in.txt", "x\n")
    write(
        tmp_path,
        ".lok/workflows/w.toml",
        """
        name = "w"
        [[steps]]
        name = "cat"
        shell = "cat in.txt"
        sources = ["in.txt"]
        """,
    )
    run = Lok(tmp_path, mark, "watch", "w")
    run.wait_line("Watching")
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait() == 130, run.err
    assert "Interrupted" in run.err


# -- no orphans ---------------------------------------------------------------------

ORPHAN_WF = """
name = "orphans"
[[steps]]
name = "background"
shell = "sleep 300 & sleep 300"
[[steps]]
name = "own_session"
shell = "setsid sleep 300 >/dev/null 2>&1 & sleep 300"
[[steps]]
name = "double_fork"
shell = "(sleep 300 >/dev/null 2>&1 &) ; sleep 300"
[[steps]]
name = "cli"
backend = "cli"
prompt = "hello"
[[steps]]
name = "fix"
backend = "t"
apply_edits = true
verify = "sleep 300 & sleep 300; exit 1"
prompt = "Change every value."
"""

CLI_BACKEND = """
[backends.cli]
type = "command"
command = "sh"
args = ["-c", "sleep 300 & sleep 300", "{prompt}"]
"""

# processes each step leaves running: 2 + 2 + 2 + 2 (cli) + 2 (verify) sleeps, at least
SLEEPS = 10


def _orphan_project(root: Path) -> Path:
    edit_project(root, "true", files=2)
    write(root, ".lok/workflows/orphans.toml", ORPHAN_WF)
    with open(root / "lok.toml", "a") as fh:
        fh.write(CLI_BACKEND)
    return root


def _sleeps(mark: str) -> int:
    return sum(1 for c in steps_of(mark).values() if c.startswith("sleep"))


def _end(run: Lok, how: str) -> None:
    if how == "kill -9 of the coordinator":
        os.kill(run.pid, signal.SIGKILL)
    elif how == "kill -9 of its process group":
        os.killpg(run.pid, signal.SIGKILL)
    elif how == "SIGTERM":
        os.kill(run.pid, signal.SIGTERM)
    elif how == "Ctrl-C":
        os.killpg(run.pid, signal.SIGINT)
    else:
        raise AssertionError(how)


ENDINGS = ["kill -9 of the coordinator", "kill -9 of its process group", "SIGTERM", "Ctrl-C"]


@pytest.mark.parametrize("how", ENDINGS)
def test_no_step_process_outlives_lok(tmp_path: Path, mark: str, how: str) -> None:
    root = _orphan_project(tmp_path)
    before = tree(root)
    run = Lok(root, mark, "run", "-k", "orphans")
    wait_for(lambda: _sleeps(mark) >= SLEEPS, 60, f"{SLEEPS} step processes")
    _end(run, how)
    code = run.wait()
    if how in ("SIGTERM", "Ctrl-C"):
        assert code == 130, run.err
    # every step process, their children, the setsid'd and the double-forked ones are gone
    wait_gone(mark)
    proc = lok(root, "runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"][0]["status"] == "interrupted"
    assert tree(root) == before


def test_processes_a_step_leaves_behind_end_with_the_run(tmp_path: Path, mark: str) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/daemon.toml",
        """
        name = "daemon"
        [[steps]]
        name = "start"
        shell = "setsid sleep 300 >/dev/null 2>&1 & echo started"
        """,
    )
    run = Lok(tmp_path, mark, "run", "daemon")
    assert run.wait() == 0, run.err
    wait_gone(mark)
