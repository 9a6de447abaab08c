"""An edit step survives kill -9: its journal, and the next `lok` command restoring from it.

The harshest end is SIGKILL to every lok process at once (coordinator and
workers): nothing of lok is left to put the files back, so only the journal
can. The last test stops lok at random moments of edit steps, with every kind
of signal, and checks the tree after the next command every time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from lokfile.executors.local import RESTORE_WAIT_S
from tests.editworld import edit_project, tree
from tests.lokrun import lok, write
from tests.procs import Lok, kill_marked, lok_pids, new_mark, steps_of, wait_for, wait_gone

JOURNAL = Path(".lok/runs/edits.journal")
# Holds lok inside verify. `exec`: the command is the worker's own child, which the kernel
# kills with its worker; a grandchild can only be ended by a lok process that is still
# alive, and when every lok process is SIGKILLed at once none is.
HOLD = "exec sleep 300"


def _kill_every_lok_process(run: Lok) -> None:
    """SIGKILL the coordinator and its workers at once: no lok code runs after this."""
    pids = [run.pid, *run.workers()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _killed_during_verify(root: Path, mark: str) -> None:
    run = Lok(root, mark, "run", "fixit")
    run.wait_line("verify: ")
    wait_for(lambda: run.workers(), 10, "a worker")
    _kill_every_lok_process(run)
    run.wait()
    wait_gone(mark)


NEXT_COMMANDS = [
    ("runs", "list", "--json"),
    ("status", "--json", "fixit"),
    ("runs", "show", "--json"),
    ("run", "--json", "other"),
]


@pytest.mark.parametrize("command", NEXT_COMMANDS, ids=lambda c: " ".join(c))
def test_the_next_lok_command_restores_what_a_killed_edit_step_changed_and_says_so(
    tmp_path: Path, mark: str, command: tuple[str, ...]
) -> None:
    root = edit_project(tmp_path, HOLD, files=3)
    write(
        root,
        ".lok/workflows/other.toml",
        'name = "other"\n[[steps]]\nname = "a"\nshell = "echo a"\n',
    )
    before = tree(root)
    _killed_during_verify(root, mark)
    assert (root / JOURNAL).is_file(), "the journal stays when lok is killed"
    assert tree(root) != before, "the edits were in place when lok died"
    proc = lok(root, *command)
    assert tree(root) == before
    assert not (root / JOURNAL).exists()
    said = [ln for ln in proc.stderr.splitlines() if "restored" in ln.lower()]
    assert len(said) == 1, proc.stderr
    assert "src/f00.py" in said[0] and "fix" in said[0]
    json.loads(proc.stdout)  # stdout is the JSON document alone
    again = lok(root, "runs", "list")
    assert "restored" not in again.stderr.lower(), "a journal is restored once"


def test_a_killed_step_that_verified_nothing_yet_keeps_file_modes_and_removes_created_files(
    tmp_path: Path, mark: str
) -> None:
    root = edit_project(tmp_path, HOLD, files=2)
    before = tree(root)
    _killed_during_verify(root, mark)
    assert (root / "src/new/created.py").exists()
    lok(root, "runs", "list")
    assert tree(root) == before  # f00.py is 0640 again, src/new/ is gone


def test_runs_revert_works_for_a_killed_run(tmp_path: Path, mark: str) -> None:
    root = edit_project(
        tmp_path,
        "true",
        files=2,
        extra_steps="""
