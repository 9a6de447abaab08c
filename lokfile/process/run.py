"""Running one command under a deadline: the one way lok runs a program and ends it.

Shell steps (lokfile/worker/execute.py), verify commands (lokfile/worker/verify.py)
and backend CLIs (lokfile/backends/subproc.py) all come through `run`:

    run(argv, stdin=…, cwd=…, env=…, merge_stderr=…, timeout_s=…, register=…) -> Finished

    start     argv in a session of its own, stdin the bytes given or /dev/null,
              the child guard (tree.child_guard: dies with the thread that
              started it, adopts the orphans below it) unless the caller's
              process is itself the guard (a lok worker, for its shell steps)
    wait      one poll loop over stdout, stderr, stdin and a wake-up pipe; it
              sleeps until something happens, so a command that ends returns
              at once (no polling sleeps, which would cost every step latency)
    deadline  the wait's own timeout: at `timeout_s` the loop above sets `timed_out`
              and hands the stop to a thread of its own (the loop keeps draining
              the pipes meanwhile, so last words are not lost); once both pipes
              are closed, the leader's exit is awaited with the rest of the
              deadline (a pidfd). No timer thread is started per command.
    stop      `Running.stop()`, the one kill policy, for the deadline, a cancel
              (the `register` hook hands the live command to whoever may end it:
              the worker's cancel, Ctrl-C's `stop_all`) and an exception alike:

        SIGTERM to the group and the family (tree.kill_tree)
          │  grace (KILL_GRACE_S): the family polled until it has gone
        SIGKILL to whatever is left
          │  the pipes get PIPE_GRACE_S to reach end-of-file; a descendant that
          │  escaped and still holds them is not waited for: they are closed
        reaped, `Finished` returned (or the exception raised again)

The leader is reaped only after a stop in progress has finished, so a stop never
signals a pid that was reused. Start errors (OSError: not found, E2BIG, …) are
raised before anything runs; callers word them.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lokfile.process.tree import child_guard, kill_tree

__all__ = ["KILL_GRACE_S", "Finished", "Running", "run", "stop_all"]

KILL_GRACE_S = 2.0  # SIGTERM to SIGKILL
PIPE_GRACE_S = 1.0  # after a stop: how long a stray writer may keep our pipes open
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Finished:
    """What a command left behind: exit code (negative: the signal that ended it), both
    streams (stderr empty when merged into stdout), how long it took, and whether the
    deadline ended it."""

    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed_s: float
    timed_out: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class Running:
    """A command that has started and not yet been reaped; `stop()` ends its tree."""

    def __init__(self, pid: int, wake: int, grace_s: float) -> None:
        self.pid = pid
        self.timed_out = False
        self._wake = wake  # write end of the wake-up pipe of the loop that reads the command
        self._grace_s = grace_s
        self._lock = threading.Lock()  # held by a stop in progress, and to mark `reaped`
        self._stopped = False
        self._reaped = False

    def stop(self) -> None:
        """End the command's whole tree (the kill policy above); blocks until done.

        Safe from any thread, any number of times: the first call ends the tree, later
        ones wait for it; once the command has been reaped it does nothing."""
        with self._lock:
            if self._reaped or self._stopped:
                return
            self._stopped = True
            kill_tree(self.pid, self._grace_s)
            try:
                os.write(self._wake, b"!")  # the reading loop stops waiting for stray writers
            except OSError:
                pass

    def _expire(self) -> None:
        """The deadline passed: mark it (before anything can reap) and stop in the background,
        so the caller's loop goes on reading the pipes during the grace."""
        self.timed_out = True
        threading.Thread(target=self.stop, daemon=True).start()

    def _reap(self, proc: subprocess.Popen[bytes], deadline: float | None = None) -> int:
        """Wait for the leader to exit without reaping it (stopping it at `deadline`, a
        time.monotonic()), let a stop finish, then reap."""
        if deadline is not None and not self.timed_out and not _exits_by(self.pid, deadline):
            self.timed_out = True
            self.stop()  # the pipes are closed already: nothing left to read meanwhile
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        with self._lock:
            self._reaped = True
        return proc.wait()


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
    timeout_s: float | None = None,
    register: Callable[[Running], None] | None = None,
    guard: bool = True,
    grace_s: float = KILL_GRACE_S,
) -> Finished:
    """Run `argv` to its end, or until `timeout_s` (then `timed_out` is set).

    `register` is called once with the live command, right after it started, before
    anything is read, so a cancel can never arrive too early to reach it. `guard=False`
    leaves out the child guard, for a caller whose process already ends what its
    commands leave behind: the guard costs subprocess's vfork path, about 3 ms a
    command in a lok worker (a chain of 200 trivial steps: 1.2 s without, 2.0 s with)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        bufsize=0,
        stdin=subprocess.PIPE if stdin is not None else _devnull(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=child_guard() if guard else None,
    )
    wake_r, wake_w = os.pipe()
    live = Running(proc.pid, wake_w, grace_s)
    deadline = started + timeout_s if timeout_s else None
    try:
        if register is not None:
            register(live)
        out, err = _read(proc, stdin, wake_r, live, deadline)
        code = live._reap(proc, deadline)
    except BaseException:
        live.stop()  # Ctrl-C or anything else: never leave the command running behind us
        _close(proc)
        live._reap(proc)
        raise
    finally:
        os.close(wake_r)
        with live._lock:
            os.close(wake_w)
    return Finished(code, out, err, time.monotonic() - started, live.timed_out)


def stop_all(live: Iterable[Running]) -> None:
    """Stop every one of `live` at the same time and wait until all have ended."""
    threads = [threading.Thread(target=r.stop, daemon=True) for r in live]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _read(
    proc: subprocess.Popen[bytes],
    data: bytes | None,
    wake: int,
    live: Running,
    deadline: float | None,
) -> tuple[bytes, bytes]:
    """Feed stdin and collect stdout and stderr until end-of-file on both, or until
    PIPE_GRACE_S after a stop (then the pipes are closed unread). At `deadline` (a
    time.monotonic()) the command is stopped as timed out."""
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    err_fd = proc.stderr.fileno() if proc.stderr is not None else -1
    in_fd = proc.stdin.fileno() if proc.stdin is not None else -1
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    view = memoryview(data or b"")
    with selectors.PollSelector() as sel:
        for fd in (out_fd, err_fd):
            if fd >= 0:
                sel.register(fd, selectors.EVENT_READ)
        if in_fd >= 0 and view:
            os.set_blocking(in_fd, False)
            sel.register(in_fd, selectors.EVENT_WRITE)
        elif proc.stdin is not None:
            proc.stdin.close()
        sel.register(wake, selectors.EVENT_READ)
        until: float | None = None  # set once stopped: the end of the wait for end-of-file
        while len(sel.get_map()) > (1 if until is None else 0):
            end = until if until is not None else deadline
            wait = None if end is None else max(0.0, end - time.monotonic())
            ready = sel.select(wait)
            if not ready and end is not None and time.monotonic() >= end:
                if until is not None:
                    break  # an escaped descendant holds our pipes: stop waiting for it
                deadline = None  # once: the stop wakes this loop when it is done
                live._expire()
                continue
            for key, _ in ready:
                fd = key.fd
                if fd == wake:
                    sel.unregister(wake)
                    until = time.monotonic() + PIPE_GRACE_S
                elif fd == in_fd:
                    try:
                        view = view[os.write(fd, view[:_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the command stopped reading: its business
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        assert proc.stdin is not None
                        proc.stdin.close()
                else:
                    chunk = os.read(fd, _CHUNK)
                    if chunk:
                        chunks[fd].append(chunk)
                    else:
                        sel.unregister(fd)
    _close(proc)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def _exits_by(pid: int, deadline: float) -> bool:
    """Wait until the child `pid` has exited (not reaping it) or `deadline` has passed;
    True when it exited. Its pipes reach end-of-file a moment before its exit, so
    this usually returns at the first check."""
    if _exited(pid):
        return True
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (not Linux, or before 5.3): poll instead
        pause = 0.0005
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)
            if _exited(pid):
                return True
        return False
    try:
        with selectors.PollSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)  # readable once the process has exited
            return bool(sel.select(max(0.0, deadline - time.monotonic())))
    finally:
        os.close(fd)


def _exited(pid: int) -> bool:
    """Has the child `pid` exited (or been reaped)? Never blocks, never reaps."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


_DEVNULL: list[int] = []


def _devnull() -> int:
    """One /dev/null descriptor per process, for the stdin of every command given none."""
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _DEVNULL[0]
