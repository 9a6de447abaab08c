"""What `lok run` shows while it works: a real terminal (a pty) and a plain pipe.

The live view keeps the running steps and a status line (`done/total`, how many
run, how many may run at once) at the bottom of the terminal; the summary line
is the last thing printed, after the results.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lokrun import write

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
REDRAW = re.compile(r"\x1b\[(\d+)F\x1b\[J")

FAN = """
name = "fan"
{steps}
[[steps]]
name = "join"
depends_on = [{names}]
shell = "echo joined"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    steps = "".join(
        f'\n[[steps]]\nname = "s{i}"\nshell = "sleep 0.4; echo {i}"\n' for i in range(6)
    )
    names = ", ".join(f'"s{i}"' for i in range(6))
    write(tmp_path, ".lok/workflows/fan.toml", FAN.format(steps=steps, names=names))
    return tmp_path


def on_a_terminal(cwd: Path, *args: str) -> tuple[int, str]:
    """Run lok with stdout and stderr on a pseudo-terminal; (exit code, all it wrote)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokfile", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def screen(stream: str) -> list[str]:
    """The lines left on the terminal: colours dropped, redrawn areas erased."""
    lines: list[str] = []
    text = ANSI_COLOUR.sub("", stream).replace("\r\n", "\n")
    pos = 0
    for match in REDRAW.finditer(text):
        lines.extend(text[pos : match.start()].split("\n")[:-1] if pos < match.start() else [])
        del lines[len(lines) - int(match.group(1)) :]
        pos = match.end()
    lines.extend(text[pos:].split("\n"))
    return [line for line in lines if line.strip()]


def test_the_live_view_counts_done_of_total_says_the_real_concurrency_and_ends_with_the_summary(
    project: Path,
) -> None:
    code, stream = on_a_terminal(project, "run", "-j", "2", "fan")
    assert code == 0, stream
    plain = ANSI_COLOUR.sub("", stream)
    assert "[parallel] 6 steps ready, up to 2 at a time" in plain
    statuses = re.findall(r"  (\d)/7 done · (\d) running · up to 2 at a time", plain)
    assert statuses, plain
    assert {running for _done, running in statuses} <= {"0", "1", "2"}
    assert "2" in {running for _done, running in statuses}  # two at once, never more
    assert [int(d) for d, _ in statuses] == sorted(int(d) for d, _ in statuses)
    left = screen(stream)
    assert re.fullmatch(r"7 ran, 0 reused, 0 failed, 0 skipped in \S+  \[run \S+\]", left[-1])
    results = left.index("Results:")
    assert left.index("[OK] join (0.0s)") > results
    assert not any("done ·" in line for line in left)  # the status line is gone at the end


def test_plain_progress_numbers_each_finished_step_and_ends_with_the_summary(
    project: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lokfile", "run", "fan"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    counters = [int(m.group(1)) for line in lines if (m := re.search(r"\[(\d)/7\]$", line))]
    assert counters == list(range(1, 8))
    assert lines[-1].startswith("7 ran, 0 reused, 0 failed, 0 skipped in ")
    assert lines.index("Results:") < len(lines) - 1
