"""Finding and ending the processes one test started, by a marker in their environment.

A test starts `lok` with `LOK_TEST_MARK=<unique>` in its environment; every
process lok starts inherits it (steps, verify commands, CLI backends, and the
grandchildren they spawn, setsid'd or double-forked), so reading
/proc/PID/environ finds all of them and nothing else on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

MARK_VAR = "LOK_TEST_MARK"


def new_mark() -> str:
    return uuid.uuid4().hex


def _read(pid: str, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _state(pid: str) -> bytes:
    stat = _read(pid, "stat")
    return stat[stat.rfind(b")") + 2 :][:1]


def marked(mark: str) -> dict[int, str]:
    """Live (not zombie) processes carrying `mark`: pid -> command line."""
    needle = f"{MARK_VAR}={mark}".encode()
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        if needle not in _read(entry, "environ").split(b"\0"):
            continue
        if _state(entry) in (b"Z", b"X", b""):
            continue
        out[int(entry)] = _read(entry, "cmdline").replace(b"\0", b" ").decode(errors="replace")
    return out


def steps_of(mark: str) -> dict[int, str]:
    """The marked processes that are not lok itself (step commands and their children)."""
    return {p: c for p, c in marked(mark).items() if "lokfile" not in c}


def lok_pids(mark: str) -> list[int]:
    """The marked lok processes (coordinator and workers)."""
    return [p for p, c in marked(mark).items() if "lokfile" in c]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate()` until it is true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


CLEAR_S = 0.1  # how long no scan may find a marked process before they count as gone


def wait_gone(mark: str, timeout: float = 5.0) -> None:
    """Every marked process has ended (AssertionError listing the survivors otherwise).

    Gone means no scan found one for CLEAR_S: a process inside execve shows an empty
    environment for an instant, so a single empty scan can miss an orphaned step that
    is starting its next command."""
    deadline = time.monotonic() + timeout
    clear_since: float | None = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if marked(mark):
            clear_since = None
        elif clear_since is None:
            clear_since = now
        elif now - clear_since >= CLEAR_S:
            return
        time.sleep(0.02)
    survivors = marked(mark)
    if survivors or clear_since is None:
        raise AssertionError(f"processes outlived lok: {survivors}")


def kill_marked(mark: str) -> None:
    """Clean-up after a failed test: SIGKILL whatever still carries the mark."""
    for pid in marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Lok:
    """`python -m lokfile ARGS` in its own session (its own process group, as a shell job
    is), marked, with its stderr collected line by line as it comes."""

    def __init__(self, cwd: Path, mark: str, *args: str) -> None:
        self.mark = mark
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lokfile", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, MARK_VAR: mark},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.out = ""
        self._err = threading.Thread(target=self._collect, daemon=True)
        self._err.start()
        self._out = threading.Thread(target=self._stdout, daemon=True)
        self._out.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _stdout(self) -> None:
        assert self.proc.stdout is not None
        self.out = self.proc.stdout.read()

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def wait_line(self, text: str, timeout: float = 60) -> None:
        """Until a stderr line containing `text` has arrived."""
        wait_for(
            lambda: any(text in ln for ln in self.lines) or self.proc.poll() is not None,
            timeout,
            f"{text!r} on stderr",
        )
        if not any(text in ln for ln in self.lines):
            self._err.join(timeout=5)
            if not any(text in ln for ln in self.lines):
                raise AssertionError(f"lok ended before printing {text!r}:\n{self.err}")

    def wait(self, timeout: float = 30) -> int:
        """The exit code, once lok has exited and both streams are read."""
        code = self.proc.wait(timeout=timeout)
        self._err.join(timeout=5)
        self._out.join(timeout=5)
        return code

    def workers(self) -> list[int]:
        """The lok worker processes (children of the coordinator)."""
        return [p for p in lok_pids(self.mark) if p != self.pid]
