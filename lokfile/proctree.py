"""Ending processes for good: a whole process group, and every descendant.

A step runs in its own session (so its own process group). On timeout or
cancel we send SIGTERM to the group and to every descendant found under
/proc (which also catches children that started their own session), wait a
grace period, then SIGKILL whatever is left.
"""

from __future__ import annotations

import os
import signal
import time


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc (empty where /proc is absent)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: parse after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _signal_all(pgid: int | None, pids: list[int], sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def kill_tree(pid: int, grace: float = 2.0, include_self: bool = True) -> None:
    """SIGTERM `pid`'s process group and descendants, then SIGKILL survivors after `grace` s."""
    family = descendants(pid)
    if include_self:
        family.append(pid)
    try:
        pgid: int | None = os.getpgid(pid) if include_self else None
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid == os.getpgrp():
        pgid = None  # never signal our own group
    _signal_all(pgid, family, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        family = [p for p in family if _alive(p)]
        if not family:
            return
        time.sleep(0.02)
    family += [p for p in descendants(pid) if p not in family]
    _signal_all(pgid, family, signal.SIGKILL)
