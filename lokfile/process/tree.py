"""Processes: ending them for good, telling a dead one from a live one, kernel hooks.

A command runs in its own session (lokfile/process/run.py). To end it we send
SIGTERM to its process group and to every member of its *family* found under
/proc, wait a grace period, then SIGKILL whatever is left:

    family   the descendants (by parent pid: children that started a session of
             their own are found while their parent lives) and every process
             still in the command's session (a double-forked child that was
             re-parented away, or one that moved to a process group of its own)

Two Linux process attributes (prctl; elsewhere they are no-ops) keep step
processes from outliving lok:

    PR_SET_CHILD_SUBREAPER   an orphan among our descendants (a double fork, a
                             setsid'd daemon) is re-parented to us, not to init,
                             so `descendants()` still finds it
    PR_SET_PDEATHSIG         the kernel signals us when the thread that forked
                             us ends (our parent dies, however it dies)

`child_guard` sets both in a command's first process: it dies with the thread
that started it, and while it lives, an orphan anywhere below it (a double fork
into a new session, the one escape the family above misses) becomes its child.

A process is named by its pid *and* its start time (`identity`), so a pid
that was reused after its owner died is not mistaken for the owner.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process under /proc (empty without /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    rows: list[tuple[int, int, int]] = []
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
        if len(fields) > 3:  # state, ppid, pgrp, session
            rows.append((int(entry), int(fields[1]), int(fields[3])))
    return rows


def _below(pid: int, rows: list[tuple[int, int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, parent, _ in rows:
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc (empty where /proc is absent)."""
    return _below(pid, _table())


def _family(pid: int, session: int | None) -> list[int]:
    """`pid`'s descendants and the other members of `session` (when given)."""
    rows = _table()
    found = _below(pid, rows)
    if session is not None:
        seen = set(found)
        found += [p for p, _, sid in rows if sid == session and p != pid and p not in seen]
    return found


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


def _own_session(pid: int) -> int | None:
    """`pid`'s session when `pid` leads one that is not ours, else None."""
    try:
        sid = os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None
    return sid if sid == pid and sid != os.getsid(0) else None


def kill_tree(pid: int, grace: float = 2.0, include_self: bool = True) -> None:
    """SIGTERM `pid`'s process group and family, then SIGKILL survivors after `grace` s.

    The family is `pid`'s descendants and, when `pid` leads a session of its own
    (and `include_self`), every other process of that session."""
    session = _own_session(pid) if include_self else None
    family = _family(pid, session)
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
            break
        time.sleep(0.02)
    # whatever is left, and whatever was started (or moved into the session) meanwhile
    family += [p for p in _family(pid, session) if p not in family]
    if family:
        _signal_all(pgid, family, signal.SIGKILL)


_LIBC: list[Any] = []


def _libc() -> Any:
    """The C library (for prctl), loaded once; None off Linux or where it cannot load."""
    if not sys.platform.startswith("linux"):
        return None
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _prctl(option: int, value: int) -> bool:
    libc = _libc()
    try:
        return libc is not None and bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except AttributeError:
        return False


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel for `sig` when our parent (the thread that forked us) ends."""
    return _prctl(PR_SET_PDEATHSIG, sig)


_SUBREAPER: list[bool] = []


def become_subreaper() -> bool:
    """Let orphaned descendants be re-parented to this process instead of init."""
    done = _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if done:
        _SUBREAPER.append(True)
    return done


def adopts_orphans() -> bool:
    """Has this process become a subreaper (a lok worker, which ends what its jobs leave)?"""
    return bool(_SUBREAPER)


def _guard(parent: int) -> None:
    # between fork and exec: only the prctl already loaded, nothing that could take a lock
    _LIBC[0].prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _LIBC[0].prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() != parent:
        # lok died between the fork and the prctl: the kernel will never send the signal
        os.kill(os.getpid(), signal.SIGKILL)


def child_guard() -> Any:
    """A `preexec_fn` for a command's first process: the kernel SIGKILLs it when the
    thread that started it ends (its process killed, however), and it adopts the
    orphans among its descendants (both survive exec); None where prctl is missing.

    A `preexec_fn` costs subprocess's vfork path (a fork copies the page tables of
    the whole parent), which lokfile/process/run.py pays for every command.
    """
    if _libc() is None:
        return None
    parent = os.getpid()
    return lambda: _guard(parent)


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def identity(pid: int | None = None) -> str | None:
    """`<boot id>/<start time>` of a process (ours by default); None without /proc."""
    fields = _stat_fields(os.getpid() if pid is None else pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()}/{fields[19].decode()}"  # field 22 of stat: start time in ticks


def is_running(pid: int | None, ident: str | None = None) -> bool:
    """Is process `pid` alive — not gone, not a zombie, and (given `ident`) the same process?"""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no /proc here: the signal test is all there is
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    return ident is None or identity(pid) == ident
