"""Watch mode as a user meets it: a real `lok watch` process, real file writes, real Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from lokfile.watch import WatchSet, watch_set
from tests.lokrun import db_rows, write

PIPE = """
name = "pipe"

[[steps]]
name = "a"
shell = "cat src/a.txt"
sources = ["src/a.txt"]

[[steps]]
name = "b"
shell = "cat src/b.txt"
sources = ["src/b.txt"]
"""

# `delay` is not a source: a test sets how long the next cycle takes without causing one;
# `read-them` tells the test the step has read its sources
SLOW = """
name = "slow"

[[steps]]
name = "slow"
shell = "d=$(cat delay); cat src/a.txt src/b.txt; touch read-them; sleep $d"
sources = ["src/*.txt"]
"""


class Watch:
    """A running `lok watch` whose stdout and stderr lines can be awaited."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lokfile", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.out_at: list[float] = []
        self.err_at: list[float] = []
        self.cursor = {"out": 0, "err": 0}
        self._lines: queue.Queue[tuple[str, float, str]] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put((name, time.monotonic(), line.rstrip("\n")))

    def expect(
        self, stream: str, match: Callable[[str], bool] | str, timeout: float = 15
    ) -> tuple[float, str]:
        """The next line on `stream` ("out"/"err") that matches: (monotonic arrival, line).

        Each stream is read in order: a line matched (or passed over) once is not seen again.
        """
        test = match if callable(match) else (lambda line: match in line)
        deadline = time.monotonic() + timeout
        while True:
            lines, times = (self.out, self.out_at) if stream == "out" else (self.err, self.err_at)
            cursor = self.cursor[stream]
            for i in range(cursor, len(lines)):
                if test(lines[i]):
                    self.cursor[stream] = i + 1
                    return times[i], lines[i]
            self.cursor[stream] = len(lines)
            left = deadline - time.monotonic()
            if left <= 0 or not self._pull(left):
                self.stop()
                raise AssertionError(
                    f"no {stream} line matching {match!r} within {timeout}s\n"
                    f"--- stdout\n{chr(10).join(self.out)}\n--- stderr\n{chr(10).join(self.err)}"
                )

    def _pull(self, timeout: float) -> bool:
        try:
            name, at, line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return False
        if name == "out":
            self.out.append(line)
            self.out_at.append(at)
        else:
            self.err.append(line)
            self.err_at.append(at)
        return True

    def settle(self, seconds: float) -> None:
        """Collect whatever arrives in the next `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._pull(left)

    def cycles(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The first `count` JSON documents (with --json), waiting for them."""
        deadline = time.monotonic() + timeout
        while True:
            docs = [json.loads(line) for line in self.out if line.startswith("{")]
            if len(docs) >= count:
                return docs[:count]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(docs)} cycles, not {count}:\n" + "\n".join(self.err))
            self._pull(left)

    def interrupt(self, timeout: float = 15) -> int:
        """Ctrl-C; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self.settle(0.3)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok" / "workflows").mkdir(parents=True)
    write(tmp_path, "src/a.txt", "alpha\n")
    write(tmp_path, "src/b.txt", "beta\n")
    return tmp_path


@pytest.fixture
def watches() -> Any:
    started: list[Watch] = []

    def start(cwd: Path, *args: str) -> Watch:
        w = Watch(cwd, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def save(path: Path, text: str) -> float:
    """Write like an editor's plain save; the monotonic time it finished."""
    path.write_text(text)
    return time.monotonic()


def sources_read(root: Path, timeout: float = 10) -> None:
    """Wait until the SLOW step has read its sources (and so is sleeping)."""
    marker = root / "read-them"
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    marker.unlink()


def run_rows(root: Path) -> list[tuple[str, str]]:
    return db_rows(root, "SELECT id, status FROM runs ORDER BY started")


# -- what a save does --------------------------------------------------------