[[steps]]
name = "second"
backend = "t2"
apply_edits = true
verify = "exec sleep 300"
prompt = "Change the other file."
depends_on = ["fix"]
""",
    )
    write(root, "other.txt", "OTHER = 1\n")
    second = {"edits": [{"file": "other.txt", "old": "OTHER = 1", "new": "OTHER = 2"}]}
    with open(root / "lok.toml", "a") as fh:
        fh.write(f'\n[backends.t2]\ntype = "test"\nreply = {json.dumps(json.dumps(second))}\n')
    before = tree(root)
    run = Lok(root, mark, "run", "fixit")
    run.wait_line("verify: exec sleep 300")
    _kill_every_lok_process(run)
    run.wait()
    wait_gone(mark)
    assert (root / "other.txt").read_text() == "OTHER = 2\n"
    # the first step's edits were recorded before the kill: revert undoes them
    proc = lok(root, "runs", "revert", "latest", "--step", "fix")
    assert proc.returncode == 0, proc.stderr
    assert "restored src/f00.py" in proc.stdout
    assert "other.txt" in proc.stderr  # the journal of the killed step was restored first
    assert tree(root) == before
    # the killed step's own edits are already undone: revert says so, and succeeds
    proc = lok(root, "runs", "revert", "latest", "--step", "second")
    assert proc.returncode == 0, proc.stderr
    assert "other.txt" in proc.stdout and "already" in proc.stdout
    assert tree(root) == before


def test_a_journal_of_an_edit_still_running_elsewhere_is_left_alone(
    tmp_path: Path, mark: str
) -> None:
    root = edit_project(tmp_path, "sleep 300; exit 1", files=2)
    before = tree(root)
    run = Lok(root, mark, "run", "fixit")
    run.wait_line("verify: sleep 300")
    edited = tree(root)
    proc = lok(root, "runs", "list")
    assert proc.returncode == 0
    assert "restored" not in proc.stderr.lower()
    assert tree(root) == edited, "a live edit step's files were touched"
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait() == 130
    assert tree(root) == before


# -- the attack: random moments, every kind of end ---------------------------------

ENDS = ("kill -9 coordinator", "kill -9 group", "kill -9 every lok process", "SIGTERM", "Ctrl-C")


def _end(run: Lok, how: str) -> None:
    if how == "kill -9 coordinator":
        os.kill(run.pid, signal.SIGKILL)
    elif how == "kill -9 group":
        os.killpg(run.pid, signal.SIGKILL)
    elif how == "kill -9 every lok process":
        _kill_every_lok_process(run)
    elif how == "SIGTERM":
        os.kill(run.pid, signal.SIGTERM)
    else:
        os.killpg(run.pid, signal.SIGINT)


def _first_restored(root: Path, edited_inode: int) -> bool:
    """Has the restore begun (the first file replaced again since the edit)?"""
    try:
        return os.stat(root / "src/f00.py").st_ino != edited_inode
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_stopping_edit_steps_at_random_moments_always_leaves_the_tree_as_it_was(
    tmp_path: Path,
) -> None:
    """24 trials: 8 moments inside the edits, 8 inside verify, 8 inside the restore."""
    # 24 files of 64 KiB make the writes and the restore long enough to be hit on purpose
    root = edit_project(tmp_path / "p", "sleep 0.3 & sleep 0.3; exit 1", files=24, size=64 * 1024)
    before = tree(root)
    rng = random.Random(9)
    figures: list[str] = []
    for trial in range(24):
        mark = new_mark()
        phase = ("edits", "verify", "restore")[trial % 3]
        how = ENDS[trial % len(ENDS)]
        try:
            run = Lok(root, mark, "run", "fixit")
            if phase == "edits":  # the journal is on disk: the files are being written

                def journal_written(r: Lok = run) -> bool:
                    return (root / JOURNAL).exists() or r.proc.poll() is not None

                wait_for(journal_written, 30, "the journal")
                time.sleep(rng.uniform(0.0, 0.01))
            elif phase == "verify":
                run.wait_line("verify: ")
                time.sleep(rng.uniform(0.0, 0.25))
            else:
                run.wait_line("verify: ")
                inode = os.stat(root / "src/f00.py").st_ino

                def restore_begun(ino: int = inode, r: Lok = run) -> bool:
                    return _first_restored(root, ino) or r.proc.poll() is not None

                wait_for(restore_begun, 30, "the restore to begin")
            journal = (root / JOURNAL).exists()
            _end(run, how)
            code = run.wait()
            try:
                # A worker inside an edit puts the files back before it exits (it may take up
                # to RESTORE_WAIT_S; each restored file is flushed to disk).
                wait_gone(mark, timeout=RESTORE_WAIT_S + 5)
            except AssertionError as exc:
                raise AssertionError(f"trial {trial}: {phase}, {how}: {exc}\n{run.err}") from None
            proc = lok(root, *(NEXT_COMMANDS[trial % 3]))
            json.loads(proc.stdout)
            figures.append(f"{trial:2d} {phase:7} {how:26} exit {code:4} journal={journal}")
            assert tree(root) == before, f"trial {trial}: {phase}, {how}\n{proc.stderr}"
            assert not (root / JOURNAL).exists()
            assert not steps_of(mark) and not lok_pids(mark)
        finally:
            kill_marked(mark)
    print("\n".join(figures))
