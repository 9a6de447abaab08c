"""A run whose coordinator is gone reads as interrupted at once, not only after the next run.

Gone means: killed and reaped, killed and left a zombie by its parent, or
dead with its pid now belonging to another process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.lokrun import db_rows, lok, write
from tests.procs import Lok, steps_of, wait_for, wait_gone


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        ".lok/workflows/long.toml",
        """
        name = "long"
        [[steps]]
        name = "slow"
        shell = "sleep 300"
        """,
    )
    return tmp_path


def _listed(root: Path) -> dict[str, object]:
    proc = lok(root, "runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    run: dict[str, object] = json.loads(proc.stdout)["runs"][0]
    return run


def _shown(root: Path) -> dict[str, object]:
    proc = lok(root, "runs", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def _running(root: Path, mark: str) -> Lok:
    run = Lok(root, mark, "run", "long")
    wait_for(lambda: steps_of(mark), 60, "the step to start")
    assert _listed(root)["status"] == "running"
    return run


def test_a_run_killed_with_sigkill_is_listed_and_shown_interrupted(
    project: Path, mark: str
) -> None:
    run = _running(project, mark)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    wait_gone(mark)
    listed = _listed(project)
    assert listed["status"] == "interrupted"
    shown = _shown(project)
    assert shown["status"] == "interrupted"
    assert "died" in str(shown["error"])
    text = lok(project, "runs", "list").stdout
    assert "interrupted" in text and "running" not in text


def test_a_zombie_coordinator_is_not_running(project: Path, mark: str) -> None:
    run = _running(project, mark)
    os.kill(run.pid, signal.SIGKILL)
    # not reaped: the coordinator stays a zombie until this test waits for it
    wait_for(lambda: _state(run.pid) == "Z", 10, "the zombie")
    try:
        assert _listed(project)["status"] == "interrupted"
    finally:
        run.wait()
        wait_gone(mark)


def test_a_dead_coordinator_whose_pid_was_reused_is_not_running(project: Path, mark: str) -> None:
    run = _running(project, mark)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    wait_gone(mark)
    # another process now has the recorded pid (simulated: point the row at a live process)
    other = subprocess.Popen(["sleep", "300"])
    try:
        assert len(db_rows(project, "SELECT id FROM runs")) == 1
        conn = sqlite3.connect(project / ".lok" / "lok.db")
        conn.execute("UPDATE runs SET pid=?", (other.pid,))
        conn.commit()
        conn.close()
        assert _listed(project)["status"] == "interrupted"
    finally:
        other.kill()
        other.wait()


def test_a_live_run_stays_running_and_reading_the_history_writes_nothing(
    project: Path, mark: str
) -> None:
    run = _running(project, mark)
    try:
        assert _shown(project)["status"] == "running"
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        wait_gone(mark)
    db = project / ".lok" / "lok.db"
    rows = db_rows(project, "SELECT status FROM runs")
    assert rows == [("running",)]
    assert _listed(project)["status"] == "interrupted"
    # the reader reported it; only the next run (the coordinator) writes it down
    assert db_rows(project, "SELECT status FROM runs") == [("running",)]
    assert db.exists()


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2 :][:1]