def test_a_save_reruns_only_the_affected_step_and_starts_within_a_second(
    project: Path, watches: Any
) -> None:
    write(project, ".lok/workflows/pipe.toml", PIPE)
    w = watches(project, "watch", "pipe")
    w.expect("err", "Watching")
    saved = save(project / "src" / "b.txt", "BETA\n")
    w.expect("err", "changed: src/b.txt")
    started, _ = w.expect("err", "[step] b")
    w.expect("err", lambda line: line.startswith("1 ran, 1 reused"))
    w.expect("err", "Watching")
    latency = started - saved
    assert latency < 1.0, f"the rerun started {latency:.3f}s after the save"
    second_cycle = w.err[w.err.index("↻ changed: src/b.txt") :]
    assert not any(line.startswith("[step] a") for line in second_cycle)
    assert "  = a reused  [1/2]" in second_cycle
    w.expect("out", "BETA")

    assert w.interrupt() == 130
    runs = run_rows(project)
    assert [status for _id, status in runs] == ["succeeded", "succeeded"]
    ran = db_rows(
        project, "SELECT step, status FROM results WHERE run_id=? AND unit='' ORDER BY step",
        runs[1][0],
    )
    assert ran == [("a", "reused"), ("b", "ran")]


def test_run_with_watch_flag_watches_too(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/pipe.toml", PIPE)
    w = watches(project, "run", "--watch", "pipe")
    w.expect("err", "Watching")
    save(project / "src" / "a.txt", "ALPHA\n")
    w.expect("err", "[step] a (source changed: src/a.txt)")
    w.expect("out", "ALPHA")
    assert w.interrupt() == 130


def test_a_new_file_matching_a_source_glob_reruns_its_step(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/glob.toml", """
        name = "glob"

        [[steps]]
        name = "count"
        shell = "ls docs | wc -l"
        sources = ["docs/**/*.md"]
    """)
    write(project, "docs/one.md", "one\n")
    w = watches(project, "watch", "--json", "glob")
    w.expect("err", "Watching")
    write(project, "docs/deep/two.md", "two\n")
    w.expect("err", "changed: docs/deep/two.md")
    assert [c["counts"]["ran"] for c in w.cycles(2)] == [1, 1]
    assert w.interrupt() == 130


def test_changes_under_lok_dir_and_unrelated_files_never_trigger_a_run(
    project: Path, watches: Any
) -> None:
    write(project, ".lok/workflows/all.toml", """
        name = "all"

        [[steps]]
        name = "everything"
        shell = "echo ran >> .lok/side-effect.log; mkdir -p build; echo out > build/out.txt"
        sources = ["**/*"]
        outputs = ["build/out.txt"]
    """)
    w = watches(project, "watch", "all")
    w.expect("err", "Watching")
    write(project, ".lok/scratch.txt", "lok's own folder\n")
    write(project, "build/out.txt", "a declared output\n")
    w.settle(1.0)
    assert not any("changed:" in line for line in w.err), w.err
    write(project, "src/c.txt", "a real source\n")
    w.expect("err", "changed: src/c.txt")
    w.expect("err", "Watching")
    w.settle(0.8)  # the run's own writes to .lok/ must not start another cycle
    assert sum("changed:" in line for line in w.err) == 1, w.err
    assert w.interrupt() == 130


def test_a_change_to_the_parent_workflow_reruns(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/base.toml", """
        name = "base"

        [[steps]]
        name = "greet"
        shell = "echo hello"
        sources = ["src/a.txt"]
    """)
    write(project, ".lok/workflows/child.toml", """
        name = "child"
        extends = "base"

        [[steps]]
        name = "extra"
        shell = "echo extra"
        sources = ["src/b.txt"]
    """)
    w = watches(project, "watch", "child")
    w.expect("err", "Watching")
    write(project, ".lok/workflows/base.toml", """
        name = "base"

        [[steps]]
        name = "greet"
        shell = "echo bonjour"
        sources = ["src/a.txt"]
    """)
    w.expect("err", "changed: .lok/workflows/base.toml")
    w.expect("err", lambda line: line.startswith("1 ran, 1 reused"))
    cycle = w.err[w.err.index("↻ changed: .lok/workflows/base.toml") :]
    assert "[step] greet (command changed)" in cycle and "  = extra reused  [1/2]" in cycle
    w.expect("out", "bonjour")
    assert w.interrupt() == 130


# -- changes during a run ----------------------------------------------------


def test_two_saves_during_a_run_are_both_picked_up_by_one_rerun(
    project: Path, watches: Any
) -> None:
    write(project, ".lok/workflows/slow.toml", SLOW)
    write(project, "delay", "0")
    w = watches(project, "watch", "--json", "slow")
    w.expect("err", "Watching")
    write(project, "delay", "1.5")
    (project / "read-them").unlink()
    save(project / "src" / "a.txt", "first save\n")
    sources_read(project)
    save(project / "src" / "a.txt", "second save\n")
    time.sleep(0.2)
    save(project / "src" / "b.txt", "third save\n")
    write(project, "delay", "0")
    w.expect("err", "changed: src/a.txt, src/b.txt")
    cycles = w.cycles(3, timeout=20)
    assert [c["status"] for c in cycles] == ["succeeded"] * 3, w.err
    assert cycles[1]["steps"][0]["output"] == "first save\nbeta"  # it was not restarted
    assert cycles[2]["changed"] == ["src/a.txt", "src/b.txt"]
    assert cycles[2]["steps"][0]["output"] == "second save\nthird save"
    assert w.interrupt() == 130


def test_restart_interrupts_the_running_cycle_and_records_it(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/slow.toml", SLOW)
    write(project, "delay", "30")
    write(project, "src/a.txt", "x\n")
    w = watches(project, "watch", "--restart", "--json", "slow")
    sources_read(project)
    write(project, "delay", "0")
    saved = save(project / "src" / "b.txt", "changed mid-run\n")
    at, _ = w.expect("err", "restarting, changed: src/b.txt")
    assert at - saved < 1.5
    w.expect("err", "[step] slow", timeout=5)
    cycles = w.cycles(2, timeout=20)
    assert [(c["status"], c["restarted"]) for c in cycles] == [
        ("interrupted", True),
        ("succeeded", False),
    ]
    assert cycles[1]["steps"][0]["output"] == "x\nchanged mid-run"
    assert w.interrupt() == 130
    assert [s for _id, s in run_rows(project)] == ["interrupted", "succeeded"]


# -- broken inputs -----------------------------------------------------------


def test_a_syntax_error_is_reported_and_a_later_fix_runs(project: Path, watches: Any) -> None:
    wf = write(project, ".lok/workflows/pipe.toml", PIPE)
    w = watches(project, "watch", "pipe")
    w.expect("err", "Watching")
    save(wf, PIPE + "\n[[steps]\nname = \n")
    _, error = w.expect("err", "Error:")
    assert "pipe.toml" in error
    w.expect("err", "Waiting for a fix")
    assert w.proc.poll() is None
    save(wf, PIPE + '\n[[steps]]\nname = "c"\nshell = "echo fixed"\n')
    w.expect("err", "[step] c")
    w.expect("out", "fixed")
    w.expect("err", "Watching")
    assert w.interrupt() == 130


def test_a_broken_config_is_reported_and_a_fix_runs(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/pipe.toml", PIPE)
    config = write(project, "lok.toml", "[defaults]\njobs = 2\n")
    w = watches(project, "watch", "--json", "pipe")
    w.expect("err", "Watching")
    save(config, "[defaults]\njobs = \n")
    _, error = w.expect("err", "Error:")
    assert "lok.toml" in error
    w.expect("out", '"error"')
    save(config, "[defaults]\njobs = 3\n")
    w.expect("err", "changed: lok.toml")
    assert [c.get("status", "error") for c in w.cycles(3)] == ["succeeded", "error", "succeeded"]
    assert w.interrupt() == 130


def test_a_workflow_broken_from_the_start_is_watched_until_fixed(
    project: Path, watches: Any
) -> None:
    wf = write(project, ".lok/workflows/pipe.toml", "name = \n")
    w = watches(project, "watch", "pipe")
    w.expect("err", "Waiting for a fix")
    save(wf, PIPE)
    w.expect("err", "[step] a")
    w.expect("err", "Watching")
    assert w.interrupt() == 130


def test_an_unknown_workflow_is_bad_input_not_a_watch(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lokfile", "watch", "nope"],
        cwd=project, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: workflow 'nope' not found")
    assert proc.stdout == ""


# -- Ctrl-C ------------------------------------------------------------------


def test_ctrl_c_during_a_run_exits_130_with_the_run_recorded(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/slow.toml", SLOW)
    write(project, "delay", "30")
    w = watches(project, "watch", "slow")
    sources_read(project)
    started = time.monotonic()
    assert w.interrupt() == 130
    assert time.monotonic() - started < 4
    assert [s for _id, s in run_rows(project)] == ["interrupted"]
    assert "Interrupted." in w.err


def test_ctrl_c_while_idle_exits_130_and_keeps_the_runs(project: Path, watches: Any) -> None:
    write(project, ".lok/workflows/pipe.toml", PIPE)
    w = watches(project, "watch", "pipe")
    w.expect("err", "Watching")
    assert w.interrupt() == 130
    assert [s for _id, s in run_rows(project)] == ["succeeded"]


# -- which paths matter (no processes) ---------------------------------------


def _set(root: Path, patterns: tuple[str, ...], files: tuple[str, ...] = (),
         ignored: tuple[str, ...] = ()) -> WatchSet:
    return WatchSet(
        root, frozenset(root / f for f in files), patterns, ignored
    )


def test_source_globs_match_like_the_fingerprinter(tmp_path: Path) -> None:
    ws = _set(tmp_path, ("src/**/*.py", "notes.txt", "docs/*.md"))

    def wants(rel: str) -> bool:
        return ws.wants(str(tmp_path / rel))

    assert wants("src/a.py") and wants("src/x/y/b.py")
    assert wants("notes.txt") and wants("docs/a.md")
    assert not wants("docs/sub/a.md")  # one star stays in its folder
    assert not wants("src/.hidden/a.py") and not wants("docs/.a.md")  # like glob.glob
    assert not wants("src/a.pyc") and not wants("other.txt")


def test_lok_dir_never_matters_unless_a_file_there_is_named(tmp_path: Path) -> None:
    ws = _set(tmp_path, ("**/*",), files=(".lok/workflows/w.toml",), ignored=("build/*",))
    assert not ws.wants(str(tmp_path / ".lok" / "runs" / "latest"))
    assert not ws.wants(str(tmp_path / ".lok" / "workflows" / "other.toml"))
    assert ws.wants(str(tmp_path / ".lok" / "workflows" / "w.toml"))
    assert not ws.wants(str(tmp_path / "build" / "out.o"))
    assert ws.wants(str(tmp_path / "src" / "main.c"))


def test_folders_watch_globs_deep_from_their_fixed_prefix_and_files_flat(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / ".lok" / "workflows").mkdir(parents=True)
    ws = _set(tmp_path, ("src/pkg/**/*.py", "README.md"), files=(".lok/workflows/w.toml",))
    flat, deep = ws.folders()
    assert flat == {tmp_path / ".lok" / "workflows", tmp_path}
    assert deep == {tmp_path / "src" / "pkg"}
    assert ws.describe() == "1 file and 2 source patterns"


def test_a_glob_under_a_missing_folder_is_watched_from_the_nearest_existing_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    ws = _set(tmp_path, ("src/gen/*.txt",), files=("src/x.toml",))
    assert ws.folders() == (frozenset(), frozenset({tmp_path / "src"}))


def test_a_new_folder_counts_only_when_it_holds_a_matching_file(tmp_path: Path) -> None:
    ws = _set(tmp_path, ("docs/**/*.md",), ignored=("docs/gen/*",))
    write(tmp_path, "docs/a/b/page.md", "x")
    write(tmp_path, "docs/gen/made.md", "x")
    write(tmp_path, "docs/img/pic.png", "x")
    assert ws.wants(str(tmp_path / "docs" / "a"))
    assert not ws.wants(str(tmp_path / "docs" / "gen"))
    assert not ws.wants(str(tmp_path / "docs" / "img"))


def test_watch_set_takes_every_step_source_and_output_and_the_config(tmp_path: Path) -> None:
    from lokfile.config import load_config
    from lokfile.project import Project
    from lokfile.workflow.loader import load_workflow

    write(tmp_path, "lok.toml", "[defaults]\njobs = 2\n")
    wf_file = write(tmp_path, ".lok/workflows/w.toml", """
        name = "w"

        [[steps]]
        name = "a"
        shell = "true"
        sources = ["a/*.c"]

        [[steps]]
        name = "b"
        shell = "true"
        sources = ["b.h"]
        outputs = ["out/b"]
    """)
    project = Project(tmp_path)
    config = load_config(project, user_config_dir=tmp_path / "no-user")
    wf = load_workflow("w", project, config, user_config_dir=tmp_path / "no-user")
    ws = watch_set(tmp_path, wf, config)
    assert ws.patterns == ("a/*.c", "b.h")
    assert ws.ignored == ("out/b",)
    assert ws.files == {(tmp_path / "lok.toml").resolve(), wf_file.resolve()}
