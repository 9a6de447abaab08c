"""lokfile.process.run, the one runner of commands: real processes, found under /proc.

Every command here carries a marker in its environment (tests/procs.py), which
its children inherit however they detach, so "nothing survived" is read from
/proc, with a bounded wait for the kernel to finish ending them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lokfile.process.run import Finished, Running, run
from tests.procs import MARK_VAR, marked, wait_for, wait_gone

HANG_GUARD_S = 60.0  # only so a broken runner fails the test instead of hanging it


def env(mark: str) -> dict[str, str]:
    return {**os.environ, MARK_VAR: mark}


def sleepers(mark: str) -> list[int]:
    return [pid for pid, cmd in marked(mark).items() if cmd.startswith("sleep")]


def in_thread(call: Callable[[], Finished]) -> tuple[threading.Thread, list[Finished]]:
    box: list[Finished] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    return thread, box


def joined(thread: threading.Thread, box: list[Finished]) -> Finished:
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), "the runner hung"
    assert len(box) == 1
    return box[0]


def test_the_normal_path_returns_both_streams_exactly_and_the_exit_code() -> None:
    done = run(["sh", "-c", "printf ' a\\0b \\n\\n'; printf 'warn\\n' >&2; exit 3"])
    assert done.returncode == 3
    assert done.stdout == b" a\0b \n\n"
    assert done.stderr == b"warn\n"
    assert done.timed_out is False
    assert done.elapsed_s >= 0


def test_stdin_bytes_reach_the_command_whole_and_without_them_stdin_is_empty() -> None:
    data = os.urandom(3 * 1024 * 1024)  # far more than a pipe holds
    assert run(["cat"], stdin=data).stdout == data
    assert run(["cat"]).stdout == b""  # /dev/null: a command that reads stdin cannot hang


def test_stdin_the_command_does_not_read_is_no_error() -> None:
    done = run(["sh", "-c", "head -c 3"], stdin=b"x" * (2 * 1024 * 1024))
    assert (done.returncode, done.stdout) == (0, b"xxx")


def test_stderr_merged_into_stdout_keeps_the_order_of_writes() -> None:
    done = run(["sh", "-c", "echo one; echo two >&2; echo three"], merge_stderr=True)
    assert done.stdout == b"one\ntwo\nthree\n"
    assert done.stderr == b""


def test_cwd_and_env_are_the_commands() -> None:
    done = run(["sh", "-c", 'pwd; echo "$ONLY"'], cwd="/", env={"ONLY": "this", "PATH": "/bin"})
    assert done.stdout == b"/\nthis\n"


def test_a_missing_program_raises_before_anything_runs() -> None:
    with pytest.raises(FileNotFoundError):
        run(["/nonexistent/program"])


FAMILY = (
    # a child, a child in a session of its own, a double fork that stays in the
    # session, a double fork into a new session (adopted by the guarded leader),
    # and a double fork into a process group of its own in the same session
    "sleep 300 & echo $! >> {pids}; "
    "setsid sleep 300 & echo $! >> {pids}; "
    "(sleep 300 & echo $! >> {pids}); "
    "(setsid sleep 300 & echo $! >> {pids}); "
    "({py} -c 'import os; os.setpgid(0, 0); os.execvp(\"sleep\", [\"sleep\", \"300\"])' & "
    "echo $! >> {pids}); "
    "sleep 300"
)


@pytest.mark.parametrize("guard", [True, False])
def test_the_deadline_ends_the_command_and_every_descendant_however_it_detached(
    tmp_path: Path, mark: str, guard: bool
) -> None:
    pids = tmp_path / "pids"
    script = FAMILY.format(pids=pids, py=sys.executable)
    if not guard:
        # without the guard nothing adopts a double fork into a new session: leave it out
        script = script.replace(f"(setsid sleep 300 & echo $! >> {pids}); ", "")
    done = run(["sh", "-c", script], env=env(mark), timeout_s=3, guard=guard)
    assert done.timed_out is True
    assert done.returncode < 0
    started = pids.read_text().split()
    assert len(started) == (5 if guard else 4), started
    wait_gone(mark, timeout=10)


def test_a_command_that_ignores_sigterm_is_sigkilled_after_the_grace(mark: str) -> None:
    # sleep inherits the ignored SIGTERM: only SIGKILL ends either of them
    done = run(
        ["sh", "-c", "trap '' TERM; sleep 300 & wait"], env=env(mark), timeout_s=1, grace_s=0.5
    )
    assert done.timed_out is True
    assert done.returncode == -9
    wait_gone(mark, timeout=10)


def test_a_command_that_traps_sigterm_ends_within_the_grace_with_its_last_words() -> None:
    script = "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
    done = run(["sh", "-c", script], timeout_s=1, grace_s=30)
    assert done.timed_out is True
    assert (done.returncode, done.stdout) == (7, b"ready\nbye\n")


@pytest.mark.parametrize("pidfd", [True, False])
def test_the_deadline_ends_a_command_that_closed_its_pipes_and_runs_on(
    mark: str, pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both pipes reach end-of-file long before the leader exits: the rest of the deadline
    # is spent waiting for its exit (a pidfd, or polling where there is none)
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    script = "echo started; exec >/dev/null 2>&1; sleep 300"
    done = run(["sh", "-c", script], env=env(mark), timeout_s=1, grace_s=0.5)
    assert done.timed_out is True
    assert (done.returncode < 0, done.stdout) == (True, b"started\n")
    wait_gone(mark, timeout=10)


def test_a_command_that_ends_before_its_deadline_is_not_timed_out() -> None:
    done = run(["sh", "-c", "exec >/dev/null 2>&1; exit 4"], timeout_s=60)
    assert (done.returncode, done.timed_out) == (4, False)


def test_an_escaped_descendant_holding_stdout_open_does_not_hang_the_runner(mark: str) -> None:
    # the leader exits at once; its double-forked, setsid'd grandchild keeps stdout open
    # and is nobody's descendant any more: the deadline ends the wait for end-of-file
    script = "(setsid sleep 300 &); echo started"
    thread, box = in_thread(lambda: run(["sh", "-c", script], env=env(mark), timeout_s=1))
    done = joined(thread, box)
    assert done.timed_out is True
    assert (done.returncode, done.stdout) == (0, b"started\n")
    assert sleepers(mark), "the test meant a descendant to escape; none did"


def test_cancel_through_the_registration_hook_ends_the_whole_tree(mark: str) -> None:
    live: list[Running] = []
    script = "sleep 300 & setsid sleep 300 & (setsid sleep 300 &); wait"
    thread, box = in_thread(lambda: run(["sh", "-c", script], env=env(mark), register=live.append))
    wait_for(lambda: len(sleepers(mark)) == 3, HANG_GUARD_S, "three sleeps started")
    assert len(live) == 1
    live[0].stop()
    done = joined(thread, box)
    assert done.timed_out is False
    assert done.returncode < 0
    wait_gone(mark, timeout=10)
    live[0].stop()  # once reaped, a stop does nothing (and never signals a reused pid)


def test_a_cancel_with_an_escaped_pipe_holder_returns_too(mark: str) -> None:
    live: list[Running] = []
    script = "(setsid sleep 300 &); echo started; sleep 300"
    thread, box = in_thread(lambda: run(["sh", "-c", script], env=env(mark), register=live.append))
    wait_for(lambda: len(sleepers(mark)) == 2, HANG_GUARD_S, "two sleeps started")
    live[0].stop()
    done = joined(thread, box)
    assert done.stdout == b"started\n"
    assert done.returncode < 0


def test_an_exception_while_it_runs_ends_the_command_and_propagates(mark: str) -> None:
    started: list[int] = []

    def hook(command: Running) -> None:
        started.append(command.pid)
        raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match="the caller failed"):
        run(["sh", "-c", "sleep 300 & wait"], env=env(mark), register=hook)
    assert len(started) == 1
    wait_gone(mark, timeout=10)
