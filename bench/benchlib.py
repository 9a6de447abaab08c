"""Small helpers shared by compare.py and fanout.py: timed runs, process-tree memory, metadata.

Everything here is stdlib only, so the scripts run under any Python 3.10+.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# the project's interpreter: its own .venv, else (a worktree without one) the running one
PYTHON = str(REPO / ".venv/bin/python3") if (REPO / ".venv").is_dir() else sys.executable


@dataclass(frozen=True)
class Timed:
    """One finished command: exit code, wall seconds, CPU seconds of it and its children."""

    rc: int
    wall: float
    cpu: float
    tail: str
    peak_rss: int = 0  # bytes, summed over the process tree; 0 when not sampled


def run_timed(
    cmd: str | list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float | None = None,
    rss: bool = False,
) -> Timed:
    """Run `cmd` in its own process group; on timeout kill the whole group (rc 124).

    With `rss`, a thread samples the summed RSS of the command's process tree
    every 20 ms (`peak_rss`); the timed runs leave it off, so the sampler's own
    CPU does not count against the tool."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        shell=isinstance(cmd, str),
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sampler = RssSampler(proc.pid, interval=0.02) if rss else None
    if sampler is not None:
        sampler.__enter__()
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        rc = 124
    finally:
        if sampler is not None:
            sampler.__exit__()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    peak = sampler.peak if sampler is not None else 0
    return Timed(rc, wall, cpu, out[-2000:].decode(errors="replace"), peak)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM, then KILL, the process group led by `proc`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def load1() -> float:
    """The 1-minute load average (the machine is shared: every cell records it)."""
    return round(os.getloadavg()[0], 2)


def summary(times: list[float]) -> dict[str, Any]:
    """Median, min, max and the samples themselves."""
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "n": len(times),
        "times": [round(t, 5) for t in times],
    }


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_rss(pid: int) -> int:
    """Sum of resident set sizes (bytes) of `pid` and all its descendants."""
    kids = _children_map()
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            pass
        todo.extend(kids.get(p, []))
    return total


class RssSampler:
    """Samples the summed RSS of a process tree in a thread; `peak` is the largest sample."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self.processes_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def snapshot_lok(rev: str, work: Path) -> str:
    """Export `rev`'s lokfile/ and workflows/ and return a launcher that runs that copy.

    The venv's `lok` runs the working tree, which other people edit while a
    long benchmark is running; a snapshot pins the code to one commit.
    """
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = work / f"lok-{sha}"
    if not (dest / "lokfile").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "lokfile", "workflows"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        # byte-compiled as `pip install` leaves it: with PYTHONDONTWRITEBYTECODE set (as on
        # this machine) every run would otherwise compile each module from source again
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(dest / "lokfile")], check=True)
    launcher = dest / "lok"
    launcher.write_text(
        f"#!{PYTHON}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(dest)!r})\n"
        "try:  # the `lok` command's own entry point (since 2026-12-03)\n"
        "    from lokfile.__main__ import entry as main\n"
        "except ImportError:\n"
        "    try:\n"
        "        from lokfile.__main__ import main\n"
        "    except ImportError:  # a commit from before lokfile/__main__.py had main()\n"
        "        from lokfile.cli import main\n"
        "sys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return str(launcher)


def git_state(rev: str | None = None, repo: Path = REPO) -> dict[str, Any]:
    """The commit measured: `rev` when lok runs from a snapshot, else HEAD plus whether
    lokfile/ has uncommitted edits (the venv's lok runs the working tree)."""

    def git(*args: str) -> str:
        p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return p.stdout.strip()

    state: dict[str, Any] = {
        "head": git("rev-parse", "--short", rev or "HEAD"),
        "subject": git("log", "-1", "--format=%s", rev or "HEAD"),
    }
    if rev:
        state["snapshot"] = rev
    else:
        state["lokfile_dirty"] = bool(git("status", "--porcelain", "--", "lokfile"))
    return state


def machine() -> dict[str, Any]:
    """CPU model, core count, kernel and Python of this machine."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def save_json(path: Path, doc: Any) -> None:
    """Write `doc` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def busy_cores(window: float = 1.0) -> float:
    """CPU cores busy (non-idle) over `window` seconds, from /proc/stat: a load signal that,
    unlike the 1-minute load average, reacts within a second."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = snap()
    time.sleep(window)
    total1, idle1 = snap()
    ticks = max(1, total1 - total0)
    return round((os.cpu_count() or 1) * (1 - (idle1 - idle0) / ticks), 2)


def wait_for_quiet(max_busy: float, max_wait: float) -> float:
    """Wait (up to `max_wait` s) until fewer than `max_busy` cores are busy; return the last reading."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > max_busy and time.monotonic() < deadline:
        busy = busy_cores(2.0)
    return busy


class Trash:
    """Where a harness puts what it clears between runs: moved aside, deleted at the end.

    On an ext4 without a journal (this VM's root file system) the kernel checks
    every inode it might hand out for a deletion in the last 60 s (360 s while
    the inode's block is dirty) and skips those (`recently_deleted` in
    `find_inode_bit`), so each file created soon after thousands were deleted
    costs hundreds of µs of system time, more the more were deleted. A harness
    that deletes each run's outputs before the next makes every run slower than
    the one before: six identical cold fan-outs took 2.64, 3.48, 3.93, 4.10,
    4.15, 4.12 s (bench/RESULTS.md, issue 12, fifth pass). Moved aside (a rename,
    no inode freed), the runs measure the tool, not the harness's last clean.
    `delete=True` clears by deleting, as before, to reproduce that cost."""

    def __init__(self, root: Path, delete: bool = False) -> None:
        self.root = root
        self.delete = delete
        self._n = 0

    def aside(self, path: Path) -> None:
        """Clear `path` (a file, link or folder; nothing if it is absent)."""
        if not (path.exists() or path.is_symlink()):
            return
        if self.delete:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._n += 1
        path.rename(self.root / f"{os.getpid()}-{self._n}-{path.name}")

    def shell(self, cmd: str) -> str:
        """`cmd` (a tool's clean) with its `rm -f` / `rm -rf` moving aside instead."""
        if self.delete:
            return cmd
        self.root.mkdir(parents=True, exist_ok=True)
        mover = (
            '_aside() { for p do if [ -e "$p" ] || [ -L "$p" ]; then '
            f'd=$(mktemp -d {shlex.quote(str(self.root))}/aside.XXXXXX) && mv -- "$p" "$d/"; '
            "fi; done; }; "
        )
        return mover + re.sub(r"\brm -r?f\b", "_aside", cmd)

    def empty(self) -> None:
        """Delete what was moved aside (after the last timed run)."""
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)


def trash_options(ap: Any, what: str) -> None:
    """`--clean` and `--keep-trash` on an argparse parser (`what`: how the script clears)."""
    ap.add_argument(
        "--clean",
        choices=["aside", "delete"],
        default="aside",
        help=f"how {what}: moved aside into WORK/.trash (emptied at the end) or deleted, "
        "as before 2026-12-03 (see benchlib.Trash)",
    )
    ap.add_argument(
        "--keep-trash",
        action="store_true",
        help="leave WORK/.trash at the end: deleting it slows every file created on this "
        "VM's disk for the next minutes, so a benchmark due soon after would pay for it",
    )
